"""What a pass saw for one episode, named as the one event the ladder's table is keyed on.

Reads only: `observe()` never writes and never decides what to do; `ladder.TABLE` does.
The order of checks is the precedence documented in docs/remediation.md.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.model import RemediationPhase, RepairState
from nodeprobe.operator.grammar import parse_iso
from nodeprobe.operator.policy import Action, OnTimeout, Plan, Rung
from nodeprobe.operator.records import NodeView

Phase = RemediationPhase
AgentState = RepairState


class Ev(enum.StrEnum):
    """What a pass observed about one episode (exactly one per pass)."""

    NODE_GONE = "node-gone"
    ABORTED = "aborted"
    PERSON_UNCORDONED = "person-uncordoned"
    PERSON_CORDONED = "person-cordoned"
    FROZEN = "frozen"
    HEALED_WHILE_FROZEN = "healed-while-frozen"
    START = "start"
    START_ALREADY_CORDONED = "start-already-cordoned"
    FLAP_LIMIT = "flap-limit"
    CORDON_SEEN = "cordon-seen"
    ESCALATE_RUNG = "escalate-rung"
    DRAINED = "drained"
    DRAIN_PROGRESS = "drain-progress"
    DRAIN_TIMEOUT_ACT = "drain-timeout-act"
    DRAIN_TIMEOUT_NEXT = "drain-timeout-next"
    DRAIN_TIMEOUT_FAIL = "drain-timeout-fail"
    AGENT_SILENT = "agent-silent"
    REBOOTED = "rebooted"
    AGENT_DONE = "agent-done"
    AGENT_FAILED = "agent-failed"
    ACTION_TIMEOUT = "action-timeout"
    HEALTHY = "healthy"
    VERIFY_TIMEOUT = "verify-timeout"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Seen:
    """What the reconciler observed for one episode in this pass."""

    node: NodeView | None
    now: float
    drain_left: int | None = None
    """Pods still to leave (None: not drained this pass)."""
    kept: tuple[str, ...] = ()
    """Pods the drain leaves in place (unreplicated, emptyDir, protected)."""
    frozen: str | None = None
    """Why writes stop now (the policy is paused or in dry run), or None."""
    abort: str | None = None
    """Why the episode must end now (its policy is being deleted), or None."""
    agent_alive: bool = True
    triggered: bool = True
    """A trigger condition of the episode's plan is in its bad state right now."""
    flapping: int = 0
    cordon_ours: bool = False
    """The node's cordon is this episode's own (`NodeView.cordon_ours`)."""


BEFORE_ACTION = (Phase.PENDING, Phase.CORDONED, Phase.DRAINING)
"""Phases in which an abort still gives the node back untouched by any action."""


def observe(plan: Plan, *, rung: int, status: Mapping[str, Any], seen: Seen) -> Ev:
    phase = Phase(status.get("phase", Phase.PENDING))
    node = seen.node
    if node is None:
        return Ev.NODE_GONE
    if seen.abort is not None and phase in BEFORE_ACTION:
        return Ev.ABORTED
    ours = bool(status.get("cordonedByUs"))
    if phase is not Phase.PENDING and ours and not node.unschedulable:
        return Ev.PERSON_UNCORDONED
    if phase is not Phase.PENDING and ours and not seen.cordon_ours:
        return Ev.PERSON_CORDONED
    if seen.frozen is not None:
        return Ev.FROZEN if seen.triggered or phase is Phase.PENDING else Ev.HEALED_WHILE_FROZEN
    current = plan.ladder[min(rung, len(plan.ladder) - 1)]
    if phase is Phase.PENDING:
        if seen.flapping:
            return Ev.FLAP_LIMIT
        # Cordoned by this very episode (its status write failed, or a kill came between):
        # still ours, so START again (the cordon write is idempotent).
        return (Ev.START_ALREADY_CORDONED if node.unschedulable and not seen.cordon_ours
                else Ev.START)
    if phase is Phase.CORDONED:
        return Ev.CORDON_SEEN
    if phase is Phase.DRAINING:
        return _observe_drain(plan, current, status, seen)
    if phase is Phase.ACTION_REQUESTED:
        return _observe_action(rung, current, status, seen)
    return _observe_verify(plan, current, status, seen)


def _observe_drain(plan: Plan, current: Rung, status: Mapping[str, Any], seen: Seen) -> Ev:
    if current.action is Action.ESCALATE:
        return Ev.ESCALATE_RUNG
    if not seen.agent_alive:  # before any eviction: no one would carry out the action
        return Ev.AGENT_SILENT
    timed_out = seen.now - (parse_iso(status.get("drainStartedAt")) or seen.now) \
        > plan.drain.timeout_s
    if seen.drain_left == 0 or (timed_out and plan.drain.acts_on_timeout(current.action,
                                                                          plan.triggers)):
        return Ev.DRAINED if seen.drain_left == 0 else Ev.DRAIN_TIMEOUT_ACT
    if timed_out:
        return Ev.DRAIN_TIMEOUT_FAIL if plan.drain.on_timeout is OnTimeout.FAIL \
            else Ev.DRAIN_TIMEOUT_NEXT
    return Ev.DRAIN_PROGRESS


def _observe_action(rung: int, current: Rung, status: Mapping[str, Any], seen: Seen) -> Ev:
    assert seen.node is not None
    agent = status.get("agent") or {}
    here = isinstance(agent, Mapping) and agent.get("rung") == rung
    if current.action is Action.REBOOT and seen.node.boot_id \
            and seen.node.boot_id != status.get("bootIDBefore"):
        return Ev.REBOOTED
    if here and agent.get("state") == AgentState.FAILED:
        return Ev.AGENT_FAILED
    if here and agent.get("state") == AgentState.DONE and current.action is Action.RESTART_RUNTIME:
        return Ev.AGENT_DONE
    requested = parse_iso(status.get("actionRequestedAt")) or seen.now
    return Ev.ACTION_TIMEOUT if seen.now - requested > current.timeout_s else Ev.WAIT


def _observe_verify(plan: Plan, current: Rung, status: Mapping[str, Any], seen: Seen) -> Ev:
    assert seen.node is not None
    since = parse_iso(status.get("verifyingSince")) or seen.now
    settled = seen.now - since >= plan.settle_s
    if settled and seen.node.ready and not seen.triggered:
        return Ev.HEALTHY
    return Ev.VERIFY_TIMEOUT if seen.now - since > plan.settle_s + current.timeout_s else Ev.WAIT
