"""Reading pods and Node conditions of the real node's cluster (admin API, no stand-ins)."""

from __future__ import annotations

import time
from typing import Any

from tests.harness.image import IMAGE
from tests.harness.kubecluster import ClusterError, KubeCluster

RELEASE_VALUES = [f"image.repository={IMAGE.rsplit(':', 1)[0]}",
                  f"image.tag={IMAGE.rsplit(':', 1)[1]}", "image.pullPolicy=Never"]
"""A default install but for the image: the project's own build, already on the node."""


def pods(cluster: KubeCluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    return list(cluster.must("GET", f"/api/v1/namespaces/{namespace}/pods{query}")["items"])


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def restarts(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0))
               for c in pod.get("status", {}).get("containerStatuses") or [])


def describe(pods_: list[dict[str, Any]]) -> str:
    """One line per pod: name, phase, ready, restarts, and each container's state."""
    lines = []
    for pod in pods_:
        states = [f"{c['name']}={c.get('state')} last={c.get('lastState')}"
                  for c in pod.get("status", {}).get("containerStatuses") or []]
        lines.append(f"{pod['metadata']['name']} {pod.get('status', {}).get('phase')} "
                     f"ready={is_ready(pod)} restarts={restarts(pod)} {states}")
    return "\n".join(lines)


def wait_pods_ready(cluster: KubeCluster, namespace: str, *, count: int, timeout_s: float,
                    selector: str = "") -> list[dict[str, Any]]:
    """Poll until `count` pods of the namespace (and selector) are Ready; raise with their state."""
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = pods(cluster, namespace, selector)
        if len(found) == count and all(is_ready(p) for p in found):
            return found
        time.sleep(0.5)
    raise ClusterError(f"{count} pods in {namespace} not Ready after {timeout_s:.0f}s:\n"
                       + describe(found))
