"""Prometheus metrics for the agent: probe outcomes, runtime readings, conditions, loop health.

Alerts and dashboards are written against these exact names (docs/metrics.md lists them); change
them only together. Everything is registered on the `CollectorRegistry` passed in, never the
global one, and only when `Metrics` is constructed. Label series that count or flag something are
created up front, so they exist (as 0) before the first event; readings (bytes, goroutines) appear
only once read, because a made-up 0 would be a false reading.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nodeprobe.model import (
    REASONS,
    Check,
    Condition,
    ConditionType,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)

DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds: a healthy socket answers in ~1 ms, a hung one is cut at its deadline (<= 30 s)."""

PUBLISH_TARGETS = ("node_status", "event")
"""Label values of nodeprobe_publish_errors_total."""

_PROC = "of the runtime's process"
RUNTIME_GAUGES: Mapping[Value, tuple[str, str]] = {
    Value.RSS_ANON_BYTES: (
        "nodeprobe_runtime_rss_anon_bytes",
        f"Anonymous resident memory (RssAnon) {_PROC}, in bytes.",
    ),
    Value.RSS_BYTES: ("nodeprobe_runtime_rss_bytes", f"Resident memory (VmRSS) {_PROC}, in bytes."),
    Value.CGROUP_ANON_BYTES: (
        "nodeprobe_runtime_cgroup_anon_bytes",
        "Anonymous memory of the runtime's service cgroup, in bytes.",
    ),
    Value.GOROUTINES: (
        "nodeprobe_runtime_goroutines",
        "Goroutines the runtime reports (dockerd /info NGoroutines).",
    ),
    Value.FDS: ("nodeprobe_runtime_open_fds", f"Open file descriptors {_PROC}."),
    Value.EVENT_LISTENERS: (
        "nodeprobe_runtime_event_listeners",
        "Clients subscribed to the runtime's event stream.",
    ),
    Value.SHIMS: ("nodeprobe_runtime_shims", "containerd shim processes running on the node."),
    Value.CONTAINERS: ("nodeprobe_runtime_containers", "Containers the runtime knows, any state."),
    Value.IMAGES: ("nodeprobe_runtime_images", "Images in the runtime's store."),
    Value.FD_LIMIT: ("nodeprobe_runtime_open_fds_limit",
                     f"Soft 'Max open files' {_PROC} (/proc/<pid>/limits)."),
    Value.CONTAINERS_RUNNING: ("nodeprobe_runtime_containers_running",
                               "Running containers the runtime reports."),
    Value.POD_SANDBOXES_READY: ("nodeprobe_runtime_pod_sandboxes_ready",
                                "CRI pod sandboxes in state SANDBOX_READY."),
    Value.DISK_AVAILABLE_BYTES: ("nodeprobe_runtime_root_available_bytes",
                                 "Free bytes of the filesystem holding the runtime's root."),
    Value.DISK_TOTAL_BYTES: ("nodeprobe_runtime_root_size_bytes",
                             "Size of the filesystem holding the runtime's root, in bytes."),
    Value.INODES_AVAILABLE: ("nodeprobe_runtime_root_inodes_available",
                             "Free inodes of the filesystem holding the runtime's root."),
    Value.DANGLING_IMAGES_BYTES: ("nodeprobe_runtime_dangling_images_bytes",
                                  "Size of dockerd's dangling images (looked up when the root "
                                  "is low), in bytes."),
    Value.CANARY_START_SECONDS: ("nodeprobe_canary_start_seconds",
                                 "The last canary's container start (shim, runc), in seconds."),
}
"""Observation readings exported as gauges {runtime}; other readings stay internal."""

INFO_VERSION = "version"
INFO_API_VERSION = "api_version"
"""Keys of `Observation.info` that feed nodeprobe_runtime_info."""


def default_checks() -> dict[Runtime, tuple[Check, ...]]:
    """Which checks run against which runtime, for pre-creating series."""
    docker = tuple(c for c in Check if c.value.startswith("docker_"))
    cri = tuple(c for c in Check if c.value.startswith("cri_"))
    return {
        Runtime.DOCKERD: (*docker, Check.PROCESS, Check.CANARY),
        Runtime.CONTAINERD: (*cri, Check.PROCESS, Check.CANARY),
    }


_REASON_PREFIXES: Mapping[Runtime, tuple[str, ...]] = {
    Runtime.DOCKERD: ("Dockerd", "DockerRoot"),
    Runtime.CONTAINERD: ("Containerd", "CRI", "ImageFs", "PodSandbox"),
}


