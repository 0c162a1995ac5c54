"""Probes: I/O against the runtimes, each call under a hard deadline, results as Observations.

Rule of this layer: probes import only `nodeprobe.model` (and their client libraries). They never
import Kubernetes, Prometheus, judgement or publishing code. A hung runtime is an observation
(Outcome.HUNG), never an exception and never a blocked caller.
"""

from __future__ import annotations

from typing import Protocol

from nodeprobe.model import Check, Observation, Runtime


class Probe(Protocol):
    """One runtime endpoint. `run` is safe to call from several threads for different checks."""

    runtime: Runtime
    checks: tuple[Check, ...]

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        """Make one call; return within `deadline_s` (+ a small scheduling margin), never raise."""
        ...

    def close(self) -> None:
        """Release sockets and channels; idempotent."""
        ...
