"""The gates: which sick nodes may get a NodeRemediation now, and why the others wait.

One budget for the whole cluster: every policy's maxConcurrent, minHealthy and rate count every
node held by anyone (a live episode under any policy, an Escalated node not yet released, or a
node Lease another remediator holds), and one pass decides for all policies in name order, so
two policies never race for one node (no 409 storms) and never exceed the cluster budget.

Purely data-manipulative: no I/O, time is a parameter; the two blockers that need I/O (pods on a
node, Prometheus alerts) come in as data the pass read first, for the policies `wanted` names.
Every "no" is a sentence for the policy's status
and an Event (Cluster API #5451: say WHY nothing happens).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nodeprobe.model import RemediationPhase
from nodeprobe.operator.grammar import iso
from nodeprobe.operator.names import LABEL_EXCLUDE
from nodeprobe.operator.policy import Policy
from nodeprobe.operator.records import (
    TERMINAL,
    NodeCondition,
    NodeRecord,
    NodeView,
    RemediationView,
    agent_alive,
)

__all__ = ["TERMINAL", "NodeCondition", "NodeRecord", "NodeView", "RemediationView",
           "agent_alive"]



class Wait(enum.StrEnum):
    """Why a sick node (its trigger held for its duration) gets no NodeRemediation in a pass:
    the `reason` label of `nodeprobe_operator_waiting_nodes`. A fixed set, one value per place
    the decision is made; the policy's status and Events carry the sentence with the details."""

    PAUSED = "paused"
    """The policy is paused."""
    DRY_RUN = "dryRun"
    """The policy is in dry run: the plan is written to its status, nothing else."""
    WINDOW = "window"
    """Outside the policy's maintenance windows."""
    MIN_HEALTHY = "minHealthy"
    """Fewer matched nodes are healthy than the policy's minHealthy (a storm)."""
    STORM_COOL_DOWN = "stormCoolDown"
    """A storm ended less than the policy's storm cool-down ago."""
    RATE = "rate"
    """The policy's episodes-per-hour limit is reached."""
    MAX_CONCURRENT = "maxConcurrent"
    """The policy's maxConcurrent is reached (nodes it matches that are held)."""
    BUDGET = "budget"
    """The cluster budget (`--max-concurrent`, all policies) has no free slot."""
    ALERT = "alert"
    """A Prometheus alert the policy names is firing, or Prometheus could not be asked."""
    BLOCKER = "blocker"
    """Pods on the node the policy protects (blockers) keep it from starting."""
    CONTROL_PLANE = "controlPlane"
    """Another control-plane node is held: one at a time."""
    LEASE = "lease"
    """The node's Lease is held by another remediator."""
    EXCLUDED = "excluded"
    """The node carries the exclude label."""
    COOL_DOWN = "coolDown"
    """The node's cool-down after its last remediation has not passed."""
    EPISODE_ENDED = "episodeEnded"
    """This episode already ended (any outcome); a new one needs the condition to clear first."""
    RELEASED = "released"
    """A person released this node's escalation while the condition stayed bad: that release
    holds until the condition clears (a new bad stretch may start a new episode)."""
    AGENT_SILENT = "agentSilent"
    """The node's agent has not reported within the policy's agentSilence: no one would carry
    out the action, so nothing is cordoned or evicted."""



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



@dataclass(frozen=True, slots=True)
class Start:
    node: str
    name: str
    episode_start: float
    policy: str
    flapping: int = 0
    """Episodes in the flap window when over the limit (the episode escalates at once), else 0."""


@dataclass(slots=True)
class PolicyDecision:
    """The whole decision for one policy in one pass; the shell carries it out as it is."""

    starts: list[Start] = field(default_factory=list)
    planned: list[Start] = field(default_factory=list)
    """What would start if the policy were not in dry run (its status shows the plan)."""
    blocked: list[str] = field(default_factory=list)
    """Policy-level reasons nothing (more) starts."""
    waiting: dict[str, str] = field(default_factory=dict)
    """Per-node reasons a sick node waits."""
    reasons: dict[str, Wait] = field(default_factory=dict)
    """Every sick node that waits, by `Wait` (also those a policy-level block holds back)."""
    matched: int = 0
    sick: int = 0
    storm: bool = False


@dataclass(frozen=True, slots=True)
class Cluster:
    """Everything a pass decides on, for all policies at once."""

    nodes: Mapping[str, NodeView]
    remediations: Sequence[RemediationView]
    records: Mapping[str, NodeRecord]
    max_held: int
    """The cluster budget: nodes held at once under all policies together."""
    recent_starts: int = 0
    """Episodes opened in the last hour, all policies (the rate)."""


@dataclass(frozen=True, slots=True)
class Blockers:
    """What the read phase found for the blockers that need I/O (`snapshot.Reader`), for the
    policies `wanted` names."""

    pods: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """policy -> node -> why pods on that node block an episode."""
    alerts: Mapping[str, str] = field(default_factory=dict)
    """policy -> why a firing alert blocks it (a failure to ask Prometheus blocks too)."""


