"""The gates: which sick nodes may get a NodeRemediation now, and why the others wait.

Purely data-manipulative: no I/O, time is a parameter. Every "no" is a sentence for the policy's
status and an Event (Cluster API #5451: say WHY nothing happens).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from nodeprobe.model import RemediationPhase, Status
from nodeprobe.operator.policy import Policy

# ---- nodes as the gates see them ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCondition:
    status: str
    since: float
    """lastTransitionTime, Unix seconds."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """The parts of a Node the operator decides on."""

    name: str
    labels: Mapping[str, str]
    unschedulable: bool
    conditions: Mapping[str, NodeCondition]
    boot_id: str = ""
    uid: str = ""

    @property
    def ready(self) -> bool:
        c = self.conditions.get("Ready")
        return c is not None and c.status == Status.TRUE


def held_since(policy: Policy, node: NodeView, *, now: float) -> float | None:
    """When the earliest trigger that has held for its duration began, or None."""
    starts = [
        c.since for t in policy.triggers
        if (c := node.conditions.get(t.type)) is not None
        and c.status == t.status and now - c.since >= t.for_s
    ]
    return min(starts) if starts else None


def triggered(policy: Policy, node: NodeView) -> bool:
    """Any trigger condition in its bad state at all, regardless of for how long."""
    return any((c := node.conditions.get(t.type)) is not None and c.status == t.status
               for t in policy.triggers)


def remediation_name(node: str, episode_start: float) -> str:
    """One name per node per episode, so a restarted operator can never open a duplicate."""
    return f"{node}-{int(episode_start)}"[:253]


# ---- gates ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemediationView:
    """The parts of a NodeRemediation the gates count."""

    name: str
    node: str
    policy: str
    phase: str
    created: float
    finished: float | None
    holds_cordon: bool
    """We cordoned the node for it and have not given the node back."""

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({RemediationPhase.SUCCEEDED, RemediationPhase.FAILED,
                             RemediationPhase.ESCALATED})


@dataclass(frozen=True, slots=True)
class Start:
    node: str
    name: str
    episode_start: float


@dataclass(slots=True)
class Decision:
    """What one reconcile pass may start, and why the rest waits."""

    starts: list[Start] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Cluster-level reasons nothing (more) starts."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Per-node reasons a sick node waits."""
    matched: int = 0
    sick: int = 0
    storm: bool = False
    """Fewer matched nodes are healthy than minHealthy asks: a storm, not a sick node."""


def decide(
    policy: Policy,
    nodes: Iterable[NodeView],
    remediations: Sequence[RemediationView],
    *,
    now: float,
    cluster_recent_starts: int = 0,
    storm_since: float | None = None,
    storm_ended_at: float | None = None,
) -> Decision:
    """Which sick nodes may get a NodeRemediation now, subject to every gate.

    `remediations` are this policy's; `cluster_recent_starts` counts all policies' in the last
    hour for the cluster-wide rate; `storm_since`/`storm_ended_at` record the last minHealthy
    storm (NHC PR #378: wait a storm cool-down after it before starting again).
    """
    matched = [n for n in nodes if policy.selector.matches(n.labels)]
    by_node: dict[str, list[RemediationView]] = {}
    for r in remediations:
        by_node.setdefault(r.node, []).append(r)
    sick: list[tuple[NodeView, float]] = []
    out = Decision(matched=len(matched))
    for n in sorted(matched, key=lambda n: n.name):
        since = held_since(policy, n, now=now)
        if since is not None:
            sick.append((n, since))
    out.sick = len(sick)
    in_use = sum(1 for r in remediations if r.active or r.holds_cordon)
    budget = policy.budget(len(matched))
    unhealthy = {n.name for n, _ in sick} | {r.node for r in remediations if r.active}
    unhealthy |= {n.name for n in matched if triggered(policy, n)}
    healthy_pct = 100.0 * (len(matched) - len(unhealthy)) / len(matched) if matched else 100.0

    out.storm = healthy_pct < policy.min_healthy_pct
    if not out.storm and storm_since is not None:
        storm_ended_at = now  # the storm ends in this very pass
    candidates: list[Start] = []
    for n, since in sick:
        mine = by_node.get(n.name, [])
        name = remediation_name(n.name, since)
        if any(r.active for r in mine):
            continue
        if any(r.name == name for r in mine):
            out.waiting[n.name] = (f"episode {name} already ended; waiting for the condition to "
                                   "clear before another attempt")
            continue
        ends = [r.finished for r in mine if r.finished is not None]
        if ends and now - max(ends) < policy.cool_down_s:
            until = _iso(max(ends) + policy.cool_down_s)
            out.waiting[n.name] = f"node cool-down until {until} after the last remediation"
            continue
        candidates.append(Start(n.name, name, since))
    if not candidates:
        return out
    if policy.paused:
        out.blocked.append(f"policy is paused: {len(candidates)} sick node(s) wait")
        return out
    if out.storm:
        out.blocked.append(
            f"only {healthy_pct:.0f}% of {len(matched)} matched nodes are healthy, below "
            f"minHealthy {policy.min_healthy_pct:.0f}%: not starting new remediations")
        return out
    if storm_ended_at is not None and now - storm_ended_at < policy.storm_cool_down_s:
        until = _iso(storm_ended_at + policy.storm_cool_down_s)
        out.blocked.append(f"storm cool-down until {until}: enough nodes are healthy again "
                           "(minHealthy), waiting for them to settle")
        return out
    room = budget - in_use
    if policy.rate_per_hour is not None:
        rate_room = policy.rate_per_hour - cluster_recent_starts
        if rate_room <= 0:
            out.blocked.append(f"rate limit: {cluster_recent_starts} remediations in the last "
                               f"hour, limit {policy.rate_per_hour}")
            return out
        room = min(room, rate_room)
    if room <= 0:
        out.blocked.append(f"maxConcurrent {budget} reached: {in_use} node(s) cordoned or in "
                           f"remediation by nodeprobe; {len(candidates)} wait")
        return out
    out.starts = candidates[:room]
    for c in candidates[room:]:
        out.waiting[c.node] = f"waiting for a free slot (maxConcurrent {budget})"
    return out


def _iso(t: float) -> str:
    """Absolute times keep status messages stable between passes (no write per tick)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
