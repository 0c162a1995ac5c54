"""Hysteresis: exact thresholds, flapping, and clearing."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from nodeprobe.judge.hysteresis import Counter, step


def run(results: Iterable[bool], *, n: int, m: int) -> list[bool]:
    state, raised = Counter(), []
    for bad in results:
        state = step(state, bad, raise_after=n, clear_after=m)
        raised.append(state.raised)
    return raised


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_raises_on_exactly_the_nth_failure(n: int) -> None:
    assert run([True] * n, n=n, m=3) == [False] * (n - 1) + [True]


@pytest.mark.parametrize("m", [1, 2, 4])
def test_clears_on_exactly_the_mth_success(m: int) -> None:
    assert run([True, True] + [False] * m, n=2, m=m)[1:] == [True] * m + [False]


def test_flapping_never_raises_when_n_above_one() -> None:
    assert not any(run([True, False] * 50, n=2, m=3))


def test_failure_while_clearing_restarts_the_count() -> None:
    # raised, two good, one bad, two good: still raised (needs 3 in a row)
    assert run([True, True, False, False, True, False, False], n=2, m=3)[-1] is True
    assert run([True, True, False, False, True, False, False, False], n=2, m=3)[-1] is False


def test_pending_and_counts() -> None:
    state = step(Counter(), True, raise_after=3, clear_after=2)
    assert state.pending and not state.raised and state.bad_run == 1 and state.seen == 1
    state = step(state, False, raise_after=3, clear_after=2)
    assert not state.pending and state.good_run == 1 and state.bad_run == 0


def test_immutable() -> None:
    state = Counter()
    step(state, True, raise_after=1, clear_after=1)
    assert state == Counter()
