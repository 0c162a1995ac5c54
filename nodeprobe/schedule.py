"""Runs each check on its own interval, with jitter, at most one call in flight per check.

One thread per check: a hung runtime can only ever hold up its own check's thread, and only until
that call's deadline, so no check waits on another and the agent loop never waits on any.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nodeprobe.model import Check, Observation, Outcome
from nodeprobe.probes import Probe

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    """One check of one probe with its timing."""

    probe: Probe
    check: Check
    interval_s: float
    deadline_s: float
    slow_s: float


class Scheduler:
    """Starts one daemon thread per job; observations arrive on `self.observations`."""

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs = tuple(jobs)
        self.jitter = jitter
        self.observations: queue.Queue[Observation] = queue.Queue()
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(
                target=self._run, args=(job,), name=f"probe-{job.check}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Ask every thread to finish; a thread inside a call finishes at that call's deadline."""
        self._stop.set()
        end = self._clock() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, end - self._clock()))

    def _spread(self, interval_s: float) -> float:
        with self._rng_lock:
            return interval_s * (1.0 + self._rng.uniform(-self.jitter, self.jitter))

    def _run(self, job: Job) -> None:
        # Start spread over the first interval so checks do not all fire at once.
        wait = self._spread(job.interval_s) * self._rng.random() * 0.5
        while not self._stop.wait(wait):
            started = self._clock()
            try:
                obs = job.probe.run(job.check, deadline_s=job.deadline_s, slow_s=job.slow_s)
            except Exception as e:  # a probe must never raise; if one does, it is an ERROR
                log.exception("probe %s raised", job.check)
                obs = Observation(
                    runtime=job.probe.runtime, check=job.check, outcome=Outcome.ERROR,
                    latency_s=self._clock() - started, at=time.time(),
                    detail=f"internal error in the {job.check} probe: {e!r}",
                )
            self.observations.put(obs)
            wait = max(0.0, started + self._spread(job.interval_s) - self._clock())
