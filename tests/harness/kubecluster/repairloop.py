"""The whole repair loop on the real node, shared by its end-to-end test and
benchmarks/realnode_repair.py.

The chart with repair on (the node's restart command: units.py), a RemediationPolicy for the
node, and a Deployment of two pods behind a PodDisruptionBudget that allows one disruption.
`run_once` SIGSTOPs the node's containerd and follows the loop until the node is schedulable
again with both workload pods Running and Ready, recording when each step was first seen.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.gotools import tool
from tests.harness.image import IMAGE
from tests.harness.kubecluster.control import ClusterError, KubeCluster
from tests.harness.kubecluster.images import NODE_BUSYBOX
from tests.harness.kubecluster.node import RealNode
from tests.harness.kubecluster.units import node_command

CHART = Path(__file__).resolve().parents[3] / "charts" / "nodeprobe"
APPS = "np-apps"
WEB = "web"
POLICY = "realnode-repair"
GROUP = "/apis/nodeprobe.io/v1alpha1"
UNAVAILABLE = "ContainerRuntimeUnavailable"
LOOP_TIMEOUT_S = 300.0
POLL_S = 0.25
PHASES = ("Cordoned", "Draining", "ActionRequested", "Verifying", "Succeeded")


def image_values() -> dict[str, Any]:
    repo, tag = IMAGE.rsplit(":", 1)
    return {"image": {"repository": repo, "tag": tag, "pullPolicy": "Never"}}


def repair_values(node: RealNode) -> dict[str, Any]:
    """A default install but the image and repair on; the node's PID 1 in the commands."""
    pid = node.ns_pid
    return {**image_values(), "agent": {
        "repair": {"enabled": True},
        "config": {"repair": {
            "restartCommand": {
                "containerd": node_command(pid, "systemctl", "restart", "containerd"),
                "docker": node_command(pid, "systemctl", "restart", "docker")},
            # Never a reboot: the node's systemctl refuses it (and the ladder has none).
            "rebootCommand": node_command(pid, "systemctl", "reboot")}}}}


def helm_upgrade(cluster: KubeCluster, values: dict[str, Any], *, name: str = "nodeprobe",
                 namespace: str = "nodeprobe") -> None:
    """`helm upgrade --install` with exactly `values` over the chart's defaults."""
    path = cluster.base / f"values-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(values))
    done = subprocess.run(
        [str(tool("helm")), "--kubeconfig", str(cluster.admin_kubeconfig), "upgrade",
         "--install", name, str(CHART), "-n", namespace, "--create-namespace",
         "--reset-values", "-f", str(path)],
        capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise ClusterError(f"helm upgrade: {done.stdout}{done.stderr}")


def wait_served(cluster: KubeCluster, *, timeout_s: float = 120) -> None:
    """After a first install: both CRDs served (a new CRD's storage answers 429 for a moment)."""
    wait(lambda: all(cluster.request("GET", f"{GROUP}/{kind}")[0] == 200
                     for kind in ("remediationpolicies", "noderemediations")),
         timeout_s=timeout_s, what="the nodeprobe CRDs served")


def policy(*, drain_timeout: str = "30s") -> dict[str, Any]:
    """One node, so no minHealthy floor; short timings so one loop takes about a minute.
    The drain times out (the PDB blocks the second pod while the first cannot terminate) and
    the restart runs anyway (actionOnTimeout, the default for restart-runtime)."""
    return {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "RemediationPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "localhost"}},
            "triggers": [{"type": UNAVAILABLE, "status": "True", "for": "5s"}],
            "ladder": [{"action": "restart-runtime", "runtime": "containerd", "timeout": "3m"},
                       {"action": "escalate"}],
            "minHealthy": "0%", "maxConcurrent": 1, "rate": 60, "coolDown": "1s",
            "settleWindow": "5s", "flapLimit": {"attempts": 100, "window": "1h"},
            "drain": {"timeout": drain_timeout, "gracePeriodSeconds": 5,
                      "terminatingSkip": "10s"}}}


def create_policy(cluster: KubeCluster) -> None:
    cluster.must("POST", f"{GROUP}/remediationpolicies", policy())


def delete_policy(cluster: KubeCluster) -> None:
    cluster.request("DELETE", f"{GROUP}/remediationpolicies/{POLICY}")


def release_node(cluster: KubeCluster) -> None:
    """What a person does after an escalation: uncordon, and remove the escalation label (so a
    failed loop leaves the node schedulable for whoever uses it next)."""
    cluster.request("PATCH", "/api/v1/nodes/localhost",
                    {"metadata": {"labels": {"nodeprobe.io/escalated": None}},
                     "spec": {"unschedulable": False}}, "application/merge-patch+json")


def create_workload(cluster: KubeCluster) -> None:
    """Two busybox replicas and a PDB with minAvailable 1: one eviction at a time."""
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": APPS}})
    labels = {"app": WEB}
    cluster.must("POST", f"/apis/apps/v1/namespaces/{APPS}/deployments", {
        "metadata": {"name": WEB},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": WEB, "image": NODE_BUSYBOX,
                                     "imagePullPolicy": "Never",
                                     "command": ["sh", "-c", "exec sleep 36000"]}]}}}})
    cluster.must("POST", f"/apis/policy/v1/namespaces/{APPS}/poddisruptionbudgets", {
        "metadata": {"name": WEB},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}})


