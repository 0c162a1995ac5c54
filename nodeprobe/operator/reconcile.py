"""One reconcile pass for the whole cluster: read policies, nodes, NodeRemediations and node
Leases; advance every episode; release, retire and start what the one budget allows; say in each
policy's status why anything waits.

Read (parsed once at the edge: `edge`, `policystatus.policy_state`), decide (`gates`, and
`ladder` per episode), execute (`episodes`, `opening`, `policystatus.PolicyReport`). A healthy
cluster costs reads only: status, Events and Leases are written when something changes. The
policy's validity, finalizer and deletion are kopf's (`lifecycle`, `handlers`), not the pass's.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.operator.blockers import BlockerChecks, firing_alerts
from nodeprobe.operator.drain import Drainer
from nodeprobe.operator.edge import node_view, remediation
from nodeprobe.operator.episodes import Context, Episodes
from nodeprobe.operator.gates import (
    Blockers,
    Cluster,
    PolicyDecision,
    count_recent,
    decide_all,
    held_nodes,
)
from nodeprobe.operator.grammar import PolicyError
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.leases import NodeLeases, lease_name
from nodeprobe.operator.lifecycle import Announce
from nodeprobe.operator.names import API, POLICY_PLURAL, REMEDIATION_PLURAL
from nodeprobe.operator.opening import Opener
from nodeprobe.operator.parse import parse_plan
from nodeprobe.operator.policy import DEFAULT_KEEP, DEFAULT_KEEP_FOR_S, Plan, Policy
from nodeprobe.operator.policystatus import (
    PolicyReport,
    PolicyState,
    Storms,
    kube_announce,
    policy_state,
)
from nodeprobe.operator.records import NodeView, Remediation, RemediationView
from nodeprobe.operator.stats import NoSink, Sink, pass_stats

log = logging.getLogger(__name__)

RATE_WINDOW_S = 3600.0
WEBHOOK_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    tick_s: float = 2.0
    """Seconds between the starts of reconcile passes (kopf's sharp timer): the ladder moves at
    most one phase per pass, so this bounds how fast a remediation can go, not what it costs."""
    event_namespace: str = "default"
    """Where Events about cluster-scoped objects (Nodes, policies) are written: the API server
    refuses them anywhere else (involvedObject.namespace is empty)."""
    max_held: int = 1
    """The cluster budget: nodes held at once under all policies together (conservative)."""
    lease_namespace: str | None = None
    """Where node Leases live (the operator's namespace); None: `event_namespace`."""
    holder: str = "nodeprobe"
    """Holder identity prefix of node Leases (`nodeprobe/<NodeRemediation>`)."""


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
        sink: Sink | None = None,
        alerts: Callable[[str, str], str | None] = firing_alerts,
        announce: Announce | None = None,
    ) -> None:
        """`announce` posts Events about policies: kopf's poster in the operator
        (`handlers.kopf_announce`); by default our own client's, for runs without kopf."""
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
        self.opener = Opener(kube, self.leases, self.episodes)
        self.report = PolicyReport(kube, announce or kube_announce(
            kube, namespace=s.event_namespace, now=clock))
        self.storms = Storms()

    def reconcile(self, *, nodes: Iterable[Mapping[str, Any]] | None = None) -> None:
        """One pass over the whole cluster: read, decide, then write. `nodes` from the node
        view, or None to list them."""
        node_objs = list(nodes) if nodes is not None else self.kube.items("/api/v1/nodes")
        views = {v.name: v for v in map(node_view, node_objs)}
        states = {s.name: s for s in map(policy_state,
                                         self.kube.items(f"{API}/{POLICY_PLURAL}"))}
        everything = self.kube.items(f"{API}/{REMEDIATION_PLURAL}")
        self.leases.load()
        now = self.clock()
        rs = [self._one(remediation(nr), views, states, now) for nr in everything]
        rviews = [r.view() for r in self._retire(rs, states, now)]
        decisions = self._decide(views, states, rviews, now)
        opened = [node for st in states.values()
                  for node in self._finish_policy(st, decisions.get(st.name), rviews, views, now)]
        held = held_nodes(self._cluster(views, rviews, now)) | set(opened)
        self.sink.passed(pass_stats(rviews, decisions, held=held, opened=opened,
                                    budget=self.settings.max_held, now=now))

    def _cluster(self, views: Mapping[str, NodeView], rviews: list[RemediationView],
                 now: float) -> Cluster:
        return Cluster(nodes=views, remediations=rviews, records=self.leases.records(now),
                       max_held=self.settings.max_held,
                       recent_starts=count_recent(rviews, now=now, window_s=RATE_WINDOW_S))

    def _decide(self, views: Mapping[str, NodeView], states: Mapping[str, PolicyState],
                rviews: list[RemediationView], now: float) -> dict[str, PolicyDecision]:
        live = [s.policy for s in states.values() if s.policy is not None and not s.deleting]
        checks = BlockerChecks(self.kube, alerts=self.alerts)
        return decide_all(live, self._cluster(views, rviews, now), now=now,
                          storms={s.name: self.storms.of(s) for s in states.values()},
                          blockers=Blockers(node=checks.node, cluster=checks.cluster))

    # ---- episodes ------------------------------------------------------------------------------

    def _one(self, r: Remediation, views: Mapping[str, NodeView],
             states: Mapping[str, PolicyState], now: float) -> Remediation:
        node = views.get(r.node)
        state = states.get(r.policy)
        if not r.active:
            return self._lease_after(self.episodes.release_escalated(r, node, now=now), now)
        plan = self._plan(r, state)
        if plan is None:
            return r
        if not self.leases.holds(r.node, r.name):
            return self.episodes.refuse(r, node, now=now, why=(
                f"not opened by the nodeprobe operator: the node's Lease "
                f"{self.leases.namespace}/{lease_name(r.node)} does not name it"))
        ctx = _context(r, state)
        return self._lease_after(self.episodes.advance(plan, r, node, ctx, now=now), now)

    def _lease_after(self, r: Remediation, now: float) -> Remediation:
        """Renew the node's Lease while the episode holds the node; give it back at once after."""
        if r.holds:
            self.leases.renew(r.node, r.name, now=now)
        else:
            self.leases.release(r.node, r.name, finished=r.finished or now)
        return r

    def _plan(self, r: Remediation, state: PolicyState | None) -> Plan | None:
        """The snapshot the episode started with; the live policy's for older episodes."""
        try:
            if r.plan is not None:
                return parse_plan(r.plan)
        except PolicyError as e:
            log.warning("NodeRemediation for %s: bad plan snapshot (%s); using the policy's",
                        r.node, e)
        return state.policy.plan if state is not None and state.policy is not None else None

    def _retire(self, rs: list[Remediation], states: Mapping[str, PolicyState],
                now: float) -> list[Remediation]:
        """Delete finished NodeRemediations past the policy's retention (time, count per node).
        The node's Lease remembers the last episode, so this never reopens one."""
        gone = expired(rs, states, now)
        for name in gone:
            try:
                self.kube.request("DELETE", f"{API}/{REMEDIATION_PLURAL}/{name}")
            except KubeError as e:
                if e.status != 404:
                    raise
        return [r for r in rs if r.name not in gone]

    # ---- policies ------------------------------------------------------------------------------

    def _finish_policy(self, st: PolicyState, d: PolicyDecision | None,
                       rviews: list[RemediationView], views: Mapping[str, NodeView],
                       now: float) -> list[str]:
        """Open what the decision starts, write the policy's status; the nodes opened. An
        invalid or deleting policy's status is kopf's (`lifecycle`): nothing is written here."""
        if st.deleting or st.policy is None:
            return []
        d = d or PolicyDecision()
        opened = [start.node for start in d.starts
                  if self.opener.open(st, start, views[start.node], now)]
        plan = [self._dry_run_plan(st.policy, start.node) for start in d.planned]
        active = sum(1 for r in rviews if r.policy == st.name and r.active) + len(opened)
        message = (d.blocked[0] if d.blocked else
                   f"{d.sick} of {d.matched} matched node(s) sick, {active} in remediation")
        self.report.write(st, {
            "matchedNodes": d.matched, "sickNodes": d.sick, "activeRemediations": active,
            "waiting": d.waiting or None, "message": message,
            "dryRunPlan": plan or (st.status.get("dryRunPlan") if st.policy.dry_run else None),
            **self.storms.after(st.name, storm=d.storm, now=now)}, blocked=d.blocked, plan=plan)
        return opened

    def _dry_run_plan(self, policy: Policy, node: str) -> str:
        pods = self.drainer.plan(node, policy.plan.drain)
        first = policy.ladder[0]
        what = (f"restart {first.runtime.value}" if first.runtime else first.action.value)
        return (f"dry run: would cordon {node}, evict {len(pods)} pod(s) through the Eviction "
                f"API ({', '.join(pods[:5]) or 'none'}), then ask its agent to {what}")


def _context(r: Remediation, state: PolicyState | None) -> Context:
    """What the live policy says about a running episode: gone or deleting aborts it, paused
    or dry run freezes its writes."""
    if state is None:
        return Context(abort=f"policy {r.policy} no longer exists")
    if state.deleting:
        return Context(abort=f"policy {state.name} is being deleted")
    if state.policy is not None and (state.policy.paused or state.policy.dry_run):
        return Context(frozen=f"policy {state.name} is "
                              f"{'paused' if state.policy.paused else 'in dry run'}")
    return Context()


def expired(rs: list[Remediation], states: Mapping[str, PolicyState], now: float) -> set[str]:
    """Finished NodeRemediations (not holding a node) beyond their policy's `retention`: older
    than `for`, or past the newest `keep` of their node (defaults when the policy is gone)."""
    by_node: dict[str, list[Remediation]] = {}
    for r in rs:
        if not r.holds:
            by_node.setdefault(r.node, []).append(r)
    gone: set[str] = set()
    for done in by_node.values():
        done.sort(key=lambda r: r.finished or 0.0, reverse=True)
        for i, r in enumerate(done):
            st = states.get(r.policy)
            policy = st.policy if st is not None else None
            keep, keep_for = ((policy.keep, policy.keep_for_s) if policy is not None
                              else (DEFAULT_KEEP, DEFAULT_KEEP_FOR_S))
            if i >= keep or now - (r.finished or now) > keep_for:
                gone.add(r.name)
    return gone
