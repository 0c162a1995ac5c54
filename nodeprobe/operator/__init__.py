"""The remediation operator: RemediationPolicies + node conditions -> NodeRemediations.

Layers inside: `records` (the vocabulary), `policy`, `gates`, `observe`, `ladder`, `moves` and
`decide` are pure (no I/O, time passed in); a pass reads (`snapshot`), decides (`decide`), then
writes (`reconcile`, `episodes`, `opening`); `drain`, `kube` and `leases` do the API calls;
`guard` checks the admission policy that keeps NodeRemediations to the operator; `leader` and
`standby` elect the replica that acts; `handlers` registers with kopf the policy lifecycle
(`lifecycle`), the pass timer, the liveness probe and kopf's settings. The operator
never runs commands on nodes: the node's agent (`nodeprobe.repair`) does.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from nodeprobe.operator.kube import Kube
    from nodeprobe.operator.leader import LeaderElector
    from nodeprobe.operator.reconcile import OperatorSettings
    from nodeprobe.operator.stats import Sink

CRD_DIR = Path(__file__).parent / "crds"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Options:
    """How `run` runs the operator: one field per flag of `nodeprobe operator`."""

    namespace: str | None = None
    """Where node Leases and the leader Lease live (None: `default`). Events are about
    cluster-scoped objects (Nodes, policies), which the API server accepts only in `default`."""
    liveness_endpoint: str | None = None
    standalone: bool = False
    """No leader election: this process leads at once (tests, benchmarks, one replica)."""
    kubeconfig: str | None = None
    tick_s: float = 2.0
    metrics_port: int = 0
    max_concurrent: int = 1
    """The cluster budget: nodes held at once under all policies."""
    lease_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0
    """The leader Lease's timing, with client-go's semantics."""
    lease_namespace: str | None = None
    """Moves the node Leases (not the leader Lease) elsewhere, e.g. to `medik8s-leases`,
    where medik8s's remediators take the same `node-<name>` Leases."""


def run(options: Options | None = None, *, stop_flag: threading.Event | None = None,
        **fields: Any) -> None:
    """Run the operator until stopped (SIGTERM/SIGINT, or `stop_flag` when given); `fields`
    are `Options`' when no `options` are given.

    Without `standalone`, replicas elect a leader on the Lease `nodeprobe-operator`; kopf runs
    (standalone) only while this replica leads, and a replica that loses the Lease refuses
    every write at once and exits non-zero so its Deployment restarts it as a follower.
    """
    o = options or Options(**fields)
    from nodeprobe.operator.kube import Kube
    from nodeprobe.operator.leader import LeaderElector, Timing
    from nodeprobe.operator.reconcile import OperatorSettings

    api = _api_client(o.kubeconfig)
    # Audit logs, managedFields, the leader Lease (and tests) can tell the replicas apart.
    replica = f"{socket.gethostname()}-{os.getpid()}"
    api.user_agent = f"nodeprobe-operator/{replica}"
    ns = o.namespace or "default"
    stop = stop_flag or threading.Event()
    if threading.current_thread() is threading.main_thread():
        # Until kopf installs its own handlers: a SIGTERM while waiting to lead, or just after
        # taking the Lease, stops cleanly (the Lease is given back), not by Python's default.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serving = _Serving(
        api=api, raw=Kube(api, field_manager=f"nodeprobe-operator-{replica}"[:128]),
        settings=OperatorSettings(tick_s=o.tick_s, lease_namespace=o.lease_namespace or ns,
                                  max_held=o.max_concurrent),
        stop=stop, replica=replica, liveness_endpoint=o.liveness_endpoint,
        metrics_port=o.metrics_port)
    if o.standalone:
        _serve(serving, serving.raw)
        return
    elector = LeaderElector(serving.raw, namespace=ns, identity=replica,
                            timing=Timing(o.lease_s, o.renew_deadline_s, o.retry_s))
    if _wait_to_lead(elector, stop, liveness_endpoint=o.liveness_endpoint,
                     what=f"Lease {ns}/nodeprobe-operator as {replica}"):
        _lead(serving, elector)


@dataclass(frozen=True, slots=True)
class _Serving:
    """What a leading replica runs with."""

    api: ApiClient
    raw: Kube
    """Unfenced: the node view's reads."""
    settings: OperatorSettings
    stop: threading.Event
    replica: str
    liveness_endpoint: str | None
    metrics_port: int


