"""One-shot diagnosis: every check of every probe once, concurrently, each under its deadline.

Used by `nodeprobe check`. The probes already enforce their deadlines; this module adds a guard on
top (daemon threads and an overall wait), so even a probe bug cannot keep the command from
answering: a call that never came back is reported as HUNG.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nodeprobe.model import Check, Observation, Outcome
from nodeprobe.probes import Probe

GUARD_MARGIN_S = 1.0
"""How long past its own deadline a call may run before the guard reports it HUNG."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Deadline and latency objective for one check."""

    deadline_s: float
    slow_s: float


def run_once(
    probes: Sequence[Probe],
    limits: Callable[[Check], Limits],
    *,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> list[Observation]:
    """Run every check of every probe once, all at the same time; results in probe/check order."""
    jobs = [(probe, check) for probe in probes for check in probe.checks]
    results: queue.Queue[tuple[int, Observation]] = queue.Queue()

    def work(index: int, probe: Probe, check: Check) -> None:
        lim = limits(check)
        results.put((index, probe.run(check, deadline_s=lim.deadline_s, slow_s=lim.slow_s)))

    started = wall()
    for index, (probe, check) in enumerate(jobs):
        threading.Thread(
            target=work, args=(index, probe, check), name=f"check-{check}", daemon=True
        ).start()

    guard = max((limits(c).deadline_s for _, c in jobs), default=0.0) + GUARD_MARGIN_S
    end = clock() + guard
    found: dict[int, Observation] = {}
    while len(found) < len(jobs):
        remaining = end - clock()
        if remaining <= 0:
            break
        try:
            index, answer = results.get(timeout=remaining)
        except queue.Empty:
            break
        found[index] = answer

    observations = []
    for index, (probe, check) in enumerate(jobs):
        got = found.get(index)
        observations.append(got if got is not None else Observation(
            runtime=probe.runtime, check=check, outcome=Outcome.HUNG, latency_s=guard,
            at=started, detail=f"no answer within {guard:.1f}s (the probe itself did not return)",
        ))
    return observations
