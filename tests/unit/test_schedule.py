"""The scheduler: each check on its interval, never two calls of one check at once (but the one
kept past its deadline), and a late answer handed on as a late observation."""

from __future__ import annotations

import random
import threading
import time

from nodeprobe.model import Check, Observation, Outcome, Runtime
from nodeprobe.schedule import Job, Scheduler

WAIT_S = 10.0
"""Generous bound on waiting for real state under a loaded CI box; never a sleep."""


class GatedProbe:
    """CRI Version blocks until CRI Status has been called `calls_first` times (which raise):
    while one check is busy the other keeps its pace, and overlapping calls are counted."""

    runtime = Runtime.CONTAINERD
    checks = (Check.CRI_VERSION, Check.CRI_STATUS)

    def __init__(self, *, calls_first: int) -> None:
        self.calls_first = calls_first
        self.lock = threading.Lock()
        self.in_flight: dict[Check, int] = dict.fromkeys(self.checks, 0)
        self.max_in_flight: dict[Check, int] = dict.fromkeys(self.checks, 0)
        self.status_calls = 0
        self.gate = threading.Event()

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        with self.lock:
            self.in_flight[check] += 1
            self.max_in_flight[check] = max(self.max_in_flight[check], self.in_flight[check])
        try:
            if check is Check.CRI_STATUS:
                with self.lock:
                    self.status_calls += 1
                    if self.status_calls >= self.calls_first:
                        self.gate.set()
                raise RuntimeError("boom")
            self.gate.wait(WAIT_S)
            return Observation(self.runtime, check, Outcome.OK, 0.0, time.time())
        finally:
            with self.lock:
                self.in_flight[check] -= 1

    def close(self) -> None:
        pass


def test_one_call_in_flight_per_check_and_a_raising_probe_becomes_error():
    probe = GatedProbe(calls_first=4)
    jobs = [Job(probe, Check.CRI_VERSION, interval_s=0.02, deadline_s=1, slow_s=1),
            Job(probe, Check.CRI_STATUS, interval_s=0.02, deadline_s=1, slow_s=1)]
    scheduler = Scheduler(jobs, rng=random.Random(1))
    scheduler.start()
    got: list[Observation] = []
    try:
        while sum(o.check is Check.CRI_VERSION for o in got) < 3:
            got.append(scheduler.observations.get(timeout=WAIT_S))
    finally:
        probe.gate.set()
        scheduler.stop()
    assert probe.max_in_flight[Check.CRI_VERSION] == 1
    errors = [o for o in got if o.check is Check.CRI_STATUS]
    assert errors and all(o.outcome is Outcome.ERROR and "boom" in o.detail for o in errors)
    # The other check kept its own pace while CRI Version was blocked: its 4th call released
    # Version, so at least its first 3 results were queued before Version's first.
    first_version = next(i for i, o in enumerate(got) if o.check is Check.CRI_VERSION)
    assert sum(o.check is Check.CRI_STATUS for o in got[:first_version]) >= 3


class LateProbe:
    """Calls made with the long (horizon) deadline block until released, then answer OK; calls
    with the short deadline are HUNG at once, as a probe cut at its deadline would be."""

    runtime = Runtime.DOCKERD
    checks = (Check.DOCKER_PING,)

    def __init__(self, *, horizon_s: float) -> None:
        self.horizon_s = horizon_s
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.deadlines: list[float] = []

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        with self.lock:
            self.deadlines.append(deadline_s)
        if deadline_s == self.horizon_s:
            self.release.wait(WAIT_S)
            return Observation(self.runtime, check, Outcome.SLOW, 8.0, time.time(), "late")
        return Observation(self.runtime, check, Outcome.HUNG, deadline_s, time.time())

    def close(self) -> None:
        self.release.set()


def test_a_call_past_its_deadline_stays_in_flight_and_its_answer_arrives_late():
    probe = LateProbe(horizon_s=30.0)
    job = Job(probe, Check.DOCKER_PING, interval_s=0.01, deadline_s=0.05, slow_s=0.01,
              horizon_s=30.0)
    scheduler = Scheduler([job], rng=random.Random(2))
    scheduler.start()
    try:
        first = scheduler.observations.get(timeout=WAIT_S)
        assert first.outcome is Outcome.HUNG and not first.late
        assert "kept in flight up to 30s" in first.detail
        # While the kept call is in flight, the next calls are cut at the deadline.
        for _ in range(3):
            obs = scheduler.observations.get(timeout=WAIT_S)
            assert obs.outcome is Outcome.HUNG and not obs.late
        probe.release.set()
        late = scheduler.observations.get(timeout=WAIT_S)
        while not late.late:
            late = scheduler.observations.get(timeout=WAIT_S)
    finally:
        probe.release.set()
        scheduler.stop()
    assert (late.outcome, late.latency_s, late.detail) == (Outcome.SLOW, 8.0, "late")
    with probe.lock:
        deadlines = list(probe.deadlines)
    # one call kept at a time: the horizon deadline first, then short ones until it answered
    assert deadlines[0] == 30.0 and deadlines[1:4] == [0.05, 0.05, 0.05]


def test_an_answer_within_the_deadline_is_not_late():
    probe = LateProbe(horizon_s=30.0)
    probe.release.set()  # the horizon call answers at once
    job = Job(probe, Check.DOCKER_PING, interval_s=0.01, deadline_s=5.0, slow_s=0.01,
              horizon_s=30.0)
    scheduler = Scheduler([job], rng=random.Random(3))
    scheduler.start()
    try:
        got = [scheduler.observations.get(timeout=WAIT_S) for _ in range(3)]
    finally:
        scheduler.stop()
    assert [(o.outcome, o.late) for o in got] == [(Outcome.SLOW, False)] * 3
    assert probe.deadlines[:3] == [30.0, 30.0, 30.0]


class CountingProbe:
    """Answers at once and counts calls, so a test sees the cadence change."""

    runtime = Runtime.DOCKERD
    checks = (Check.DOCKER_INFO,)

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()
        self.called = threading.Condition(self.lock)

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        with self.called:
            self.calls += 1
            self.called.notify_all()
        return Observation(self.runtime, check, Outcome.OK, 0.0, time.time())

    def close(self) -> None:
        pass


def test_a_hurried_check_runs_at_its_recheck_cadence_at_once_and_slows_down_again():
    probe = CountingProbe()
    job = Job(probe, Check.DOCKER_INFO, interval_s=3600, deadline_s=1, slow_s=1, recheck_s=0.01)
    scheduler = Scheduler([job], rng=random.Random(4))
    scheduler.start()
    try:
        with probe.called:  # the first call comes within half an interval: hurry wakes it
            scheduler.hurry({(Runtime.DOCKERD, Check.DOCKER_INFO)})
            assert probe.called.wait_for(lambda: probe.calls >= 5, timeout=WAIT_S)
            scheduler.hurry(set())
            settled = probe.calls
        # back on its hour: at most the call already under way comes (no sleep: none may come)
        with probe.called:
            assert not probe.called.wait_for(lambda: probe.calls > settled + 1, timeout=1.0)
    finally:
        scheduler.stop()
    assert not any(t.is_alive() for t in scheduler._threads)
