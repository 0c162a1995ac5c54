"""Carry out the moves a pass decided (`moves`), one NodeRemediation per call.

The I/O half of `ladder`: runs the drain's evictions, applies intents to the Node (cordon
with the nodeprobe.io/cordoned-by annotation; uncordon only what that annotation still says we
cordoned), patches the status and writes Events through the one Event writer, `Kube.event`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nodeprobe.model import EventType, RemediationPhase
from nodeprobe.operator import ladder
from nodeprobe.operator.drain import Drainer
from nodeprobe.operator.grammar import iso
from nodeprobe.operator.kube import MERGE, Kube, KubeError
from nodeprobe.operator.moves import Move
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


class Episodes:
    def __init__(self, kube: Kube, drainer: Drainer, *, event_namespace: str,
                 webhook: Callable[[str, Mapping[str, Any]], None], sink: Sink) -> None:
        self.kube = kube
        self.drainer = drainer
        self.event_namespace = event_namespace
        self.webhook = webhook
        self.sink = sink

    def carry_out(self, m: Move, node: NodeView | None, *, now: float,
                  pods: Sequence[Mapping[str, Any]] = ()) -> Remediation:
        """Write one move as decided (`pods`: the node's pods as the pass read them, for an
        eviction); returns the NodeRemediation as the API server now has it (unchanged when a
        node write was refused: the next pass decides again)."""
        r, st = m.remediation, m.step
        if not st.changed:
            return r
        if not self._carry_out(st.intents, node, r.name, m.plan, pods):
            return r
        if ladder.Intent.CORDON in st.intents and \
                (delay := cordon_delay(r.episode_start, now=now)) is not None:
            self.sink.cordoned(delay)
        if st.patch:
            self._patch_status(r.name, st.patch)
            final = st.patch.get("phase")
            if final in TERMINAL:
                self.sink.finished(RemediationPhase(final))
        for kind, reason, message in st.events:
            if kind is EventType.WARNING:
                log.warning("NodeRemediation %s: %s", r.name, message)
            self.node_event(node, r.name, kind, reason, message, now)
        return m.after

    def _patch_status(self, name: str, patch: Mapping[str, Any]) -> None:
        self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{name}/status",
                          body={"status": dict(patch)}, content_type=MERGE)

    def _carry_out(self, intents: list[ladder.Intent], node: NodeView | None, nr: str,
                   plan: Plan | None, pods: Sequence[Mapping[str, Any]]) -> bool:
        """The node changes before the status that records them (a cordon first, then
        `Cordoned`): False when one failed, so the status stays and the pass is retried."""
        if node is None:
            return True
        try:
            for intent in intents:
                self.apply(intent, node, nr, plan, pods)
        except KubeError as e:
            if e.status == 0 or e.status >= 500:
                raise
            log.warning("%s: %s of node %s refused (%s); trying again next pass", nr,
                        intents, node.name, e)
            return False
        return True

    def apply(self, intent: ladder.Intent, node: NodeView, nr: str, plan: Plan | None,
              pods: Sequence[Mapping[str, Any]] = ()) -> None:
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
        elif intent is ladder.Intent.EVICT and plan is not None:
            self.drainer.drain_once(pods, plan.drain)
        elif intent is ladder.Intent.UNMARK:
            if node.annotations.get(ANNOTATION_CORDONED_BY) == nr:
                self.kube.request("PATCH", path, content_type=MERGE, body={
                    "metadata": {"annotations": {ANNOTATION_CORDONED_BY: None}}})
        elif intent is ladder.Intent.LABEL_ESCALATED:
            self.kube.request("PATCH", path, content_type=MERGE,
                              body={"metadata": {"labels": {LABEL_ESCALATED: "true"}}})
        elif intent is ladder.Intent.UNLABEL_ESCALATED:
            self.kube.request("PATCH", path, content_type=MERGE,
                              body={"metadata": {"labels": {LABEL_ESCALATED: None}}})
        elif intent is ladder.Intent.WEBHOOK and plan is not None and plan.webhook_url:
            self.webhook(plan.webhook_url, {"node": node.name, "noderemediation": nr,
                                            "reason": "Escalated"})

    def node_event(self, node: NodeView | None, nr: str, kind: EventType, reason: str,
                   message: str, now: float) -> None:
        if node is None:
            return
        self.kube.event(involved={"apiVersion": "v1", "kind": "Node", "name": node.name,
                                  "uid": node.uid or node.name},
                        kind=kind, reason=reason, message=f"{nr}: {message}",
                        namespace=self.event_namespace, now=iso(now))
