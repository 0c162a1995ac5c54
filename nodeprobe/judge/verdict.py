"""The one-shot verdict of `nodeprobe check`: one round of observations, no history."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from nodeprobe.config import Config
from nodeprobe.judge.attribution import CALLS, Problem, attribute, problem_of
from nodeprobe.judge.degraded import findings
from nodeprobe.judge.leaks import LEAK_REASON, SIGNALS, trend_limits
from nodeprobe.judge.trend import above_ceiling
from nodeprobe.model import Observation, Outcome, Reason, Runtime

SUMMARY_MAX = 200
"""node-problem-detector shows the first line as the condition message: keep it short."""


@dataclass(frozen=True, slots=True)
class Verdict:
    code: int
    """0 healthy, 1 problem, 2 unknown: node-problem-detector's custom-plugin convention."""
    reason: str
    summary: str
    """One line, at most SUMMARY_MAX characters; the first line `nodeprobe check` prints."""


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _ceiling_breach(
    observations: Sequence[Observation], config: Config, node_memory_bytes: float | None
) -> Verdict | None:
    """The first reading above its leak ceiling: one round has no window to judge growth."""
    for obs in observations:
        for value, reading in obs.values.items():
            reasons = LEAK_REASON.get((obs.runtime, value))
            if reasons is None:
                continue
            limits = trend_limits(config.judge.leak, value, node_memory_bytes=node_memory_bytes)
            name, unit = SIGNALS[value]
            label = f"{obs.runtime} {name}"
            breach = above_ceiling(reading, limits=limits, label=label, unit=unit)
            if breach is not None:
                return Verdict(1, reasons[1], one_line(breach.message))
    return None


_NO_RUNTIME = Verdict(
    2,
    Reason.UNKNOWN,
    "unknown: no container runtime found to probe "
    "(is dockerd or containerd running? see --docker-socket, "
    "--containerd-socket)",
)
"""Nothing was probed at all: unknown, not healthy."""


def verdict(
    observations: Sequence[Observation],
    *,
    config: Config | None = None,
    node_memory_bytes: float | None = None,
) -> Verdict:
    """Judge one round of observations (one per check) for `nodeprobe check`: a failing call
    first, then a reading above its leak ceiling, then a degradation; else healthy."""
    config = config or Config.defaults()
    if not observations:
        return _NO_RUNTIME
    seen = {obs.runtime for obs in observations}
    cause = attribute(_problems(observations, config), seen=seen)
    if cause is not None:
        return Verdict(1, cause.reason, one_line(cause.message))
    breach = _ceiling_breach(observations, config, node_memory_bytes)
    if breach is not None:
        return breach
    degraded = findings(observations, config)
    if degraded:
        return Verdict(1, degraded[0].reason, one_line(degraded[0].message))
    return Verdict(0, Reason.HEALTHY, one_line(_healthy(observations, seen)))


def _problems(observations: Sequence[Observation], config: Config) -> list[Problem]:
    """Each observation's problem, if it shows one (problem_of, with no history)."""
    settings, require = config.judge, config.containerd.require_network_ready
    return [
        p
        for obs in observations
        if (p := problem_of(obs, settings=settings, require_network_ready=require))
    ]


def _healthy(observations: Sequence[Observation], seen: Collection[Runtime]) -> str:
    """'dockerd 20.10.24 and containerd 1.6.20 answer normally (8 checks)', and the slowest."""
    names = [
        f"{runtime} {_version(observations, runtime)}".strip()
        for runtime in (Runtime.DOCKERD, Runtime.CONTAINERD)
        if runtime in seen
    ]
    verb = "answers" if len(names) == 1 else "answer"
    return (
        f"{' and '.join(names)} {verb} normally ({len(observations)} checks)"
        f"{_slow(observations)}"
    )


def _version(observations: Sequence[Observation], runtime: Runtime) -> str:
    """The version `runtime` reported in any of its answers; "" if none did."""
    return next(
        (o.info["version"] for o in observations if o.runtime is runtime and "version" in o.info),
        "",
    )


def _slow(observations: Sequence[Observation]) -> str:
    """'; 1 slow, worst dockerd GET /info 2.5s', or "" when nothing was slow."""
    slow = [o for o in observations if o.outcome is Outcome.SLOW]
    if not slow:
        return ""
    worst = max(slow, key=lambda o: o.latency_s)
    return f"; {len(slow)} slow, worst {worst.runtime} {CALLS[worst.check]} {worst.latency_s:.3g}s"