def held_by(remediations: Iterable[RemediationView], records: Mapping[str, NodeRecord]
            ) -> set[str]:
    """Nodes held by an episode of ours or by another remediator's Lease."""
    return {r.node for r in remediations if r.holds} | {n for n, rec in records.items()
                                                        if rec.holder}


def held_nodes(cluster: Cluster) -> set[str]:
    return held_by(cluster.remediations, cluster.records)


def wanted(policies: Iterable[Policy], nodes: Mapping[str, NodeView], held: set[str], *,
           now: float) -> list[Policy]:
    """Policies whose I/O-backed blockers the pass must read: those that could start an episode
    (not paused, inside a window, a sick node no one holds). A healthy cluster reads none."""
    return [p for p in policies
            if (p.blockers.pod_selector is not None or p.blockers.prometheus_url is not None)
            and not p.paused and p.window_open(now)
            and any(n.name not in held and not n.excluded and p.selector.matches(n.labels)
                    and held_since(p, n, now=now) is not None for n in nodes.values())]


def decide_all(policies: Sequence[Policy], cluster: Cluster, *, now: float,
               storms: Mapping[str, tuple[float | None, float | None]] | None = None,
               blockers: Blockers | None = None) -> dict[str, PolicyDecision]:
    """One decision per policy, in name order, against one shared budget."""
    held = held_nodes(cluster)
    started = cluster.recent_starts
    out: dict[str, PolicyDecision] = {}
    for policy in sorted(policies, key=lambda p: p.name):
        since, ended = (storms or {}).get(policy.name, (None, None))
        d = _decide(policy, cluster, held, now=now, started=started, storm_since=since,
                    storm_ended_at=ended, blockers=blockers or Blockers())
        if policy.dry_run:  # planned, not started: the plan goes to the policy's status
            d.planned, d.starts = d.starts, []
            d.reasons.update((s.node, Wait.DRY_RUN) for s in d.planned)
        held |= {s.node for s in d.starts}
        started += len(d.starts)
        out[policy.name] = d
    return out


def _decide(policy: Policy, cluster: Cluster, held: set[str], *, now: float, started: int,
            storm_since: float | None, storm_ended_at: float | None,
            blockers: Blockers) -> PolicyDecision:
    matched = [n for n in cluster.nodes.values() if policy.selector.matches(n.labels)]
    out = PolicyDecision(matched=len(matched))
    sick = sorted(((n, s) for n in matched if (s := held_since(policy, n, now=now)) is not None),
                  key=lambda p: p[0].name)
    out.sick = len(sick)
    unhealthy = {n.name for n in matched if triggered(policy, n) or not n.ready
                 or n.unschedulable or n.name in held}
    healthy_pct = 100.0 * (len(matched) - len(unhealthy)) / len(matched) if matched else 100.0
    out.storm = healthy_pct < policy.min_healthy_pct
    if not out.storm and storm_since is not None:
        storm_ended_at = now  # the storm ends in this very pass
    _escalated(cluster, matched, out)
    candidates = [c for n, since in sick
                  if (c := _candidate(policy, cluster, n, since, held, out, now=now))]
    if not candidates:
        return out
    in_policy = len(held & {n.name for n in matched})
    budget = policy.budget(len(matched))
    reason = (_policy_blocked(policy, out, len(candidates), healthy_pct, storm_ended_at, now)
              or _limits(policy, cluster, held, started=started, in_policy=in_policy,
                         budget=budget, waiting=len(candidates)))
    if reason is None and (alert := blockers.alerts.get(policy.name)) is not None:
        reason = Wait.ALERT, alert
    if reason is not None:
        out.blocked.append(reason[1])
        for c in candidates:
            _wait(out, c.node, reason[0], reason[1])
        return out
    _start_what_fits(policy, cluster, candidates, set(held), out, started=started,
                     in_policy=in_policy, budget=budget, blockers=blockers)
    return out


def _limits(policy: Policy, cluster: Cluster, held: set[str], *, started: int, in_policy: int,
            budget: int, waiting: int) -> tuple[Wait, str] | None:
    """The rate, the policy's maxConcurrent and the cluster budget, before any start."""
    if policy.rate_per_hour is not None and started >= policy.rate_per_hour:
        return Wait.RATE, (f"rate limit: {started} episodes opened in the last hour, limit "
                           f"{policy.rate_per_hour}")
    if in_policy >= budget:
        return Wait.MAX_CONCURRENT, (f"maxConcurrent {budget} reached: {in_policy} matched "
                                     f"node(s) held; {waiting} wait")
    if len(held) >= cluster.max_held:
        return Wait.BUDGET, (f"cluster budget {cluster.max_held} reached: {len(held)} node(s) "
                             f"held by nodeprobe or another remediator; {waiting} wait")
    return None


