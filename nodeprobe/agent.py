"""The agent loop: scheduled probes -> judge -> metrics, and Node conditions/Events off-loop.

Three kinds of threads, so nothing slow can stall anything else:
- one scheduler thread per check (a hung runtime holds only its own check, until the deadline);
- this loop, which only judges and updates in-memory state (never does network I/O);
- one publisher thread that talks to the API server (an outage costs it time, not the loop).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nodeprobe.config import Config
from nodeprobe.judge.continuous import Judge
from nodeprobe.model import Check, Condition, ConditionType, Event, EventType, Runtime
from nodeprobe.probes import Probe
from nodeprobe.publish.metrics import Metrics
from nodeprobe.schedule import Job, Scheduler

log = logging.getLogger(__name__)

LOOP_WAIT_S = 1.0
"""Longest the loop waits for an observation before ticking anyway (keeps /healthz fresh)."""

PUBLISH_EVERY_S = 1.0
"""How often the publisher thread offers the condition writer a chance to write."""


class ConditionSink(Protocol):
    def update(self, conditions: dict[ConditionType, Condition]) -> None: ...
    def sync(self) -> bool: ...
    def holds(self) -> bool: ...


class EventSink(Protocol):
    def record(self, events: Sequence[Event]) -> int: ...
    def flush(self) -> int: ...


@dataclass
class Publishers:
    """Where judged state goes besides metrics; both None in standalone mode."""

    conditions: ConditionSink | None = None
    events: EventSink | None = None
    adopted: Mapping[ConditionType, Condition] = field(default_factory=dict)
    """What the Node said when the agent started; the judge keeps it until it decides."""


def node_memory_bytes(proc_root: str) -> float | None:
    """MemTotal of the node, for percent-of-node ceilings; None when unreadable."""
    try:
        with open(Path(proc_root) / "meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


NO_HORIZON = frozenset({Check.PROCESS, Check.CANARY})
"""Checks whose calls are never kept past their deadline: /proc reads are not runtime calls, and
the canary's deadline is already long."""


def jobs_for(config: Config, probes: Sequence[Probe]) -> list[Job]:
    jobs = []
    for probe in probes:
        for check in probe.checks:
            s = config.checks.for_check(check)
            horizon = 0.0 if check in NO_HORIZON else config.judge.horizon
            # the canary creates a container each run: never hurried
            recheck = 0.0 if check is Check.CANARY else config.judge.recheck_interval
            if s.enabled:
                jobs.append(Job(probe=probe, check=check, interval_s=s.interval,
                                deadline_s=s.deadline, slow_s=s.slow, horizon_s=horizon,
                                recheck_s=recheck))
    return jobs


def probed_checks(config: Config, probes: Sequence[Probe]) -> dict[Runtime, tuple[Check, ...]]:
    """The checks that will run, per runtime: metrics create label series for these only (no
    dockerd series on a node where dockerd is not probed)."""
    found: dict[Runtime, list[Check]] = {}
    for job in jobs_for(config, probes):
        found.setdefault(job.probe.runtime, []).append(job.check)
    return {runtime: tuple(checks) for runtime, checks in found.items()}


class Agent:
    """Wires one node's probes, judge, metrics and publishers; `run` until `stop` is set."""

    def __init__(
        self,
        config: Config,
        *,
        probes: Sequence[Probe],
        metrics: Metrics,
        publishers: Publishers,
        clock: Callable[[], float] = time.time,
        after_first_round: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        self._after_first_round = after_first_round
        self.metrics = metrics
        self.publishers = publishers
        self._clock = clock
        self.scheduler = Scheduler(jobs_for(config, probes))
        # The canary runs every few minutes and may take up to its deadline: waiting for its first
        # answer would hold every condition Unknown that long at start.
        expected = {(job.probe.runtime, job.check) for job in self.scheduler.jobs
                    if job.check is not Check.CANARY}
        self.judge = Judge(config, expected=expected, now=clock(),
                           node_memory_bytes=node_memory_bytes(config.paths.proc_root),
                           adopted=publishers.adopted)
        self._expected = expected
        self._seen: set[object] = set()
        self._events: queue.Queue[list[Event]] = queue.Queue()
        self._publisher: threading.Thread | None = None
        self._published: dict[ConditionType, Condition] | None = None

    def run(self, stop: threading.Event) -> None:
        self.scheduler.start()
        self._publish(self.judge.conditions())
        if self.publishers.conditions or self.publishers.events:
            self._publisher = threading.Thread(target=self._publish_loop, args=(stop,),
                                               name="publisher", daemon=True)
            self._publisher.start()
        log.info("agent running %d checks", len(self.scheduler.jobs))
        try:
            while not stop.is_set():
                self.step(timeout_s=LOOP_WAIT_S)
        finally:
            self.scheduler.stop()
            if self._publisher is not None:
                self._publisher.join(timeout=PUBLISH_EVERY_S * 10)

    def step(self, *, timeout_s: float) -> None:
        """Take at most one observation (waiting up to `timeout_s`), judge it, publish."""
        try:
            obs = self.scheduler.observations.get(timeout=timeout_s)
        except queue.Empty:
            self.metrics.loop_tick(self._clock())
            return
        now = self._clock()
        self.metrics.observe(obs)
        events = self.judge.observe(obs, now=now)
        self.scheduler.hurry(self.judge.unsettled(now=now))
        # Published before the round is marked done: the publisher reads "done" first, so the
        # state it then finds in the writer is the finished round's.
        self._publish(self.judge.conditions())
        if len(self._seen) < len(self._expected):
            self._seen.add((obs.runtime, obs.check))
            if len(self._seen) == len(self._expected):
                self.metrics.mark_round_done()
                log.info("first round of checks done: %s", ", ".join(
                    f"{c.type}={c.status} ({c.reason})" for c in self.judge.conditions().values()))
                if self._after_first_round is not None:
                    self._after_first_round()
        for event in events:
            level = logging.WARNING if event.type is EventType.WARNING else logging.INFO
            log.log(level, "%s: %s", event.reason, event.message)
        if events:
            self._events.put(events)
        self.metrics.loop_tick(now)

    def _publish(self, conditions: dict[ConditionType, Condition]) -> None:
        if conditions == self._published:
            return  # the common case: nothing changed, nothing to touch
        self._published = conditions
        self.metrics.set_conditions(conditions)
        if self.publishers.conditions is not None:
            self.publishers.conditions.update(conditions)

    def _publish_loop(self, stop: threading.Event) -> None:
        """API I/O lives here: a slow or absent API server never delays judgement."""
        conditions, events = self.publishers.conditions, self.publishers.events
        while True:
            # Ready once the Node states the first round's judgement: written by this agent, or
            # adopted from the Node and judged the same (a rollout's new pod writes nothing).
            round_done = self.metrics.health().round_done
            if conditions is not None and (conditions.sync()
                                           or (round_done and conditions.holds())):
                self.metrics.mark_node_status_written()
            if events is not None:
                batch: list[Event] = []
                while not self._events.empty():
                    batch.extend(self._events.get_nowait())
                if batch:
                    events.record(batch)
                else:
                    events.flush()
            if stop.wait(PUBLISH_EVERY_S):
                return
