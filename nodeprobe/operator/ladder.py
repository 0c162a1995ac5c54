"""The remediation ladder as a pure state machine over a NodeRemediation's status.

No I/O and no clock: `step()` takes what the reconciler observed (the node, pods left to drain,
the time) and returns the status patch, the node changes to make, and the Events to emit. All
progress lives in the status, so an operator killed at any point resumes where it was.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nodeprobe.model import EventType, RemediationPhase, RepairState
from nodeprobe.operator.gates import NodeView, triggered
from nodeprobe.operator.policy import Action, OnTimeout, Policy

MAX_MESSAGES = 20
"""Status keeps the last few transitions; Events hold the rest."""


Phase = RemediationPhase
AgentState = RepairState


class Intent(enum.StrEnum):
    """A change to the node or the outside world the reconciler must carry out."""

    CORDON = "cordon"
    UNCORDON = "uncordon"
    LABEL_ESCALATED = "label-escalated"
    WEBHOOK = "webhook"


TERMINAL = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.ESCALATED})


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(slots=True)
class Step:
    """One transition: merge-patch for status (None deletes a key), then side effects."""

    patch: dict[str, Any] = field(default_factory=dict)
    rung: int | None = None
    """New spec.rung when the ladder moved on."""
    intents: list[Intent] = field(default_factory=list)
    events: list[tuple[EventType, str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.patch or self.intents or self.events or self.rung is not None)


def holds_cordon(status: Mapping[str, Any]) -> bool:
    """We cordoned the node for this remediation and have not given it back."""
    phase = status.get("phase", Phase.PENDING)
    return bool(status.get("cordonedByUs")) and phase not in (Phase.SUCCEEDED, Phase.FAILED)


def step(
    policy: Policy,
    *,
    rung: int,
    status: Mapping[str, Any],
    node: NodeView | None,
    drain_left: int | None,
    now: float,
) -> Step:
    """Advance one NodeRemediation by at most one phase."""
    phase = Phase(status.get("phase", Phase.PENDING))
    s = _Builder(status, now)
    if phase in TERMINAL:
        return s.out
    if node is None:
        return s.finish(Phase.FAILED, "the node no longer exists", EventType.WARNING,
                        "RemediationFailed")
    if rung >= len(policy.ladder):
        return _escalate(policy, s, "no rungs left on the ladder")
    current = policy.ladder[rung]
    ours = bool(status.get("cordonedByUs"))

    if phase is Phase.PENDING:
        if node.unschedulable and "cordonedByUs" not in status:
            s.patch(phase=Phase.CORDONED, cordonedByUs=False, startedAt=iso(now))
            s.say("node was already cordoned by someone else; it stays cordoned afterwards")
        else:
            s.patch(phase=Phase.CORDONED, cordonedByUs=True, startedAt=iso(now))
            s.out.intents.append(Intent.CORDON)
            s.say("cordoned the node")
        s.event(EventType.NORMAL, "RemediationStarted",
                f"rung {rung}: {_describe(current)}; node cordoned")
        return s.out
    if phase is Phase.CORDONED:
        if ours and not node.unschedulable:
            s.out.intents.append(Intent.CORDON)
        s.patch(phase=Phase.DRAINING, drainStartedAt=iso(now))
        s.say("draining through the Eviction API")
        return s.out
    if phase is Phase.VERIFYING and _verified(policy, current.action, status, node, s, now):
        if ours and node.unschedulable:
            s.out.intents.append(Intent.UNCORDON)
        return s.finish(Phase.SUCCEEDED, f"{_describe(current)} worked; node returned to "
                        "service" if ours else f"{_describe(current)} worked",
                        EventType.NORMAL, "RemediationSucceeded")
    if ours and not node.unschedulable:
        return s.finish(Phase.FAILED, "someone uncordoned the node mid-episode; leaving it alone",
                        EventType.NORMAL, "RemediationAbandoned", cordonedByUs=False)

    if phase is Phase.DRAINING:
        if current.action is Action.ESCALATE:
            return _escalate(policy, s, "the ladder reached its escalate rung")
        if drain_left == 0:
            s.patch(phase=Phase.ACTION_REQUESTED, actionRequestedAt=iso(now),
                    action=current.action.value,
                    runtime=current.runtime.value if current.runtime else None,
                    bootIDBefore=node.boot_id, agent=None)
            s.say(f"drained; asked the node's agent to {_describe(current)}")
            return s.out
        started = parse_iso(status.get("drainStartedAt")) or now
        if now - started > policy.drain.timeout_s:
            why = (f"drain timed out after {policy.drain.timeout_s:.0f}s with {drain_left} pod(s) "
                   "left (a PodDisruptionBudget may allow no disruption)")
            if policy.drain.on_timeout is OnTimeout.FAIL:
                if ours:
                    s.out.intents.append(Intent.UNCORDON)
                return s.finish(Phase.FAILED, why, EventType.WARNING, "RemediationFailed")
            return _next_rung(policy, s, rung, why)
        if drain_left is not None and status.get("podsLeft") != drain_left:
            s.patch(podsLeft=drain_left)
        return s.out

    requested = parse_iso(status.get("actionRequestedAt")) or now
    timed_out = now - requested > current.timeout_s
    agent = status.get("agent") or {}
    agent_here = isinstance(agent, Mapping) and agent.get("rung") == rung
    if phase is Phase.ACTION_REQUESTED:
        rebooted = bool(node.boot_id) and node.boot_id != status.get("bootIDBefore")
        if current.action is Action.REBOOT and rebooted:
            s.patch(phase=Phase.VERIFYING, bootIDAfter=node.boot_id, verifyingSince=iso(now))
            s.say(f"bootID changed to {node.boot_id}; verifying after the settle window")
            return s.out
        if agent_here and agent.get("state") == AgentState.FAILED:
            return _next_rung(policy, s, rung, f"the agent failed: {agent.get('message', '')}")
        if current.action is Action.RESTART_RUNTIME and agent_here \
                and agent.get("state") == AgentState.DONE:
            s.patch(phase=Phase.VERIFYING, verifyingSince=iso(now))
            s.say(f"agent reports: {agent.get('message', 'done')}; verifying")
            return s.out
        if timed_out:
            what = "bootID did not change" if current.action is Action.REBOOT \
                else "the agent did not finish"
            return _next_rung(policy, s, rung, f"{what} within {current.timeout_s:.0f}s")
        return s.out
    if timed_out:
        return _next_rung(policy, s, rung, f"conditions did not clear within "
                          f"{current.timeout_s:.0f}s of the {current.action.value}")
    return s.out


def _verified(policy: Policy, action: Action, status: Mapping[str, Any], node: NodeView,
              s: _Builder, now: float) -> bool:
    if action is Action.REBOOT:
        if not node.ready:
            if status.get("readySince"):
                s.patch(readySince=None)
            return False
        ready_since = parse_iso(status.get("readySince"))
        if ready_since is None:
            s.patch(readySince=iso(now))
            return False
        if now - ready_since < policy.settle_s:
            return False
    return not triggered(policy, node)


def _next_rung(policy: Policy, s: _Builder, rung: int, why: str) -> Step:
    nxt = rung + 1
    s.event(EventType.WARNING, "RemediationRungFailed", f"rung {rung}: {why}")
    if nxt >= len(policy.ladder) or policy.ladder[nxt].action is Action.ESCALATE:
        return _escalate(policy, s, why)
    s.out.rung = nxt
    s.patch(phase=Phase.DRAINING, rung=nxt, drainStartedAt=iso(s.now), agent=None,
            actionRequestedAt=None, readySince=None, verifyingSince=None)
    s.say(f"rung {rung} failed ({why}); moving to rung {nxt}: {_describe(policy.ladder[nxt])}")
    return s.out


def _escalate(policy: Policy, s: _Builder, why: str) -> Step:
    s.out.intents.append(Intent.LABEL_ESCALATED)
    if policy.webhook_url:
        s.out.intents.append(Intent.WEBHOOK)
    return s.finish(Phase.ESCALATED, f"escalated to people: {why}; the node stays cordoned",
                    EventType.WARNING, "Escalated")


def _describe(rung: Any) -> str:
    if rung.action is Action.RESTART_RUNTIME and rung.runtime is not None:
        return f"restart {rung.runtime.value}"
    return str(rung.action.value)


class _Builder:
    def __init__(self, status: Mapping[str, Any], now: float) -> None:
        self.status = status
        self.now = now
        self.out = Step()

    def patch(self, **fields: Any) -> None:
        self.out.patch.update(fields)

    def say(self, message: str) -> None:
        old = self.out.patch.get("messages", list(self.status.get("messages") or []))
        self.out.patch["messages"] = [*old, f"{iso(self.now)} {message}"][-MAX_MESSAGES:]
        self.out.patch["message"] = message

    def event(self, kind: EventType, reason: str, message: str) -> None:
        self.out.events.append((kind, reason, message))

    def finish(self, phase: Phase, message: str, kind: EventType, reason: str,
               **extra: Any) -> Step:
        self.patch(phase=phase, finishedAt=iso(self.now), **extra)
        self.say(message)
        self.event(kind, reason, message)
        return self.out