def _start_what_fits(policy: Policy, cluster: Cluster, candidates: list[Start], taken: set[str],
                     out: PolicyDecision, *, started: int, in_policy: int, budget: int,
                     blockers: Blockers) -> None:
    """Start candidates in name order while the limits leave room; say why the rest wait."""
    for c in candidates:
        node = cluster.nodes[c.node]
        full = _full(cluster.max_held - len(taken), budget - in_policy,
                     None if policy.rate_per_hour is None
                     else policy.rate_per_hour - started - len(out.starts))
        if full is not None:
            _wait(out, c.node, full, f"waiting for a free slot (maxConcurrent {budget}, cluster "
                  f"budget {cluster.max_held})")
            continue
        if node.control_plane and any(cluster.nodes[h].control_plane for h in taken
                                      if h in cluster.nodes):
            _wait(out, c.node, Wait.CONTROL_PLANE,
                  "another control-plane node is held: one at a time")
            continue
        why = blockers.pods.get(policy.name, {}).get(c.node)
        if why:
            _wait(out, c.node, Wait.BLOCKER, why)
            continue
        out.starts.append(c)
        taken.add(c.node)
        in_policy += 1


def _escalated(cluster: Cluster, matched: Sequence[NodeView], out: PolicyDecision) -> None:
    """Name every matched node an escalation holds, with why it sits there."""
    names = {n.name for n in matched}
    for r in cluster.remediations:
        if r.node in names and r.holds and r.phase == RemediationPhase.ESCALATED:
            out.waiting[r.node] = (f"escalated ({r.name}): the ladder gave up; it stays cordoned "
                                   "until a person uncordons it or removes the "
                                   "nodeprobe.io/escalated label")


def _full(cluster_room: int, policy_room: int, rate_room: int | None) -> Wait | None:
    """Which limit leaves no room for one more start, the cluster budget first; None: room."""
    if cluster_room <= 0:
        return Wait.BUDGET
    if policy_room <= 0:
        return Wait.MAX_CONCURRENT
    return Wait.RATE if rate_room is not None and rate_room <= 0 else None


def _wait(out: PolicyDecision, node: str, why: Wait, sentence: str) -> None:
    out.waiting[node] = sentence
    out.reasons[node] = why


def _candidate(policy: Policy, cluster: Cluster, node: NodeView, since: float, held: set[str],
               out: PolicyDecision, *, now: float) -> Start | None:
    rec = cluster.records.get(node.name, NodeRecord())
    if node.name in held:
        if rec.holder:
            _wait(out, node.name, Wait.LEASE, f"the node's Lease is held by {rec.holder}")
        return None
    mine = [r for r in cluster.remediations if r.node == node.name]
    if any(r.active for r in mine):
        return None
    if node.excluded:
        _wait(out, node.name, Wait.EXCLUDED, f"excluded: the node has the {LABEL_EXCLUDE} label")
        return None
    released = [r for r in mine if r.released is not None and since <= r.released]
    if released:
        _wait(out, node.name, Wait.RELEASED, f"a person released escalated episode "
              f"{released[0].name}; no new episode until the condition clears")
        return None
    name = remediation_name(node.name, since)
    if rec.last_episode == name or any(r.name == name for r in mine):
        _wait(out, node.name, Wait.EPISODE_ENDED, f"episode {name} already ended; waiting for "
              "the condition to clear before another attempt")
        return None
    ends = [t for t in [rec.finished, *(r.finished for r in mine)] if t is not None]
    if ends and now - max(ends) < policy.cool_down_s:
        _wait(out, node.name, Wait.COOL_DOWN, f"node cool-down until "
              f"{iso(max(ends) + policy.cool_down_s)} after the last remediation")
        return None
    if not agent_alive(node, policy.plan.agent_silence_s, now):
        _wait(out, node.name, Wait.AGENT_SILENT, f"the node's agent has not reported for over "
              f"{policy.plan.agent_silence_s:.0f}s: no one would carry out the repair, so "
              "nothing is cordoned or evicted")
        return None
    opened = {int(t) for t in rec.episodes} | {int(r.created) for r in mine}
    recent = sum(1 for t in opened if now - t < policy.flap_window_s)
    flapping = recent if recent >= policy.flap_attempts else 0
    return Start(node.name, name, since, policy.name, flapping)


def _policy_blocked(policy: Policy, out: PolicyDecision, waiting: int, healthy_pct: float,
                    storm_ended_at: float | None, now: float) -> tuple[Wait, str] | None:
    if policy.paused:
        return Wait.PAUSED, f"policy is paused: {waiting} sick node(s) wait"
    if not policy.window_open(now):
        windows = "; ".join(w.describe() for w in policy.windows)
        return Wait.WINDOW, (f"outside the maintenance window ({windows}): {waiting} sick "
                             "node(s) wait")
    if out.storm:
        return Wait.MIN_HEALTHY, (f"only {healthy_pct:.0f}% of {out.matched} matched nodes are "
                                  f"healthy, below minHealthy {policy.min_healthy_pct:.0f}%: not "
                                  "starting new remediations")
    if storm_ended_at is not None and now - storm_ended_at < policy.storm_cool_down_s:
        return Wait.STORM_COOL_DOWN, (f"storm cool-down until "
                                      f"{iso(storm_ended_at + policy.storm_cool_down_s)}: enough "
                                      "nodes are healthy again (minHealthy), waiting for them to "
                                      "settle")
    return None


def count_recent(remediations: Iterable[RemediationView], *, now: float, window_s: float) -> int:
    return sum(1 for r in remediations if now - r.created < window_s)
