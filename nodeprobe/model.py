"""The shared vocabulary: observations, outcomes, conditions, reasons and events.

Everything here is plain data with no I/O and no Kubernetes or Prometheus types, so probes,
judgement and publishers can all depend on it without depending on each other. Condition types
and reasons are named here and only here; docs/conditions.md lists the same names.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

COMPONENT = "nodeprobe"
"""Event source component and field manager name."""


class Runtime(enum.StrEnum):
    """A container runtime nodeprobe watches."""

    DOCKERD = "dockerd"
    CONTAINERD = "containerd"


class Outcome(enum.StrEnum):
    """What one call to a runtime showed.

    Ordered from best to worst by `severity`, so the worst of several is `max(..., key=severity)`.
    """

    OK = "OK"
    """Answered correctly within its latency objective."""
    SLOW = "SLOW"
    """Answered correctly, but slower than its latency objective."""
    HUNG = "HUNG"
    """Accepted the connection (or the call) but did not answer before the deadline."""
    DOWN = "DOWN"
    """Not there: socket missing or connection refused."""
    ERROR = "ERROR"
    """Answered wrongly: a bad reply, a protocol error, permission denied, or not ready."""

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def failed(self) -> bool:
        """True when the runtime did not do its job on this call (SLOW still did)."""
        return self in (Outcome.HUNG, Outcome.DOWN, Outcome.ERROR)


_SEVERITY = {Outcome.OK: 0, Outcome.SLOW: 1, Outcome.ERROR: 2, Outcome.DOWN: 3, Outcome.HUNG: 4}


class Check(enum.StrEnum):
    """The name of one probe call. Metric label values and config keys use these strings."""

    # Docker Engine API
    DOCKER_PING = "docker_ping"
    DOCKER_VERSION = "docker_version"
    DOCKER_INFO = "docker_info"
    # CRI gRPC
    CRI_VERSION = "cri_version"
    CRI_STATUS = "cri_status"
    CRI_LIST_POD_SANDBOX = "cri_list_pod_sandbox"
    CRI_LIST_CONTAINERS = "cri_list_containers"
    CRI_IMAGE_FS_INFO = "cri_image_fs_info"
    # Host processes
    PROCESS = "process"
    # Optional container start canary
    CANARY = "canary"


class Value(enum.StrEnum):
    """Names of numeric readings an observation may carry (leak signals and counters)."""

    GOROUTINES = "goroutines"
    FDS = "fds"
    EVENT_LISTENERS = "event_listeners"
    CONTAINERS = "containers"
    IMAGES = "images"
    RSS_ANON_BYTES = "rss_anon_bytes"
    RSS_BYTES = "rss_bytes"
    CGROUP_ANON_BYTES = "cgroup_anon_bytes"
    SHIMS = "shims"
    PID = "pid"
    PROCESS_START_TICKS = "process_start_ticks"
    """Start time of the runtime's process, clock ticks after boot (/proc/<pid>/stat field 22).
    With the pid it names one incarnation: a change between samples means the runtime restarted."""
    IMAGE_FS_TIMESTAMP_SECONDS = "image_fs_timestamp_seconds"
    IMAGE_FS_USED_BYTES = "image_fs_used_bytes"
    POD_SANDBOXES = "pod_sandboxes"
    RUNTIME_READY = "runtime_ready"
    """CRI Status RuntimeReady: 1.0 true, 0.0 false."""
    NETWORK_READY = "network_ready"
    """CRI Status NetworkReady: 1.0 true, 0.0 false (or not reported)."""


_NO_VALUES: Mapping[str, float] = MappingProxyType({})
_NO_INFO: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Observation:
    """One probe call's result: plain data, the only thing probes hand downstream."""

    runtime: Runtime
    check: Check
    outcome: Outcome
    latency_s: float
    """Wall time of the call; for HUNG, the time waited before giving up."""
    at: float
    """Wall-clock time (Unix seconds) when the call started."""
    detail: str = ""
    """One human sentence: what was called and what came back, or what to do about it."""
    values: Mapping[str, float] = field(default_factory=lambda: _NO_VALUES)
    """Readings keyed by `Value` names, e.g. {"goroutines": 118, "fds": 42}."""
    info: Mapping[str, str] = field(default_factory=lambda: _NO_INFO)
    """Descriptive strings (version, API version, storage driver) for tables and metrics."""
    late: bool = False
    """The end of a call that passed its deadline and was kept in flight up to the horizon
    (`judge.horizon`): its late answer with the measured latency, or HUNG at the horizon. The
    HUNG at the deadline was already reported by an observation of its own."""


class ConditionType(enum.StrEnum):
    """Node condition types nodeprobe owns. NPD polarity: status True means a problem."""

    UNAVAILABLE = "ContainerRuntimeUnavailable"
    MEMORY_LEAK = "ContainerRuntimeMemoryLeak"
    SLOW = "ContainerRuntimeSlow"


