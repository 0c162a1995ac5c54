"""ContainerRuntimeSlow: SLOW answers, and late answers that turn out to be slowness.

`slowRaiseAfter` slow results in a row raise, `clearAfter` in-time answers clear. A late answer
(a call kept past its deadline that answered within the horizon) stands for the hangs it
re-judged, but only once the check's next call is not answered in time either: a daemon resumed
after SIGSTOP answers its held call late and its next calls in time, and that is a hang ending,
not slowness.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodeprobe.config.judge import JudgeSettings
from nodeprobe.config.tree import ChecksSettings
from nodeprobe.judge.attribution import CALLS
from nodeprobe.judge.hysteresis import step
from nodeprobe.judge.state import CheckState, Key, Want
from nodeprobe.model import Check, Observation, Outcome, Reason, Runtime, Status


class SlowJudge:
    """Slowness per check; reads and steps the `slow` fields of `CheckState`."""

    def __init__(self, settings: JudgeSettings, *, checks: ChecksSettings) -> None:
        self._settings = settings
        self._checks = checks

    def record(self, state: CheckState, obs: Observation, *, forgiven: bool) -> None:
        """An in-time result; `forgiven` = a HUNG the health judge took for possible slowness.
        A call sent before the late answer came was held through the same stop: only a call
        sent after it weighs the late answer."""
        if forgiven and obs.at < state.answered_late_at:
            return
        pending, state.pending_slow = state.pending_slow, 0
        for _ in range(pending if forgiven else 0):
            self._step(state, True)  # still not in time: the late answer was slowness
        self._step(state, obs.outcome is Outcome.SLOW or forgiven)
        if obs.outcome is Outcome.SLOW:
            state.slow_latency = (obs.latency_s, False)
        elif forgiven and state.late is not None:
            state.slow_latency = (state.late[1], True)

    def record_late(self, state: CheckState, obs: Observation, *, rejudged: int) -> None:
        """A late answer that re-judged `rejudged` results: weighed by the next call."""
        if rejudged:
            state.pending_slow = rejudged
            state.answered_late_at = obs.at + obs.latency_s
            state.slow_latency = (obs.latency_s, True)

    def _step(self, state: CheckState, slow: bool) -> None:
        state.slow = step(state.slow, slow, raise_after=self._settings.slow_raise_after,
                          clear_after=self._settings.clear_after)

    def want(self, states: Mapping[Key, CheckState]) -> Want:
        raised = sorted(key for key, s in states.items() if s.slow.raised)
        if not raised:
            return Want(Status.FALSE, Reason.NOT_SLOW,
                        "every call answers within its latency objective")
        parts = []
        for key in raised:
            runtime, check = key
            state = states[key]
            fallback = (state.latest.latency_s if state.latest is not None else 0.0, False)
            latency, late = state.slow_latency or fallback
            limits = self._checks.for_check(check)
            after = f" (past its {limits.deadline:.3g}s deadline, not hung)" if late else ""
            parts.append(f"{runtime} {CALLS[check]} answered in {latency:.3g}s{after}, above its "
                         f"{limits.slow:.3g}s objective")
        runtime, check = raised[0]
        if check is Check.CANARY:
            reason = Reason.CONTAINER_START_SLOW
        elif runtime is Runtime.DOCKERD:
            reason = Reason.DOCKERD_API_SLOW
        else:
            reason = Reason.CONTAINERD_API_SLOW
        message = "; ".join(parts) + f" ({self._settings.slow_raise_after}+ checks in a row)"
        return Want(Status.TRUE, reason, message, frozenset(raised))
