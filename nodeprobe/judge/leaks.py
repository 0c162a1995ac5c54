"""ContainerRuntimeMemoryLeak: which readings are judged for leaks, in what unit, under which
reasons, and the sub-judge that keeps their windows.

Each series (runtime, check, reading) is judged over a short and a long window (judge/trend.py);
a verdict raises at once (the window is the hysteresis) and clears after `clearAfter` calm ones.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodeprobe.config.judge import JudgeSettings, LeakSettings
from nodeprobe.judge import trend
from nodeprobe.judge.hysteresis import step
from nodeprobe.judge.state import SeriesKey, SeriesState, Want
from nodeprobe.judge.trend import TrendLimits, Unit
from nodeprobe.model import Observation, Reason, Runtime, Status, Value

SIGNALS: Mapping[str, tuple[str, Unit]] = {
    Value.RSS_ANON_BYTES: ("RssAnon", Unit.BYTES),
    Value.GOROUTINES: ("goroutines", Unit.COUNT),
    Value.FDS: ("fds", Unit.COUNT),
    Value.EVENT_LISTENERS: ("event listeners", Unit.COUNT),
    Value.SHIM_SURPLUS: ("shims beyond its pods and containers", Unit.COUNT),
}
"""Readings judged for leaks: name in messages and unit."""

LEAK_REASON: Mapping[tuple[Runtime, str], tuple[Reason, Reason]] = {
    (Runtime.DOCKERD, Value.RSS_ANON_BYTES): (
        Reason.DOCKERD_MEMORY_GROWTH,
        Reason.DOCKERD_MEMORY_CEILING,
    ),
    (Runtime.DOCKERD, Value.GOROUTINES): (
        Reason.DOCKERD_GOROUTINE_LEAK,
        Reason.DOCKERD_GOROUTINE_LEAK,
    ),
    (Runtime.DOCKERD, Value.FDS): (Reason.DOCKERD_FD_LEAK, Reason.DOCKERD_FD_LEAK),
    (Runtime.DOCKERD, Value.EVENT_LISTENERS): (
        Reason.DOCKERD_EVENT_LISTENER_LEAK,
        Reason.DOCKERD_EVENT_LISTENER_LEAK,
    ),
    (Runtime.CONTAINERD, Value.RSS_ANON_BYTES): (
        Reason.CONTAINERD_MEMORY_GROWTH,
        Reason.CONTAINERD_MEMORY_CEILING,
    ),
    (Runtime.CONTAINERD, Value.FDS): (Reason.CONTAINERD_FD_LEAK, Reason.CONTAINERD_FD_LEAK),
    (Runtime.CONTAINERD, Value.SHIM_SURPLUS): (
        Reason.CONTAINERD_SHIM_LEAK,
        Reason.CONTAINERD_SHIM_LEAK,
    ),
}
"""(growth reason, ceiling reason) per runtime and signal; pairs not listed are not judged.
`shim_surplus` is no probe's reading: the judge derives it (judge/shims.py)."""


def trend_limits(
    leak: LeakSettings, value: str, *, node_memory_bytes: float | None, long: bool = False
) -> TrendLimits:
    """The limits one signal is judged by: the short window's, or with `long` the long one's."""
    signal = {
        Value.RSS_ANON_BYTES: leak.memory,
        Value.GOROUTINES: leak.goroutines,
        Value.FDS: leak.fds,
        Value.EVENT_LISTENERS: leak.event_listeners,
        Value.SHIM_SURPLUS: leak.shims,
    }[Value(value)]
    return TrendLimits.from_settings(
        leak, signal, node_memory_bytes=node_memory_bytes, long=long
    )


class LeakJudge:
    """Leak verdicts per series; owns the `SeriesState`s."""

    def __init__(self, settings: JudgeSettings, *, node_memory_bytes: float | None) -> None:
        self._settings = settings
        self._node_memory = node_memory_bytes
        self.series: dict[SeriesKey, SeriesState] = {}

    def record(self, obs: Observation) -> None:
        for value, reading in obs.values.items():
            if (obs.runtime, value) in LEAK_REASON:
                self.sample((obs.runtime, obs.check, value), trend.Sample(obs.at, reading))

    def sample(self, skey: SeriesKey, sample: trend.Sample) -> None:
        runtime, _, value = skey
        name, unit = SIGNALS[value]
        label = f"{runtime} {name}"
        state = self.series.setdefault(skey, SeriesState())
        if state.short and sample.at < state.short[-1].at:
            return  # a late answer's reading, older than what the window already holds
        short = self._slide(state.short, sample, value, long=False)
        long = self._slide(state.long, sample, value, long=True)
        state.short = short
        verdict = trend.judge(short, limits=self._limits(value, long=False), label=label,
                              unit=unit)
        if long != state.long or state.long_verdict is None:  # thinned: no new sample, same
            state.long = long
            state.long_verdict = trend.judge(long, limits=self._limits(value, long=True),
                                             label=label, unit=unit)
        longer = state.long_verdict
        state.verdict = longer if longer.raised and not verdict.raised else verdict
        state.counter = step(state.counter, state.verdict.raised, raise_after=1,
                             clear_after=self._settings.clear_after)

    def _limits(self, value: str, *, long: bool) -> TrendLimits:
        return trend_limits(self._settings.leak, value, node_memory_bytes=self._node_memory,
                            long=long)

    def _slide(self, window: tuple[trend.Sample, ...], sample: trend.Sample, value: str, *,
               long: bool) -> tuple[trend.Sample, ...]:
        limits = self._limits(value, long=long)
        return trend.slide(window, sample, window_s=limits.window_s, spacing_s=limits.spacing_s)

    def want(self) -> Want:
        raised = [skey for skey, s in self.series.items() if s.counter.raised]
        if not raised:
            return Want(Status.FALSE, Reason.NO_LEAK,
                        "memory, goroutines and fds show no sustained growth")

        def rank(skey: SeriesKey) -> tuple[int, int]:
            verdict = self.series[skey].verdict
            ceiling = verdict is not None and verdict.finding is trend.Finding.CEILING
            return (0 if ceiling else 1, list(SIGNALS).index(skey[2]))

        raised.sort(key=rank)
        first = raised[0]
        growth, ceiling = LEAK_REASON[(first[0], first[2])]
        verdict = self.series[first].verdict
        assert verdict is not None  # a raised counter was stepped with a verdict
        reason = ceiling if verdict.finding is trend.Finding.CEILING else growth
        message = verdict.message
        if not verdict.raised:
            message += " (clearing)"
        if len(raised) > 1:
            message += f"; {len(raised) - 1} more signal(s) raised"
        return Want(Status.TRUE, reason, message, frozenset(raised))
