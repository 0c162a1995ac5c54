"""What one pass decides on, read before anything is decided: the read third of read -> decide
-> execute.

The base read is four LISTs (Nodes, policies, NodeRemediations, node Leases), parsed at the
edge. What else a decision needs is read next, and only what the base read says it needs: the
pods of nodes being drained (one LIST per draining node, the budget bounds them) and the
blockers of policies that could start something (one pod LIST per policy by its labelSelector,
one Prometheus query per policy), so a healthy cluster costs the four LISTs alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nodeprobe.model import RemediationPhase
from nodeprobe.operator.blockers import blocking_pods
from nodeprobe.operator.drain import node_pods
from nodeprobe.operator.edge import node_view, remediation
from nodeprobe.operator.gates import Blockers, held_by, wanted
from nodeprobe.operator.kube import Kube
from nodeprobe.operator.leases import NodeLeases
from nodeprobe.operator.names import API, POLICY_PLURAL, REMEDIATION_PLURAL
from nodeprobe.operator.policy import Policy
from nodeprobe.operator.policystatus import PolicyState, policy_state
from nodeprobe.operator.records import NodeRecord, NodeView, Remediation

DRAINS = (RemediationPhase.CORDONED, RemediationPhase.DRAINING)
"""Phases whose next step may evict: their node's pods are read."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The cluster as one pass read it."""

    now: float
    nodes: Mapping[str, NodeView]
    policies: Mapping[str, PolicyState]
    remediations: tuple[Remediation, ...]
    records: Mapping[str, NodeRecord]
    """node -> what its Lease says (another remediator's hold, the episode history)."""
    lease_names: Mapping[str, str]
    """node -> the NodeRemediation our Lease on it names."""
    lease_namespace: str = ""
    drain_pods: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    """node -> its pods, for nodes whose episode drains or is about to (`DRAINS`): what the
    last evictions left, and what this pass's evictions ask for."""
    blockers: Blockers = field(default_factory=Blockers)

    def live_policies(self) -> list[Policy]:
        """Valid policies not being deleted: the ones that may start episodes."""
        return [s.policy for s in self.policies.values()
                if s.policy is not None and not s.deleting]


class Reader:
    def __init__(self, kube: Kube, leases: NodeLeases, *,
                 alerts: Callable[[str, str], str | None]) -> None:
        self.kube = kube
        self.leases = leases
        self.alerts = alerts

    def read(self, *, now: float, nodes: Iterable[Mapping[str, Any]] | None = None) -> Snapshot:
        """`nodes` from the node cache, or None to list them."""
        node_objs = nodes if nodes is not None else self.kube.items("/api/v1/nodes")
        policies = map(policy_state, self.kube.items(f"{API}/{POLICY_PLURAL}"))
        nrs = self.kube.items(f"{API}/{REMEDIATION_PLURAL}")
        self.leases.load()
        base = Snapshot(
            now=now, nodes={v.name: v for v in map(node_view, node_objs)},
            policies={s.name: s for s in policies},
            remediations=tuple(map(remediation, nrs)), records=self.leases.records(now),
            lease_names=self.leases.ours(), lease_namespace=self.leases.namespace)
        return replace(base, drain_pods=self._drain_pods(base), blockers=self._blockers(base))

    def _drain_pods(self, snap: Snapshot) -> dict[str, list[dict[str, Any]]]:
        draining = {r.node for r in snap.remediations
                    if r.phase in DRAINS and r.node in snap.nodes}
        return {node: node_pods(self.kube, node) for node in sorted(draining)}

    def _blockers(self, snap: Snapshot) -> Blockers:
        held = held_by([r.view() for r in snap.remediations], snap.records)
        pods: dict[str, dict[str, str]] = {}
        alerts: dict[str, str] = {}
        asked: dict[tuple[str, str], str | None] = {}
        for policy in wanted(snap.live_policies(), snap.nodes, held, now=snap.now):
            b = policy.blockers
            if b.pod_selector is not None:
                pods[policy.name] = blocking_pods(self.kube, b.pod_selector)
            if b.prometheus_url is not None:
                key = (b.prometheus_url, b.alert_query)
                if key not in asked:
                    asked[key] = self.alerts(*key)
                if (why := asked[key]) is not None:
                    alerts[policy.name] = why
        return Blockers(pods=pods, alerts=alerts)

