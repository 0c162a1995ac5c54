"""One reconcile pass for the whole cluster: read -> decide -> execute.

Read (`snapshot.Reader`: the four LISTs, then only what they say a decision needs), decide
(`decide.decide`: every episode's move and the gates' openings, pure), execute (this module:
carry out each move, retire, open, write each policy's status). Nothing is decided while
writing; a write the API server refuses leaves its episode as it was for the next pass to
decide again. A healthy cluster costs the reads only. The policy's validity, finalizer and
deletion are kopf's (`lifecycle`, `handlers`), not the pass's.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.operator.blockers import firing_alerts
from nodeprobe.operator.decide import PassDecision, decide
from nodeprobe.operator.drain import Drainer
from nodeprobe.operator.edge import node_view
from nodeprobe.operator.episodes import Episodes
from nodeprobe.operator.gates import PolicyDecision, held_nodes
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.leases import NodeLeases
from nodeprobe.operator.lifecycle import Announce
from nodeprobe.operator.moves import Move
from nodeprobe.operator.names import API, REMEDIATION_PLURAL
from nodeprobe.operator.opening import Opener
from nodeprobe.operator.policy import Policy
from nodeprobe.operator.policystatus import PolicyReport, PolicyState, Storms, kube_announce
from nodeprobe.operator.snapshot import Reader, Snapshot
from nodeprobe.operator.stats import NoSink, Sink, pass_stats

__all__ = ["OperatorSettings", "Reconciler", "node_view", "post_webhook"]

log = logging.getLogger(__name__)

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
        self.sink = sink or NoSink()
        self.drainer = Drainer(kube, clock=clock)
        self.episodes = Episodes(kube, self.drainer, event_namespace=s.event_namespace,
                                 webhook=webhook, sink=self.sink)
        self.leases = NodeLeases(kube, namespace=s.lease_namespace or s.event_namespace,
                                 holder=s.holder)
        self.reader = Reader(kube, self.leases, alerts=alerts)
        self.opener = Opener(kube, self.leases, self.episodes)
        self.report = PolicyReport(kube, announce or kube_announce(
            kube, namespace=s.event_namespace, now=clock))
        self.storms = Storms()

    def reconcile(self, *, nodes: Iterable[Mapping[str, Any]] | None = None) -> None:
        """One pass over the whole cluster. `nodes` from the node cache, or None to list them."""
        snap = self.reader.read(now=self.clock(), nodes=nodes)
        d = decide(snap, max_held=self.settings.max_held,
                   storms={s.name: self.storms.of(s) for s in snap.policies.values()})
        self._execute(snap, d)

    def _execute(self, snap: Snapshot, d: PassDecision) -> None:
        for m in d.moves:
            self._carry_out(m, snap)
        self._retire(d.retire)
        opened = [node for st in snap.policies.values()
                  for node in self._finish_policy(st, d.policies.get(st.name), d, snap)]
        held = held_nodes(d.cluster) | set(opened)
        self.sink.passed(pass_stats(d.cluster.remediations, d.policies, held=held,
                                    opened=opened, budget=self.settings.max_held, now=snap.now))

    def _carry_out(self, m: Move, snap: Snapshot) -> None:
        """The move, then the node's Lease as the landed status says: renewed while the episode
        holds the node, given back at once after."""
        now, node = snap.now, m.remediation.node
        r = self.episodes.carry_out(m, snap.nodes.get(node), now=now,
                                    pods=snap.drain_pods.get(node, ()))
        if r.holds:
            self.leases.renew(r.node, r.name, now=now)
        else:
            self.leases.release(r.node, r.name, finished=r.finished or now)

    def _retire(self, names: Iterable[str]) -> None:
        for name in sorted(names):
            try:
                self.kube.request("DELETE", f"{API}/{REMEDIATION_PLURAL}/{name}")
            except KubeError as e:
                if e.status != 404:
                    raise

    def _finish_policy(self, st: PolicyState, d: PolicyDecision | None, passed: PassDecision,
                       snap: Snapshot) -> list[str]:
        """Open what the decision starts, write the policy's status; the nodes opened. An
        invalid or deleting policy's status is kopf's (`lifecycle`): nothing is written here."""
        if st.deleting or st.policy is None:
            return []
        d = d or PolicyDecision()
        opened = [start.node for start in d.starts
                  if self.opener.open(st, start, snap.nodes[start.node], snap.now)]
        plan = [self._dry_run_plan(st.policy, start.node) for start in d.planned]
        active = sum(1 for r in passed.cluster.remediations
                     if r.policy == st.name and r.active) + len(opened)
        message = (d.blocked[0] if d.blocked else
                   f"{d.sick} of {d.matched} matched node(s) sick, {active} in remediation")
        self.report.write(st, {
            "matchedNodes": d.matched, "sickNodes": d.sick, "activeRemediations": active,
            "waiting": d.waiting or None, "message": message,
            "dryRunPlan": plan or (st.status.get("dryRunPlan") if st.policy.dry_run else None),
            **self.storms.after(st.name, storm=d.storm, now=snap.now)},
            blocked=d.blocked, plan=plan)
        return opened

    def _dry_run_plan(self, policy: Policy, node: str) -> str:
        """The dry run's report: what a drain would evict, read while writing the status (it
        decides nothing, and only nodes the gates planned are read)."""
        pods = self.drainer.plan(node, policy.plan.drain)
        first = policy.ladder[0]
        what = (f"restart {first.runtime.value}" if first.runtime else first.action.value)
        return (f"dry run: would cordon {node}, evict {len(pods)} pod(s) through the Eviction "
                f"API ({', '.join(pods[:5]) or 'none'}), then ask its agent to {what}")
