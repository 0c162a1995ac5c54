"""One reconcile pass for the whole cluster: read policies, nodes, NodeRemediations and node
Leases; advance every episode; release, retire and start what the one budget allows; say in each
policy's status why anything waits.

This is where I/O meets the pure parts (`policy`, `gates`, `ladder`). A healthy cluster costs
reads only: status, Events, Leases and finalizers are written when something changes.
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
from nodeprobe.operator.blockers import BlockerChecks, firing_alerts
from nodeprobe.operator.drain import Drainer
from nodeprobe.operator.episodes import API, Context, Episodes, holds_slot
from nodeprobe.operator.gates import (
    Blockers,
    Cluster,
    PolicyDecision,
    Start,
    count_recent,
    decide_all,
    held_nodes,
)
from nodeprobe.operator.grammar import PolicyError, iso, parse_iso
from nodeprobe.operator.kube import MERGE, Kube, KubeError
from nodeprobe.operator.leases import NodeLeases, lease_name
from nodeprobe.operator.names import (
    FINALIZER,
    GROUP,
    LABEL_NODE,
    LABEL_POLICY,
    POLICY_PLURAL,
    REMEDIATION_PLURAL,
    VERSION,
)
from nodeprobe.operator.parse import parse_plan, parse_policy, plan_snapshot, validate_policy
from nodeprobe.operator.policy import Plan, Policy
from nodeprobe.operator.records import TERMINAL, NodeCondition, NodeView, RemediationView
from nodeprobe.operator.stats import NoSink, Sink, pass_stats

log = logging.getLogger(__name__)

RATE_WINDOW_S = 3600.0
WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    tick_s: float = 2.0
    """Seconds between reconcile passes: the ladder moves at most one phase per pass, so this
    bounds how fast a remediation can go, not how much it costs."""
    event_namespace: str = "default"
    """Where Events about cluster-scoped objects (Nodes, policies) are written: the API server
    refuses them anywhere else (involvedObject.namespace is empty)."""
    max_held: int = 1
    """The cluster budget: nodes held at once under all policies together (conservative)."""
    lease_namespace: str | None = None
    """Where node Leases live (the operator's namespace); None: `event_namespace`."""
    holder: str = "nodeprobe"
    """Holder identity prefix of node Leases (`nodeprobe/<NodeRemediation>`)."""


def node_view(node: Mapping[str, Any]) -> NodeView:
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    conds = {
        str(c.get("type")): NodeCondition(
            str(c.get("status", Status.UNKNOWN.value)),
            parse_iso(c.get("lastTransitionTime")) or 0.0,
            parse_iso(c.get("lastHeartbeatTime")) or 0.0)
        for c in status.get("conditions") or []
    }
    return NodeView(
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
        conditions=conds,
        boot_id=str((status.get("nodeInfo") or {}).get("bootID", "")),
        uid=str(meta.get("uid", "")),
        annotations={k: v for k, v in (meta.get("annotations") or {}).items()
                     if k.startswith(f"{GROUP}/")},
        cordon_managers=cordon_managers(meta),
    )


def cordon_managers(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Managers whose managedFields entry owns `spec.unschedulable`."""
    return tuple(sorted({
        str(m.get("manager", "")) for m in meta.get("managedFields") or []
        if isinstance(m, Mapping) and "f:unschedulable" in
        ((m.get("fieldsV1") or {}).get("f:spec") or {})}))


def remediation_view(nr: Mapping[str, Any], node: NodeView | None) -> RemediationView:
    meta, spec, status = nr.get("metadata") or {}, nr.get("spec") or {}, nr.get("status") or {}
    created = (parse_iso(spec.get("openedAt")) or parse_iso(meta.get("creationTimestamp"))
               or 0.0)
    return RemediationView(
        name=str(meta.get("name", "")), node=str(spec.get("nodeName", "")),
        policy=str(spec.get("policy", "")),
        phase=str(status.get("phase", RemediationPhase.PENDING)), created=created,
        finished=parse_iso(status.get("finishedAt")), holds=holds_slot(nr),
        released=parse_iso(status.get("releasedAt")))


def post_webhook(url: str, payload: Mapping[str, Any]) -> None:
    """POST the escalation as JSON; a failing webhook is logged and never blocks the ladder."""
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT_S) as resp:
            resp.read()
    except OSError as e:
        log.warning("escalation webhook %s failed: %s", url, e)


@dataclass(slots=True)
class PolicyState:
    obj: dict[str, Any]
    policy: Policy | None
    problems: list[str]

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name"))

    @property
    def deleting(self) -> bool:
        return bool((self.obj.get("metadata") or {}).get("deletionTimestamp"))


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        *,
        settings: OperatorSettings | None = None,
        clock: Callable[[], float] = time.time,
        webhook: Callable[[str, Mapping[str, Any]], None] = post_webhook,
        sink: Sink | None = None,
        alerts: Callable[[str, str], str | None] = firing_alerts,
    ) -> None:
        self.kube = kube
        self.settings = s = settings or OperatorSettings()
        self.clock = clock
        self.alerts = alerts
        self.sink = sink or NoSink()
        self.drainer = Drainer(kube, clock=clock)
        self.episodes = Episodes(kube, self.drainer, event_namespace=s.event_namespace,
                                 webhook=webhook, sink=self.sink)
        self.leases = NodeLeases(kube, namespace=s.lease_namespace or s.event_namespace,
                                 holder=s.holder)

    def reconcile(self, name: str | None = None, *,
                  nodes: Iterable[Mapping[str, Any]] | None = None) -> None:
        """One pass over the whole cluster (`name` is accepted for kopf's per-policy timers and
        ignored: one budget means one pass). `nodes` from a watch, or None to list them."""
        del name
        node_objs = list(nodes) if nodes is not None else self.kube.items("/api/v1/nodes")
        views = {v.name: v for v in map(node_view, node_objs)}
        states = {s.name: s for s in map(self._policy_state,
                                         self.kube.items(f"{API}/{POLICY_PLURAL}"))}
        everything = self.kube.items(f"{API}/{REMEDIATION_PLURAL}")
        self.leases.load()
        now = self.clock()
        nrs = [self._one(nr, views, states, now) for nr in everything]
        nrs = self._retire(nrs, views, states, now)
        rviews = [remediation_view(nr, views.get(_node_of(nr))) for nr in nrs]
        live = [s.policy for s in states.values() if s.policy is not None and not s.deleting]
        cluster = Cluster(nodes=views, remediations=rviews, records=self.leases.records(now),
                          max_held=self.settings.max_held,
                          recent_starts=count_recent(rviews, now=now, window_s=RATE_WINDOW_S))
        checks = BlockerChecks(self.kube, alerts=self.alerts)
        storms = {s.name: (parse_iso((s.obj.get("status") or {}).get("stormSince")),
                           parse_iso((s.obj.get("status") or {}).get("stormEndedAt")))
                  for s in states.values()}
        decisions = decide_all(live, cluster, now=now, storms=storms,
                               blockers=Blockers(node=checks.node, cluster=checks.cluster))
        opened = [node for st in states.values()
                  for node in self._finish_policy(st, decisions.get(st.name), rviews, views, now)]
        self.sink.passed(pass_stats(rviews, decisions, held=held_nodes(cluster) | set(opened),
                                    opened=opened, budget=self.settings.max_held, now=now))

    # ---- episodes ------------------------------------------------------------------------------

    def _policy_state(self, obj: dict[str, Any]) -> PolicyState:
        name = str((obj.get("metadata") or {}).get("name"))
        problems = validate_policy(obj.get("spec") or {})
        policy = None if problems else parse_policy(name, obj.get("spec") or {})
        return PolicyState(obj, policy, problems)

    def _one(self, nr: dict[str, Any], views: Mapping[str, NodeView],
             states: Mapping[str, PolicyState], now: float) -> dict[str, Any]:
        spec = nr.get("spec") or {}
        name = str((nr.get("metadata") or {}).get("name"))
        node = views.get(_node_of(nr))
        state = states.get(str(spec.get("policy", "")))
        plan = self._plan(spec, state)
        phase = (nr.get("status") or {}).get("phase", RemediationPhase.PENDING)
        if phase in TERMINAL:
            if self.episodes.release_escalated(nr, node, now=now):
                nr = {**nr, "status": {**(nr.get("status") or {}), "releasedAt": iso(now)}}
            return self._lease_after(nr, name, now)
        if plan is None:
            return nr
        if not self.leases.holds(_node_of(nr), name):
            return self.episodes.refuse(nr, node, now=now, why=(
                f"not opened by the nodeprobe operator: the node's Lease "
                f"{self.leases.namespace}/{lease_name(_node_of(nr))} does not name it"))
        ctx = Context()
        if state is None:
            ctx = Context(abort=f"policy {spec.get('policy')} no longer exists")
        elif state.deleting:
            ctx = Context(abort=f"policy {state.name} is being deleted")
        elif state.policy is not None and (state.policy.paused or state.policy.dry_run):
            ctx = Context(frozen=f"policy {state.name} is "
                                 f"{'paused' if state.policy.paused else 'in dry run'}")
        return self._lease_after(self.episodes.advance(plan, nr, node, ctx, now=now), name, now)

    def _lease_after(self, nr: dict[str, Any], name: str, now: float) -> dict[str, Any]:
        """Renew the node's Lease while the episode holds the node; give it back at once after."""
        if holds_slot(nr):
            self.leases.renew(_node_of(nr), name, now=now)
        else:
            finished = parse_iso((nr.get("status") or {}).get("finishedAt")) or now
            self.leases.release(_node_of(nr), name, finished=finished)
        return nr

    def _plan(self, spec: Mapping[str, Any], state: PolicyState | None) -> Plan | None:
        """The snapshot the episode started with; the live policy's for older episodes."""
        try:
            if isinstance(spec.get("plan"), Mapping):
                return parse_plan(spec["plan"])
        except PolicyError as e:
            log.warning("NodeRemediation for %s: bad plan snapshot (%s); using the policy's",
                        spec.get("nodeName"), e)
        return state.policy.plan if state is not None and state.policy is not None else None

    def _retire(self, nrs: list[dict[str, Any]], views: Mapping[str, NodeView],
                states: Mapping[str, PolicyState], now: float) -> list[dict[str, Any]]:
        """Delete finished NodeRemediations past the policy's retention (time, count per node).
        The node's Lease remembers the last episode, so this never reopens one."""
        by_node: dict[str, list[dict[str, Any]]] = {}
        for nr in nrs:
            if (nr.get("status") or {}).get("phase") in TERMINAL \
                    and not holds_slot(nr):
                by_node.setdefault(_node_of(nr), []).append(nr)
        gone: set[str] = set()
        for done in by_node.values():
            done.sort(key=lambda nr: parse_iso((nr.get("status") or {}).get("finishedAt")) or 0.0,
                      reverse=True)
            for i, nr in enumerate(done):
                state = states.get(str((nr.get("spec") or {}).get("policy", "")))
                keep, keep_for = ((state.policy.keep, state.policy.keep_for_s)
                                  if state is not None and state.policy is not None
                                  else (5, 3 * 86400.0))
                finished = parse_iso((nr.get("status") or {}).get("finishedAt")) or now
                if i >= keep or now - finished > keep_for:
                    name = str((nr.get("metadata") or {}).get("name"))
                    try:
                        self.kube.request("DELETE", f"{API}/{REMEDIATION_PLURAL}/{name}")
                    except KubeError as e:
                        if e.status != 404:
                            raise
                    gone.add(name)
        return [nr for nr in nrs if (nr.get("metadata") or {}).get("name") not in gone]

    def _open(self, st: PolicyState, start: Start, node: NodeView, now: float) -> bool:
        """Take the node's Lease, then create the NodeRemediation (the first write on the node's
        behalf), snapshotting the plan. False when the node's Lease is taken."""
        assert st.policy is not None
        self._ensure_finalizer(st)  # first: a deletion from now on waits for this episode
        if not self.leases.acquire(start.node, start.name, now=now):
            return False
        policy = st.policy
        spec: dict[str, Any] = {
            "nodeName": node.name, "policy": policy.name,
            "episodeStart": iso(start.episode_start), "openedAt": iso(now),
            "plan": plan_snapshot(st.obj.get("spec") or {})}
        if start.flapping:
            spec["flapping"] = start.flapping
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeRemediation",
            "metadata": {
                "name": start.name,
                "labels": {LABEL_NODE: node.name, LABEL_POLICY: policy.name},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                                     "uid": node.uid, "blockOwnerDeletion": False}],
            },
            "spec": spec,
        }
        try:
            self.kube.request("POST", f"{API}/{REMEDIATION_PLURAL}", body=body)
        except KubeError as e:
            if e.status == 409:
                return True  # opened already (by us before a restart): never a duplicate
            raise
        message = (f"trigger held since {iso(start.episode_start)}; ladder: "
                   + " -> ".join(r.action.value for r in policy.ladder))
        if start.flapping:
            message = f"{start.flapping} episodes within the flap window: escalating"
        self.kube.request("PATCH", f"{API}/{REMEDIATION_PLURAL}/{start.name}/status",
                          content_type=MERGE, body={"status": {
                              "phase": RemediationPhase.PENDING.value, "rung": 0,
                              "message": message,
                              "attemptsInWindow": start.flapping or None}})
        self.episodes.node_event(node, start.name, EventType.NORMAL, "RemediationOpened",
                                 message, now)
        return True

    # ---- policies ------------------------------------------------------------------------------

    def _ensure_finalizer(self, st: PolicyState) -> None:
        meta = st.obj.setdefault("metadata", {})
        finalizers = list(meta.get("finalizers") or [])
        if FINALIZER in finalizers:
            return
        self.kube.request("PATCH", f"{API}/{POLICY_PLURAL}/{st.name}", content_type=MERGE,
                          body={"metadata": {"finalizers": [*finalizers, FINALIZER],
                                             "resourceVersion": meta.get("resourceVersion")}})
        meta["finalizers"] = [*finalizers, FINALIZER]

    def _finish_policy(self, st: PolicyState, d: PolicyDecision | None,
                       rviews: list[RemediationView], views: Mapping[str, NodeView],
                       now: float) -> list[str]:
        """Open what the decision starts, write the policy's status; the nodes opened."""
        old = st.obj.get("status") or {}
        live = [r for r in rviews if r.policy == st.name and r.active]
        if st.deleting:
            finalizers = list((st.obj.get("metadata") or {}).get("finalizers") or [])
            if not live and FINALIZER in finalizers:
                finalizers.remove(FINALIZER)
                self.kube.request("PATCH", f"{API}/{POLICY_PLURAL}/{st.name}", content_type=MERGE,
                                  body={"metadata": {"finalizers": finalizers or None}})
                return []
            if live:
                why = (f"deletion waits for {len(live)} live episode(s) to finish or be aborted: "
                       + ", ".join(r.name for r in live[:5]))
                self._policy_status(st, old, {"message": why, "deleting": True}, blocked=[why])
            return []
        if st.policy is None:
            self._policy_status(st, old, {
                "valid": False, "problems": st.problems,
                "message": f"policy rejected: {'; '.join(st.problems)}"}, blocked=st.problems)
            return []
        d = d or PolicyDecision()
        opened: list[str] = []
        plan = [self._dry_run_plan(st.policy, start.node) for start in d.planned]
        for start in d.starts:
            if self._open(st, start, views[start.node], now):
                opened.append(start.node)
            else:  # the next pass reads the Lease and says who holds it
                log.info("node %s: its Lease was taken first; not opening %s", start.node,
                         start.name)
        storm: dict[str, Any] = {}
        if d.storm and not old.get("stormSince"):
            storm = {"stormSince": iso(now), "stormEndedAt": None}
        elif not d.storm and old.get("stormSince"):
            storm = {"stormSince": None, "stormEndedAt": iso(now)}
        active = len(live) + len(opened)
        message = (d.blocked[0] if d.blocked else
                   f"{d.sick} of {d.matched} matched node(s) sick, {active} in remediation")
        self._policy_status(st, old, {
            "valid": True, "problems": None, "matchedNodes": d.matched, "sickNodes": d.sick,
            "activeRemediations": active, "waiting": d.waiting or None,
            "dryRunPlan": plan or (old.get("dryRunPlan") if st.policy.dry_run else None),
            "message": message, **storm}, blocked=d.blocked, plan=plan)
        return opened

    def _dry_run_plan(self, policy: Policy, node: str) -> str:
        pods = self.drainer.plan(node, policy.plan.drain)
        first = policy.ladder[0]
        what = (f"restart {first.runtime.value}" if first.runtime else first.action.value)
        return (f"dry run: would cordon {node}, evict {len(pods)} pod(s) through the Eviction "
                f"API ({', '.join(pods[:5]) or 'none'}), then ask its agent to {what}")

    def _policy_status(self, st: PolicyState, old: Mapping[str, Any], new: dict[str, Any], *,
                       blocked: list[str], plan: list[str] | None = None) -> None:
        new["blocked"] = blocked or None
        changed = {k: _replacing(old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if not changed:
            return
        self.kube.request("PATCH", f"{API}/{POLICY_PLURAL}/{st.name}/status",
                          body={"status": changed}, content_type=MERGE)
        meta = st.obj.get("metadata") or {}
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RemediationPolicy",
                    "name": st.name, "uid": meta.get("uid", "")}
        stamp = iso(self.clock())
        ns = self.settings.event_namespace
        for reason in blocked:
            if reason not in (old.get("blocked") or []):
                kind = "PolicyInvalid" if new.get("valid") is False else "RemediationBlocked"
                self.kube.event(involved=involved, kind=EventType.WARNING, reason=kind,
                                message=reason, namespace=ns, now=stamp)
        for node, why in (new.get("waiting") or {}).items():
            if (old.get("waiting") or {}).get(node) != why and not why.startswith("waiting for") \
                    and why not in blocked:
                self.kube.event(involved=involved, kind=EventType.NORMAL,
                                reason="RemediationWaiting", message=f"{node}: {why}",
                                namespace=ns, now=stamp)
        for line in plan or []:
            if line not in (old.get("dryRunPlan") or []):
                self.kube.event(involved=involved, kind=EventType.NORMAL, reason="DryRun",
                                message=line, namespace=ns, now=stamp)


def _replacing(old: object, new: Any) -> Any:
    """A merge patch that replaces map `old` by map `new` (a key left out stays otherwise)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return {**dict.fromkeys(old), **new}
    return new


def _node_of(nr: Mapping[str, Any]) -> str:
    return str((nr.get("spec") or {}).get("nodeName", ""))
