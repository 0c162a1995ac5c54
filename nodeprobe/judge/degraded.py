"""ContainerRuntimeDegraded: pure judgement of the disk, runtime-log and fd-limit readings.

The readings are levels, not events: free space is what statvfs says now, and the log probe
already counts matches over its window, so each verdict needs only the latest observation of each
check. No hysteresis beyond that: the log window is one, and free space does not flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodeprobe.config import Config
from nodeprobe.config.judge import JudgeSettings
from nodeprobe.config.tree import DiskSettings, RuntimeLogSettings
from nodeprobe.judge.trend import Unit, fmt
from nodeprobe.model import Check, Observation, Reason, Runtime, Value

_DISK_REASON = {
    Runtime.DOCKERD: Reason.DOCKER_ROOT_DISK_LOW,
    Runtime.CONTAINERD: Reason.CONTAINERD_ROOT_DISK_LOW,
}

LOG_FINDINGS: tuple[tuple[Value, Reason, str], ...] = (
    (Value.LOG_CORRUPTION, Reason.RUNTIME_STORAGE_CORRUPT,
     "storage corruption (overlay2/layer store): stop the runtime, remove the broken layer "
     "(or the whole /var/lib/docker on a drained node) and restart; see the runbook"),
    (Value.LOG_EXHAUSTION, Reason.RUNTIME_RESOURCES_EXHAUSTED,
     "exhaustion (no space left on device / too many open files): free the runtime root's "
     "disk, or raise LimitNOFILE of the unit"),
    (Value.LOG_SHIM_ERRORS, Reason.RUNTIME_SHIM_ERRORS,
     "shim/task errors: containers whose shim died; look for orphaned containerd-shim "
     "processes and restart the runtime on a drained node"),
)
"""Log pattern counts in precedence order: the reason and what to do about it."""


@dataclass(frozen=True, slots=True)
class Finding:
    reason: Reason
    message: str
    runtime: Runtime


def _cause(values: Mapping[str, float]) -> str:
    """The biggest of dangling images, build cache and volumes, with the command that frees it."""
    known = [
        (values.get(Value.DANGLING_IMAGES_BYTES, 0.0),
         f"{values.get(Value.DANGLING_IMAGES, 0):.0f} dangling images hold {{}}: "
         "docker image prune"),
        (values.get(Value.BUILD_CACHE_BYTES, 0.0), "build cache holds {}: docker builder prune"),
        (values.get(Value.VOLUMES_BYTES, 0.0), "volumes hold {}: docker volume prune (unused)"),
    ]
    size, text = max(known, key=lambda k: k[0])
    if size <= 0:
        return "see what holds it: docker system df, crictl images, du -sh the root"
    return text.format(fmt(size, Unit.BYTES))


def disk_finding(obs: Observation, settings: DiskSettings) -> Finding | None:
    values = dict(obs.values)
    avail = values.get(Value.DISK_AVAILABLE_BYTES)
    total = values.get(Value.DISK_TOTAL_BYTES)
    if avail is None or not total:
        return None
    free = 100.0 * avail / total
    inodes_total = values.get(Value.INODES_TOTAL, 0.0)
    inodes = 100.0 * values.get(Value.INODES_AVAILABLE, 0.0) / inodes_total if inodes_total \
        else 100.0
    root = obs.info.get("root", "its root")
    if free < settings.min_free_percent:
        text = (f"{obs.runtime} root {root} has {free:.1f}% free ({fmt(avail, Unit.BYTES)} of "
                f"{fmt(total, Unit.BYTES)}), below {settings.min_free_percent:g}% (kubelet evicts "
                f"pods at 10-15%); {_cause(values)}")
    elif inodes < settings.min_free_inodes_percent:
        text = (f"{obs.runtime} root {root} has {inodes:.1f}% inodes free, below "
                f"{settings.min_free_inodes_percent:g}% (kubelet evicts pods at 5%); "
                f"{_cause(values)}")
    else:
        return None
    return Finding(_DISK_REASON[obs.runtime], text, obs.runtime)


def fd_finding(obs: Observation, settings: JudgeSettings) -> Finding | None:
    """The process check's open fds against the daemon's own soft limit (unknown: no finding)."""
    fds, limit = obs.values.get(Value.FDS), obs.values.get(Value.FD_LIMIT)
    if fds is None or not limit:
        return None
    share = 100.0 * fds / limit
    if share < settings.fd_limit_percent:
        return None
    text = (f"{obs.runtime} holds {fds:.0f} open fds, {share:.0f}% of its own limit of "
            f"{limit:.0f} (Max open files): at the limit it cannot accept connections or open "
            "files; find what holds them (ls -l /proc/$(pidof "
            f"{obs.runtime})/fd | sort | uniq -c) or raise LimitNOFILE of the unit")
    return Finding(Reason.RUNTIME_FDS_NEAR_LIMIT, text, obs.runtime)


def log_finding(obs: Observation, settings: RuntimeLogSettings) -> Finding | None:
    threshold = settings.threshold
    window = settings.window
    for value, reason, advice in LOG_FINDINGS:
        count = obs.values.get(value, 0.0)
        if count >= threshold:
            # the pattern's name and the count only: the lines are in the agent's log
            text = (f"{obs.runtime}'s journal has {count:.0f} lines of {advice.split(':')[0]} "
                    f"(pattern {value}) in the last {window:g}s, logged by the agent; "
                    f"{advice.split(': ', 1)[1]}")
            return Finding(reason, text, obs.runtime)
    return None


_ORDER = (Reason.RUNTIME_STORAGE_CORRUPT, Reason.RUNTIME_RESOURCES_EXHAUSTED,
          Reason.RUNTIME_FDS_NEAR_LIMIT, Reason.DOCKER_ROOT_DISK_LOW,
          Reason.CONTAINERD_ROOT_DISK_LOW, Reason.CONTAINERD_ORPHANED_SHIMS,
          Reason.RUNTIME_SHIM_ERRORS)


def findings(
    observations: Iterable[Observation], config: Config, *, extra: Iterable[Finding] = ()
) -> list[Finding]:
    """Every finding in the latest observations of the disk, log and process checks, and the
    `extra` ones judged over time (orphaned shims), worst first."""
    return judged(observations, judge=config.judge, disk=config.disk, log=config.runtime_log,
                  extra=extra)


def judged(observations: Iterable[Observation], *, judge: JudgeSettings, disk: DiskSettings,
           log: RuntimeLogSettings, extra: Iterable[Finding] = ()) -> list[Finding]:
    """`findings` from the three settings it reads (the continuous judge has no whole config)."""
    found = list(extra)
    for obs in observations:
        if obs.check is Check.DISK:
            finding = disk_finding(obs, disk)
        elif obs.check is Check.RUNTIME_LOG:
            finding = log_finding(obs, log)
        elif obs.check is Check.PROCESS:
            finding = fd_finding(obs, judge)
        else:
            continue
        if finding is not None:
            found.append(finding)
    return sorted(found, key=lambda f: _ORDER.index(f.reason))