class Reason(enum.StrEnum):
    """Condition and event reasons, CamelCase as Kubernetes expects."""

    HEALTHY = "ContainerRuntimeIsAvailable"
    NO_LEAK = "ContainerRuntimeMemoryIsStable"
    NOT_SLOW = "ContainerRuntimeIsResponsive"
    UNKNOWN = "ContainerRuntimeStateUnknown"

    DOCKERD_HUNG = "DockerdHung"
    DOCKERD_DOWN = "DockerdDown"
    DOCKERD_ERROR = "DockerdError"
    CONTAINERD_HUNG = "ContainerdHung"
    CONTAINERD_DOWN = "ContainerdDown"
    CONTAINERD_ERROR = "ContainerdError"
    CRI_NOT_READY = "CRIRuntimeNotReady"
    CRI_NETWORK_NOT_READY = "CRINetworkNotReady"
    IMAGE_FS_STATS_STALE = "ImageFsStatsStale"
    DOCKERD_RESTART_LOOP = "DockerdRestartLoop"
    """dockerd restarted `judge.restart.count` times within `judge.restart.window`; held until
    `judge.restart.quiet` passes without a restart (NPD's FrequentDockerRestart, sooner)."""
    CONTAINERD_RESTART_LOOP = "ContainerdRestartLoop"
    """containerd restarted `judge.restart.count` times within `judge.restart.window`; held until
    `judge.restart.quiet` passes without a restart (NPD's FrequentContainerdRestart, sooner)."""

    DOCKERD_MEMORY_GROWTH = "DockerdMemoryGrowth"
    DOCKERD_GOROUTINE_LEAK = "DockerdGoroutineLeak"
    DOCKERD_FD_LEAK = "DockerdFdLeak"
    DOCKERD_MEMORY_CEILING = "DockerdMemoryCeiling"
    CONTAINERD_MEMORY_GROWTH = "ContainerdMemoryGrowth"
    CONTAINERD_FD_LEAK = "ContainerdFdLeak"
    CONTAINERD_MEMORY_CEILING = "ContainerdMemoryCeiling"

    DOCKERD_API_SLOW = "DockerdAPISlow"
    CONTAINERD_API_SLOW = "ContainerdAPISlow"
    CONTAINER_START_SLOW = "ContainerStartSlow"


HEALTHY_REASON: Mapping[ConditionType, Reason] = MappingProxyType(
    {
        ConditionType.UNAVAILABLE: Reason.HEALTHY,
        ConditionType.MEMORY_LEAK: Reason.NO_LEAK,
        ConditionType.SLOW: Reason.NOT_SLOW,
    }
)

REASONS: Mapping[ConditionType, tuple[Reason, ...]] = MappingProxyType(
    {
        ConditionType.UNAVAILABLE: (
            Reason.HEALTHY,
            Reason.UNKNOWN,
            Reason.DOCKERD_HUNG,
            Reason.DOCKERD_DOWN,
            Reason.DOCKERD_ERROR,
            Reason.CONTAINERD_HUNG,
            Reason.CONTAINERD_DOWN,
            Reason.CONTAINERD_ERROR,
            Reason.CRI_NOT_READY,
            Reason.CRI_NETWORK_NOT_READY,
            Reason.IMAGE_FS_STATS_STALE,
            Reason.DOCKERD_RESTART_LOOP,
            Reason.CONTAINERD_RESTART_LOOP,
        ),
        ConditionType.MEMORY_LEAK: (
            Reason.NO_LEAK,
            Reason.UNKNOWN,
            Reason.DOCKERD_MEMORY_GROWTH,
            Reason.DOCKERD_GOROUTINE_LEAK,
            Reason.DOCKERD_FD_LEAK,
            Reason.DOCKERD_MEMORY_CEILING,
            Reason.CONTAINERD_MEMORY_GROWTH,
            Reason.CONTAINERD_FD_LEAK,
            Reason.CONTAINERD_MEMORY_CEILING,
        ),
        ConditionType.SLOW: (
            Reason.NOT_SLOW,
            Reason.UNKNOWN,
            Reason.DOCKERD_API_SLOW,
            Reason.CONTAINERD_API_SLOW,
            Reason.CONTAINER_START_SLOW,
        ),
    }
)
"""Every reason a condition type can carry; metrics pre-create one series per pair."""


class Status(enum.StrEnum):
    """A condition's status, as Kubernetes spells it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Condition:
    """The judged state of one condition type at one moment: what publishers write."""

    type: ConditionType
    status: Status
    reason: str
    message: str
    since: float
    """Wall-clock time of the last status change (lastTransitionTime)."""


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class Event:
    """A transition worth telling people about, aimed at the Node."""

    type: EventType
    reason: str
    message: str
    at: float


# ---- remediation: the contract between the operator and the node's agent -----------------

REMEDIATION_GROUP = "nodeprobe.io"
REMEDIATION_VERSION = "v1alpha1"
NODE_REMEDIATIONS = "noderemediations"
"""Plural of the cluster-scoped NodeRemediation resource both sides read and write."""
REMEDIATION_NODE_LABEL = "nodeprobe.io/node"
"""Label on each NodeRemediation naming its node, so an agent lists only its own."""


class RemediationAction(enum.StrEnum):
    """One rung of a remediation ladder."""

    RESTART_RUNTIME = "restart-runtime"
    REBOOT = "reboot"
    ESCALATE = "escalate"


class RemediationPhase(enum.StrEnum):
    """A NodeRemediation's status.phase; the agent acts only in ACTION_REQUESTED."""

    PENDING = "Pending"
    CORDONED = "Cordoned"
    DRAINING = "Draining"
    ACTION_REQUESTED = "ActionRequested"
    VERIFYING = "Verifying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ESCALATED = "Escalated"


class RepairState(enum.StrEnum):
    """What the node's agent reports in a NodeRemediation's status.agent.state."""

    STARTED = "Started"
    DONE = "Done"
    FAILED = "Failed"