def _lead(serving: _Serving, elector: LeaderElector) -> None:
    """Serve while the Lease is renewed; a replica that loses it refuses every write at once
    (`Fenced`) and exits non-zero, so its Deployment restarts it as a follower."""
    from nodeprobe.operator.leader import Fenced

    lost = threading.Event()

    def on_lost() -> None:
        lost.set()
        serving.stop.set()

    threading.Thread(target=elector.keep, args=(serving.stop, on_lost), name="leader-lease",
                     daemon=True).start()
    try:
        _serve(serving, Fenced(serving.raw, elector.leading))
    finally:
        if not lost.is_set():
            elector.release()
    if lost.is_set():
        raise SystemExit("nodeprobe operator: lost the leader Lease; exiting so that this "
                         "replica restarts as a follower")


def _api_client(kubeconfig: str | None) -> ApiClient:
    """The official client's configuration: a kubeconfig, else in-cluster, else ~/.kube."""
    from kubernetes import client, config

    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        else:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as e:
        raise SystemExit(f"nodeprobe operator: cannot load Kubernetes credentials "
                         f"({kubeconfig or 'in-cluster, then ~/.kube/config'}): {e}") from e
    return client.ApiClient()


def _serve(serving: _Serving, kube: Kube) -> None:
    """kopf with our handlers, the node view and the pass, until `stop` (this replica leads
    the whole time: `kube` refuses writes once it does not)."""
    import kopf
    from kopf._core.engines.peering import Identity  # kopf exports run(), not its arg type

    from nodeprobe.operator.guard import Guard
    from nodeprobe.operator.handlers import kopf_announce, register
    from nodeprobe.operator.nodecache import NodeCache
    from nodeprobe.operator.reconcile import Reconciler

    registry = kopf.OperatorRegistry()
    sink = _start_metrics(serving.metrics_port)
    nodes = NodeCache(serving.raw)
    register(registry, reconciler=Reconciler(kube, settings=serving.settings, sink=sink,
                                             announce=kopf_announce),
             nodes=nodes, api=serving.api, stop=serving.stop, guard=Guard(kube))
    nodes.start()
    try:
        # Our own identity: kopf's default asks getpwuid() for the user name, which fails in
        # an image without a passwd entry for its uid (KeyError, the operator never runs).
        kopf.run(registry=registry, clusterwide=True, standalone=True,
                 liveness_endpoint=serving.liveness_endpoint, stop_flag=serving.stop,
                 identity=Identity(serving.replica))
    finally:
        serving.stop.set()
        nodes.stop()


def _wait_to_lead(elector: LeaderElector, stop: threading.Event, *,
                  liveness_endpoint: str | None, what: str) -> bool:
    """Block until this replica leads (True) or is stopped (False), answering the liveness
    probe meanwhile (`standby`): a standby that waits is alive."""
    from nodeprobe.operator.kube import REQUEST_TIMEOUT_S
    from nodeprobe.operator.standby import StandbyHealth, freshness

    log.info("waiting to lead (%s)", what)
    if not liveness_endpoint:
        return elector.acquire(stop)
    # One attempt is a GET and a write, each under the request timeout, then a retry period.
    fresh = freshness(lambda: elector.attempted_at,
                      within_s=elector.timing.retry_s + 2 * REQUEST_TIMEOUT_S + 5)
    health = StandbyHealth(liveness_endpoint, fresh=fresh).start()
    try:
        return elector.acquire(stop)
    finally:
        health.close()


def _start_metrics(port: int) -> Sink:
    """The operator's metrics (`nodeprobe.operator.metrics`) on /metrics; none without a port."""
    from nodeprobe.operator.stats import NoSink

    if not port:
        return NoSink()
    from prometheus_client import CollectorRegistry

    from nodeprobe.operator.metrics import OperatorMetrics
    from nodeprobe.publish.bounded import serve_registry

    registry = CollectorRegistry()
    sink = OperatorMetrics(registry)
    # Not prometheus_client's start_http_server: it waits forever on a half-sent request and
    # starts a thread per connection; this one has a deadline and a connection cap.
    serve_registry(registry, host="0.0.0.0", port=port)
    return sink
