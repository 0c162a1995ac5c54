"""The remediation operator: RemediationPolicies + node conditions -> NodeRemediations.

Layers inside: `policy` and `ladder` are pure (no I/O, time passed in); `drain`, `kube` and
`reconcile` do the API calls; `handlers` only wires kopf to `reconcile`. The operator never runs
commands on nodes: the node's agent (`nodeprobe.repair`) does.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodeprobe.operator.stats import Sink

CRD_DIR = Path(__file__).parent / "crds"
log = logging.getLogger(__name__)


def run(
    *,
    namespace: str | None = None,
    liveness_endpoint: str | None = None,
    standalone: bool = False,
    kubeconfig: str | None = None,
    tick_s: float = 2.0,
    stop_flag: threading.Event | None = None,
    metrics_port: int = 0,
    max_concurrent: int = 1,
    lease_s: float = 15.0,
    renew_deadline_s: float = 10.0,
    retry_s: float = 2.0,
    lease_namespace: str | None = None,
) -> None:
    """Run the operator until stopped (SIGTERM/SIGINT, or `stop_flag` when given).

    `namespace` is where node Leases and the leader Lease live. Events are about cluster-scoped
    objects (Nodes, policies), which the API server accepts only in namespace `default`.
    Without `standalone`, replicas elect a leader on the Lease `nodeprobe-operator` (client-go
    semantics: `lease_s`, `renew_deadline_s`, `retry_s`); kopf runs (standalone) only while this
    replica leads, and a replica that loses the Lease refuses every write at once and exits
    non-zero so its Deployment restarts it as a follower.
    `max_concurrent` is the cluster budget: nodes held at once under all policies.
    `lease_namespace` moves the node Leases (not the leader Lease) elsewhere, e.g. to
    `medik8s-leases`, where medik8s's remediators take the same `node-<name>` Leases.
    """
    import kopf
    from kubernetes import client, config

    from nodeprobe.operator.handlers import register
    from nodeprobe.operator.kube import Kube
    from nodeprobe.operator.leader import Fenced, LeaderElector, Timing
    from nodeprobe.operator.nodecache import NodeCache
    from nodeprobe.operator.reconcile import OperatorSettings, Reconciler

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
    api = client.ApiClient()
    # Audit logs, managedFields, the leader Lease (and tests) can tell the replicas apart.
    replica = f"{socket.gethostname()}-{os.getpid()}"
    api.user_agent = f"nodeprobe-operator/{replica}"
    ns = namespace or "default"
    settings = OperatorSettings(tick_s=tick_s, lease_namespace=lease_namespace or ns,
                                max_held=max_concurrent)
    raw = Kube(api, field_manager=f"nodeprobe-operator-{replica}"[:128])
    stop = stop_flag or threading.Event()
    elector = None
    kube: Kube = raw
    if not standalone:
        elector = LeaderElector(raw, namespace=ns, identity=replica,
                                timing=Timing(lease_s, renew_deadline_s, retry_s))
        kube = Fenced(raw, elector.leading)
        log.info("waiting to lead (Lease %s/nodeprobe-operator) as %s", ns, replica)
        if not elector.acquire(stop):
            return
    lost = threading.Event()

    def on_lost() -> None:
        lost.set()
        stop.set()

    if elector is not None:
        threading.Thread(target=elector.keep, args=(stop, on_lost), name="leader-lease",
                         daemon=True).start()
    registry = kopf.OperatorRegistry()
    sink = _start_metrics(metrics_port)
    nodes = NodeCache(raw)
    register(registry, reconciler=Reconciler(kube, settings=settings, sink=sink),
             nodes=nodes, api=api, stop=stop)
    nodes.start()
    try:
        kopf.run(registry=registry, clusterwide=True, standalone=True,
                 liveness_endpoint=liveness_endpoint, stop_flag=stop)
    finally:
        stop.set()
        nodes.stop()
        if elector is not None and not lost.is_set():
            elector.release()
    if lost.is_set():
        raise SystemExit("nodeprobe operator: lost the leader Lease; exiting so that this "
                         "replica restarts as a follower")


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
