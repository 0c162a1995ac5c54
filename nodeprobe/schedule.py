"""Runs each check on its own interval, with jitter, one call at a time per check (plus one late).

One thread per check: a hung runtime can only ever hold up its own check's thread, and only until
that call's deadline, so no check waits on another and the agent loop never waits on any.

A job with a `horizon_s` beyond its deadline makes its calls in a helper thread: when a call
passes the deadline, the check's thread reports HUNG at once and goes on with the next call,
while that one call stays in flight up to the horizon. Its end (the late answer with its real
latency, or HUNG at the horizon) arrives as one more observation with `late=True`. At most one
call per check is kept like this; while it is, the others are cut at the deadline as before.

A job with a `recheck_s` runs at that faster cadence while the agent says its check is unsettled
(`hurry`): a failed check is re-run every second or so until the judge clears it, so a recovered
runtime is cleared within seconds instead of `clearAfter` times the check's own interval. The
judge decides what is unsettled; the scheduler only changes the cadence.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

from nodeprobe.model import Check, Observation, Outcome, Runtime
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
    horizon_s: float = 0.0
    """Keep a call that passed `deadline_s` in flight up to this long; <= deadline_s = never."""
    recheck_s: float = 0.0
    """The interval while the check is hurried (see `Scheduler.hurry`); 0 = never hurried."""

    @property
    def key(self) -> tuple[Runtime, Check]:
        return (self.probe.runtime, self.check)

    def gap(self, *, hurried: bool) -> float:
        """Time between two call starts: the recheck cadence when hurried, never slower."""
        if hurried and self.recheck_s > 0:
            return min(self.interval_s, self.recheck_s)
        return self.interval_s


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
        self._hurried: frozenset[tuple[Runtime, Check]] = frozenset()
        self._hurry_lock = threading.Lock()
        self._wake = {job.key: threading.Event() for job in self.jobs}
        """Set when a job's cadence changes, so a thread waiting out a 30 s interval wakes."""

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
        for wake in self._wake.values():
            wake.set()
        end = self._clock() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, end - self._clock()))

    def hurry(self, keys: Collection[tuple[Runtime, Check]]) -> None:
        """Run exactly these checks at their recheck cadence from now on (the others at their
        own interval); a thread waiting out its interval is woken to recompute it."""
        new = frozenset(keys)
        with self._hurry_lock:
            changed, self._hurried = new ^ self._hurried, new
        for key in changed:
            wake = self._wake.get(key)
            if wake is not None:
                wake.set()

    def _spread(self, interval_s: float) -> float:
        return interval_s * self._factor()

    def _factor(self) -> float:
        with self._rng_lock:
            return 1.0 + self._rng.uniform(-self.jitter, self.jitter)

    def _gap(self, job: Job, factor: float) -> float:
        return job.gap(hurried=job.key in self._hurried) * factor

    def _run(self, job: Job) -> None:
        # Start spread over the first interval so checks do not all fire at once.
        due = self._clock() + self._spread(job.interval_s) * self._rng.random() * 0.5
        started: float | None = None
        factor = self._factor()
        wake = self._wake[job.key]
        straggling = threading.Event()  # set while this job's one late call is in flight
        while not self._stop.is_set():
            wait = due - self._clock()
            if wait > 0:
                wake.wait(wait)
                wake.clear()
                # the cadence may have changed: recompute from the last start (before the
                # first call: no later than one gap from now)
                if started is not None:
                    due = started + self._gap(job, factor)
                else:
                    due = min(due, self._clock() + self._gap(job, factor))
                continue
            started = self._clock()
            if job.horizon_s > job.deadline_s and not straggling.is_set():
                obs = self._call_with_horizon(job, straggling)
            else:
                obs = self._call(job, job.deadline_s)
            self.observations.put(obs)
            factor = self._factor()
            due = started + self._gap(job, factor)

    def _call(self, job: Job, deadline_s: float) -> Observation:
        started = self._clock()
        try:
            return job.probe.run(job.check, deadline_s=deadline_s, slow_s=job.slow_s)
        except Exception as e:  # a probe must never raise; if one does, it is an ERROR
            log.exception("probe %s raised", job.check)
            return Observation(
                runtime=job.probe.runtime, check=job.check, outcome=Outcome.ERROR,
                latency_s=self._clock() - started, at=time.time(),
                detail=f"internal error in the {job.check} probe: {e!r}",
            )

    def _call_with_horizon(self, job: Job, straggling: threading.Event) -> Observation:
        """Call with the horizon as the probe's deadline; give up waiting at the deadline."""
        at = time.time()
        lock = threading.Lock()
        box: list[Observation] = []
        done = threading.Event()
        abandoned = [False]

        def work() -> None:
            obs = self._call(job, job.horizon_s)
            with lock:
                box.append(obs)
                late = abandoned[0]
            done.set()
            if late:
                self.observations.put(replace(obs, late=True))
                straggling.clear()

        straggling.set()
        threading.Thread(target=work, name=f"probe-{job.check}-late", daemon=True).start()
        done.wait(job.deadline_s)
        with lock:
            if box:
                straggling.clear()
                return box[0]
            abandoned[0] = True
        return Observation(
            runtime=job.probe.runtime, check=job.check, outcome=Outcome.HUNG,
            latency_s=job.deadline_s, at=at,
            detail=(f"no answer to the {job.check} call within {job.deadline_s:g}s; kept in "
                    f"flight up to {job.horizon_s:g}s to see whether it is slow or hung"),
        )