def delete_workload(cluster: KubeCluster) -> None:
    cluster.request("DELETE", f"/api/v1/namespaces/{APPS}")


def web_pods(cluster: KubeCluster) -> list[dict[str, Any]]:
    return list(cluster.must("GET", f"/api/v1/namespaces/{APPS}/pods?labelSelector=app%3D{WEB}")
                ["items"])


def serving(pod: dict[str, Any]) -> bool:
    """Running, Ready and not on its way out."""
    status = pod.get("status") or {}
    return not pod["metadata"].get("deletionTimestamp") and status.get("phase") == "Running" \
        and any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])


def remediations(cluster: KubeCluster) -> list[dict[str, Any]]:
    items = cluster.must("GET", f"{GROUP}/noderemediations")["items"]
    return sorted(items, key=lambda nr: nr["metadata"]["creationTimestamp"])


def _condition(node_obj: dict[str, Any], kind: str) -> str:
    for cond in node_obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            return str(cond.get("status"))
    return "absent"


class LoopFailed(ClusterError):
    """The episode ended Failed or Escalated; the message has the Node's conditions."""


@dataclass
class Loop:
    """One hang and what followed, in seconds after the SIGSTOP (first seen, polled)."""

    seen: dict[str, float] = field(default_factory=dict)
    remediation: dict[str, Any] = field(default_factory=dict)
    min_serving: int = 99
    """Fewest workload pods serving at any sample: the PDB keeps at least one."""
    cordoned: bool = False
    terminating_at_action: list[str] = field(default_factory=list)
    """Workload pods still Terminating when the restart was asked for: they did not trap it."""

    @property
    def repaired_s(self) -> float:
        return self.seen["repaired"]


def healthy(cluster: KubeCluster) -> bool:
    """Ready, schedulable, nodeprobe's condition clear, both workload pods serving and no
    other (none of the last loop still Terminating), no live NodeRemediation: where every
    loop starts."""
    node_obj = cluster.must("GET", "/api/v1/nodes/localhost")
    live = [nr for nr in remediations(cluster)
            if (nr.get("status") or {}).get("phase") not in ("Succeeded", "Failed", "Escalated")]
    return (_condition(node_obj, "Ready") == "True" and _condition(node_obj, UNAVAILABLE) ==
            "False" and not node_obj["spec"].get("unschedulable") and not live
            and [serving(p) for p in web_pods(cluster)] == [True, True])


def wait(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise ClusterError(f"not within {timeout_s:.0f}s: {what}")
        time.sleep(POLL_S)


def run_once(cluster: KubeCluster, node: RealNode, *, timeout_s: float = LOOP_TIMEOUT_S) -> Loop:
    """Hang containerd and follow the loop to the end: repaired = the node schedulable, the
    episode Succeeded and both workload pods serving. containerd is resumed afterwards if the
    loop did not restart it."""
    assert node.containerd is not None
    known = {nr["metadata"]["name"] for nr in remediations(cluster)}
    loop = Loop()
    node.containerd.hang()
    start = time.monotonic()
    try:
        while "repaired" not in loop.seen:
            if time.monotonic() - start > timeout_s:
                raise ClusterError(f"the loop did not end within {timeout_s:.0f}s: {loop}")
            _sample(cluster, loop, known, time.monotonic() - start)
            time.sleep(POLL_S)
    finally:
        node.containerd.resume()  # a no-op for the restarted one
    return loop


def _sample(cluster: KubeCluster, loop: Loop, known: set[str], now: float) -> None:
    node_obj = cluster.must("GET", "/api/v1/nodes/localhost")
    if _condition(node_obj, UNAVAILABLE) == "True":
        loop.seen.setdefault("condition", now)
    if _condition(node_obj, "Ready") != "True":
        loop.seen.setdefault("kubelet NotReady", now)
    elif "kubelet NotReady" in loop.seen:
        loop.seen.setdefault("kubelet Ready", now)
    cordoned = bool(node_obj["spec"].get("unschedulable"))
    loop.cordoned |= cordoned
    pods = web_pods(cluster)
    loop.min_serving = min(loop.min_serving, sum(serving(p) for p in pods))
    if any(p["metadata"].get("deletionTimestamp") for p in pods):
        loop.seen.setdefault("evicted", now)
    mine = [nr for nr in remediations(cluster) if nr["metadata"]["name"] not in known]
    if not mine:
        return
    loop.remediation = mine[-1]
    loop.seen.setdefault("opened", now)
    phase = (loop.remediation.get("status") or {}).get("phase")
    if phase in ("Failed", "Escalated"):
        conditions = [f"{c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}"
                      for c in node_obj.get("status", {}).get("conditions") or []]
        raise LoopFailed(f"the episode ended {phase} after {now:.0f}s: "
                         f"{loop.remediation.get('status')}\nthe Node: {conditions}\n"
                         f"steps seen: {loop.seen}")
    if phase == "ActionRequested" and phase not in loop.seen:
        loop.terminating_at_action = [p["metadata"]["name"] for p in pods
                                      if p["metadata"].get("deletionTimestamp")]
    if phase in PHASES:
        loop.seen.setdefault(phase, now)
    if phase == "Succeeded" and not cordoned and sum(serving(p) for p in pods) == 2:
        loop.seen["repaired"] = now
