"""Drain a node through the Eviction API, so PodDisruptionBudgets hold; a drain that cannot trap
a repair.

Never deletes a pod directly. A 429 (a PDB allows no disruption now) is retried with back-off on
later passes; the ladder, not this module, decides when the drain has taken too long (kured #82).
DaemonSet pods and mirror (static) pods stay, as `kubectl drain` leaves them. Pods Terminating
longer than the plan's skip stop counting (a hung runtime cannot stop them; kured skips them
too). Pods without a controller, with emptyDir data or annotated nodeprobe.io/protect stay unless
the plan opts in (draino), and are reported as kept. nodeprobe's own operator pods leave last,
and never while another operator replica is already on its way out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.operator.grammar import parse_iso
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.names import ANNOTATION_PROTECT
from nodeprobe.operator.policy import Drain

log = logging.getLogger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
"""Eviction retries double from 1 s to 30 s: quick when a PDB frees up, gentle on the API."""
OPERATOR_LABELS = {"app.kubernetes.io/part-of": "nodeprobe",
                   "app.kubernetes.io/component": "operator"}
"""How the chart labels the operator's pods."""


def moves(pod: Mapping[str, Any]) -> bool:
    """Pods a drain is about: not DaemonSet-owned, not mirror pods, not already finished."""
    meta = pod.get("metadata") or {}
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return False
    if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


evictable = moves


def kept_because(pod: Mapping[str, Any], drain: Drain) -> str | None:
    """Why this pod stays in place under `drain`, or None when it may be evicted."""
    meta = pod.get("metadata") or {}
    if not drain.evict_protected and (meta.get("annotations") or {}).get(
            ANNOTATION_PROTECT, "false") != "false":
        return "protected"
    if not drain.evict_unreplicated and not any(
            o.get("controller") for o in meta.get("ownerReferences") or []):
        return "no controller"
    if not drain.evict_empty_dir and any(
            "emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or []):
        return "emptyDir data"
    return None


def is_operator(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in OPERATOR_LABELS.items())


@dataclass(slots=True)
class DrainPass:
    """What one pass over a node's pods found."""

    left: int = 0
    evicted: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Pods whose eviction a PodDisruptionBudget refused (HTTP 429) this pass."""
    kept: list[str] = field(default_factory=list)
    """`ns/name (why)` of pods left in place on purpose."""
    stuck: list[str] = field(default_factory=list)
    """Pods Terminating longer than the skip: no longer counted."""


def node_pods(kube: Kube, node: str) -> list[dict[str, Any]]:
    """The pods bound to `node` (the API server filters; the check below keeps a reply from a
    server that ignored the field selector from draining the wrong pods)."""
    items = kube.items("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})
    return [p for p in items if (p.get("spec") or {}).get("nodeName") == node]


def survey(pods: Iterable[Mapping[str, Any]], drain: Drain, *, now: float) -> DrainPass:
    """What is left to go on a node, from its pods as the pass read them: the result of the last
    pass's evictions (the ladder decides from it; `Drainer.drain_once` is what EVICT runs)."""
    out = DrainPass()
    for pod in pods:
        if not moves(pod):
            continue
        why = kept_because(pod, drain)
        evicted = evicted_at(pod)
        if why is not None:
            out.kept.append(f"{_key(pod)} ({why})")
        elif evicted is not None and now - evicted > drain.terminating_skip_s:
            out.stuck.append(_key(pod))
        else:
            out.left += 1
    return out


class Drainer:
    """Evicts a node's pods, one pass per call; remembers back-off between passes."""

    def __init__(self, kube: Kube, *, clock: Callable[[], float]) -> None:
        self._kube = kube
        self._clock = clock
        self._next_try: dict[str, tuple[float, float]] = {}

    def pods(self, node: str) -> list[dict[str, Any]]:
        return node_pods(self._kube, node)

    def plan(self, node: str, drain: Drain) -> list[str]:
        """`namespace/name` of every pod a drain would evict (for dry runs)."""
        return [_key(p) for p in self.pods(node) if moves(p) and kept_because(p, drain) is None]

    def drain_once(self, pods: Iterable[Mapping[str, Any]], drain: Drain) -> DrainPass:
        """Ask once for the eviction of each of a node's pods still there (as the pass read
        them); count what is left."""
        out = DrainPass()
        now = self._clock()
        pods = [p for p in pods if moves(p)]
        ordinary: list[Mapping[str, Any]] = []
        operators: list[Mapping[str, Any]] = []
        for pod in pods:
            why = kept_because(pod, drain)
            if why is not None:
                out.kept.append(f"{_key(pod)} ({why})")
            else:
                (operators if is_operator(pod) else ordinary).append(pod)
        for pod in ordinary:
            self._one(pod, drain, out, now)
        if operators and out.left == 0:
            for pod in operators:
                if self._peer_leaving(pod):
                    out.left += 1
                    out.blocked.append(_key(pod))
                    continue
                self._one(pod, drain, out, now)
        else:
            out.left += len(operators)
        return out

    def _one(self, pod: Mapping[str, Any], drain: Drain, out: DrainPass, now: float) -> None:
        key = _key(pod)
        evicted = evicted_at(pod)
        if evicted is not None:
            if now - evicted > drain.terminating_skip_s:
                out.stuck.append(key)  # a hung runtime cannot stop it; the repair will
            else:
                out.left += 1  # evicted already; waiting for its grace period
            return
        out.left += 1
        due, delay = self._next_try.get(key, (0.0, BACKOFF_FIRST_S / 2))
        if now < due:
            out.blocked.append(key)
            return
        ns, name = key.split("/", 1)
        body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction",
                                "metadata": {"name": name, "namespace": ns}}
        if drain.grace_period_s is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": drain.grace_period_s}
        try:
            self._kube.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", body=body)
        except KubeError as e:
            if e.status == 404:
                out.left -= 1
                return
            if e.status != 429:
                raise
            delay = min(delay * 2, BACKOFF_MAX_S)
            self._next_try[key] = (now + delay, delay)
            out.blocked.append(key)
            log.info("eviction of %s refused (429, disruption budget); retry in %.0fs", key, delay)
            return
        self._next_try.pop(key, None)
        out.evicted.append(key)

    def _peer_leaving(self, pod: Mapping[str, Any]) -> bool:
        """Another operator replica is Terminating or not running: evicting this one would leave
        none."""
        meta = pod.get("metadata") or {}
        ns = meta.get("namespace", "default")
        selector = ",".join(f"{k}={v}" for k, v in OPERATOR_LABELS.items())
        peers = [p for p in self._kube.items(f"/api/v1/namespaces/{ns}/pods",
                                             query={"labelSelector": selector})
                 if _key(p) != _key(pod)]
        return any((p.get("metadata") or {}).get("deletionTimestamp")
                   or (p.get("status") or {}).get("phase") != "Running" for p in peers)


def evicted_at(pod: Mapping[str, Any]) -> float | None:
    """When the pod's deletion was asked for: the API server sets deletionTimestamp to that
    moment plus the grace period (deletionGracePeriodSeconds), so `terminatingSkip` counts
    from the eviction, as documented, not from the end of the grace period."""
    meta = pod.get("metadata") or {}
    deleting = parse_iso(meta.get("deletionTimestamp"))
    if deleting is None:
        return None
    grace = meta.get("deletionGracePeriodSeconds")
    return deleting - (grace if isinstance(grace, int) and not isinstance(grace, bool) else 0)


def _key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"
