"""Drain a node through the Eviction API, so PodDisruptionBudgets hold.

Never deletes a pod directly. A 429 (a PDB allows no disruption now) is retried with back-off on
later passes; the ladder, not this module, decides when the drain has taken too long (kured #82).
DaemonSet pods and mirror (static) pods stay, as `kubectl drain` leaves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.operator.kube import Kube, KubeError

log = logging.getLogger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
"""Eviction retries double from 1 s to 30 s: quick when a PDB frees up, gentle on the API."""


def evictable(pod: Mapping[str, Any]) -> bool:
    """Pods a drain must move: not DaemonSet-owned, not mirror pods, not already finished."""
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


@dataclass(slots=True)
class DrainPass:
    """What one pass over a node's pods found."""

    left: int = 0
    evicted: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Pods whose eviction a PodDisruptionBudget refused (HTTP 429) this pass."""


class Drainer:
    """Evicts a node's pods, one pass per call; remembers back-off between passes."""

    def __init__(self, kube: Kube, *, clock: Callable[[], float]) -> None:
        self._kube = kube
        self._clock = clock
        self._next_try: dict[str, tuple[float, float]] = {}

    def pods(self, node: str) -> list[dict[str, Any]]:
        items = self._kube.items("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})
        return [p for p in items if (p.get("spec") or {}).get("nodeName") == node]

    def plan(self, node: str) -> list[str]:
        """`namespace/name` of every pod a drain would evict (for dry runs)."""
        return [_key(p) for p in self.pods(node) if evictable(p)]

    def drain_once(self, node: str, *, grace_period_s: int | None) -> DrainPass:
        """Ask once for the eviction of each pod still there; count what is left."""
        out = DrainPass()
        now = self._clock()
        for pod in self.pods(node):
            if not evictable(pod):
                continue
            out.left += 1
            key = _key(pod)
            if (pod.get("metadata") or {}).get("deletionTimestamp"):
                continue  # evicted already; waiting for its grace period
            due, delay = self._next_try.get(key, (0.0, BACKOFF_FIRST_S / 2))
            if now < due:
                out.blocked.append(key)
                continue
            ns, name = key.split("/", 1)
            body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                    "metadata": {"name": name, "namespace": ns}}
            if grace_period_s is not None:
                body["deleteOptions"] = {"gracePeriodSeconds": grace_period_s}
            try:
                self._kube.request(
                    "POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", body=body)
            except KubeError as e:
                if e.status == 404:
                    out.left -= 1
                    continue
                if e.status != 429:
                    raise
                delay = min(delay * 2, BACKOFF_MAX_S)
                self._next_try[key] = (now + delay, delay)
                out.blocked.append(key)
                log.info("eviction of %s refused (429, disruption budget); retry in %.0fs",
                         key, delay)
                continue
            self._next_try.pop(key, None)
            out.evicted.append(key)
        return out


def _key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
