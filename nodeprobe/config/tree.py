"""The config tree: small frozen dataclasses, defaults named here and only here.

Each leaf field carries its YAML kind and a one-line doc in `metadata`; the loader and
docs/configuration.md are both generated from that, so the doc cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeprobe.config.fields import leaf as _leaf
from nodeprobe.config.fields import section as _doc
from nodeprobe.config.judge import JudgeSettings
from nodeprobe.model import Check, Runtime

# ---------------------------------------------------------------------------------------------
# The tree. Defaults live here and only here.


@dataclass(frozen=True, slots=True)
class DockerSettings:
    enabled: bool = _leaf(True, "bool", "Probe dockerd.")
    socket: str = _leaf(
        "auto",
        "socket",
        "dockerd's API socket; `auto` tries /var/run/docker.sock, /run/docker.sock.",
    )


@dataclass(frozen=True, slots=True)
class ContainerdSettings:
    enabled: bool = _leaf(True, "bool", "Probe containerd over CRI.")
    socket: str = _leaf(
        "auto",
        "socket",
        "containerd's socket; `auto` tries /run/containerd/containerd.sock, "
        "/run/docker/containerd/containerd.sock, /run/k3s/containerd/containerd.sock.",
    )
    require_network_ready: bool = _leaf(
        False,
        "bool",
        "Treat CRI Status NetworkReady=false as unhealthy. Off by default: kubelet already turns "
        "it into Ready=false, and a CNI that is still starting is no reason to restart a runtime.",
    )


@dataclass(frozen=True, slots=True)
class CheckSettings:
    enabled: bool = _leaf(True, "bool", "Run this check.")
    interval: float = _leaf(
        2.0,
        "duration",
        "Time between the starts of two calls (one call in flight at a time).",
        floor=0.1,
    )
    deadline: float = _leaf(
        3.0,
        "duration",
        "A call not answered within this is HUNG.",
        floor=0.1,
    )
    slow: float = _leaf(
        1.0,
        "duration",
        "Latency objective: an answer slower than this is SLOW (never, if >= deadline).",
        floor=0.001,
    )


@dataclass(frozen=True, slots=True)
class CanarySettings(CheckSettings):
    image: str = _leaf(
        "registry.k8s.io/pause:3.9",
        "str",
        "Image the canary runs; never pulled, so it must be in the runtime's local store "
        "(Docker's, and containerd's `k8s.io` namespace for CRI). Use the node's sandbox "
        "(pause) image: kubelet keeps it. Checked when the agent starts.",
    )
    cleanup_deadline: float = _leaf(
        120.0,
        "duration",
        "A run past its deadline goes on in the background for up to this long more and "
        "removes what it made; leftovers (label `nodeprobe.io/canary`) are also swept at the "
        "start of every run.",
        floor=1.0,
    )


_FAST = (
    "One call in flight per check, so a hang is raised after about raiseAfter * deadline plus "
    "up to one interval: 6 to 9 s with the defaults (measured p95 8.4 s)."
)


@dataclass(frozen=True, slots=True)
class ChecksSettings:
    docker_ping: CheckSettings = field(
        default_factory=CheckSettings, metadata=_doc("GET /_ping: dockerd's HTTP server. " + _FAST)
    )
    docker_version: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=5.0),
        metadata=_doc("GET /version: dockerd -> containerd path (hangs are caught by /_ping and "
                      "the CRI lists first, hence 5s)."),
    )
    docker_info: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=30.0, deadline=5.0, slow=2.0),
        metadata=_doc("GET /info: stores and leak counters; moderate cost, hence 30s."),
    )
    cri_version: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=10.0),
        metadata=_doc("CRI Version: the gRPC server runs; a static answer, hence 10s."),
    )
    cri_status: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=5.0),
        metadata=_doc("CRI Status: RuntimeReady/NetworkReady."),
    )
    cri_list_pod_sandbox: CheckSettings = field(
        default_factory=CheckSettings,
        metadata=_doc("CRI ListPodSandbox: what kubelet's PLEG relists; hangs on a stuck sandbox."),
    )
    cri_list_containers: CheckSettings = field(
        default_factory=CheckSettings,
        metadata=_doc("CRI ListContainers: the container store PLEG relists."),
    )
    cri_image_fs_info: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=30.0),
        metadata=_doc("CRI ImageFsInfo: the image-fs stats syncer (refreshes every 10s)."),
    )
    process: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=15.0, deadline=2.0, slow=1.0),
        metadata=_doc("Read RssAnon, fds of the runtime processes from procRoot."),
    )
    disk: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=60.0, deadline=5.0, slow=3.0),
        metadata=_doc("statvfs of the runtime roots (see `disk`); for dockerd, when low, "
                      "GET /images/json?filters=dangling to name the cause."),
    )
    runtime_log: CheckSettings = field(
        default_factory=lambda: CheckSettings(interval=60.0, deadline=5.0, slow=3.0),
        metadata=_doc("Read new journald entries of the runtime units (see `runtimeLog`); "
                      "runs only when a journal directory is there."),
    )
    canary: CanarySettings = field(
        default_factory=lambda: CanarySettings(
            enabled=False, interval=300.0, deadline=60.0, slow=10.0
        ),
        metadata=_doc("Create, start, stop and remove a tiny container (CRI: a pod), timed "
                      "(off by default). See docs/probes.md."),
    )

    def for_check(self, check: Check) -> CheckSettings:
        """The settings of one `Check` (field names are the Check values)."""
        value: CheckSettings = getattr(self, check.value)
        return value


@dataclass(frozen=True, slots=True)
class PathSettings:
    proc_root: str = _leaf("/proc", "path", "The host's /proc (in a pod: /host/proc).")
    cgroup_root: str = _leaf(
        "/sys/fs/cgroup",
        "path",
        "The host's cgroup fs (in a pod: /host/sys/fs/cgroup).",
    )
    host_root: str = _leaf(
        "/", "path", "The host's / (in a pod: /host); socket auto-discovery looks under it."
    )


@dataclass(frozen=True, slots=True)
class DiskSettings:
    docker_root: str = _leaf(
        "/var/lib/docker", "path", "dockerd's --data-root on the host (looked up under hostRoot)."
    )
    containerd_root: str = _leaf(
        "/var/lib/containerd", "path", "containerd's root on the host (looked up under hostRoot)."
    )
    min_free_percent: float = _leaf(
        20.0,
        "percent",
        "Raise when less than this share of the root's filesystem is free. Above kubelet's hard "
        "eviction thresholds (imagefs.available<15%, nodefs.available<10%), so it is raised "
        "before kubelet starts evicting pods.",
    )
    min_free_inodes_percent: float = _leaf(
        10.0,
        "percent",
        "Raise when less than this share of inodes is free (kubelet evicts at inodesFree<5%).",
    )
    usage_interval: float = _leaf(
        3600.0,
        "duration",
        "How often, at most, dockerd's GET /system/df (build cache, volumes) is read. It takes "
        "container locks and can take minutes: it runs in its own thread, off the checks.",
        floor=60.0,
    )
    usage_deadline: float = _leaf(300.0, "duration", "Deadline of one GET /system/df.",
                                  floor=1.0)


@dataclass(frozen=True, slots=True)
class RuntimeLogSettings:
    journal_dirs: tuple[str, ...] = _leaf(
        ["/var/log/journal", "/run/log/journal"],
        "paths",
        "Host journal directories (looked up under hostRoot; mount them read-only).",
    )
    docker_units: tuple[str, ...] = _leaf(
        ["docker.service"], "names", "systemd units whose entries are dockerd's."
    )
    containerd_units: tuple[str, ...] = _leaf(
        ["containerd.service"], "names", "systemd units whose entries are containerd's."
    )
    window: float = _leaf(
        300.0,
        "duration",
        "Matching lines are counted over this window (NPD's docker monitor counts over 5 min).",
        floor=1.0,
    )
    threshold: int = _leaf(
        10, "count", "Raise when one kind of pattern matches this many lines within the window."
    )


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    heartbeat: float = _leaf(
        300.0,
        "duration",
        "Rewrite unchanged conditions this often so staleness shows.",
        floor=10.0,
    )
    connection_max_idle: float = _leaf(
        45.0,
        "duration",
        "An API connection idle longer than this is closed, not reused: kube-apiserver closes "
        "idle connections after 90 s, and a write on one it just closed fails. At most 85s.",
        floor=1.0,
    )
    event_aggregation: float = _leaf(
        600.0,
        "duration",
        "Repeats of one Event within this window bump its count instead.",
        floor=1.0,
    )


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    address: str = _leaf("0.0.0.0", "address",
                         "Listen address (an IP) of /metrics, /healthz, /readyz.")
    port: int = _leaf(9103, "port", "Listen port; 0 turns the endpoint off.")


_NSENTER = ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--"]


@dataclass(frozen=True, slots=True)
class RestartCommands:
    docker: tuple[str, ...] = _leaf(
        [*_NSENTER, "systemctl", "restart", "docker"],
        "command",
        "Restarts dockerd in the host's namespaces.",
    )
    containerd: tuple[str, ...] = _leaf(
        [*_NSENTER, "systemctl", "restart", "containerd"],
        "command",
        "Restarts containerd in the host's namespaces.",
    )


@dataclass(frozen=True, slots=True)
class RepairSettings:
    enabled: bool = _leaf(False, "bool", "Carry out repairs the operator asks for on this node.")
    restart_command: RestartCommands = field(
        default_factory=RestartCommands, metadata=_doc("argv per runtime, no shell.")
    )
    reboot_command: tuple[str, ...] = _leaf(
        [*_NSENTER, "systemctl", "reboot"],
        "command",
        "Reboots the node (argv, no shell).",
    )
    dump_dir: str = _leaf(
        "/var/lib/nodeprobe/dumps",
        "path-or-empty",
        "Where goroutine dumps (SIGUSR1) are kept before a repair.",
    )
    dockerd_pidfile: str = _leaf(
        "/var/run/docker.pid",
        "path",
        "dockerd's pidfile, to send it SIGUSR1 (goroutine dump) before a restart.",
    )
    dockerd_exec_root: str = _leaf(
        "/var/run/docker",
        "path",
        "dockerd's --exec-root, where it writes goroutine-stacks-*.log on SIGUSR1.",
    )
    dry_run: bool = _leaf(
        False,
        "bool",
        "Log and report what a repair would run, and run nothing.",
    )
    executor_socket: str = _leaf(
        "",
        "path-or-empty",
        "The privileged repair executor's socket (`nodeprobe repair-executor`, its own "
        "container): the agent asks it to act and keeps no privilege. Empty: act in-process.",
    )
    admission_guard: str = _leaf(
        "nodeprobe-noderemediations",
        "str",
        "Name of the ValidatingAdmissionPolicy and its binding that keep NodeRemediations to "
        "the operator (the chart sets `<release>-noderemediations`). Every repair is refused "
        "while either is missing or the binding does not Deny; checked once a minute.",
    )
    ledger: str = _leaf(
        "/var/lib/nodeprobe/repair-ledger.json",
        "path-or-empty",
        "Requests already carried out and NodeRemediations seen finished, kept across agent "
        "restarts so none runs twice; empty keeps them in memory only.",
    )


@dataclass(frozen=True, slots=True)
class Config:
    node_name: str = _leaf("", "str", "This node's name (the agent needs it; from NODE_NAME).")
    docker: DockerSettings = field(
        default_factory=DockerSettings, metadata=_doc("dockerd endpoint.")
    )
    containerd: ContainerdSettings = field(
        default_factory=ContainerdSettings, metadata=_doc("containerd endpoint.")
    )
    checks: ChecksSettings = field(
        default_factory=ChecksSettings, metadata=_doc("One entry per check.")
    )
    judge: JudgeSettings = field(
        default_factory=JudgeSettings, metadata=_doc("When to raise and clear conditions.")
    )
    disk: DiskSettings = field(
        default_factory=DiskSettings,
        metadata=_doc("Disk space of the runtime roots (checks.disk)."),
    )
    runtime_log: RuntimeLogSettings = field(
        default_factory=RuntimeLogSettings,
        metadata=_doc("Corruption and exhaustion patterns in the runtimes' journal "
                      "(checks.runtimeLog)."),
    )
    paths: PathSettings = field(
        default_factory=PathSettings, metadata=_doc("Host paths, for running in a pod.")
    )
    kubernetes: KubernetesSettings = field(
        default_factory=KubernetesSettings, metadata=_doc("Kubernetes API client.")
    )
    metrics: MetricsSettings = field(
        default_factory=MetricsSettings, metadata=_doc("Prometheus endpoint.")
    )
    repair: RepairSettings = field(
        default_factory=RepairSettings, metadata=_doc("Node-local repairs.")
    )

    @classmethod
    def defaults(cls) -> Config:
        return cls()

    def runtime_enabled(self, runtime: Runtime) -> bool:
        section = self.docker if runtime is Runtime.DOCKERD else self.containerd
        return section.enabled
