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
    # Host files the runtime depends on
    DISK = "disk"
    """Free bytes and inodes of the runtime's root (statvfs on the host path); for dockerd, when
    low, what holds the space (dangling images; build cache and volumes from /system/df)."""
    RUNTIME_LOG = "runtime_log"
    """The runtime unit's journald entries: counts of corruption and exhaustion patterns."""
    # Optional container start canary
    CANARY = "canary"
    """Create, start, stop and remove a tiny container (Docker) or pod (CRI). Its latency is the
    time from create to a running container (sandbox included for CRI); each step's time is in
    `values`, and a failed run names its step in `info["step"]` (one of `CANARY_STEPS`)."""


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
    """containerd shims (containerd-shim*) serving this containerd's socket."""
    SHIMS_K8S = "shims_k8s_io"
    """Settled ones (alive a minute) of namespace `k8s.io` (CRI): one per pod sandbox."""
    SHIMS_MOBY = "shims_moby"
    """Settled ones (alive a minute) of namespace `moby` (dockerd): one per running container."""
    SHIM_SURPLUS = "shim_surplus"
    """Shims beyond what the pods and containers account for (judged, never probed)."""
    FD_LIMIT = "fd_limit"
    """The daemon's own soft `Max open files` (/proc/<pid>/limits); absent when unlimited."""
    CONTAINERS_PAUSED = "containers_paused"
    """Docker GET /info `ContainersPaused`: frozen, but each still holds its shim."""
    CONTAINERS_RUNNING = "containers_running"
    """Running containers: Docker GET /info `ContainersRunning`; CRI ListContainers in state
    CONTAINER_RUNNING. With `POD_SANDBOXES_READY`, what the shims should add up to."""
    DISK_AVAILABLE_BYTES = "disk_available_bytes"
    """Bytes an unprivileged writer can still use under the runtime's root (statvfs f_bavail)."""
    DISK_TOTAL_BYTES = "disk_total_bytes"
    """Size of the filesystem holding the runtime's root."""
    INODES_AVAILABLE = "inodes_available"
    """Free inodes of the filesystem holding the runtime's root (f_favail)."""
    INODES_TOTAL = "inodes_total"
    """All inodes of that filesystem (0 on filesystems without a fixed inode table)."""
    DANGLING_IMAGES = "dangling_images"
    """Docker images with no tag (GET /images/json, filter dangling=true)."""
    DANGLING_IMAGES_BYTES = "dangling_images_bytes"
    """Sum of those images' Size (layers shared with tagged images counted too: an upper bound
    of what `docker image prune` frees)."""
    BUILD_CACHE_BYTES = "build_cache_bytes"
    """Docker build cache size (GET /system/df BuildCache, at most hourly)."""
    VOLUMES_BYTES = "volumes_bytes"
    """Docker volumes' size (GET /system/df Volumes UsageData, at most hourly)."""
    LOG_CORRUPTION = "log_corruption"
    """Runtime journal lines in the window that mean storage corruption (overlay2, layers)."""
    LOG_EXHAUSTION = "log_exhaustion"
    """Runtime journal lines in the window that mean exhaustion (no space, too many open files)."""
    LOG_SHIM_ERRORS = "log_shim_errors"
    """Runtime journal lines in the window that mean shim or task failures."""
    POD_SANDBOXES_READY = "pod_sandboxes_ready"
    """CRI ListPodSandbox in state SANDBOX_READY (each holds a pause container and its shim)."""
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
    CANARY_SANDBOX_SECONDS = "canary_sandbox_seconds"
    """Canary (CRI): RunPodSandbox took this long."""
    CANARY_CREATE_SECONDS = "canary_create_seconds"
    """Canary: creating the container took this long (image store, snapshotter)."""
    CANARY_START_SECONDS = "canary_start_seconds"
    """Canary: starting the container took this long (shim, runc)."""
    CANARY_REMOVE_SECONDS = "canary_remove_seconds"
    """Canary: stopping and removing the container (and sandbox) took this long."""


