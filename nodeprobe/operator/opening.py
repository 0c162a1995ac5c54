"""Opening an episode: the node's Lease first, then the NodeRemediation (the first write on the
node's behalf, snapshotting the plan), its first status and the `RemediationOpened` Event.

The body and message are pure (`remediation_body`, `opening_message`); `Opener` does the writes.
"""

from __future__ import annotations

from typing import Any

from nodeprobe.model import EventType, RemediationPhase
from nodeprobe.operator.episodes import Episodes
from nodeprobe.operator.gates import Start
from nodeprobe.operator.grammar import iso
from nodeprobe.operator.kube import MERGE, Kube, KubeError
from nodeprobe.operator.leases import NodeLeases
from nodeprobe.operator.names import (
    API,
    GROUP,
    LABEL_NODE,
    LABEL_POLICY,
    REMEDIATION_PLURAL,
    VERSION,
)
from nodeprobe.operator.policystatus import PolicyState
from nodeprobe.operator.records import NodeView


def remediation_body(st: PolicyState, start: Start, node: NodeView, now: float
                     ) -> dict[str, Any]:
    """The NodeRemediation to create: owned by its Node (a deleted node leaves no lock)."""
    spec: dict[str, Any] = {
        "nodeName": node.name, "policy": st.name,
        "episodeStart": iso(start.episode_start), "openedAt": iso(now),
        "plan": dict(st.snapshot)}
    if start.flapping:
        spec["flapping"] = start.flapping
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeRemediation",
        "metadata": {
            "name": start.name,
            "labels": {LABEL_NODE: node.name, LABEL_POLICY: st.name},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                 "uid": node.uid, "blockOwnerDeletion": False}],
        },
        "spec": spec,
    }


def opening_message(st: PolicyState, start: Start) -> str:
    if start.flapping:
        return f"{start.flapping} episodes within the flap window: escalating"
    assert st.policy is not None
    return (f"trigger held since {iso(start.episode_start)}; ladder: "
            + " -> ".join(r.action.value for r in st.policy.ladder))


class Opener:
    def __init__(self, kube: Kube, leases: NodeLeases, episodes: Episodes) -> None:
        self.kube = kube
        self.leases = leases
        self.episodes = episodes

    def open(self, st: PolicyState, start: Start, node: NodeView, now: float) -> bool:
        """False when the node's Lease is taken (the next pass says who holds it)."""
        if not self.leases.acquire(start.node, start.name, now=now):
            return False
        try:
            self.kube.request("POST", f"{API}/{REMEDIATION_PLURAL}",
                              body=remediation_body(st, start, node, now))
        except KubeError as e:
            if e.status == 409:
                return True  # opened already (by us before a restart): never a duplicate
            raise
        message = opening_message(st, start)
        self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{start.name}/status",
                          content_type=MERGE, body={"status": {
                              "phase": RemediationPhase.PENDING.value, "rung": 0,
                              "message": message,
                              "attemptsInWindow": start.flapping or None}})
        self.episodes.node_event(node, start.name, EventType.NORMAL, "RemediationOpened",
                                 message, now)
        return True
