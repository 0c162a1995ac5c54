"""One reconcile pass per policy: read nodes and NodeRemediations, advance the ladders, start what
the gates allow, and say in the policy's status why anything waits.

This is where I/O meets the pure parts (`policy`, `ladder`); kopf only calls `reconcile()` on a
timer. A healthy cluster costs reads only: status and Events are written when something changes.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.model import EventType, RemediationPhase, Status
from nodeprobe.operator import ladder
from nodeprobe.operator.drain import Drainer
from nodeprobe.operator.gates import NodeCondition, NodeView, RemediationView, decide
from nodeprobe.operator.kube import MERGE, Kube, KubeError
from nodeprobe.operator.policy import (
    GROUP,
    LABEL_ESCALATED,
    LABEL_NODE,
    LABEL_POLICY,
    POLICY_PLURAL,
    REMEDIATION_PLURAL,
    VERSION,
    Action,
    Policy,
    parse_policy,
    validate_policy,
)

log = logging.getLogger(__name__)

API = f"/apis/{GROUP}/{VERSION}"
RATE_WINDOW_S = 3600.0
WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    tick_s: float = 2.0
    """Seconds between reconcile passes of each policy: the ladder moves at most one phase per
    pass, so this bounds how fast a remediation can go, not how much it costs."""
    event_namespace: str = "default"
    """Where Events about cluster-scoped objects (Nodes, policies) are written."""


def node_view(node: Mapping[str, Any]) -> NodeView:
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    conds = {
        str(c.get("type")): NodeCondition(
            str(c.get("status", Status.UNKNOWN.value)),
            ladder.parse_iso(c.get("lastTransitionTime")) or 0.0)
        for c in status.get("conditions") or []
    }
    return NodeView(
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
        conditions=conds,
        boot_id=str((status.get("nodeInfo") or {}).get("bootID", "")),
        uid=str(meta.get("uid", "")),
    )


def remediation_view(nr: Mapping[str, Any]) -> RemediationView:
    meta, spec, status = nr.get("metadata") or {}, nr.get("spec") or {}, nr.get("status") or {}
    created = (ladder.parse_iso(meta.get("creationTimestamp"))
               or ladder.parse_iso(spec.get("openedAt")) or 0.0)
    return RemediationView(
        name=str(meta.get("name", "")),
        node=str(spec.get("nodeName", "")),
        policy=str(spec.get("policy", "")),
        phase=str(status.get("phase", RemediationPhase.PENDING)),
        created=created,
        finished=ladder.parse_iso(status.get("finishedAt")),
        holds_cordon=ladder.holds_cordon(status),
    )


def post_webhook(url: str, payload: Mapping[str, Any]) -> None:
    """POST the escalation as JSON; a failing webhook is logged and never blocks the ladder."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT_S) as resp:
            resp.read()
    except OSError as e:
        log.warning("escalation webhook %s failed: %s", url, e)


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        *,
        settings: OperatorSettings | None = None,
        clock: Callable[[], float] = time.time,
        webhook: Callable[[str, Mapping[str, Any]], None] = post_webhook,
        on_finished: Callable[[str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings or OperatorSettings()
        self.clock = clock
        self.webhook = webhook
        self.on_finished = on_finished
        """Called with the terminal phase (Succeeded, Failed, Escalated) of each remediation."""
        self.drainer = Drainer(kube, clock=clock)

    def reconcile(self, name: str, *, nodes: Iterable[Mapping[str, Any]] | None = None) -> None:
        """One pass for one policy; `nodes` from a watch index, or None to list them."""
        try:
            obj = self.kube.request("GET", f"{API}/{POLICY_PLURAL}/{name}")
        except KubeError as e:
            if e.status == 404:
                return
            raise
        spec, old = obj.get("spec") or {}, obj.get("status") or {}
        problems = validate_policy(spec)
        if problems:
            self._policy_status(obj, old, {
                "valid": False, "problems": problems,
                "message": f"policy rejected: {'; '.join(problems)}"}, blocked=problems)
            return
        policy = parse_policy(name, spec)
        node_objs = list(nodes) if nodes is not None else self.kube.items("/api/v1/nodes")
        views = {v.name: v for v in map(node_view, node_objs)}
        everything = self.kube.items(f"{API}/{REMEDIATION_PLURAL}")
        now = self.clock()
        mine = []
        for nr in everything:
            if (nr.get("spec") or {}).get("policy") != name:
                continue
            node = views.get(str((nr.get("spec") or {}).get("nodeName", "")))
            mine.append(self._advance(policy, nr, node, now))
        rviews = [remediation_view(nr) for nr in mine]
        recent = sum(1 for nr in everything
                     if now - remediation_view(nr).created < RATE_WINDOW_S)
        d = decide(policy, views.values(), rviews, now=now, cluster_recent_starts=recent,
                   storm_since=ladder.parse_iso(old.get("stormSince")),
                   storm_ended_at=ladder.parse_iso(old.get("stormEndedAt")))
        storm: dict[str, Any] = {}
        if d.storm and not old.get("stormSince"):
            storm = {"stormSince": ladder.iso(now), "stormEndedAt": None}
        elif not d.storm and old.get("stormSince"):
            storm = {"stormSince": None, "stormEndedAt": ladder.iso(now)}
        plan: list[str] = []
        for start in d.starts:
            if policy.dry_run:
                plan.append(self._dry_run_plan(policy, start.node))
            else:
                self._open(policy, views[start.node], start.name, start.episode_start, now)
        active = sum(1 for r in rviews if r.active) + (0 if policy.dry_run else len(d.starts))
        message = (d.blocked[0] if d.blocked else
                   f"{d.sick} of {d.matched} matched node(s) sick, {active} in remediation")
        self._policy_status(obj, old, {
            "valid": True, "problems": None, "matchedNodes": d.matched, "sickNodes": d.sick,
            "activeRemediations": active, "waiting": d.waiting or None,
            "dryRunPlan": plan or (old.get("dryRunPlan") if policy.dry_run else None),
            "message": message, **storm}, blocked=d.blocked, plan=plan)

    # ---- one NodeRemediation -----------------------------------------------------------------

    def _advance(self, policy: Policy, nr: dict[str, Any], node: NodeView | None,
                 now: float) -> dict[str, Any]:
        meta, spec = nr.get("metadata") or {}, nr.get("spec") or {}
        status: dict[str, Any] = dict(nr.get("status") or {})
        phase = status.get("phase", RemediationPhase.PENDING)
        if phase in ladder.TERMINAL:
            return nr
        rung = int(spec.get("rung", 0))
        drain_left = None
        ours = bool(status.get("cordonedByUs"))
        if (phase == RemediationPhase.DRAINING and node is not None
                and rung < len(policy.ladder)
                and policy.ladder[rung].action is not Action.ESCALATE
                and (node.unschedulable or not ours)):
            drained = self.drainer.drain_once(node.name, grace_period_s=policy.drain.grace_period_s)
            drain_left = drained.left
        st = ladder.step(policy, rung=rung, status=status, node=node, drain_left=drain_left,
                         now=now)
        if not st.changed:
            return nr
        name = str(meta.get("name"))
        for intent in st.intents:
            if intent is not ladder.Intent.CORDON and node is not None:
                self._apply(intent, policy, node, name)
        if st.rung is not None:
            self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{name}",
                              body={"spec": {"rung": st.rung}}, content_type=MERGE)
            spec = {**spec, "rung": st.rung}
        if st.patch:
            self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{name}/status",
                              body={"status": st.patch}, content_type=MERGE)
            final = st.patch.get("phase")
            if final in ladder.TERMINAL and self.on_finished is not None:
                self.on_finished(str(final))
        if ladder.Intent.CORDON in st.intents and node is not None:
            self._apply(ladder.Intent.CORDON, policy, node, name)
        for kind, reason, message in st.events:
            self._node_event(node, name, kind, reason, message, now)
        status.update(st.patch)
        return {**nr, "spec": spec, "status": {k: v for k, v in status.items() if v is not None}}

    def _apply(self, intent: ladder.Intent, policy: Policy, node: NodeView, nr: str) -> None:
        path = f"/api/v1/nodes/{node.name}"
        if intent is ladder.Intent.CORDON:
            self.kube.request("PATCH", path, body={"spec": {"unschedulable": True}},
                              content_type=MERGE)
        elif intent is ladder.Intent.UNCORDON:
            self.kube.request("PATCH", path, body={"spec": {"unschedulable": None}},
                              content_type=MERGE)
        elif intent is ladder.Intent.LABEL_ESCALATED:
            self.kube.request("PATCH", path, content_type=MERGE,
                              body={"metadata": {"labels": {LABEL_ESCALATED: "true"}}})
        elif intent is ladder.Intent.WEBHOOK and policy.webhook_url:
            self.webhook(policy.webhook_url, {"node": node.name, "noderemediation": nr,
                                              "policy": policy.name, "reason": "Escalated"})

    def _open(self, policy: Policy, node: NodeView, name: str, since: float, now: float) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeRemediation",
            "metadata": {
                "name": name,
                "labels": {LABEL_NODE: node.name, LABEL_POLICY: policy.name},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                     "uid": node.uid, "blockOwnerDeletion": False}],
            },
            "spec": {"nodeName": node.name, "policy": policy.name, "rung": 0,
                     "episodeStart": ladder.iso(since), "openedAt": ladder.iso(now)},
        }
        try:
            self.kube.request("POST", f"{API}/{REMEDIATION_PLURAL}", body=body)
        except KubeError as e:
            if e.status == 409:
                return  # opened already (by us before a restart): never a duplicate
            raise
        message = (f"trigger held since {ladder.iso(since)}; ladder: "
                   + " -> ".join(r.action.value for r in policy.ladder))
        self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{name}/status", content_type=MERGE,
                          body={"status": {"phase": RemediationPhase.PENDING.value,
                                           "message": message}})
        self._node_event(node, name, EventType.NORMAL, "RemediationOpened",
                         f"{name}: {message}", now)

    def _dry_run_plan(self, policy: Policy, node: str) -> str:
        pods = self.drainer.plan(node)
        first = policy.ladder[0]
        what = (f"restart {first.runtime.value}" if first.runtime else first.action.value)
        return (f"dry run: would cordon {node}, evict {len(pods)} pod(s) through the Eviction "
                f"API ({', '.join(pods[:5]) or 'none'}), then ask its agent to {what}")

    # ---- status and Events ---------------------------------------------------------------------

    def _policy_status(self, obj: Mapping[str, Any], old: Mapping[str, Any],
                       new: dict[str, Any], *, blocked: list[str],
                       plan: list[str] | None = None) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        new["blocked"] = blocked or None
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        if not changed:
            return
        self.kube.request("PATCH", f"{API}/{POLICY_PLURAL}/{name}/status",
                          body={"status": changed}, content_type=MERGE)
        meta = obj.get("metadata") or {}
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RemediationPolicy",
                    "name": name, "uid": meta.get("uid", "")}
        now = ladder.iso(self.clock())
        for reason in blocked:
            if reason not in (old.get("blocked") or []):
                kind = "PolicyInvalid" if new.get("valid") is False else "RemediationBlocked"
                self.kube.event(involved=involved, kind=EventType.WARNING, reason=kind,
                                message=reason, namespace=self.settings.event_namespace, now=now)
        for line in plan or []:
            if line not in (old.get("dryRunPlan") or []):
                self.kube.event(involved=involved, kind=EventType.NORMAL, reason="DryRun",
                                message=line, namespace=self.settings.event_namespace, now=now)

    def _node_event(self, node: NodeView | None, nr: str, kind: EventType, reason: str,
                    message: str, now: float) -> None:
        if node is None:
            return
        self.kube.event(involved={"apiVersion": "v1", "kind": "Node", "name": node.name,
                                  "uid": node.uid or node.name},
                        kind=kind, reason=reason, message=f"{nr}: {message}",
                        namespace=self.settings.event_namespace, now=ladder.iso(now))
