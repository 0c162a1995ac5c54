"""The benchmarks' Kubernetes: the real control plane of the tests (tests/harness/kubecluster.py)
with one Node, and a ServiceAccount whose requests the API server's audit log counts.

`BenchKube` offers what the agent benchmarks read: an object by name, a list, and the requests
of the benchmarked identity per (verb, resource) since a mark.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness.kubecluster import KubeCluster, TestKubelet, running_cluster

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
NAMESPACE = "default"
ACCOUNT = "nodeprobe-bench"


class BenchKube:
    def __init__(self, cluster: KubeCluster, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.username = f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}"
        self._mark = 0

    def get(self, resource: str, name: str, *, namespace: str = "") -> dict[str, Any] | None:
        where = f"/namespaces/{namespace}" if namespace else ""
        status, obj = self.cluster.request("GET", f"/api/v1{where}/{resource}/{name}")
        return dict(obj) if status == 200 else None

    def list(self, resource: str, *, namespace: str = "") -> list[dict[str, Any]]:
        where = f"/namespaces/{namespace}" if namespace else ""
        return list(self.cluster.must("GET", f"/api/v1{where}/{resource}")["items"])

    def reset_counters(self) -> None:
        self._mark = len(self.cluster.audit(self.username))

    def counts(self, *, writes_only: bool = False) -> Counter[tuple[str, str]]:
        """Requests of the benchmarked identity per (verb, "plural[/subresource]") since the
        last reset (from the API server's audit log)."""
        out: Counter[tuple[str, str]] = Counter()
        for e in self.cluster.audit(self.username)[self._mark:]:
            if writes_only and e["verb"] not in WRITE_VERBS:
                continue
            ref = e.get("objectRef") or {}
            sub = ref.get("subresource")
            out[(e["verb"], f"{ref.get('resource', '')}/{sub}" if sub else
                 str(ref.get("resource", "")))] += 1
        return out


@contextlib.contextmanager
def real_kube(node: str) -> Iterator[BenchKube]:
    """A control plane, a test kubelet keeping `node` Ready, and a cluster-admin ServiceAccount
    (the benchmark measures load, not RBAC) whose token kubeconfig the agent uses."""
    base = Path(tempfile.mkdtemp(prefix="np-bench-k8s-", dir="/tmp"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        cluster = cleanup.enter_context(running_cluster(base))
        kubelet = TestKubelet(cluster).start()
        try:
            kubelet.register(node)
            cluster.must("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                         {"metadata": {"name": ACCOUNT}})
            cluster.must("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
                "metadata": {"name": ACCOUNT},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT,
                              "namespace": NAMESPACE}]})
            kubeconfig = cluster.token_kubeconfig(base / "bench.kubeconfig", NAMESPACE, ACCOUNT)
            yield BenchKube(cluster, kubeconfig)
        finally:
            kubelet.stop()
