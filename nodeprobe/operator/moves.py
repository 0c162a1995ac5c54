"""Each NodeRemediation's move in a pass, decided before anything is written.

A move is one `ladder.Step`: a transition of the ladder, the release of an escalation a person
gave back, or the refusal of a NodeRemediation the operator did not open. Pure: a `Snapshot`
in, `Move`s out; `episodes.Episodes.carry_out` writes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from nodeprobe.model import EventType, RemediationPhase
from nodeprobe.operator import ladder
from nodeprobe.operator.drain import survey
from nodeprobe.operator.grammar import PolicyError, iso
from nodeprobe.operator.names import LABEL_ESCALATED
from nodeprobe.operator.parse import parse_plan
from nodeprobe.operator.policy import Plan
from nodeprobe.operator.policystatus import PolicyState
from nodeprobe.operator.records import NodeView, Remediation, RemediationView, agent_alive
from nodeprobe.operator.snapshot import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Move:
    """What this pass does to one NodeRemediation (an empty step: nothing)."""

    remediation: Remediation
    step: ladder.Step = field(default_factory=ladder.Step)
    plan: Plan | None = None
    """The plan the step was taken by: EVICT and WEBHOOK need its settings."""

    @property
    def after(self) -> Remediation:
        return self.remediation.with_status(self.step.patch)

    def budget_view(self) -> RemediationView:
        """The episode as the gates count it: holding while it held before or holds after, so
        a slot freed by a write that may still be refused is reused only on the next pass."""
        return replace(self.after.view(), holds=self.remediation.holds or self.after.holds)


def move(r: Remediation, snap: Snapshot) -> Move:
    node = snap.nodes.get(r.node)
    state = snap.policies.get(r.policy)
    if not r.active:
        return Move(r, released(r, node, now=snap.now))
    plan = plan_of(r, state)
    if plan is None:
        return Move(r)
    if snap.lease_names.get(r.node) != r.name:
        return Move(r, refused(now=snap.now, why=(
            f"not opened by the nodeprobe operator: the node's Lease "
            f"{snap.lease_namespace}/node-{r.node} does not name it")))
    seen = _seen(plan, r, node, state, snap)
    return Move(r, ladder.step(plan, rung=r.rung, status=r.status, seen=seen), plan)


def plan_of(r: Remediation, state: PolicyState | None) -> Plan | None:
    """The snapshot the episode started with; the live policy's for older episodes."""
    try:
        if r.plan is not None:
            return parse_plan(r.plan)
    except PolicyError as e:
        log.warning("NodeRemediation for %s: bad plan snapshot (%s); using the policy's",
                    r.node, e)
    return state.policy.plan if state is not None and state.policy is not None else None


def _seen(plan: Plan, r: Remediation, node: NodeView | None, state: PolicyState | None,
          snap: Snapshot) -> ladder.Seen:
    if node is None:
        return ladder.Seen(node=None, now=snap.now)
    left: int | None = None
    kept: tuple[str, ...] = ()
    if (pods := snap.drain_pods.get(r.node)) is not None \
            and r.phase == RemediationPhase.DRAINING:
        drained = survey(pods, plan.drain, now=snap.now)
        left, kept = drained.left, tuple(drained.kept)
    bad = any((c := node.conditions.get(t.type)) is not None and c.status == t.status
              for t in plan.triggers)
    frozen, abort = _policy_now(r, state)
    return ladder.Seen(node=node, now=snap.now, drain_left=left, kept=kept, frozen=frozen,
                       abort=abort, agent_alive=agent_alive(node, plan.agent_silence_s, snap.now),
                       triggered=bad, flapping=r.flapping, cordon_ours=node.cordon_ours(r.name))


def _policy_now(r: Remediation, state: PolicyState | None) -> tuple[str | None, str | None]:
    """(frozen, abort): what the live policy says about a running episode. Gone or deleting
    aborts it; paused or dry run freezes its writes."""
    if state is None:
        return None, f"policy {r.policy} no longer exists"
    if state.deleting:
        return None, f"policy {state.name} is being deleted"
    if state.policy is not None and (state.policy.paused or state.policy.dry_run):
        return (f"policy {state.name} is {'paused' if state.policy.paused else 'in dry run'}",
                None)
    return None, None


def refused(*, now: float, why: str) -> ladder.Step:
    """End a NodeRemediation the operator did not open, touching nothing but its status: its
    plan, rung and phase were never checked by the gates (budget, exclude, trigger)."""
    message = f"refused: {why}; nothing was done to the node"
    return ladder.Step(
        patch={"phase": RemediationPhase.FAILED.value, "finishedAt": iso(now),
               "message": message},
        events=[(EventType.WARNING, "RemediationRefused", message)])


def released(r: Remediation, node: NodeView | None, *, now: float) -> ladder.Step:
    """An Escalated episode whose node a person uncordoned (or whose escalation label a person
    removed) is released: that is how a person says "fixed"."""
    if r.phase != RemediationPhase.ESCALATED or r.released is not None:
        return ladder.Step()
    if node is not None and node.unschedulable and node.labels.get(LABEL_ESCALATED):
        return ladder.Step()
    how = ("the node is gone" if node is None else
           "a person uncordoned the node" if not node.unschedulable else
           "a person removed the escalation label")
    message = f"released: {how}; its slot is free again"
    labelled = node is not None and bool(node.labels.get(LABEL_ESCALATED))
    return ladder.Step(patch={"releasedAt": iso(now), "message": message},
                       intents=[ladder.Intent.UNLABEL_ESCALATED] if labelled else [],
                       events=[(EventType.NORMAL, "RemediationReleased", message)])
