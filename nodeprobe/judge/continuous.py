"""The agent's judge: observations in, one at a time, with `now`; conditions and events out.

A small class whose methods are pure apart from its own state: no I/O, no clock (every call gets
`now`), so tests replay synthetic series. Rules:

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
from dataclasses import dataclass

from nodeprobe.config import Config
from nodeprobe.judge import degraded, restarts, shims, trend
from nodeprobe.judge.attribution import (
    CALLS,
    Problem,
    StaleBound,
    attribute,
    problem_of,
    stale_bound,
)
from nodeprobe.judge.hysteresis import Counter, Rule, forgive, step
from nodeprobe.judge.leaks import LEAK_REASON, SIGNALS, trend_limits
from nodeprobe.judge.restarts import Restarts
from nodeprobe.judge.trend import median
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

Key = tuple[Runtime, Check]
SeriesKey = tuple[Runtime, Check, str]

_DOWN = (Reason.DOCKERD_DOWN, Reason.CONTAINERD_DOWN)
_LOOP = {Runtime.DOCKERD: Reason.DOCKERD_RESTART_LOOP,
         Runtime.CONTAINERD: Reason.CONTAINERD_RESTART_LOOP}


@dataclass(frozen=True, slots=True)
class _Want:
    """What a condition should say now; `signature` decides whether its message is rewritten."""

    status: Status
    reason: str
    message: str
    signature: frozenset[object] = frozenset()


def _runtimes(keys: Iterable[Key]) -> str:
    names = sorted({str(runtime) for runtime, _ in keys})
    if len(names) == 1:
        return f"{names[0]} answers"
    return " and ".join(names or ["the runtimes"]) + " answer"


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
        self._config = config
        self._expected = frozenset(expected)
        self._node_memory = node_memory_bytes
        self._latest: dict[Key, Observation] = {}
        self._health: dict[Key, Counter] = {}
        self._last_problem: dict[Key, Problem] = {}
        self._slow: dict[Key, Counter] = {}
        self._series: dict[SeriesKey, tuple[trend.Sample, ...]] = {}
        self._long_series: dict[SeriesKey, tuple[trend.Sample, ...]] = {}
        self._long_verdicts: dict[SeriesKey, trend.TrendVerdict] = {}
        self._late: dict[Key, tuple[float, float]] = {}
        """Per check: when its last late answer came, and its latency."""
        self._pending_slow: dict[Key, int] = {}
        """Per check: slow results a late answer stands for, counted only if the next call is
        not answered in time either (a resumed daemon answers its held call late and the next
        ones in time: that was a hang ending, not slowness)."""
        self._hung_run: dict[Key, int] = {}
        self._slow_latency: dict[Key, tuple[float, bool]] = {}
        """Per check: the latency that made it slow, and whether it came after the deadline."""
        self._stamps: dict[Key, tuple[float | None, tuple[float, ...]]] = {}
        self._restarts: dict[Runtime, Restarts] = {}
        self._spell_downs: dict[Key, int] = {}
        """Per check: DOWN results in its runtime's current DOWN spell."""
        self._leak: dict[SeriesKey, Counter] = {}
        self._orphans = shims.Orphans()
        self._verdicts: dict[SeriesKey, trend.TrendVerdict] = {}
        self._signatures: dict[ConditionType, frozenset[object]] = {}
        waiting = self._waiting_message()
        self._conditions = {
            kind: Condition(kind, Status.UNKNOWN, Reason.UNKNOWN, waiting, now)
            for kind in ConditionType
        }
        self._adopted = set((adopted or {}).keys())
        """Types whose adopted state stands until the judge's first verdict on them."""
        self._conditions.update(adopted or {})

    def conditions(self) -> dict[ConditionType, Condition]:
        return dict(self._conditions)

    def unsettled(self) -> frozenset[Key]:
        """Checks to re-run at the recheck cadence: failing lately, or raised and not cleared
        (for availability or slowness), so a recovery is seen within seconds."""
        health = {key for key, c in self._health.items() if c.raised or c.bad_run > 0}
        return frozenset(health | {key for key, c in self._slow.items() if c.raised})

    def observe(self, obs: Observation, *, now: float) -> list[Event]:
        """Take one observation; return the Events its transitions call for."""
        self._record(obs, now)
        if not self._expected <= self._latest.keys():
            return []  # still starting: the start-up message stands (one write, not one per answer)
        wants = {
            ConditionType.UNAVAILABLE: self._want_health(now),
            ConditionType.SLOW: self._want_slow(),
            ConditionType.MEMORY_LEAK: self._want_leak(),
            ConditionType.DEGRADED: self._want_degraded(),
        }
        events: list[Event] = []
        for kind, want in wants.items():
            if want is None:
                continue  # hold still
            event = self._apply(kind, want, now=now)
            if event is not None:
                events.append(event)
        return events

    # -- state updates ---------------------------------------------------------------------

    def _rule(self) -> Rule:
        judge = self._config.judge
        k = max(judge.failures_in_window, judge.raise_after)  # never raise on fewer than in a row
        return Rule(judge.raise_after, judge.clear_after, judge.window, k)

    def _step_health(self, key: Key, bad: bool) -> None:
        rule = self._rule()
        self._health[key] = step(
            self._health.get(key, Counter()), bad, raise_after=rule.raise_after,
            clear_after=rule.clear_after, window=rule.window,
            failures_in_window=rule.failures_in_window,
        )

    def _step_slow(self, key: Key, slow: bool) -> None:
        judge = self._config.judge
        self._slow[key] = step(
            self._slow.get(key, Counter()), slow,
            raise_after=judge.slow_raise_after, clear_after=judge.clear_after,
        )

    def _answers_late(self, key: Key, now: float) -> bool:
        """This check's last call kept past its deadline answered, within the horizon, and no
        call has answered in time since (a resumed daemon answers its held calls late at once:
        that is no evidence about the next hang)."""
        late = self._late.get(key)
        return late is not None and now - late[0] <= self._config.judge.horizon

    def _record(self, obs: Observation, now: float) -> None:
        key = (obs.runtime, obs.check)
        judge = self._config.judge
        before = self._restarts.get(obs.runtime, Restarts())
        after = restarts.observe(before, obs, now=now, settings=judge.restart)
        self._restarts[obs.runtime] = after
        if obs.outcome is Outcome.DOWN:
            self._spell_downs[key] = self._spell_downs.get(key, 0) + 1
        elif before.down_since is not None and after.down_since is None:
            self._end_spell(obs.runtime, before.down_for(now) < judge.restart.down_grace)
        self._record_values(obs)
        if obs.late:
            self._record_late(key, obs, now)
            return
        self._latest[key] = obs
        pending = self._pending_slow.pop(key, 0)
        if obs.outcome in (Outcome.OK, Outcome.SLOW):
            self._late.pop(key, None)  # it answers in time again: a new hang is judged afresh
            pending = 0  # ... and its late answer was the end of a hang, not slowness
        if key == (Runtime.CONTAINERD, Check.PROCESS):
            self._orphans, surplus = shims.observe(self._orphans, self._latest.values(),
                                                   self._config)
            if surplus is not None:
                self._record_sample((*key, Value.SHIM_SURPLUS), trend.Sample(obs.at, surplus))
        forgiven = obs.outcome is Outcome.HUNG and self._answers_late(key, now)
        for _ in range(pending if forgiven else 0):
            self._step_slow(key, True)  # still not in time: the late answer was slowness
        problem = None
        if not forgiven:
            problem = problem_of(
                obs,
                settings=judge,
                require_network_ready=self._config.containerd.require_network_ready,
                streak=self._health.get(key, Counter()).bad_run + 1,
                stale=self._stale_bound(key, obs),
            )
        self._step_health(key, problem is not None)
        if problem is not None:
            self._last_problem[key] = problem
        hung = obs.outcome is Outcome.HUNG and not forgiven
        self._hung_run[key] = self._hung_run.get(key, 0) + 1 if hung else 0
        self._step_slow(key, obs.outcome is Outcome.SLOW or forgiven)
        if obs.outcome is Outcome.SLOW:
            self._slow_latency[key] = (obs.latency_s, False)
        elif forgiven:
            self._slow_latency[key] = (self._late[key][1], True)

    def _end_spell(self, runtime: Runtime, quick: bool) -> None:
        """A DOWN spell ended; a quick one was a restart, so its DOWN results are forgiven."""
        for key in [k for k in self._spell_downs if k[0] is runtime]:
            count = self._spell_downs.pop(key)
            if quick and key in self._health:
                self._health[key] = forgive(self._health[key], count, rule=self._rule())

    def _record_late(self, key: Key, obs: Observation, now: float) -> None:
        """The end of a call kept past its deadline: an answer forgives the hangs it explains."""
        if obs.outcome.failed:
            self._late.pop(key, None)  # no answer within the horizon: the hangs stand
            return
        self._late[key] = (now, obs.latency_s)
        hung, self._hung_run[key] = self._hung_run.get(key, 0), 0
        if hung:
            self._health[key] = forgive(self._health.get(key, Counter()), hung, rule=self._rule())
        self._pending_slow[key] = hung + 1  # judged by the next call: in time, or not
        self._slow_latency[key] = (obs.latency_s, True)

    def _stale_bound(self, key: Key, obs: Observation) -> StaleBound | None:
        """Track ImageFsInfo refreshes; the stale bound from the periods seen so far."""
        stamp = obs.values.get(Value.IMAGE_FS_TIMESTAMP_SECONDS)
        if stamp is None:
            return None
        last, gaps = self._stamps.get(key, (None, ()))
        if last is not None and stamp > last:
            gaps = (*gaps, stamp - last)[-5:]
        self._stamps[key] = (stamp if last is None else max(stamp, last), gaps)
        return stale_bound(self._config.judge, median(gaps) if gaps else None)

    def _record_values(self, obs: Observation) -> None:
        for value, reading in obs.values.items():
            if (obs.runtime, value) in LEAK_REASON:
                self._record_sample((obs.runtime, obs.check, value), trend.Sample(obs.at, reading))

    def _record_sample(self, skey: SeriesKey, sample: trend.Sample) -> None:
        runtime, _, value = skey
        name, unit = SIGNALS[value]
        label = f"{runtime} {name}"
        verdicts = []
        for long, store in ((False, self._series), (True, self._long_series)):
            limits = trend_limits(self._config, value, node_memory_bytes=self._node_memory,
                                  long=long)
            before = store.get(skey, ())
            if before and sample.at < before[-1].at:
                return  # a late answer's reading, older than what the window already holds
            window = trend.slide(before, sample, window_s=limits.window_s,
                                 spacing_s=limits.spacing_s)
            store[skey] = window
            if long and window == before and skey in self._long_verdicts:
                verdicts.append(self._long_verdicts[skey])  # thinned: no new sample, same verdict
                continue
            verdict = trend.judge(window, limits=limits, label=label, unit=unit)
            if long:
                self._long_verdicts[skey] = verdict
            verdicts.append(verdict)
        short, longer = verdicts
        verdict = longer if longer.raised and not short.raised else short
        self._verdicts[skey] = verdict
        self._leak[skey] = step(
            self._leak.get(skey, Counter()),
            verdict.raised,
            raise_after=1,
            clear_after=self._config.judge.clear_after,
        )

    # -- what each condition should say -----------------------------------------------------

    def _waiting_message(self) -> str:
        """Fixed for the whole start-up: a message that changed with every first answer would
        cost a Node write per check (the agent log says which checks answered)."""
        return f"starting: waiting for the first answer of {len(self._expected)} checks"

    def _want_health(self, now: float) -> _Want | None:
        """None = hold still: a runtime is down, but for less than the restart grace."""
        settings = self._config.judge.restart
        for runtime, history in list(self._restarts.items()):
            self._restarts[runtime] = restarts.settle(history, now=now, settings=settings)
        if any(h.down_since is not None and h.down_for(now) < settings.down_grace
               for h in self._restarts.values()):
            return None
        raised = [key for key, counter in self._health.items() if counter.raised]
        cause = None
        if raised:
            problems = [self._last_problem[key] for key in raised]
            late = {check for check in Check if self._answers_late((Runtime.DOCKERD, check), now)}
            cause = attribute(problems, seen={runtime for runtime, _ in self._latest}, late=late)
        looping = sorted(r for r, h in self._restarts.items() if h.looping)
        if looping and (cause is None or (cause.runtime in looping and cause.reason in _DOWN)):
            runtime = cause.runtime if cause is not None else looping[0]
            message = restarts.describe(self._restarts[runtime], runtime=str(runtime), now=now,
                                       settings=settings)
            return _Want(Status.TRUE, _LOOP[runtime], message, frozenset({("loop", runtime)}))
        if cause is not None:
            return _Want(Status.TRUE, cause.reason, cause.message, frozenset(raised))
        current = self._conditions[ConditionType.UNAVAILABLE]
        pending = [key for key, counter in self._health.items() if counter.pending]
        undecided = current.status is Status.UNKNOWN or ConditionType.UNAVAILABLE in self._adopted
        if pending and undecided:
            names = ", ".join(f"{r} {CALLS[c]}" for r, c in sorted(pending))
            return _Want(Status.UNKNOWN, Reason.UNKNOWN, f"confirming failures of: {names}")
        return _Want(Status.FALSE, Reason.HEALTHY, f"{_runtimes(self._latest)} normally")

    def _want_slow(self) -> _Want:
        raised = sorted(key for key, counter in self._slow.items() if counter.raised)
        if not raised:
            return _Want(
                Status.FALSE, Reason.NOT_SLOW, "every call answers within its latency objective"
            )
        parts = []
        for runtime, check in raised:
            latency, late = self._slow_latency.get(
                (runtime, check), (self._latest[(runtime, check)].latency_s, False)
            )
            limits = self._config.checks.for_check(check)
            after = f" (past its {limits.deadline:.3g}s deadline, not hung)" if late else ""
            parts.append(
                f"{runtime} {CALLS[check]} answered in {latency:.3g}s{after}, above its "
                f"{limits.slow:.3g}s objective"
            )
        runtime, check = raised[0]
        if check is Check.CANARY:
            reason = Reason.CONTAINER_START_SLOW
        elif runtime is Runtime.DOCKERD:
            reason = Reason.DOCKERD_API_SLOW
        else:
            reason = Reason.CONTAINERD_API_SLOW
        streak = self._config.judge.slow_raise_after
        message = "; ".join(parts) + f" ({streak}+ checks in a row)"
        return _Want(Status.TRUE, reason, message, frozenset(raised))

    def _want_leak(self) -> _Want:
        raised = [skey for skey, counter in self._leak.items() if counter.raised]
        if not raised:
            return _Want(
                Status.FALSE, Reason.NO_LEAK, "memory, goroutines and fds show no sustained growth"
            )

        def rank(skey: SeriesKey) -> tuple[int, int]:
            ceiling = self._verdicts[skey].finding is trend.Finding.CEILING
            return (0 if ceiling else 1, list(SIGNALS).index(skey[2]))

        raised.sort(key=rank)
        first = raised[0]
        growth, ceiling = LEAK_REASON[(first[0], first[2])]
        verdict = self._verdicts[first]
        reason = ceiling if verdict.finding is trend.Finding.CEILING else growth
        message = verdict.message
        if not verdict.raised:
            message += " (clearing)"
        if len(raised) > 1:
            message += f"; {len(raised) - 1} more signal(s) raised"
        return _Want(Status.TRUE, reason, message, frozenset(raised))

    def _want_degraded(self) -> _Want:
        orphans = shims.finding(self._orphans, self._config)
        found = degraded.findings(self._latest.values(), self._config,
                                  extra=[orphans] if orphans else [])
        if not found:
            return _Want(Status.FALSE, Reason.NOT_DEGRADED,
                         "runtime roots have room and the runtime logs show no corruption")
        message = found[0].message
        if len(found) > 1:
            message += f"; also {', '.join(str(f.reason) for f in found[1:])}"
        return _Want(Status.TRUE, found[0].reason, message,
                     frozenset((f.runtime, f.reason) for f in found))

    # -- transitions -------------------------------------------------------------------------

    def _apply(self, kind: ConditionType, want: _Want, *, now: float) -> Event | None:
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
