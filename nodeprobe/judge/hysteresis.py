"""Hysteresis: raise on N bad in a row *or* k bad among the last n; clear on M good in a row.

One `Counter` per (runtime, check). Immutable, so the judge can keep old states and tests can
step through a series without set-up. Counting over a window as well as in a row is what makes
intermittent trouble count: a daemon whose calls alternate OK and HUNG never fails twice in a
row, yet half its calls fail. A raised counter clears only once it has had `clear_after` good
results in a row *and* fewer than k of the last n were bad, so that same daemon stays raised
instead of flapping.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """When a counter raises and clears."""

    raise_after: int
    """Bad results in a row that raise (>= 1)."""
    clear_after: int
    """Good results in a row that clear (>= 1), together with `failures_in_window`."""
    window: int = 0
    """How many recent results are kept for the k-of-n count; 0 = in a row only."""
    failures_in_window: int = 0
    """k: this many bad among the last `window` raise; 0 = in a row only."""


@dataclass(frozen=True, slots=True)
class Counter:
    """Where one series stands: raised or not, the current runs, the recent results."""

    raised: bool = False
    bad_run: int = 0
    """Consecutive bad results up to now (0 after a good one)."""
    good_run: int = 0
    """Consecutive good results up to now (0 after a bad one)."""
    seen: int = 0
    """How many results this counter has stepped through."""
    recent: tuple[bool, ...] = ()
    """The last `Rule.window` results, oldest first; True = bad."""

    @property
    def pending(self) -> bool:
        """Bad lately but not raised yet: the judge cannot say 'healthy' with a straight face."""
        return not self.raised and self.bad_run > 0

    @property
    def bad_in_window(self) -> int:
        return sum(self.recent)


def _windowed(rule: Rule) -> bool:
    return rule.window > 0 and rule.failures_in_window > 0


def _decide(state: Counter, rule: Rule) -> bool:
    windowed = _windowed(rule)
    many = windowed and state.bad_in_window >= rule.failures_in_window
    if not state.raised:
        return state.bad_run >= rule.raise_after or many
    return not (state.good_run >= rule.clear_after and not many)


def step(
    state: Counter,
    bad: bool,
    *,
    raise_after: int,
    clear_after: int,
    window: int = 0,
    failures_in_window: int = 0,
) -> Counter:
    """The counter after one more result. `raise_after`, `clear_after` >= 1."""
    rule = Rule(raise_after, clear_after, window, failures_in_window)
    recent = (*state.recent, bad)[-window:] if _windowed(rule) else ()
    if bad:
        nxt = Counter(state.raised, state.bad_run + 1, 0, state.seen + 1, recent)
    else:
        nxt = Counter(state.raised, 0, state.good_run + 1, state.seen + 1, recent)
    return Counter(_decide(nxt, rule), nxt.bad_run, nxt.good_run, nxt.seen, nxt.recent)


def forgive(state: Counter, count: int, *, rule: Rule) -> Counter:
    """The counter with its last `count` bad results re-judged as good (a hang that turned out
    to be slowness), and raised or cleared again by the same rule."""
    recent = list(state.recent)
    left = count
    for i in range(len(recent) - 1, -1, -1):
        if left <= 0:
            break
        if recent[i]:
            recent[i] = False
            left -= 1
    bad_run = max(0, state.bad_run - count)
    good_run = state.good_run
    if bad_run == 0:
        # the forgiven run joins the good run before it (bounded by what the window remembers)
        tail = 0
        for bad in reversed(recent):
            if bad:
                break
            tail += 1
        good_run = max(good_run, tail, count if not recent else 0)
    nxt = Counter(state.raised, bad_run, good_run, state.seen, tuple(recent))
    return Counter(_decide(nxt, rule), nxt.bad_run, nxt.good_run, nxt.seen, nxt.recent)