CANARY_STEPS: tuple[str, ...] = ("image", "setup", "sandbox", "create", "start", "remove")
"""Steps of the canary, as `info["step"]` names the one that failed. `image` (the canary's
image is not in the runtime's local store) and `setup` (the runtime does not offer the calls the
canary needs) are set-up problems, not runtime faults: they raise no condition."""

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
    DEGRADED = "ContainerRuntimeDegraded"
    """The runtime still answers, but what it depends on is failing or running out: its root's
    disk space or inodes, or its log shows corruption or exhaustion."""


class Reason(enum.StrEnum):
    """Condition and event reasons, CamelCase as Kubernetes expects."""

    HEALTHY = "ContainerRuntimeIsAvailable"
    NO_LEAK = "ContainerRuntimeMemoryIsStable"
    NOT_SLOW = "ContainerRuntimeIsResponsive"
    UNKNOWN = "ContainerRuntimeStateUnknown"
    NOT_DEGRADED = "ContainerRuntimeIsNotDegraded"
    """ContainerRuntimeDegraded is False: disk, inodes and the runtime's log look fine."""

    DOCKERD_HUNG = "DockerdHung"
    DOCKERD_DOWN = "DockerdDown"
    DOCKERD_ERROR = "DockerdError"
    CONTAINERD_HUNG = "ContainerdHung"
    CONTAINERD_DOWN = "ContainerdDown"
    CONTAINERD_ERROR = "ContainerdError"
    CRI_NOT_READY = "CRIRuntimeNotReady"
    CRI_NETWORK_NOT_READY = "CRINetworkNotReady"
    IMAGE_FS_STATS_STALE = "ImageFsStatsStale"
    POD_SANDBOX_START_FAILED = "PodSandboxStartFailed"
    """The canary's RunPodSandbox failed or hung (sandbox image, CNI-less sandbox, shim, runc)."""
    CONTAINER_CREATE_FAILED = "ContainerCreateFailed"
    """The canary's container create failed or hung: image store, snapshotter (overlay2), disk."""
    CONTAINER_START_FAILED = "ContainerStartFailed"
    """The canary's container start failed or hung: shim, runc, cgroups."""
    CONTAINER_REMOVE_FAILED = "ContainerRemoveFailed"
    """The canary's container stop or remove failed or hung: a wedged shim or a busy mount."""
    DOCKERD_RESTART_LOOP = "DockerdRestartLoop"
    """dockerd restarted `judge.restart.count` times within `judge.restart.window`; held until
    `judge.restart.quiet` passes without a restart (NPD's FrequentDockerRestart, sooner)."""
    CONTAINERD_RESTART_LOOP = "ContainerdRestartLoop"
    """containerd restarted `judge.restart.count` times within `judge.restart.window`; held until
    `judge.restart.quiet` passes without a restart (NPD's FrequentContainerdRestart, sooner)."""

    DOCKERD_MEMORY_GROWTH = "DockerdMemoryGrowth"
    DOCKERD_GOROUTINE_LEAK = "DockerdGoroutineLeak"
    DOCKERD_FD_LEAK = "DockerdFdLeak"
    DOCKERD_EVENT_LISTENER_LEAK = "DockerdEventListenerLeak"
    """dockerd's `NEventsListener` (GET /info) grows without bound: clients open /events streams
    and never close them; each holds goroutines and memory in dockerd."""
    DOCKERD_MEMORY_CEILING = "DockerdMemoryCeiling"
    CONTAINERD_MEMORY_GROWTH = "ContainerdMemoryGrowth"
    CONTAINERD_FD_LEAK = "ContainerdFdLeak"
    CONTAINERD_MEMORY_CEILING = "ContainerdMemoryCeiling"
    CONTAINERD_SHIM_LEAK = "ContainerdShimLeak"
    """Shims beyond the pods and containers containerd knows grow sustainedly: shims left behind
    by removed containers (`judge.leak.shims`)."""

    DOCKER_ROOT_DISK_LOW = "DockerRootDiskLow"
    """Free space or inodes under dockerd's root are below `disk.minFreePercent` /
    `disk.minFreeInodesPercent`, set above kubelet's eviction thresholds; the message names
    what holds the space."""
    CONTAINERD_ROOT_DISK_LOW = "ContainerdRootDiskLow"
    """The same for containerd's root."""
    RUNTIME_STORAGE_CORRUPT = "RuntimeStorageCorrupt"
    """The runtime's journal shows image/layer store corruption (overlay2 readlink, layer does
    not exist, failed to register layer) at a rate above `runtimeLog.threshold`."""
    RUNTIME_RESOURCES_EXHAUSTED = "RuntimeResourcesExhausted"
    """The runtime's journal shows `no space left on device` or `too many open files`."""
    RUNTIME_SHIM_ERRORS = "RuntimeShimErrors"
    """The runtime's journal shows shim or task failures (shim disconnected, task not found)."""
    RUNTIME_FDS_NEAR_LIMIT = "RuntimeFdsNearLimit"
    """A runtime holds `judge.fdLimitPercent` of its own `Max open files`: before the limit, not
    after `too many open files` reaches its log."""
    CONTAINERD_ORPHANED_SHIMS = "ContainerdOrphanedShims"
    """More shims than containerd's pods and containers, for `judge.orphanedShimChecks` process
    checks in a row: shims orphaned by a containerd crash that lost its state."""

    DOCKERD_API_SLOW = "DockerdAPISlow"
    CONTAINERD_API_SLOW = "ContainerdAPISlow"
    CONTAINER_START_SLOW = "ContainerStartSlow"


