"""What the continuous judge keeps between observations: one small record per check and per
leak series, so each sub-judge reads and steps the fields it owns in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeprobe.judge import trend
from nodeprobe.judge.attribution import Problem
from nodeprobe.judge.hysteresis import Counter
from nodeprobe.model import Check, Observation, Runtime, Status

Key = tuple[Runtime, Check]
SeriesKey = tuple[Runtime, Check, str]


@dataclass(slots=True)
class CheckState:
    """One (runtime, check): its latest answer and where each of its counters stands."""

    latest: Observation | None = None
    health: Counter = field(default_factory=Counter)
    problem: Problem | None = None
    """The last problem that counted as a failure (names the cause while raised)."""
    bad_since: float | None = None
    """When the current run of failures began (None while it answers)."""
    hung_run: int = 0
    """HUNG results since the last late answer (a late answer re-judges them)."""
    spell_downs: int = 0
    """DOWN results in its runtime's current DOWN spell."""
    late: tuple[float, float] | None = None
    """When its last late answer came, and its latency."""
    pending_slow: int = 0
    """Slow results a late answer stands for, counted only if the next call is late too."""
    answered_late_at: float = 0.0
    """When the call behind the last late answer returned (its start plus its latency)."""
    slow: Counter = field(default_factory=Counter)
    slow_latency: tuple[float, bool] | None = None
    """The latency that made it slow, and whether it came after the deadline."""
    stamp: float | None = None
    """The newest ImageFsInfo stats timestamp seen."""
    gaps: tuple[float, ...] = ()
    """The last few ImageFsInfo refresh periods seen."""


@dataclass(slots=True)
class SeriesState:
    """One leak series (runtime, check, reading): its two windows and its verdicts."""

    short: tuple[trend.Sample, ...] = ()
    long: tuple[trend.Sample, ...] = ()
    long_verdict: trend.TrendVerdict | None = None
    verdict: trend.TrendVerdict | None = None
    counter: Counter = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Want:
    """What a condition should say now; `signature` decides whether its message is rewritten."""

    status: Status
    reason: str
    message: str
    signature: frozenset[object] = frozenset()
