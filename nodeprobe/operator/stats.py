"""What a reconcile pass did, as numbers: the operator's metrics, computed without I/O.

`pass_stats` turns one pass's decisions into a `PassStats`; `cordon_delay` says how long a
cordon came after the trigger. The reconciler hands both to a `Sink`; `nodeprobe.operator.metrics`
is the one that writes Prometheus series, `NoSink` drops them (tests, no metrics port).
Purely data-manipulative: no I/O, time is a parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nodeprobe.model import RemediationPhase
from nodeprobe.operator.gates import PolicyDecision, Wait
from nodeprobe.operator.records import RemediationView

OPEN_PHASES = (RemediationPhase.PENDING, RemediationPhase.CORDONED, RemediationPhase.DRAINING,
               RemediationPhase.ACTION_REQUESTED, RemediationPhase.VERIFYING,
               RemediationPhase.ESCALATED)
"""The `phase` values of `nodeprobe_operator_episodes`: the live phases, and Escalated while
it still holds its node (until a person releases it)."""


@dataclass(frozen=True, slots=True)
class PassStats:
    """One finished pass. Every key of `episodes` (OPEN_PHASES) and `waiting` (every `Wait`)
    is present, 0 when nothing is there, so the series never vanish."""

    at: float
    """When the pass decided (Unix seconds)."""
    episodes: Mapping[RemediationPhase, int]
    """NodeRemediations that hold their node, by phase (opened in this pass: Pending)."""
    held: int
    """Nodes held against the cluster budget: by our episodes or another remediator's Lease."""
    budget: int
    """The cluster budget (`--max-concurrent`)."""
    waiting: Mapping[Wait, int]
    """Sick nodes that got no episode, by the first reason (policies in name order)."""


class Sink(Protocol):
    """Where the reconciler reports; implementations do the I/O and never raise into a pass."""

    def passed(self, stats: PassStats) -> None:
        """A pass finished."""

    def finished(self, outcome: RemediationPhase) -> None:
        """A NodeRemediation reached a final phase."""

    def cordoned(self, after_s: float) -> None:
        """The operator cordoned a node `after_s` seconds after its trigger condition began."""

    def guarded(self, in_place: bool) -> None:
        """Whether the admission guard on NodeRemediations is in place (else no pass runs)."""


class NoSink:
    """Reports nowhere."""

    def passed(self, stats: PassStats) -> None:
        del stats

    def finished(self, outcome: RemediationPhase) -> None:
        del outcome

    def cordoned(self, after_s: float) -> None:
        del after_s

    def guarded(self, in_place: bool) -> None:
        del in_place


def pass_stats(remediations: Iterable[RemediationView],
               decisions: Mapping[str, PolicyDecision], *, held: Collection[str],
               opened: Collection[str], budget: int, now: float) -> PassStats:
    """`remediations` as the pass began; `held` the nodes held after it (`opened` included);
    `opened` the nodes that got a NodeRemediation in it."""
    episodes = dict.fromkeys(OPEN_PHASES, 0)
    for r in remediations:
        if r.holds and r.phase in episodes:
            episodes[RemediationPhase(r.phase)] += 1
    episodes[RemediationPhase.PENDING] += len(opened)
    why: dict[str, Wait] = {}
    for name in sorted(decisions):
        for node, reason in decisions[name].reasons.items():
            why.setdefault(node, reason)
    waiting = dict.fromkeys(Wait, 0)
    for node, reason in why.items():
        if node not in held:  # another policy started it, or it is held after all
            waiting[reason] += 1
    return PassStats(at=now, episodes=episodes, held=len(held), budget=budget, waiting=waiting)


def cordon_delay(episode_start: float | None, *, now: float) -> float | None:
    """Seconds from the trigger condition's lastTransitionTime (the episode's start) to now,
    never negative (clock skew); None when the NodeRemediation does not say when it started."""
    return None if episode_start is None else max(0.0, now - episode_start)
