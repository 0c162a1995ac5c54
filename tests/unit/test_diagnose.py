"""The one-shot runner: concurrent calls, and a guard for a probe that never returns."""

from __future__ import annotations

import threading
import time

from nodeprobe.diagnose import GUARD_MARGIN_S, Limits, run_once
from nodeprobe.model import Check, Observation, Outcome, Runtime


class SleepyProbe:
    """A stand-in probe whose calls take a set time; `stuck` ones never return (a probe bug)."""

    runtime = Runtime.DOCKERD

    def __init__(self, checks: tuple[Check, ...], *, took_s: float, stuck: bool = False) -> None:
        self.checks = checks
        self.took_s = took_s
        self.stuck = stuck
        self.release = threading.Event()

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        if self.stuck:
            self.release.wait()
        else:
            time.sleep(self.took_s)
        return Observation(self.runtime, check, Outcome.OK, self.took_s, time.time())

    def close(self) -> None:
        self.release.set()


def test_calls_run_at_the_same_time():
    probe = SleepyProbe((Check.DOCKER_PING, Check.DOCKER_VERSION, Check.DOCKER_INFO), took_s=0.3)
    start = time.monotonic()
    got = run_once([probe], lambda _: Limits(deadline_s=1.0, slow_s=0.5))
    assert time.monotonic() - start < 0.6
    assert [o.check for o in got] == list(probe.checks)
    assert {o.outcome for o in got} == {Outcome.OK}


def test_a_probe_that_never_returns_is_reported_hung_by_the_guard():
    stuck = SleepyProbe((Check.DOCKER_PING,), took_s=0, stuck=True)
    try:
        start = time.monotonic()
        (obs,) = run_once([stuck], lambda _: Limits(deadline_s=0.2, slow_s=0.1))
        elapsed = time.monotonic() - start
    finally:
        stuck.close()
    assert obs.outcome is Outcome.HUNG
    assert "did not return" in obs.detail
    assert elapsed < 0.2 + GUARD_MARGIN_S + 0.3
