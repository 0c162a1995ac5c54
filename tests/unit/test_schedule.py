"""The scheduler: each check on its interval, never two calls of one check at once."""

from __future__ import annotations

import random
import threading
import time

from nodeprobe.model import Check, Observation, Outcome, Runtime
from nodeprobe.schedule import Job, Scheduler


class CountingProbe:
    """Records overlapping calls per check; `slow` checks take longer than their interval."""

    runtime = Runtime.CONTAINERD
    checks = (Check.CRI_VERSION, Check.CRI_STATUS)

    def __init__(self, *, took_s: dict[Check, float]) -> None:
        self.took_s = took_s
        self.lock = threading.Lock()
        self.in_flight: dict[Check, int] = dict.fromkeys(self.checks, 0)
        self.max_in_flight: dict[Check, int] = dict.fromkeys(self.checks, 0)

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        with self.lock:
            self.in_flight[check] += 1
            self.max_in_flight[check] = max(self.max_in_flight[check], self.in_flight[check])
        time.sleep(self.took_s[check])
        with self.lock:
            self.in_flight[check] -= 1
        if check is Check.CRI_STATUS:
            raise RuntimeError("boom")
        return Observation(self.runtime, check, Outcome.OK, self.took_s[check], time.time())

    def close(self) -> None:
        pass


def test_one_call_in_flight_per_check_and_a_raising_probe_becomes_error():
    probe = CountingProbe(took_s={Check.CRI_VERSION: 0.15, Check.CRI_STATUS: 0.01})
    jobs = [Job(probe, Check.CRI_VERSION, interval_s=0.02, deadline_s=1, slow_s=1),
            Job(probe, Check.CRI_STATUS, interval_s=0.02, deadline_s=1, slow_s=1)]
    scheduler = Scheduler(jobs, rng=random.Random(1))
    scheduler.start()
    got: list[Observation] = []
    try:
        while sum(o.check is Check.CRI_VERSION for o in got) < 3:
            got.append(scheduler.observations.get(timeout=5))
    finally:
        scheduler.stop()
    assert probe.max_in_flight[Check.CRI_VERSION] == 1
    errors = [o for o in got if o.check is Check.CRI_STATUS]
    assert errors and all(o.outcome is Outcome.ERROR and "boom" in o.detail for o in errors)
    # The fast check kept its own pace while the slow one was busy.
    assert len(errors) > 3
