"""Hysteresis: raise after N bad results in a row, clear after M good ones in a row.

One `Counter` per (runtime, check). Immutable, so the judge can keep old states and tests can
step through a series without set-up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Counter:
    """Where one series stands: raised or not, and the current run of bad or good results."""

    raised: bool = False
    bad_run: int = 0
    """Consecutive bad results up to now (0 after a good one)."""
    good_run: int = 0
    """Consecutive good results up to now (0 after a bad one)."""
    seen: int = 0
    """How many results this counter has stepped through."""

    @property
    def pending(self) -> bool:
        """Bad lately but not raised yet: the judge cannot say 'healthy' with a straight face."""
        return not self.raised and self.bad_run > 0


def step(state: Counter, bad: bool, *, raise_after: int, clear_after: int) -> Counter:
    """The counter after one more result. `raise_after`, `clear_after` >= 1."""
    if bad:
        run = state.bad_run + 1
        raised = state.raised or run >= raise_after
        return Counter(raised=raised, bad_run=run, good_run=0, seen=state.seen + 1)
    run = state.good_run + 1
    raised = state.raised and run < clear_after
    return Counter(raised=raised, bad_run=0, good_run=run, seen=state.seen + 1)
