"""Leak tables: which readings are judged for leaks, in what unit, under which reasons."""

from __future__ import annotations

from collections.abc import Mapping

from nodeprobe.config import Config
from nodeprobe.judge.trend import TrendLimits, Unit
from nodeprobe.model import Reason, Runtime, Value

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
    config: Config, value: str, *, node_memory_bytes: float | None, long: bool = False
) -> TrendLimits:
    """The limits one signal is judged by: the short window's, or with `long` the long one's."""
    leak = config.judge.leak
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
