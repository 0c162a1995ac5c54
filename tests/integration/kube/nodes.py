"""What a test reads back from the real API server: a Node's conditions, its Events, and what
one identity wrote about it (from the API server's audit log).

All reads use the cluster's admin credentials and are not part of what a test counts.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.agent_process import wait_for
from tests.harness.chart import Release
from tests.harness.kubecluster import KubeCluster, TestKubelet

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def conditions(cluster: KubeCluster, node: str) -> dict[str, dict[str, Any]]:
    """The Node's conditions by type, in the order the server keeps them."""
    obj = cluster.must("GET", f"/api/v1/nodes/{node}")
    return {c["type"]: dict(c) for c in obj.get("status", {}).get("conditions") or []}


def condition(cluster: KubeCluster, node: str, kind: str) -> dict[str, Any] | None:
    return conditions(cluster, node).get(kind)


def has(cluster: KubeCluster, node: str, kind: str, status: str,
        reason: str | None = None) -> bool:
    cond = condition(cluster, node, kind)
    return cond is not None and cond["status"] == status and (
        reason is None or cond["reason"] == reason)


def node_events(cluster: KubeCluster, node: str, namespace: str = "default") -> list[
        dict[str, Any]]:
    """core/v1 Events about `node`, sorted by reason."""
    selector = urllib.parse.quote(f"involvedObject.kind=Node,involvedObject.name={node}")
    reply = cluster.must("GET", f"/api/v1/namespaces/{namespace}/events?fieldSelector={selector}")
    return sorted(reply["items"], key=lambda e: str(e["reason"]))


def about(event: dict[str, Any], node: str) -> bool:
    """An audit event whose object is the Node, its status, or one of its Events."""
    ref = event.get("objectRef") or {}
    name = str(ref.get("name") or "")
    if ref.get("resource") == "nodes":
        return name == node
    return ref.get("resource") == "events" and name.startswith(f"{node}.")


def requests_by(cluster: KubeCluster, username: str, node: str) -> list[dict[str, Any]]:
    """Every request `username` made about `node` (see `about`), oldest first."""
    return [e for e in cluster.audit(username) if about(e, node)]


def writes_by(cluster: KubeCluster, username: str, node: str) -> list[dict[str, Any]]:
    return [e for e in requests_by(cluster, username, node) if e["verb"] in WRITE_VERBS]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(verb, resource[/subresource], code) of audit events, for readable assertions."""
    out = []
    for e in events:
        ref = e.get("objectRef") or {}
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.append((e["verb"], resource, int(e.get("responseStatus", {}).get("code", 0))))
    return out


def wait_writes(cluster: KubeCluster, username: str, node: str, *, at_least: int,
                timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The audit log is written as a request completes, just after the client has its answer:
    poll it (with a deadline) until `at_least` writes are there, then return them all."""
    deadline = time.monotonic() + timeout_s
    got = writes_by(cluster, username, node)
    while len(got) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a real log, not synchronizing on time
        got = writes_by(cluster, username, node)
    return got


# --- a Node of our own with the chart's agent identity on it -------------------------------------


@dataclass(frozen=True)
class AgentNode:
    """A Node registered by the test kubelet, the release's agent pod on it, and a kubeconfig
    that authenticates only as the chart's agent ServiceAccount, bound to that pod."""

    cluster: KubeCluster
    name: str
    pod: str
    kubeconfig: Path
    username: str

    def writes(self) -> list[dict[str, Any]]:
        """What the agent identity wrote about this Node so far (audit log)."""
        return writes_by(self.cluster, self.username, self.name)

    def wait_writes(self, *, at_least: int) -> list[dict[str, Any]]:
        return wait_writes(self.cluster, self.username, self.name, at_least=at_least)


@contextlib.contextmanager
def agent_node(cluster: KubeCluster, kubelet: TestKubelet, release: Release,
               workdir: Path, *, prefix: str = "n") -> Iterator[AgentNode]:
    """Register a fresh Node, wait for the DaemonSet's agent pod on it, mint the agent's token.

    Afterwards the Node, the pod and the Node's Events in `default` are deleted.
    """
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubelet.register(name)
    try:
        pod = wait_for(lambda: agent_pod(release, name), timeout_s=60,
                       what=f"the DaemonSet controller's agent pod on {name}")
        kubeconfig = cluster.token_kubeconfig(
            workdir / f"agent-{name}.kubeconfig", release.namespace,
            release.service_account("agent"), pod=pod)
        yield AgentNode(cluster, name, pod, kubeconfig, release.username("agent"))
    finally:
        remove_node(cluster, kubelet, release.namespace, name)


def agent_pod(release: Release, node: str) -> str:
    """The release's agent pod on `node`, or "" (one API call; no kubectl process per poll)."""
    labels = urllib.parse.quote(f"app.kubernetes.io/instance={release.name},"
                                "app.kubernetes.io/component=agent")
    fields = urllib.parse.quote(f"spec.nodeName={node}")
    reply = release.cluster.must(
        "GET", f"/api/v1/namespaces/{release.namespace}/pods?labelSelector={labels}"
               f"&fieldSelector={fields}")
    items = reply["items"]
    return str(items[0]["metadata"]["name"]) if items else ""


def remove_node(cluster: KubeCluster, kubelet: TestKubelet, namespace: str, name: str) -> None:
    """Delete a test's Node, the pods bound to it and its Events; the kubelet forgets it."""
    kubelet.forget(name)
    cluster.request("DELETE", f"/api/v1/nodes/{name}")
    selector = urllib.parse.quote(f"spec.nodeName={name}")
    pods = cluster.must("GET", f"/api/v1/namespaces/{namespace}/pods?fieldSelector={selector}")
    for pod in pods["items"]:
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/"
                                  f"{pod['metadata']['name']}",
                        {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
    events = urllib.parse.quote(f"involvedObject.name={name}")
    cluster.request("DELETE", f"/api/v1/namespaces/default/events?fieldSelector={events}")
