"""The Nodes the operator benchmarks create: as kubelet leaves them, with nodeprobe's condition.

Created through the admin API of the real server (no kubelet runs: no `kubernetes.io/os` label, so
the chart's agent DaemonSet makes no pods, and the node controllers are off, so they stay Ready).
"""

from __future__ import annotations

import time
from typing import Any

UNHEALTHY = "ContainerRuntimeUnavailable"
KUBELET_TIME = "2026-01-01T00:00:00Z"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def condition(sick: bool, since: str) -> dict[str, str]:
    """Our condition as the agent writes it: True (dockerd hung) or False, since `since`."""
    return {"type": UNHEALTHY, "status": "True" if sick else "False", "lastTransitionTime": since,
            "lastHeartbeatTime": iso(time.time()), "reason": "DockerdHung" if sick else
            "ContainerRuntimeIsAvailable", "message": "dockerd did not answer" if sick else "ok"}


def _images(count: int) -> list[dict[str, Any]]:
    """status.images as kubelet reports them (up to 50): what makes real Nodes ~10 KB."""
    return [{"names": [f"registry.example.com/team/app-{i}@sha256:{i:064x}",
                       f"registry.example.com/team/app-{i}:v1.{i}"], "sizeBytes": 10**8 + i}
            for i in range(count)]


def make_node(name: str, images: int) -> dict[str, Any]:
    """A Node as kubelet registers it: Ready, addresses, nodeInfo; healthy by our condition."""
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status",
             "lastHeartbeatTime": KUBELET_TIME, "lastTransitionTime": KUBELET_TIME}
    status: dict[str, Any] = {
        "conditions": [ready, condition(False, KUBELET_TIME)],
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                      {"type": "Hostname", "address": name}],
        "nodeInfo": {
            "bootID": "boot-1", "machineID": "m", "systemUUID": "s",
            "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12",
            "containerRuntimeVersion": "containerd://1.6.20", "kubeletVersion": "v1.32.0",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}}
    if images:
        status["images"] = _images(images)
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {}, "status": status}
