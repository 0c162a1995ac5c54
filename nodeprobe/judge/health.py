"""ContainerRuntimeUnavailable: hysteresis per check, restarts per runtime, one cause.

Rules: `raiseAfter` failures in a row (or `failuresInWindow` of the last `window`) raise,
`clearAfter` good answers in a row clear. A late answer (a call kept past its deadline that
answered within the horizon) forgives the hangs it explains; HUNGs after it are forgiven as
possible slowness until the check answers in time again. A runtime down for less than
`restart.downGrace` holds the condition still and its DOWN results are forgiven as a restart.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodeprobe.config.judge import JudgeSettings
from nodeprobe.judge import restarts
from nodeprobe.judge.attribution import (
    CALLS,
    Cause,
    Problem,
    StaleBound,
    attribute,
    problem_of,
    stale_bound,
)
from nodeprobe.judge.hysteresis import Rule, forgive, step
from nodeprobe.judge.restarts import Restarts
from nodeprobe.judge.state import CheckState, Key, Want
from nodeprobe.judge.trend import median
from nodeprobe.model import (
    Check,
    Condition,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)

_DOWN = (Reason.DOCKERD_DOWN, Reason.CONTAINERD_DOWN)
_LOOP = {Runtime.DOCKERD: Reason.DOCKERD_RESTART_LOOP,
         Runtime.CONTAINERD: Reason.CONTAINERD_RESTART_LOOP}


def _runtimes(keys: list[Key]) -> str:
    names = sorted({str(runtime) for runtime, _ in keys})
    if len(names) == 1:
        return f"{names[0]} answers"
    return " and ".join(names or ["the runtimes"]) + " answer"


class HealthJudge:
    """Availability of the runtimes; owns the restart history, reads and steps `CheckState`s."""

    def __init__(self, settings: JudgeSettings, *, require_network_ready: bool) -> None:
        self._settings = settings
        self._require_network_ready = require_network_ready
        self.restarts: dict[Runtime, Restarts] = {}
        self._containerd_cause: tuple[Cause, float] | None = None
        """The last containerd cause, and when it was last the cause."""

    def rule(self) -> Rule:
        s = self._settings
        k = max(s.failures_in_window, s.raise_after)  # never raise on fewer than in a row
        return Rule(s.raise_after, s.clear_after, s.window, k)

    def spell(self, obs: Observation, state: CheckState, states: Mapping[Key, CheckState],
              *, now: float) -> None:
        """Restart history: a quick DOWN spell was a restart, so its DOWN results are forgiven."""
        settings = self._settings.restart
        before = self.restarts.get(obs.runtime, Restarts())
        after = restarts.observe(before, obs, now=now, settings=settings)
        self.restarts[obs.runtime] = after
        if obs.outcome is Outcome.DOWN:
            state.spell_downs += 1
        elif before.down_since is not None and after.down_since is None:
            quick = before.down_for(now) < settings.down_grace
            for (runtime, _), other in states.items():
                if runtime is obs.runtime and other.spell_downs:
                    if quick:
                        other.health = forgive(other.health, other.spell_downs, rule=self.rule())
                    other.spell_downs = 0

    def answers_late(self, state: CheckState, now: float) -> bool:
        """Its last call kept past its deadline answered within the horizon, and no call has
        answered in time since."""
        return state.late is not None and now - state.late[0] <= self._settings.horizon

    def record(self, state: CheckState, obs: Observation, *, now: float) -> bool:
        """Step the check's counter on an in-time result; True when a HUNG is forgiven."""
        if obs.outcome in (Outcome.OK, Outcome.SLOW):
            state.late = None  # it answers in time again: a new hang is judged afresh
        forgiven = obs.outcome is Outcome.HUNG and self.answers_late(state, now)
        problem = None
        if not forgiven:
            problem = problem_of(obs, settings=self._settings,
                                 require_network_ready=self._require_network_ready,
                                 streak=state.health.bad_run + 1, stale=self._stale(state, obs))
        self._step(state, problem is not None)
        if problem is not None:
            state.problem = problem
            state.bad_since = obs.at if state.bad_since is None else state.bad_since
        else:
            state.bad_since = None
        state.hung_run = state.hung_run + 1 if obs.outcome is Outcome.HUNG and not forgiven else 0
        return forgiven

    def record_late(self, state: CheckState, obs: Observation, *, now: float) -> int:
        """The end of a call kept past its deadline: an answer forgives the hangs it explains.
        Returns how many results it re-judged (the slow judge weighs them)."""
        if obs.outcome.failed:
            state.late = None  # no answer within the horizon: the hangs stand
            return 0
        state.late = (now, obs.latency_s)
        hung, state.hung_run = state.hung_run, 0
        if hung:
            state.health = forgive(state.health, hung, rule=self.rule())
            if not state.health.bad_run:
                state.bad_since = None
        return hung + 1

    def _step(self, state: CheckState, bad: bool) -> None:
        rule = self.rule()
        state.health = step(state.health, bad, raise_after=rule.raise_after,
                            clear_after=rule.clear_after, window=rule.window,
                            failures_in_window=rule.failures_in_window)

    def _stale(self, state: CheckState, obs: Observation) -> StaleBound | None:
        """Track ImageFsInfo refreshes; the stale bound from the periods seen so far."""
        stamp = obs.values.get(Value.IMAGE_FS_TIMESTAMP_SECONDS)
        if stamp is None:
            return None
        if state.stamp is not None and stamp > state.stamp:
            state.gaps = (*state.gaps, stamp - state.stamp)[-5:]
        state.stamp = stamp if state.stamp is None else max(stamp, state.stamp)
        return stale_bound(self._settings, median(state.gaps) if state.gaps else None)

    def want(self, states: Mapping[Key, CheckState], *, now: float, current: Condition,
             undecided: bool) -> Want | None:
        """None = hold still: a runtime is down, but for less than the restart grace.
        `undecided`: the condition is Unknown or adopted, so a pending failure keeps it so."""
        settings = self._settings.restart
        for runtime, history in list(self.restarts.items()):
            self.restarts[runtime] = restarts.settle(history, now=now, settings=settings)
        if any(h.down_since is not None and h.down_for(now) < settings.down_grace
               for h in self.restarts.values()):
            return None
        raised = [key for key, s in states.items() if s.health.raised]
        answered = [key for key, s in states.items() if s.latest is not None]
        cause = None
        if raised:
            problems = [p for key in raised if (p := states[key].problem) is not None]
            late = {check for (runtime, check), s in states.items()
                    if runtime is Runtime.DOCKERD and self.answers_late(s, now)}
            cause = attribute(problems, seen={runtime for runtime, _ in answered}, late=late,
                              fresh=_fresh(states, raised))
            cause = self._carry(cause, problems, now=now)
        looping = sorted(r for r, h in self.restarts.items() if h.looping)
        if looping and (cause is None or (cause.runtime in looping and cause.reason in _DOWN)):
            runtime = cause.runtime if cause is not None else looping[0]
            message = restarts.describe(self.restarts[runtime], runtime=str(runtime), now=now,
                                        settings=settings)
            return Want(Status.TRUE, _LOOP[runtime], message, frozenset({("loop", runtime)}))
        if cause is not None:
            return Want(Status.TRUE, cause.reason, cause.message, frozenset(raised))
        pending = [key for key, s in states.items() if s.health.pending]
        if pending and (current.status is Status.UNKNOWN or undecided):
            names = ", ".join(f"{r} {CALLS[c]}" for r, c in sorted(pending))
            return Want(Status.UNKNOWN, Reason.UNKNOWN, f"confirming failures of: {names}")
        return Want(Status.FALSE, Reason.HEALTHY, f"{_runtimes(answered)} normally")


    def _carry(self, cause: Cause | None, problems: list[Problem], *, now: float) -> Cause | None:
        """dockerd's calls into containerd (its /_ping answering) go on failing for a few seconds
        after containerd's own hang ends, while dockerd's client reconnects: within the horizon
        that is still containerd's fault, not a new DockerdHung raised by the recovery."""
        if cause is not None and cause.runtime is Runtime.CONTAINERD:
            self._containerd_cause = (cause, now)
            return cause
        last = self._containerd_cause
        if (cause is None or cause.runtime is not Runtime.DOCKERD or last is None
                or now - last[1] > self._settings.horizon
                or any(p.check is Check.DOCKER_PING for p in problems)):
            return cause
        calls = ", ".join(CALLS[p.check] for p in problems)
        return Cause(last[0].reason, f"containerd answers again; dockerd's calls into it still "
                     f"fail ({calls}), {now - last[1]:.0f}s after its hang", Runtime.CONTAINERD)


def _fresh(states: Mapping[Key, CheckState], raised: list[Key]) -> frozenset[Key]:
    """Checks that answered in time since the raised failures began: only those may be named
    as answering (a CRI Version answer from before the hang says nothing about it)."""
    began = min((s.bad_since for key in raised if (s := states[key]).bad_since is not None),
                default=None)
    return frozenset(
        key for key, s in states.items()
        if s.latest is not None and s.latest.outcome is Outcome.OK and not s.health.bad_run
        and (began is None or s.latest.at >= began)
    )

