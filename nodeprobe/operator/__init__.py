"""The remediation operator: RemediationPolicies + node conditions -> NodeRemediations.

Layers inside: `policy` and `ladder` are pure (no I/O, time passed in); `drain`, `kube` and
`reconcile` do the API calls; `handlers` only wires kopf to `reconcile`. The operator never runs
commands on nodes: the node's agent (`nodeprobe.repair`) does.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path

CRD_DIR = Path(__file__).parent / "crds"
PRIORITY_RANGE = (1, 2**31 - 1)
"""Peers with equal priority would all pause; each replica draws its own."""


def run(
    *,
    namespace: str | None = None,
    peering_name: str = "nodeprobe",
    liveness_endpoint: str | None = None,
    standalone: bool = False,
    kubeconfig: str | None = None,
    priority: int | None = None,
    tick_s: float = 2.0,
    stop_flag: threading.Event | None = None,
    metrics_port: int = 0,
) -> None:
    """Run the operator until stopped (SIGTERM/SIGINT, or `stop_flag` when given).

    `namespace` is where Events are written (all watched objects are cluster-scoped).
    Without `standalone`, replicas elect one active peer through the ClusterKopfPeering named
    `peering_name` (crds/kopf-peering.yaml must be applied).
    """
    import kopf
    from kubernetes import client, config

    from nodeprobe.operator.handlers import register
    from nodeprobe.operator.kube import Kube
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
    # Audit logs, managedFields (and tests) can tell the replicas apart.
    replica = f"{socket.gethostname()}-{os.getpid()}"
    api.user_agent = f"nodeprobe-operator/{replica}"
    settings = OperatorSettings(tick_s=tick_s, event_namespace=namespace or "default")
    registry = kopf.OperatorRegistry()
    kube = Kube(api, field_manager=f"nodeprobe-operator-{replica}"[:128])
    finished = _start_metrics(metrics_port)
    nodes = NodeCache(kube)
    register(registry, reconciler=Reconciler(kube, settings=settings, on_finished=finished),
             nodes=nodes, api=api)
    nodes.start()
    try:
        kopf.run(
            registry=registry,
            clusterwide=True,
            standalone=standalone,
            peering_name=None if standalone else peering_name,  # a name makes peering mandatory
            priority=priority if priority is not None else random.randint(*PRIORITY_RANGE),
            liveness_endpoint=liveness_endpoint,
            stop_flag=stop_flag,
        )
    finally:
        nodes.stop()


def _start_metrics(port: int) -> Callable[[str], None] | None:
    """`nodeprobe_remediations_total{outcome}` on /metrics; every outcome exists from 0."""
    if not port:
        return None
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from nodeprobe.operator.ladder import TERMINAL

    registry = CollectorRegistry()
    total = Counter("nodeprobe_remediations_total",
                    "NodeRemediations that reached a final phase, by outcome.",
                    ["outcome"], registry=registry)
    for phase in TERMINAL:
        total.labels(str(phase.value))
    start_http_server(port, registry=registry)
    return lambda outcome: total.labels(outcome).inc()