HEALTHY_REASON: Mapping[ConditionType, Reason] = MappingProxyType(
    {
        ConditionType.UNAVAILABLE: Reason.HEALTHY,
        ConditionType.MEMORY_LEAK: Reason.NO_LEAK,
        ConditionType.SLOW: Reason.NOT_SLOW,
        ConditionType.DEGRADED: Reason.NOT_DEGRADED,
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
            Reason.POD_SANDBOX_START_FAILED,
            Reason.CONTAINER_CREATE_FAILED,
            Reason.CONTAINER_START_FAILED,
            Reason.CONTAINER_REMOVE_FAILED,
            Reason.DOCKERD_RESTART_LOOP,
            Reason.CONTAINERD_RESTART_LOOP,
        ),
        ConditionType.MEMORY_LEAK: (
            Reason.NO_LEAK,
            Reason.UNKNOWN,
            Reason.DOCKERD_MEMORY_GROWTH,
            Reason.DOCKERD_GOROUTINE_LEAK,
            Reason.DOCKERD_FD_LEAK,
            Reason.DOCKERD_EVENT_LISTENER_LEAK,
            Reason.DOCKERD_MEMORY_CEILING,
            Reason.CONTAINERD_MEMORY_GROWTH,
            Reason.CONTAINERD_FD_LEAK,
            Reason.CONTAINERD_MEMORY_CEILING,
            Reason.CONTAINERD_SHIM_LEAK,
        ),
        ConditionType.SLOW: (
            Reason.NOT_SLOW,
            Reason.UNKNOWN,
            Reason.DOCKERD_API_SLOW,
            Reason.CONTAINERD_API_SLOW,
            Reason.CONTAINER_START_SLOW,
        ),
        ConditionType.DEGRADED: (
            Reason.NOT_DEGRADED,
            Reason.UNKNOWN,
            Reason.DOCKER_ROOT_DISK_LOW,
            Reason.CONTAINERD_ROOT_DISK_LOW,
            Reason.RUNTIME_STORAGE_CORRUPT,
            Reason.RUNTIME_RESOURCES_EXHAUSTED,
            Reason.RUNTIME_SHIM_ERRORS,
            Reason.RUNTIME_FDS_NEAR_LIMIT,
            Reason.CONTAINERD_ORPHANED_SHIMS,
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
