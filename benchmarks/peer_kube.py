"""The real API server for benchmarks/peer.py: one Node and one identity per tool.

The test control plane (tests/harness/kubecluster.py) with a test kubelet keeping every tool's
Node Ready. Each tool authenticates with a token of its own ServiceAccount, bound to the least a
node-condition writer needs (the rules of Kubernetes' `system:node-problem-detector` role without
`update` on Events, and the rules of the chart's agent role): GET nodes, PATCH nodes/status,
CREATE/PATCH Events. Its writes are counted per identity from the API server's audit log, so
nothing stands between a tool and the API server.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.real_kube import WRITE_VERBS
from tests.harness.kubecluster import KubeCluster, TestKubelet, running_cluster

NAMESPACE = "default"
ROLE = "peer-node-condition-writer"
RULES = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]
TOKEN_S = 6 * 3600
"""Longer than the longest run: the tools read their kubeconfig once."""


class PeerKube:
    def __init__(self, cluster: KubeCluster, base: Path) -> None:
        self.cluster, self.base = cluster, base
        cluster.must("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                     {"metadata": {"name": ROLE}, "rules": RULES})

    def identity(self, name: str) -> tuple[Path, str]:
        """A ServiceAccount `peer-<name>` with the role; (its token kubeconfig, its username)."""
        account = f"peer-{name}"
        self.cluster.must("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
                          {"metadata": {"name": account}})
        self.cluster.must("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]})
        kubeconfig = self.cluster.token_kubeconfig(self.base / f"{account}.kubeconfig",
                                                   NAMESPACE, account, seconds=TOKEN_S)
        return kubeconfig, f"system:serviceaccount:{NAMESPACE}:{account}"

    def conditions(self, node: str) -> list[dict[str, Any]]:
        status, obj = self.cluster.request("GET", f"/api/v1/nodes/{node}")
        return list((obj.get("status") or {}).get("conditions") or []) if status == 200 else []

    def mark(self) -> int:
        """Position in the audit log (count of lines), to count writes from."""
        log = self.cluster.audit_log
        return len(log.read_bytes().splitlines()) if log.exists() else 0

    def writes(self, since: int) -> Counter[str]:
        """Write requests per username since `since` (from the audit log)."""
        out: Counter[str] = Counter()
        for line in self.cluster.audit_log.read_bytes().splitlines()[since:]:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("stage") == "ResponseComplete" and event.get("verb") in WRITE_VERBS:
                out[event.get("user", {}).get("username", "")] += 1
        return out

    def rejected(self, username: str) -> Counter[str]:
        """Requests of `username` the API server refused (code >= 400), per verb and resource."""
        out: Counter[str] = Counter()
        for e in self.cluster.audit(username):
            code = int((e.get("responseStatus") or {}).get("code", 0))
            if code >= 400:
                ref = e.get("objectRef") or {}
                out[f"{e['verb']} {ref.get('resource', '')} {code}"] += 1
        return out


@contextlib.contextmanager
def peer_kube(nodes: list[str]) -> Iterator[PeerKube]:
    base = Path(tempfile.mkdtemp(prefix="np-peer-k8s-", dir="/tmp"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, ignore_errors=True)
        cluster = cleanup.enter_context(running_cluster(base))
        kubelet = TestKubelet(cluster).start()
        cleanup.callback(kubelet.stop)
        for node in nodes:
            kubelet.register(node)
        yield PeerKube(cluster, base)
