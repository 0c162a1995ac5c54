"""One NodeRemediation per call: observe, take one transition of the ladder, carry it out.

The I/O half of `ladder`: drains (unless writes are frozen), applies intents to the Node (cordon
with the nodeprobe.io/cordoned-by annotation; uncordon only what that annotation still says we
cordoned), patches the status and writes Events through the one Event writer, `Kube.event`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.model import EventType, RemediationPhase
from nodeprobe.operator import ladder, records
from nodeprobe.operator.drain import Drainer
from nodeprobe.operator.grammar import iso
from nodeprobe.operator.kube import MERGE, Kube, KubeError
from nodeprobe.operator.names import (
    ANNOTATION_CORDONED_BY,
    API,
    LABEL_ESCALATED,
    REMEDIATION_PLURAL,
)
from nodeprobe.operator.policy import Plan
from nodeprobe.operator.records import TERMINAL, NodeView, Remediation
from nodeprobe.operator.stats import Sink, cordon_delay

log = logging.getLogger(__name__)


def agent_alive(node: NodeView, plan: Plan, now: float) -> bool:
    """The node's agent wrote one of its conditions (heartbeat) within the plan's silence."""
    return records.agent_alive(node, plan.agent_silence_s, now)


@dataclass(frozen=True, slots=True)
class Context:
    """What the live policy says about an episode now (its plan is the snapshot)."""

    frozen: str | None = None
    abort: str | None = None
    webhook: str | None = None


class Episodes:
    def __init__(self, kube: Kube, drainer: Drainer, *, event_namespace: str,
                 webhook: Callable[[str, Mapping[str, Any]], None], sink: Sink) -> None:
        self.kube = kube
        self.drainer = drainer
        self.event_namespace = event_namespace
        self.webhook = webhook
        self.sink = sink

    def advance(self, plan: Plan, r: Remediation, node: NodeView | None, ctx: Context,
                *, now: float) -> Remediation:
        """Take at most one transition; returns the NodeRemediation as it now is."""
        if not r.active:
            return r
        st = ladder.step(plan, rung=r.rung, status=r.status,
                         seen=self._observe(plan, r, node, ctx, now))
        if not st.changed:
            return r
        if not self._carry_out(st.intents, node, r.name, plan):
            return r  # nothing recorded: the same transition is tried again next pass
        if ladder.Intent.CORDON in st.intents and \
                (delay := cordon_delay(r.episode_start, now=now)) is not None:
            self.sink.cordoned(delay)
        if st.patch:
            self._patch_status(r.name, st.patch)
            final = st.patch.get("phase")
            if final in TERMINAL:
                self.sink.finished(RemediationPhase(final))
        for kind, reason, message in st.events:
            self.node_event(node, r.name, kind, reason, message, now)
        return r.with_status(st.patch)

    def _patch_status(self, name: str, patch: Mapping[str, Any]) -> None:
        self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{name}/status",
                          body={"status": dict(patch)}, content_type=MERGE)

    def _observe(self, plan: Plan, r: Remediation, node: NodeView | None, ctx: Context,
                 now: float) -> ladder.Seen:
        if node is None:
            return ladder.Seen(node=None, now=now)
        left: int | None = None
        kept: tuple[str, ...] = ()
        if r.phase == RemediationPhase.DRAINING:  # read only: the ladder decides
            drained = self.drainer.survey(node.name, plan.drain)
            left, kept = drained.left, tuple(drained.kept)
        bad = any((c := node.conditions.get(t.type)) is not None and c.status == t.status
                  for t in plan.triggers)
        return ladder.Seen(node=node, now=now, drain_left=left, kept=kept, frozen=ctx.frozen,
                           abort=ctx.abort, agent_alive=agent_alive(node, plan, now),
                           triggered=bad, flapping=r.flapping,
                           cordon_ours=node.cordon_ours(r.name))

    def _carry_out(self, intents: list[ladder.Intent], node: NodeView | None, nr: str,
                   plan: Plan) -> bool:
        """The node changes before the status that records them (a cordon first, then
        `Cordoned`): False when one failed, so the status stays and the pass is retried."""
        if node is None:
            return True
        try:
            for intent in intents:
                self.apply(intent, node, nr, plan)
        except KubeError as e:
            if e.status == 0 or e.status >= 500:
                raise
            log.warning("%s: %s of node %s refused (%s); trying again next pass", nr,
                        intents, node.name, e)
            return False
        return True

    def apply(self, intent: ladder.Intent, node: NodeView, nr: str, plan: Plan) -> None:
        path = f"/api/v1/nodes/{node.name}"
        if intent is ladder.Intent.CORDON:
            self.kube.request("PATCH", path, content_type=MERGE, body={
                "metadata": {"annotations": {ANNOTATION_CORDONED_BY: nr}},
                "spec": {"unschedulable": True}})
        elif intent is ladder.Intent.UNCORDON:
            ours = node.cordon_ours(nr)
            if not ours:
                log.info("node %s: its cordon is no longer ours alone (%s, managers %s); "
                         "leaving it cordoned", node.name, ANNOTATION_CORDONED_BY,
                         ", ".join(node.cordon_managers))
            self.kube.request("PATCH", path, content_type=MERGE, body={
                "metadata": {"annotations": {ANNOTATION_CORDONED_BY: None}},
                **({"spec": {"unschedulable": None}} if ours else {})})
        elif intent is ladder.Intent.EVICT:
            self.drainer.drain_once(node.name, plan.drain)
        elif intent is ladder.Intent.UNMARK:
            if node.annotations.get(ANNOTATION_CORDONED_BY) == nr:
                self.kube.request("PATCH", path, content_type=MERGE, body={
                    "metadata": {"annotations": {ANNOTATION_CORDONED_BY: None}}})
        elif intent is ladder.Intent.LABEL_ESCALATED:
            self.kube.request("PATCH", path, content_type=MERGE,
                              body={"metadata": {"labels": {LABEL_ESCALATED: "true"}}})
        elif intent is ladder.Intent.WEBHOOK and plan.webhook_url:
            self.webhook(plan.webhook_url, {"node": node.name, "noderemediation": nr,
                                            "reason": "Escalated"})

    def refuse(self, r: Remediation, node: NodeView | None, *, now: float,
               why: str) -> Remediation:
        """End a NodeRemediation the operator did not open, touching nothing but its status:
        its plan, rung and phase were never checked by the gates (budget, exclude, trigger)."""
        message = f"refused: {why}; nothing was done to the node"
        patch = {"phase": RemediationPhase.FAILED.value, "finishedAt": iso(now),
                 "message": message}
        self._patch_status(r.name, patch)
        log.warning("NodeRemediation %s %s", r.name, message)
        self.sink.finished(RemediationPhase.FAILED)
        self.node_event(node, r.name, EventType.WARNING, "RemediationRefused", message, now)
        return r.with_status(patch)

    def release_escalated(self, r: Remediation, node: NodeView | None, *,
                          now: float) -> Remediation:
        """An Escalated episode whose node a person uncordoned (or whose escalation label a
        person removed) is released: that is how a person says "fixed"."""
        if r.phase != RemediationPhase.ESCALATED or r.released is not None:
            return r
        if node is not None and node.unschedulable and node.labels.get(LABEL_ESCALATED):
            return r
        how = ("the node is gone" if node is None else
               "a person uncordoned the node" if not node.unschedulable else
               "a person removed the escalation label")
        message = f"released: {how}; its slot is free again"
        patch = {"releasedAt": iso(now), "message": message}
        self._patch_status(r.name, patch)
        if node is not None and node.labels.get(LABEL_ESCALATED):
            self.kube.request("PATCH", f"/api/v1/nodes/{node.name}", content_type=MERGE,
                              body={"metadata": {"labels": {LABEL_ESCALATED: None}}})
        self.node_event(node, r.name, EventType.NORMAL, "RemediationReleased", message, now)
        return r.with_status(patch)

    def node_event(self, node: NodeView | None, nr: str, kind: EventType, reason: str,
                   message: str, now: float) -> None:
        if node is None:
            return
        self.kube.event(involved={"apiVersion": "v1", "kind": "Node", "name": node.name,
                                  "uid": node.uid or node.name},
                        kind=kind, reason=reason, message=f"{nr}: {message}",
                        namespace=self.event_namespace, now=iso(now))
