"""The one-shot runner: concurrent calls, and a guard for a probe that never returns."""

from __future__ import annotations

import itertools
import threading
import time

from nodeprobe.diagnose import GUARD_MARGIN_S, Limits, run_once
from nodeprobe.model import Check, Observation, Outcome, Runtime


class MeetingProbe:
    """Each call waits at a barrier for all the others: only concurrent calls all answer OK."""

    runtime = Runtime.DOCKERD

    def __init__(self, checks: tuple[Check, ...]) -> None:
        self.checks = checks
        self.barrier = threading.Barrier(len(checks))

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        try:
            self.barrier.wait(timeout=deadline_s)
            outcome = Outcome.OK
        except threading.BrokenBarrierError:
            outcome = Outcome.ERROR  # the others never came: calls ran one after another
        return Observation(self.runtime, check, outcome, 0.0, time.time())

    def close(self) -> None:
        pass


class StuckProbe:
    """A probe whose calls never return (a probe bug) until closed."""

    runtime = Runtime.DOCKERD
    checks = (Check.DOCKER_PING,)

    def __init__(self) -> None:
        self.release = threading.Event()

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        self.release.wait()
        return Observation(self.runtime, check, Outcome.OK, 0.0, time.time())

    def close(self) -> None:
        self.release.set()


def test_calls_run_at_the_same_time():
    probe = MeetingProbe((Check.DOCKER_PING, Check.DOCKER_VERSION, Check.DOCKER_INFO))
    got = run_once([probe], lambda _: Limits(deadline_s=30.0, slow_s=0.5))
    assert [o.check for o in got] == list(probe.checks)
    assert [o.outcome for o in got] == [Outcome.OK] * 3


def test_a_probe_that_never_returns_is_reported_hung_by_the_guard():
    stuck = StuckProbe()
    ticks = itertools.count()
    # The guard's clock: the first reading starts the wait, every later one is past the guard.
    clock = lambda: 0.0 if next(ticks) == 0 else 1e6  # noqa: E731
    try:
        (obs,) = run_once([stuck], lambda _: Limits(deadline_s=0.2, slow_s=0.1), clock=clock)
    finally:
        stuck.close()
    assert obs.outcome is Outcome.HUNG
    assert "did not return" in obs.detail
    assert obs.latency_s == 0.2 + GUARD_MARGIN_S
