"""A stand-in kubelet for fleet-size operator tests (thousands of Nodes no real kubelet runs).

Every test about the agent as a pod uses the real node (tests/harness/kubecluster/node.py).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from typing import Any

from tests.harness.kubecluster.control import ClusterError, KubeCluster


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pinned_nodes(spec: dict[str, Any]) -> set[str] | None:
    """Node names a pod's required node affinity allows by `metadata.name`, or None if any."""
    required = (spec.get("affinity", {}).get("nodeAffinity", {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    names: set[str] | None = None
    for term in required.get("nodeSelectorTerms") or []:
        for match in term.get("matchFields") or []:
            if match.get("key") == "metadata.name" and match.get("operator") == "In":
                names = (names or set()) | set(match.get("values") or [])
    return names


class TestKubelet:
    """Plays kubelet (and a naive scheduler) for the Nodes a test registers.

    Nodes are Ready; a pending pod without a node is bound to the first registered node that is
    schedulable and matches its nodeSelector; pods on our nodes turn Running and Ready; deleted or
    evicted pods finish their deletion. A node in `held` keeps its pods Terminating, as a hung
    runtime does (the kubelet cannot stop their containers); releasing it lets them finish.
    """

    __test__ = False  # not a pytest class

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.nodes: set[str] = set()
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-kubelet", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> TestKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def register(self, name: str, *, labels: dict[str, str] | None = None,
                 boot_id: str | None = None, memory: str = "8Gi") -> None:
        node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       **(labels or {})}
        self.cluster.must("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels},
        })
        self.set_status(name, boot_id=boot_id or str(uuid.uuid4()), memory=memory)
        with self._lock:
            self.nodes.add(name)

    def set_status(self, name: str, *, boot_id: str, memory: str = "8Gi",
                   ready: bool = True) -> None:
        now = _now()
        self.cluster.must("PATCH", f"/api/v1/nodes/{name}/status", {"status": {
            "capacity": {"cpu": "2", "memory": memory, "pods": "110"},
            "allocatable": {"cpu": "2", "memory": memory, "pods": "110"},
            "conditions": [{
                "type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "test kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "bootID": boot_id, "machineID": "test", "systemUUID": "test",
                "kernelVersion": "test", "osImage": "test", "containerRuntimeVersion": "test",
                "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }}, content_type="application/strategic-merge-patch+json")

    def forget(self, name: str) -> None:
        """Stop playing kubelet for `name` (the test deletes the Node itself)."""
        with self._lock:
            self.nodes.discard(name)
            self.held.discard(name)

    def hold(self, node: str) -> None:
        with self._lock:
            self.held.add(node)

    def release(self, node: str) -> None:
        with self._lock:
            self.held.discard(node)
        for pod in self._pods():
            self._handle(pod)

    def _pods(self) -> list[dict[str, Any]]:
        reply = self.cluster.must("GET", "/api/v1/pods")
        return list(reply.get("items", []))

    def _schedule(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        if meta.get("deletionTimestamp"):
            return
        wanted = spec.get("nodeSelector") or {}
        pinned = _pinned_nodes(spec)  # a DaemonSet pod names its node (and tolerates a cordon)
        with self._lock:
            candidates = sorted(self.nodes if pinned is None else self.nodes & pinned)
        for name in candidates:
            status, node = self.cluster.request("GET", f"/api/v1/nodes/{name}")
            if status != 200 or (pinned is None and node.get("spec", {}).get("unschedulable")):
                continue
            labels = node["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                self.cluster.request(
                    "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": name}})
                return

    def _handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        node = spec.get("nodeName")
        if not node and spec.get("schedulerName", "default-scheduler") == "default-scheduler":
            self._schedule(pod)
            return
        with self._lock:
            ours, held = node in self.nodes, node in self.held
        if not ours:
            return
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if meta.get("deletionTimestamp"):
            if not held:
                self.cluster.request("DELETE", path, {
                    "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta["uid"]}})
            return
        if pod.get("status", {}).get("phase") in (None, "Pending"):
            now = _now()
            self.cluster.request("PATCH", path + "/status", {"status": {
                "phase": "Running", "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }}, content_type="application/strategic-merge-patch+json")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.cluster.must("GET", "/api/v1/pods")
                for pod in reply.get("items", []):
                    self._handle(pod)
                version = reply["metadata"]["resourceVersion"]
                self._watch(version)
            except (OSError, ClusterError, http.client.HTTPException, ValueError):
                self._stop.wait(0.5)

    def _watch(self, version: str) -> None:
        c = self.cluster
        # The server ends the watch every few seconds, so stop() never waits long.
        conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=c._tls, timeout=30)
        conn.request("GET", f"/api/v1/pods?watch=1&resourceVersion={version}&timeoutSeconds=3")
        resp = conn.getresponse()
        if resp.status != 200:
            raise ClusterError(f"watch pods: {resp.status}")
        while not self._stop.is_set():
            line = resp.readline()
            if not line:
                return
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED"):
                self._handle(event["object"])
            elif event.get("type") == "ERROR":
                return


