"""The agent's judge: observations in, one at a time, with `now`; conditions and events out.

Pure apart from its own state: no I/O, no clock (every call gets `now`), so tests replay
synthetic series. One `CheckState` per check and one `SeriesState` per leak series
(judge/state.py) hold that state; four sub-judges, each taking `JudgeSettings` and only the other
settings it reads, say what their condition should be: availability (judge/health.py), slowness
(judge/slowness.py), leaks (judge/leaks.py), degradation (judge/degradation.py). This class keeps
the conditions, adoption and transitions. Rules:

- Hysteresis per (runtime, check): `raiseAfter` failures in a row raise, `clearAfter` good
  answers in a row clear. SLOW answers count separately (`slowRaiseAfter`) for
  ContainerRuntimeSlow. Leak verdicts per (runtime, check, signal) raise at once (the window is
  the hysteresis) and clear after `clearAfter` calm verdicts.
- Start-up: every condition is Unknown (ContainerRuntimeStateUnknown) until every expected check
  has answered once; ContainerRuntimeUnavailable also stays Unknown while a check is failing but has
  not yet failed `raiseAfter` times, so a node hung at start never shows a healthy blip.
- Adopted conditions (what the Node said when the agent started) stand in for Unknown: they are
  kept until the first verdict, and a verdict with the same status and reason keeps them whole
  (message and lastTransitionTime), so an agent restart is no transition and no Event.
- Events: to True -> Warning with the cause's reason; True -> False -> Normal with the healthy
  reason; a new reason while True -> Warning. Unknown -> False (start-up) sends no Event.
- A True condition's message is written when it is raised and rewritten only when its reason or
  the set of failing checks changes, so a long outage does not rewrite the Node every probe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from nodeprobe.config import Config
from nodeprobe.judge import trend
from nodeprobe.judge.degradation import DegradedJudge
from nodeprobe.judge.health import HealthJudge
from nodeprobe.judge.leaks import LeakJudge
from nodeprobe.judge.slowness import SlowJudge
from nodeprobe.judge.state import CheckState, Key, Want
from nodeprobe.model import (
    HEALTHY_REASON,
    Check,
    Condition,
    ConditionType,
    Event,
    EventType,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)


class Judge:
    """Continuous judgement for one node. Not thread-safe: feed it from one thread."""

    def __init__(
        self,
        config: Config,
        *,
        expected: Iterable[Key],
        now: float,
        node_memory_bytes: float | None = None,
        adopted: Mapping[ConditionType, Condition] | None = None,
    ) -> None:
        settings = config.judge
        self._expected = frozenset(expected)
        self._recheck_for = settings.recheck_for
        self._checks: dict[Key, CheckState] = {}
        self.health = HealthJudge(settings,
                                  require_network_ready=config.containerd.require_network_ready)
        self.slow = SlowJudge(settings, checks=config.checks)
        self.leaks = LeakJudge(settings, node_memory_bytes=node_memory_bytes)
        self.degraded = DegradedJudge(settings, disk=config.disk, log=config.runtime_log)
        self._signatures: dict[ConditionType, frozenset[object]] = {}
        waiting = f"starting: waiting for the first answer of {len(self._expected)} checks"
        # fixed for the whole start-up: a message that changed with every first answer would
        # cost a Node write per check (the agent log says which checks answered)
        self._conditions = {
            kind: Condition(kind, Status.UNKNOWN, Reason.UNKNOWN, waiting, now)
            for kind in ConditionType
        }
        self._adopted = set((adopted or {}).keys())
        """Types whose adopted state stands until the judge's first verdict on them."""
        self._conditions.update(adopted or {})

    def conditions(self) -> dict[ConditionType, Condition]:
        return dict(self._conditions)

    def unsettled(self, *, now: float) -> frozenset[Key]:
        """Checks to re-run at the recheck cadence: failing, or raised and not cleared (for
        availability or slowness), so a recovery is seen within seconds; but not a check failing
        for longer than `recheckFor` while nothing else of its runtime answers either."""
        answering = {runtime for (runtime, _), s in self._checks.items()
                     if s.latest is not None and s.latest.outcome is Outcome.OK
                     and not s.health.bad_run}
        span = self._recheck_for
        return frozenset(
            key for key, s in self._checks.items()
            if (s.health.raised or s.health.bad_run > 0 or s.slow.raised)
            and (s.bad_since is None or now - s.bad_since < span or key[0] in answering)
        )

    def observe(self, obs: Observation, *, now: float) -> list[Event]:
        """Take one observation; return the Events its transitions call for."""
        self._record(obs, now)
        if not self._expected <= {k for k, s in self._checks.items() if s.latest is not None}:
            return []  # still starting: the start-up message stands (one write, not one per answer)
        latest = [s.latest for s in self._checks.values() if s.latest is not None]
        current = self._conditions[ConditionType.UNAVAILABLE]
        wants = {
            ConditionType.UNAVAILABLE: self.health.want(
                self._checks, now=now, current=current,
                undecided=ConditionType.UNAVAILABLE in self._adopted),
            ConditionType.SLOW: self.slow.want(self._checks),
            ConditionType.MEMORY_LEAK: self.leaks.want(),
            ConditionType.DEGRADED: self.degraded.want(latest),
        }
        events: list[Event] = []
        for kind, want in wants.items():
            if want is None:
                continue  # hold still
            event = self._apply(kind, want, now=now)
            if event is not None:
                events.append(event)
        return events

    def _record(self, obs: Observation, now: float) -> None:
        key = (obs.runtime, obs.check)
        state = self._checks.setdefault(key, CheckState())
        self.health.spell(obs, state, self._checks, now=now)
        self.leaks.record(obs)
        if obs.late:
            self.slow.record_late(state, obs, rejudged=self.health.record_late(state, obs, now=now))
            return
        state.latest = obs
        if key == (Runtime.CONTAINERD, Check.PROCESS):
            latest = [s.latest for s in self._checks.values() if s.latest is not None]
            surplus = self.degraded.record_shims(latest)
            if surplus is not None:
                self.leaks.sample((*key, Value.SHIM_SURPLUS), trend.Sample(obs.at, surplus))
        forgiven = self.health.record(state, obs, now=now)
        self.slow.record(state, obs, forgiven=forgiven)

    def _apply(self, kind: ConditionType, want: Want, *, now: float) -> Event | None:
        old = self._conditions[kind]
        if kind in self._adopted:
            if want.status is Status.UNKNOWN:
                return None  # not decided yet: the adopted state stands
            self._adopted.discard(kind)
            if want.status is old.status and want.reason == old.reason:
                self._signatures[kind] = want.signature
                return None  # the same verdict as before the restart: keep it whole
        unchanged = (
            want.status is old.status
            and want.reason == old.reason
            and self._signatures.get(kind) == want.signature
        )
        message = old.message if unchanged and want.status is Status.TRUE else want.message
        since = old.since if want.status is old.status else now
        self._conditions[kind] = Condition(kind, want.status, want.reason, message, since)
        self._signatures[kind] = want.signature
        if want.status is Status.TRUE and (
            old.status is not Status.TRUE or old.reason != want.reason
        ):
            return Event(EventType.WARNING, want.reason, want.message, now)
        if want.status is Status.FALSE and old.status is Status.TRUE:
            return Event(
                EventType.NORMAL,
                HEALTHY_REASON[kind],
                f"{want.message} again after {now - old.since:.0f}s (was {old.reason})",
                now,
            )
        return None
