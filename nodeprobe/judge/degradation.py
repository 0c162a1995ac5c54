"""ContainerRuntimeDegraded over time: the latest disk, log and fd findings (judge/degraded.py)
and orphaned shims, which must hold over `orphanedShimChecks` process checks (judge/shims.py)."""

from __future__ import annotations

from collections.abc import Iterable

from nodeprobe.config.judge import JudgeSettings
from nodeprobe.config.tree import DiskSettings, RuntimeLogSettings
from nodeprobe.judge import degraded, shims
from nodeprobe.judge.state import Want
from nodeprobe.model import Observation, Reason, Status


class DegradedJudge:
    """Owns the orphaned-shim state; the rest is judged from the latest answers alone."""

    def __init__(self, settings: JudgeSettings, *, disk: DiskSettings,
                 log: RuntimeLogSettings) -> None:
        self._settings = settings
        self._disk = disk
        self._log = log
        self._orphans = shims.Orphans()

    def record_shims(self, latest: Iterable[Observation]) -> int | None:
        """Step the orphaned-shim judgement on a containerd process check; the surplus (a leak
        series of its own) or None when no namespace could be counted."""
        self._orphans, surplus = shims.observe(self._orphans, latest, self._settings)
        return surplus

    def want(self, latest: Iterable[Observation]) -> Want:
        orphans = shims.finding(self._orphans, self._settings)
        found = degraded.judged(latest, judge=self._settings, disk=self._disk, log=self._log,
                                extra=[orphans] if orphans else [])
        if not found:
            return Want(Status.FALSE, Reason.NOT_DEGRADED,
                        "runtime roots have room and the runtime logs show no corruption")
        message = found[0].message
        if len(found) > 1:
            message += f"; also {', '.join(str(f.reason) for f in found[1:])}"
        return Want(Status.TRUE, found[0].reason, message,
                    frozenset((f.runtime, f.reason) for f in found))

