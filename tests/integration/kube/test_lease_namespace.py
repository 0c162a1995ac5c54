"""operator.leaseNamespace on the real API server: nodeprobe's per-node Leases live where
medik8s's remediators take theirs (`medik8s-leases`, Lease `node-<name>`), so neither acts on a
node the other holds. The operator runs with the chart's operator token; the Role in the Lease
namespace is the one the chart renders for that value."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.harness.chart import CHART, Release, helm, kubectl
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.integration.operator.cluster import Fleet, Operator, wait_for

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
MEDIK8S = "self-node-remediation-controller-manager"
"""A holder identity as medik8s writes it (any other holder: nodeprobe only sees non-ours)."""


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def held_by_someone(lease: dict[str, Any], now: datetime) -> bool:
    """How a holder that respects Leases (medik8s, client-go) reads one: a holder, and the
    renew time plus the duration still ahead."""
    spec = lease.get("spec") or {}
    if not spec.get("holderIdentity"):
        return False
    renewed = datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return renewed + timedelta(seconds=int(spec["leaseDurationSeconds"])) > now


def _lease_role(cluster: KubeCluster, release: Release, namespace: str, tmp: Path) -> None:
    rendered = helm(cluster, "template", release.name, str(CHART), "-n", release.namespace,
                    "--kube-version", "1.37.2", "--set", f"operator.leaseNamespace={namespace}",
                    "--show-only", "templates/operator-lease-rbac.yaml")
    assert rendered.returncode == 0, rendered.stderr
    (tmp / "lease-rbac.yaml").write_text(rendered.stdout)
    done = kubectl(cluster, "apply", "-f", str(tmp / "lease-rbac.yaml"))
    assert done.returncode == 0, done.stderr


def test_leases_in_the_medik8s_namespace_interlock_both_ways(
    kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release, tmp_path: Path,
) -> None:
    ns = f"medik8s-leases-{uuid.uuid4().hex[:6]}"
    kube_cluster.must("POST", "/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    fleet = Fleet(kube_cluster, test_kubelet, release, tmp_path)
    operator = None
    try:
        _lease_role(kube_cluster, release, ns, tmp_path)
        theirs, ours = fleet.add_node("theirs", sick=True), fleet.add_node("ours", sick=True)
        now = datetime.now(UTC)
        kube_cluster.must("POST", LEASES.format(ns=ns), {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": f"node-{theirs}", "namespace": ns},
            "spec": {"holderIdentity": MEDIK8S, "leaseDurationSeconds": 3600,
                     "acquireTime": _micro(now), "renewTime": _micro(now)}})
        fleet.add_policy(maxConcurrent=2, ladder=[
            {"action": "restart-runtime", "runtime": "docker", "timeout": "5m"},
            {"action": "escalate"}])
        operator = Operator(fleet, max_concurrent=2, lease_namespace=ns)
        wait_for(lambda: fleet.phases().get("ours") == "ActionRequested", timeout_s=90,
                 what=lambda: "the operator remediating the node nobody else holds\n"
                 f"{operator.text()}")
        # The same passes that took `ours` met medik8s's Lease on `theirs` and left it alone.
        assert "theirs" not in fleet.phases(), fleet.phases()
        assert fleet.cordoned() == {"ours"}
        lease = kube_cluster.must("GET", f"{LEASES.format(ns=ns)}/node-{theirs}")
        assert lease["spec"]["holderIdentity"] == MEDIK8S
        # The other way: a holder that respects Leases sees nodeprobe's there as held.
        mine = kube_cluster.must("GET", f"{LEASES.format(ns=ns)}/node-{ours}")
        assert mine["spec"]["holderIdentity"].startswith("nodeprobe/")
        assert held_by_someone(mine, datetime.now(UTC)), mine["spec"]
        release_ns = kube_cluster.must("GET", LEASES.format(ns=release.namespace))["items"]
        assert f"node-{ours}" not in {x["metadata"]["name"] for x in release_ns}
    finally:
        if operator is not None:
            operator.stop()
        fleet.delete()
        kube_cluster.request("DELETE", f"/api/v1/namespaces/{ns}")
