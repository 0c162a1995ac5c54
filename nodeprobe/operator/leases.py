"""Per-node coordination.k8s.io Leases: the lock a remediator takes before touching a node.

nodeprobe takes `node-<name>` in its lease namespace before the first write of an episode and
releases it (empty holder) when the node is no longer held, so two policies, two operators or
another remediator that honours node leases never act on one node at once. A released Lease
also keeps the node's remediation memory (last episode, when it ended, when recent episodes
opened), so deleting a NodeRemediation never restarts its episode or resets the flap count.

`record()` is pure; `NodeLeases` does the API calls (one list per pass, writes only on change).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nodeprobe.operator.grammar import iso, parse_iso
from nodeprobe.operator.kube import MERGE, Kube, KubeError
from nodeprobe.operator.names import GROUP
from nodeprobe.operator.records import NodeRecord

log = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
LEASE_S = 3600
"""A held node Lease is valid this long after its last renewal; renewed at half of it. An
operator gone for an hour no longer locks the node for others."""
HISTORY = 20
ANN_LAST = f"{GROUP}/last-episode"
ANN_FINISHED = f"{GROUP}/finished-at"
ANN_EPISODES = f"{GROUP}/episodes"


def lease_name(node: str) -> str:
    return f"node-{node}"[:253]


def micro(t: float) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expired(spec: Mapping[str, Any], now: float) -> bool:
    renewed = parse_iso(spec.get("renewTime")) or parse_iso(spec.get("acquireTime")) or 0.0
    return now > renewed + float(spec.get("leaseDurationSeconds") or 0)


def record(lease: Mapping[str, Any], *, ours: str, now: float) -> NodeRecord:
    """What a node's Lease says; `holder` only when someone else holds it, unexpired."""
    spec = lease.get("spec") or {}
    ann = (lease.get("metadata") or {}).get("annotations") or {}
    holder = spec.get("holderIdentity") or None
    if holder is not None and (str(holder).startswith(f"{ours}/") or expired(spec, now)):
        holder = None
    episodes = tuple(float(t) for t in str(ann.get(ANN_EPISODES, "")).split(",") if t.isdigit())
    return NodeRecord(holder=holder, last_episode=ann.get(ANN_LAST) or None,
                      finished=parse_iso(ann.get(ANN_FINISHED)), episodes=episodes)


class NodeLeases:
    def __init__(self, kube: Kube, *, namespace: str, holder: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.holder = holder
        """Identity prefix; a held Lease says `<holder>/<NodeRemediation>`."""
        self._path = LEASES.format(ns=namespace)
        self.leases: dict[str, dict[str, Any]] = {}
        """node -> its Lease, as of the last `load()`."""

    def load(self) -> dict[str, dict[str, Any]]:
        self.leases = {}
        for lease in self.kube.items(self._path):
            name = str((lease.get("metadata") or {}).get("name", ""))
            if name.startswith("node-"):
                self.leases[name.removeprefix("node-")] = lease
        return self.leases

    def records(self, now: float) -> dict[str, NodeRecord]:
        return {n: record(lease, ours=self.holder, now=now) for n, lease in self.leases.items()}

    def ours(self) -> dict[str, str]:
        """node -> the NodeRemediation our Lease on it names, as of the last `load()`."""
        prefix = f"{self.holder}/"
        out = {}
        for node, lease in self.leases.items():
            holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
            if holder.startswith(prefix):
                out[node] = holder.removeprefix(prefix)
        return out

    def holds(self, node: str, nr: str) -> bool:
        spec = (self.leases.get(node) or {}).get("spec") or {}
        return spec.get("holderIdentity") == f"{self.holder}/{nr}"

    def acquire(self, node: str, nr: str, *, now: float) -> bool:
        """Take the node's Lease for episode `nr`; False when someone else holds it (or won a
        race for it)."""
        lease = self.leases.get(node)
        if lease is not None and (lease.get("spec") or {}).get("holderIdentity") \
                and not self.holds(node, nr) and not expired(lease["spec"], now):
            return False
        ann = dict((lease or {}).get("metadata", {}).get("annotations") or {})
        episodes = [t for t in str(ann.get(ANN_EPISODES, "")).split(",") if t.isdigit()]
        ann[ANN_EPISODES] = ",".join([*episodes, str(int(now))][-HISTORY:])
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": lease_name(node), "namespace": self.namespace,
                         "annotations": ann},
            "spec": {"holderIdentity": f"{self.holder}/{nr}", "leaseDurationSeconds": LEASE_S,
                     "acquireTime": micro(now), "renewTime": micro(now)}}
        try:
            if lease is None:
                self.leases[node] = self.kube.request("POST", self._path, body=body)
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"].get("resourceVersion")
                self.leases[node] = self.kube.request(
                    "PUT", f"{self._path}/{lease_name(node)}", body=body)
        except KubeError as e:
            if e.status == 409:
                log.info("node lease %s: someone else took it first", lease_name(node))
                return False
            raise
        return True

    def renew(self, node: str, nr: str, *, now: float) -> None:
        lease = self.leases.get(node)
        if lease is None or not self.holds(node, nr):
            return
        renewed = parse_iso(lease["spec"].get("renewTime")) or 0.0
        if now - renewed < LEASE_S / 2:
            return
        self.leases[node] = self.kube.request(
            "PATCH", f"{self._path}/{lease_name(node)}", content_type=MERGE,
            body={"spec": {"renewTime": micro(now)}})

    def release(self, node: str, nr: str, *, finished: float) -> None:
        """Give the node back (empty holder), remembering the episode and when it ended."""
        lease = self.leases.get(node)
        if lease is None or not self.holds(node, nr):
            return
        body = {"metadata": {"resourceVersion": lease["metadata"].get("resourceVersion"),
                             "annotations": {ANN_LAST: nr, ANN_FINISHED: iso(finished)}},
                "spec": {"holderIdentity": None, "acquireTime": None, "renewTime": None}}
        try:
            self.leases[node] = self.kube.request(
                "PATCH", f"{self._path}/{lease_name(node)}",
                content_type=MERGE, body=body)
        except KubeError as e:
            if e.status not in (404, 409):
                raise
            log.info("node lease %s changed under us; not released: %s", lease_name(node), e)
