"""The remediation ladder: a table of (phase, event) -> (next phase, transition).

No I/O and no clock. `observe.observe()` names the one event a pass saw for a NodeRemediation
(it only reads); `TABLE` says where that event leads; each transition is one small function
that returns the status patch, the node changes to make (`Intent`) and the Events to emit. All
progress lives in the status, so an operator killed at any point resumes where it was.
docs/remediation.md has the same table, row by row.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.model import EventType, RemediationPhase
from nodeprobe.operator.grammar import iso, parse_iso
from nodeprobe.operator.observe import BEFORE_ACTION, Ev, Seen, observe
from nodeprobe.operator.policy import Action, Plan, Rung
from nodeprobe.operator.records import TERMINAL

MAX_MESSAGES = 20
"""Status keeps the last few transitions; Events hold the rest."""

Phase = RemediationPhase
__all__ = ["TERMINAL", "Ev", "Seen", "iso", "observe", "parse_iso"]


class Intent(enum.StrEnum):
    """A change to the node or the outside world the reconciler must carry out."""

    CORDON = "cordon"
    UNCORDON = "uncordon"
    EVICT = "evict"
    """Ask the Eviction API once for each pod still on the node (back-off between passes); the
    next pass reads what is left."""
    UNMARK = "unmark"
    """Remove our cordoned-by annotation, leaving the cordon as it is (not ours any more)."""
    LABEL_ESCALATED = "label-escalated"
    UNLABEL_ESCALATED = "unlabel-escalated"
    """A person released the escalation: the label goes with it."""
    WEBHOOK = "webhook"


@dataclass(slots=True)
class Step:
    """One transition: merge-patch for status (None deletes a key), then side effects."""

    patch: dict[str, Any] = field(default_factory=dict)
    intents: list[Intent] = field(default_factory=list)
    events: list[tuple[EventType, str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.patch or self.intents or self.events)


@dataclass(slots=True)
class Ctx:
    """One transition being built: the episode as it is, and the Step it becomes."""

    plan: Plan
    rung: int
    status: Mapping[str, Any]
    seen: Seen
    out: Step = field(default_factory=Step)

    @property
    def now(self) -> float:
        return self.seen.now

    @property
    def current(self) -> Rung:
        return self.plan.ladder[min(self.rung, len(self.plan.ladder) - 1)]

    @property
    def ours(self) -> bool:
        return bool(self.status.get("cordonedByUs"))

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
        self.patch(phase=phase, finishedAt=iso(self.now), frozen=None, **extra)
        self.say(message)
        self.event(kind, reason, message)
        return self.out

    def give_back(self) -> None:
        """Uncordon what we cordoned, if it is still cordoned."""
        if self.ours and self.seen.node is not None and self.seen.node.unschedulable:
            self.out.intents.append(Intent.UNCORDON)


# ---- transitions: one small function each -----------------------------------------------

def _nothing(c: Ctx) -> Step:
    return c.out


def _node_gone(c: Ctx) -> Step:
    return c.finish(Phase.FAILED, "the node no longer exists", EventType.WARNING,
                    "RemediationFailed")


def _aborted(c: Ctx) -> Step:
    c.give_back()
    return c.finish(Phase.FAILED, f"aborted: {c.seen.abort}; gave back our cordon" if c.ours
                    else f"aborted: {c.seen.abort}", EventType.WARNING, "RemediationAborted")


def _person_uncordoned(c: Ctx) -> Step:
    c.out.intents.append(Intent.UNMARK)
    return c.finish(Phase.FAILED, "someone uncordoned the node mid-episode; leaving it alone",
                    EventType.NORMAL, "RemediationAbandoned", cordonedByUs=False)


def _person_cordoned(c: Ctx) -> Step:
    c.out.intents.append(Intent.UNMARK)
    c.patch(cordonedByUs=False)
    c.say("a person cordoned the node too; it stays cordoned after the episode")
    return c.out


def _frozen(c: Ctx) -> Step:
    if c.status.get("frozen") != c.seen.frozen:
        c.patch(frozen=c.seen.frozen)
        c.say(f"{c.seen.frozen}: no further writes to the node or its pods")
    return c.out


def _healed_while_frozen(c: Ctx) -> Step:
    c.give_back()
    return c.finish(Phase.SUCCEEDED, f"conditions cleared while {c.seen.frozen}; gave back our "
                    "cordon" if c.ours else f"conditions cleared while {c.seen.frozen}",
                    EventType.NORMAL, "RemediationSucceeded")


def _start(c: Ctx) -> Step:
    c.patch(phase=Phase.CORDONED, cordonedByUs=True, startedAt=iso(c.now))
    c.out.intents.append(Intent.CORDON)
    c.say("cordoned the node")
    c.event(EventType.NORMAL, "RemediationStarted", f"rung {c.rung}: {describe(c.current)}; "
            "node cordoned")
    return c.out


def _start_already_cordoned(c: Ctx) -> Step:
    c.patch(phase=Phase.CORDONED, cordonedByUs=False, startedAt=iso(c.now))
    c.say("node was already cordoned by someone else; it stays cordoned afterwards")
    c.event(EventType.NORMAL, "RemediationStarted", f"rung {c.rung}: {describe(c.current)}; "
            "node was already cordoned")
    return c.out


def _flap_limit(c: Ctx) -> Step:
    we_cordon = c.seen.node is not None and not c.seen.node.unschedulable
    if we_cordon:
        c.out.intents.append(Intent.CORDON)
    c.patch(cordonedByUs=we_cordon, startedAt=iso(c.now), attemptsInWindow=c.seen.flapping)
    return _escalate(c, f"flap limit: {c.seen.flapping} episodes on this node within the flap "
                     "window; stopping here")


def _cordon_seen(c: Ctx) -> Step:
    c.patch(phase=Phase.DRAINING, drainStartedAt=iso(c.now))
    if c.current.action is not Action.ESCALATE and c.seen.agent_alive:
        c.out.intents.append(Intent.EVICT)  # else the next pass says why not, evicting nothing
    c.say("draining through the Eviction API")
    return c.out


def _drain_progress(c: Ctx) -> Step:
    c.out.intents.append(Intent.EVICT)
    left, kept = c.seen.drain_left, list(c.seen.kept) or None
    if left is not None and c.status.get("podsLeft") != left:
        c.patch(podsLeft=left)
    if c.status.get("podsKept") != kept:
        c.patch(podsKept=kept)
    return c.out


def _request_action(c: Ctx, why: str) -> Step:
    node = c.seen.node
    assert node is not None
    c.patch(phase=Phase.ACTION_REQUESTED, actionRequestedAt=iso(c.now),
            action=c.current.action.value,
            runtime=c.current.runtime.value if c.current.runtime else None,
            bootIDBefore=node.boot_id, agent=None, podsKept=list(c.seen.kept) or None)
    c.say(f"{why}; asked the node's agent to {describe(c.current)}")
    return c.out


def _drained(c: Ctx) -> Step:
    return _request_action(c, "drained")


def _drain_timeout_act(c: Ctx) -> Step:
    return _request_action(c, f"drain timed out after {c.plan.drain.timeout_s:.0f}s with "
                           f"{c.seen.drain_left} pod(s) left; the runtime is hung or down and "
                           "the repair is what frees them, so going on")


def _drain_timeout_why(c: Ctx) -> str:
    return (f"drain timed out after {c.plan.drain.timeout_s:.0f}s with {c.seen.drain_left} "
            "pod(s) left (a PodDisruptionBudget may allow no disruption)")


def _drain_timeout_next(c: Ctx) -> Step:
    return next_rung(c, _drain_timeout_why(c))


def _drain_timeout_fail(c: Ctx) -> Step:
    c.give_back()
    return c.finish(Phase.FAILED, _drain_timeout_why(c), EventType.WARNING, "RemediationFailed")


def _agent_silent(c: Ctx) -> Step:
    return next_rung(c, f"the node's agent has not reported for over "
                     f"{c.plan.agent_silence_s:.0f}s, so no one would {describe(c.current)}")


def _rebooted(c: Ctx) -> Step:
    node = c.seen.node
    assert node is not None
    c.patch(phase=Phase.VERIFYING, bootIDAfter=node.boot_id, verifyingSince=iso(c.now))
    c.say(f"bootID changed to {node.boot_id}; verifying after the settle window")
    return c.out


def _agent_done(c: Ctx) -> Step:
    agent = c.status.get("agent") or {}
    c.patch(phase=Phase.VERIFYING, verifyingSince=iso(c.now))
    c.say(f"agent reports: {agent.get('message', 'done')}; verifying after the settle window")
    return c.out


def _agent_failed(c: Ctx) -> Step:
    agent = c.status.get("agent") or {}
    return next_rung(c, f"the agent failed: {agent.get('message', '')}")


def _action_timeout(c: Ctx) -> Step:
    what = ("bootID did not change" if c.current.action is Action.REBOOT
            else "the agent did not finish")
    return next_rung(c, f"{what} within {c.current.timeout_s:.0f}s")


def _healthy(c: Ctx) -> Step:
    c.give_back()
    return c.finish(Phase.SUCCEEDED, f"{describe(c.current)} worked; node returned to service"
                    if c.ours else f"{describe(c.current)} worked", EventType.NORMAL,
                    "RemediationSucceeded")


def _verify_timeout(c: Ctx) -> Step:
    return next_rung(c, f"conditions did not clear within {c.current.timeout_s:.0f}s after the "
                     f"{c.plan.settle_s:.0f}s settle window of the {c.current.action.value}")


def _escalate_rung(c: Ctx) -> Step:
    return _escalate(c, "the ladder reached its escalate rung")


def next_rung(c: Ctx, why: str) -> Step:
    nxt = c.rung + 1
    c.event(EventType.WARNING, "RemediationRungFailed", f"rung {c.rung}: {why}")
    if nxt >= len(c.plan.ladder) or c.plan.ladder[nxt].action is Action.ESCALATE:
        return _escalate(c, why)
    c.patch(phase=Phase.DRAINING, rung=nxt, drainStartedAt=iso(c.now), agent=None,
            actionRequestedAt=None, verifyingSince=None)
    c.say(f"rung {c.rung} failed ({why}); moving to rung {nxt}: {describe(c.plan.ladder[nxt])}")
    return c.out


def _escalate(c: Ctx, why: str) -> Step:
    c.out.intents.append(Intent.LABEL_ESCALATED)
    if c.plan.webhook_url:
        c.out.intents.append(Intent.WEBHOOK)
    return c.finish(Phase.ESCALATED, f"escalated to people: {why}; the node stays cordoned "
                    "until a person uncordons it or removes the nodeprobe.io/escalated label",
                    EventType.WARNING, "Escalated")


Transition = Callable[[Ctx], Step]
_ANY_LIVE = (Phase.PENDING, Phase.CORDONED, Phase.DRAINING, Phase.ACTION_REQUESTED,
             Phase.VERIFYING)
_AFTER_PENDING = _ANY_LIVE[1:]

TABLE: dict[tuple[Phase, Ev], tuple[str, Transition]] = {
    **{(p, Ev.NODE_GONE): ("Failed", _node_gone) for p in _ANY_LIVE},
    **{(p, Ev.ABORTED): ("Failed", _aborted) for p in BEFORE_ACTION},
    **{(p, Ev.PERSON_UNCORDONED): ("Failed", _person_uncordoned) for p in _AFTER_PENDING},
    **{(p, Ev.PERSON_CORDONED): ("(same)", _person_cordoned) for p in _AFTER_PENDING},
    **{(p, Ev.FROZEN): ("(same)", _frozen) for p in _ANY_LIVE},
    **{(p, Ev.HEALED_WHILE_FROZEN): ("Succeeded", _healed_while_frozen) for p in _AFTER_PENDING},
    (Phase.PENDING, Ev.START): ("Cordoned", _start),
    (Phase.PENDING, Ev.START_ALREADY_CORDONED): ("Cordoned", _start_already_cordoned),
    (Phase.PENDING, Ev.FLAP_LIMIT): ("Escalated", _flap_limit),
    (Phase.CORDONED, Ev.CORDON_SEEN): ("Draining", _cordon_seen),
    (Phase.DRAINING, Ev.ESCALATE_RUNG): ("Escalated", _escalate_rung),
    (Phase.DRAINING, Ev.DRAIN_PROGRESS): ("Draining", _drain_progress),
    (Phase.DRAINING, Ev.DRAINED): ("ActionRequested", _drained),
    (Phase.DRAINING, Ev.DRAIN_TIMEOUT_ACT): ("ActionRequested", _drain_timeout_act),
    (Phase.DRAINING, Ev.DRAIN_TIMEOUT_NEXT): ("Draining (next rung) or Escalated",
                                              _drain_timeout_next),
    (Phase.DRAINING, Ev.DRAIN_TIMEOUT_FAIL): ("Failed", _drain_timeout_fail),
    (Phase.DRAINING, Ev.AGENT_SILENT): ("Draining (next rung) or Escalated", _agent_silent),
    (Phase.ACTION_REQUESTED, Ev.REBOOTED): ("Verifying", _rebooted),
    (Phase.ACTION_REQUESTED, Ev.AGENT_DONE): ("Verifying", _agent_done),
    (Phase.ACTION_REQUESTED, Ev.AGENT_FAILED): ("Draining (next rung) or Escalated",
                                                _agent_failed),
    (Phase.ACTION_REQUESTED, Ev.ACTION_TIMEOUT): ("Draining (next rung) or Escalated",
                                                  _action_timeout),
    (Phase.ACTION_REQUESTED, Ev.WAIT): ("ActionRequested", _nothing),
    (Phase.VERIFYING, Ev.HEALTHY): ("Succeeded", _healthy),
    (Phase.VERIFYING, Ev.VERIFY_TIMEOUT): ("Draining (next rung) or Escalated", _verify_timeout),
    (Phase.VERIFYING, Ev.WAIT): ("Verifying", _nothing),
}
"""Every legal (phase, event); docs/remediation.md lists the same rows."""


def step(plan: Plan, *, rung: int, status: Mapping[str, Any], seen: Seen) -> Step:
    """Advance one NodeRemediation by at most one transition."""
    phase = Phase(status.get("phase", Phase.PENDING))
    if phase in TERMINAL:
        return Step()
    c = Ctx(plan, rung, status, seen)
    if rung >= len(plan.ladder):
        return _escalate(c, "no rungs left on the ladder")
    ev = observe(plan, rung=rung, status=status, seen=seen)
    _, transition = TABLE[(phase, ev)]
    out = transition(c)
    if status.get("frozen") and seen.frozen is None and "frozen" not in out.patch:
        out.patch["frozen"] = None  # writes are allowed again (unpaused, dryRun off)
    return out


def describe(rung: Rung) -> str:
    if rung.action is Action.RESTART_RUNTIME and rung.runtime is not None:
        return f"restart {rung.runtime.value}"
    return str(rung.action.value)