def _runtime_of(reason: Reason) -> Runtime | None:
    """The runtime a reason belongs to by its name; None for the shared ones."""
    for runtime, prefixes in _REASON_PREFIXES.items():
        if str(reason).startswith(prefixes):
            return runtime
    return None


def build_version() -> str:
    """The running code's version. Read from the package, not with `importlib.metadata`, which
    costs ~1 MiB of resident memory (zipfile, csv, email parsing) for one string."""
    import nodeprobe

    return nodeprobe.__version__


@dataclass(frozen=True, slots=True)
class Health:
    """What /healthz and /readyz need to know, as one consistent snapshot."""

    last_tick: float | None
    round_done: bool
    node_status_written: bool


class Metrics:
    """All nodeprobe metrics on one registry, plus the loop's health state."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str | None = None,
        checks: Mapping[Runtime, Iterable[Check]] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._last_tick: float | None = None
        self._round_done = False
        self._node_status_written = False
        self._value_sources: dict[tuple[str, str], set[Value]] = {}
        self._values_set: set[tuple[Value, str]] = set()
        self._runtime_info: dict[str, tuple[str, str]] = {}
        self._create_probe_metrics(registry)
        self._create_runtime_metrics(registry)
        self._create_condition_metrics(registry)
        self._create_agent_metrics(registry)
        self.build_info.labels(version or build_version()).set(1)
        self._precreate(default_checks() if checks is None else checks)

    def _create_probe_metrics(self, r: CollectorRegistry) -> None:
        """docs/metrics.md, "Probes": every probe call's time and outcome."""
        self.probe_duration = Histogram(
            "nodeprobe_probe_duration_seconds",
            "Wall time of one probe call in seconds; a HUNG call counts the time waited.",
            ["runtime", "check"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.probe_outcomes = Counter(
            "nodeprobe_probe_outcomes_total",
            "Probe calls by outcome (OK, SLOW, HUNG, DOWN, ERROR).",
            ["runtime", "check", "outcome"],
            registry=r,
        )
        self.probe_last_outcome = Gauge(
            "nodeprobe_probe_last_outcome",
            "1 for the outcome of the latest probe call of this runtime and check, 0 otherwise.",
            ["runtime", "check", "outcome"],
            registry=r,
        )

    def _create_runtime_metrics(self, r: CollectorRegistry) -> None:
        """docs/metrics.md, "Runtime readings": what the runtimes report about themselves."""
        self.runtime_values = {
            value: Gauge(name, doc, ["runtime"], registry=r)
            for value, (name, doc) in RUNTIME_GAUGES.items()
        }
        self.runtime_info = Gauge(
            "nodeprobe_runtime_info",
            "Runtime version and API version as last reported; always 1.",
            ["runtime", "version", "api_version"],
            registry=r,
        )

    def _create_condition_metrics(self, r: CollectorRegistry) -> None:
        """docs/metrics.md, "Conditions and publishing": the judgement and its writes."""
        self.condition_status = Gauge(
            "nodeprobe_condition_status",
            "1 for the current reason of a condition whose status is True (a problem), else 0.",
            ["condition", "reason"],
            registry=r,
        )
        self.condition_since = Gauge(
            "nodeprobe_condition_last_transition_timestamp_seconds",
            "Unix time in seconds of the condition's last status change (lastTransitionTime).",
            ["condition"],
            registry=r,
        )
        self.publish_errors = Counter(
            "nodeprobe_publish_errors_total",
            "Failed writes to the Kubernetes API by target (node_status, event).",
            ["target"],
            registry=r,
        )

    def _create_agent_metrics(self, r: CollectorRegistry) -> None:
        """docs/metrics.md, "Conditions and publishing": the agent itself (loop, build, repair)."""
        self.loop_last_iteration = Gauge(
            "nodeprobe_loop_last_iteration_timestamp_seconds",
            "Unix time in seconds when the agent loop last finished an iteration.",
            registry=r,
        )
        self.build_info = Gauge(
            "nodeprobe_build_info", "nodeprobe build; always 1.", ["version"], registry=r
        )
        self.repair_admission_guard = Gauge(
            "nodeprobe_repair_admission_guard",
            "1 while the admission guard on NodeRemediations is in place, as the repair "
            "executor last saw it; 0 while it is not (every repair is refused), and always 0 "
            "when repair mode is off.",
            registry=r,
        )

    def _precreate(self, checks: Mapping[Runtime, Iterable[Check]]) -> None:
        for runtime, names in checks.items():
            for check in names:
                self.probe_duration.labels(str(runtime), str(check))
                for outcome in Outcome:
                    self.probe_outcomes.labels(str(runtime), str(check), str(outcome))
                    self.probe_last_outcome.labels(str(runtime), str(check), str(outcome)).set(0)
        probed = set(checks)
        for ctype, reasons in REASONS.items():
            for reason in reasons:
                owner = _runtime_of(reason)
                if owner is None or owner in probed:  # no dockerd series on a CRI node
                    self.condition_status.labels(str(ctype), str(reason)).set(0)
        for target in PUBLISH_TARGETS:
            self.publish_errors.labels(target)

    def observe(self, obs: Observation) -> None:
        """Count one probe call and export its readings."""
        rt, check = str(obs.runtime), str(obs.check)
        if math.isfinite(obs.latency_s) and obs.latency_s >= 0:
            self.probe_duration.labels(rt, check).observe(obs.latency_s)
        self.probe_outcomes.labels(rt, check, str(obs.outcome)).inc()
        for outcome in Outcome:
            self.probe_last_outcome.labels(rt, check, str(outcome)).set(
                1 if outcome == obs.outcome else 0
            )
        with self._lock:
            self._observe_values(obs, rt, check)
            self._observe_info(obs, rt)

    def _observe_values(self, obs: Observation, rt: str, check: str) -> None:
        """Set readings; when a check fails, drop the readings it supplied: stale is worse
        than absent for an alert on growth."""
        source = self._value_sources.setdefault((rt, check), set())
        if obs.outcome.failed:
            for value in source:
                if (value, rt) in self._values_set:
                    self.runtime_values[value].remove(rt)
                    self._values_set.discard((value, rt))
            source.clear()
            return
        for name, reading in obs.values.items():
            try:
                value = Value(name)
            except ValueError:
                continue
            gauge = self.runtime_values.get(value)
            if gauge is not None and math.isfinite(reading):
                gauge.labels(rt).set(reading)
                source.add(value)
                self._values_set.add((value, rt))

    def _observe_info(self, obs: Observation, rt: str) -> None:
        version = obs.info.get(INFO_VERSION)
        if not version:
            return
        labels = (version, obs.info.get(INFO_API_VERSION, ""))
        old = self._runtime_info.get(rt)
        if old == labels:
            return
        if old is not None:
            self.runtime_info.remove(rt, *old)
        self.runtime_info.labels(rt, *labels).set(1)
        self._runtime_info[rt] = labels

    def set_conditions(
        self, conditions: Mapping[ConditionType, Condition] | Iterable[Condition]
    ) -> None:
        """Flag the current reason of each True condition; every other pair of that type is 0.

        Also export when each condition last changed status, so a dashboard can say for how long
        a node has been sick (`time() - nodeprobe_condition_last_transition_timestamp_seconds`).
        """
        items = conditions.values() if isinstance(conditions, Mapping) else conditions
        for cond in items:
            ctype = str(cond.type)
            if math.isfinite(cond.since):
                self.condition_since.labels(ctype).set(cond.since)
            known = {str(r) for r in REASONS.get(cond.type, ())} | {cond.reason}
            for reason in sorted(known):
                active = cond.status == Status.TRUE and reason == cond.reason
                self.condition_status.labels(ctype, reason).set(1 if active else 0)

    def set_admission_guard(self, in_place: bool) -> None:
        self.repair_admission_guard.set(1 if in_place else 0)

    def publish_error(self, target: str) -> None:
        """Count a failed write; `target` is one of PUBLISH_TARGETS."""
        self.publish_errors.labels(target).inc()

    def loop_tick(self, now: float) -> None:
        """The agent loop finished an iteration at `now` (Unix seconds)."""
        self.loop_last_iteration.set(now)
        with self._lock:
            self._last_tick = now

    def mark_round_done(self) -> None:
        """Every configured check has run at least once (readiness)."""
        with self._lock:
            self._round_done = True

    def mark_node_status_written(self) -> None:
        """The first node status write succeeded (readiness, when Kubernetes publishing is on)."""
        with self._lock:
            self._node_status_written = True

    def health(self) -> Health:
        with self._lock:
            return Health(self._last_tick, self._round_done, self._node_status_written)
