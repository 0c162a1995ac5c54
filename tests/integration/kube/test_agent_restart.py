"""Conditions survive agent restarts, on the real API server with the chart's own identity.

A DaemonSet rollout restarts every agent; remediation triggers count from lastTransitionTime, so
a restart while dockerd is hung must be no transition, no Unknown, no Event and no write.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.harness.agent_process import AgentProcess, wait_for
from tests.harness.chart import Release
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.harness.runtimes import Sandbox

UNAVAILABLE = "ContainerRuntimeUnavailable"


def condition(cluster: KubeCluster, node: str, kind: str) -> dict[str, Any] | None:
    obj = cluster.must("GET", f"/api/v1/nodes/{node}")
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return None


def node_events(cluster: KubeCluster, node: str) -> list[dict[str, Any]]:
    reply = cluster.must("GET", "/api/v1/namespaces/default/events"
                                f"?fieldSelector=involvedObject.name%3D{node}")
    return list(reply["items"])


class ConditionTrail(threading.Thread):
    """Every (status, reason, lastTransitionTime) of one condition the Node shows, from a watch."""

    def __init__(self, cluster: KubeCluster, node: str, kind: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.node, self.kind = cluster, node, kind
        self.seen: list[tuple[str, str, str]] = []
        self._done = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        c = self.cluster
        while not self._done.is_set():
            conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=c._tls, timeout=30)
            conn.request("GET", f"/api/v1/nodes?watch=1&fieldSelector=metadata.name%3D{self.node}"
                                "&timeoutSeconds=2")
            resp = conn.getresponse()
            self.ready.set()
            while line := resp.readline():
                obj = json.loads(line)["object"]
                for cond in obj.get("status", {}).get("conditions") or []:
                    if cond["type"] == self.kind:
                        seen = (cond["status"], cond["reason"], cond["lastTransitionTime"])
                        if not self.seen or self.seen[-1] != seen:
                            self.seen.append(seen)

    def stop(self) -> None:
        self._done.set()
        self.join(10)


def test_restart_while_hung_is_no_transition_no_event_no_write(
    kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release, runtimes: Sandbox,
    tmp_path: Path,
) -> None:
    node = f"restart-{uuid.uuid4().hex[:6]}"
    test_kubelet.register(node)
    pod = wait_for(lambda: release.agent_pod(node), timeout_s=60,
                   what="the DaemonSet controller's agent pod on the node")
    kubeconfig = kube_cluster.token_kubeconfig(
        tmp_path / "agent.kubeconfig", release.namespace, release.service_account("agent"),
        pod=pod)
    agent = AgentProcess(runtimes, tmp_path, kubeconfig=kubeconfig, node=node)
    try:
        wait_for(lambda: (condition(kube_cluster, node, UNAVAILABLE) or {}).get("status")
                 == "False", timeout_s=30, what=f"a healthy start:\n{agent.log()}")
        with runtimes.dockerd.hung():
            wait_for(lambda: (condition(kube_cluster, node, UNAVAILABLE) or {}).get("reason")
                     == "DockerdHung", timeout_s=30, what=f"DockerdHung:\n{agent.log()}")
            wait_for(lambda: any(e["reason"] == "DockerdHung"
                                 for e in node_events(kube_cluster, node)),
                     timeout_s=30, what="the DockerdHung Event")
            held = condition(kube_cluster, node, UNAVAILABLE)
            events_before = len(node_events(kube_cluster, node))
            trail = ConditionTrail(kube_cluster, node, UNAVAILABLE)
            trail.start()
            trail.ready.wait(10)
            agent.stop()
            writes_before = len(writes_by(kube_cluster, release, node))
            agent = AgentProcess(runtimes, tmp_path, kubeconfig=kubeconfig, node=node)
            # Enough probing for the judge to have decided again: raiseAfter failures and more.
            calls = agent.probe_calls()
            wait_for(lambda: agent.probe_calls() >= calls + 40, timeout_s=60,
                     what="the restarted agent probing")
            trail.stop()
            assert condition(kube_cluster, node, UNAVAILABLE) == held
            assert trail.seen == [(held["status"], held["reason"], held["lastTransitionTime"])]
            assert len(node_events(kube_cluster, node)) == events_before
            assert writes_by(kube_cluster, release, node)[writes_before:] == []
    finally:
        agent.stop()


def writes_by(cluster: KubeCluster, release: Release, node: str) -> list[str]:
    """The agent identity's writes that touched this node, from the API server's audit log."""
    user = release.username("agent")
    return [e["verb"] + " " + e["requestURI"] for e in cluster.audit(user)
            if e["verb"] not in ("get", "list", "watch") and node in e["requestURI"]]
