"""Leak detection: sustained growth over a sliding window, or a value above a ceiling.

Growth is the Theil-Sen slope (median of pairwise slopes), which one spike or a few wild samples
cannot move. A leak must be *sustained*: the slope over the whole window and over its recent half
must both pass the minimum rate, and the growth over the window must also be a real fraction of
where it started. So a step up that then stays flat (a burst of new containers, a cache filling)
is not a leak; if the step lands too high the ceilings catch it. Short windows never raise growth;
ceilings raise at once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nodeprobe.config import LeakSettings, LeakSignalSettings, MemorySignalSettings

MAX_POINTS = 200
"""Windows with more samples are thinned evenly to this many: ~20k pairs, a few ms."""


def median(values: Iterable[float]) -> float:
    """The median, as `statistics.median` computes it. Not imported from there: `statistics`
    pulls in `decimal` and `fractions`, ~0.5 MiB of resident memory on every node."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    """Wall-clock seconds."""
    value: float


class Unit(enum.StrEnum):
    BYTES = "bytes"
    COUNT = "count"


class Finding(enum.StrEnum):
    TOO_SHORT = "too_short"
    """Not enough samples or span to judge growth (and below any ceiling)."""
    STABLE = "stable"
    GROWTH = "growth"
    CEILING = "ceiling"


@dataclass(frozen=True, slots=True)
class TrendLimits:
    """Everything one signal is judged by, with ceilings already resolved to one number."""

    window_s: float
    min_span_s: float
    min_samples: int
    min_growth_per_hour: float
    min_relative_growth: float
    ceiling: float = 0.0
    """Absolute ceiling in the signal's unit; 0 = none."""
    ceiling_note: str = ""
    """Where the ceiling comes from, for messages ("25 % of node memory 8 GiB")."""
    spacing_s: float = 0.0
    """Keep at most one sample per this many seconds (long windows); 0 = every sample."""

    @classmethod
    def from_settings(
        cls,
        leak: LeakSettings,
        signal: LeakSignalSettings,
        *,
        node_memory_bytes: float | None = None,
        long: bool = False,
    ) -> TrendLimits:
        """Resolve the ceiling: a share of node memory when that is known, else the absolute one.

        A fixed ceiling is wrong both ways: 2 GiB of dockerd is fatal on a 4 GiB node and
        ordinary on a 64 GiB one that runs hundreds of containers. What a daemon legitimately
        needs, and what it can take before the node suffers, both grow with the node, so the
        ceiling does too; the absolute value is the fallback when MemTotal cannot be read.
        """
        ceiling, note = signal.ceiling, ""
        memory = isinstance(signal, MemorySignalSettings)
        percent = signal.percent_of_node_memory if isinstance(signal, MemorySignalSettings) else 0
        if memory and percent and node_memory_bytes:
            ceiling = node_memory_bytes * percent / 100
            note = f"{percent:g} % of node memory {fmt(node_memory_bytes, Unit.BYTES)}"
        if long:
            return cls(
                window_s=leak.long_window,
                min_span_s=leak.long_min_span,
                min_samples=leak.min_samples,
                min_growth_per_hour=signal.min_growth_per_hour,
                min_relative_growth=leak.long_min_relative_growth,
                ceiling=ceiling,
                ceiling_note=note,
                spacing_s=leak.long_window / MAX_POINTS,
            )
        return cls(
            window_s=leak.window,
            min_span_s=leak.min_span,
            min_samples=leak.min_samples,
            min_growth_per_hour=signal.min_growth_per_hour,
            min_relative_growth=signal.min_relative_growth,
            ceiling=ceiling,
            ceiling_note=note,
        )


@dataclass(frozen=True, slots=True)
class TrendVerdict:
    finding: Finding
    message: str
    slope_per_hour: float = 0.0
    latest: float = 0.0

    @property
    def raised(self) -> bool:
        return self.finding in (Finding.GROWTH, Finding.CEILING)


def fmt(value: float, unit: Unit) -> str:
    """A human number: bytes in KiB/MiB/GiB, counts with thousands separators."""
    if unit is Unit.BYTES:
        for suffix, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if abs(value) >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{value:.0f} B"
    return f"{value:,.0f}"


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def slide(
    samples: tuple[Sample, ...], new: Sample, *, window_s: float, spacing_s: float = 0.0
) -> tuple[Sample, ...]:
    """The window after adding `new`: samples older than `window_s` before it are dropped, and
    `new` is kept only if it comes `spacing_s` or more after the last kept one."""
    start = new.at - window_s
    kept = tuple(s for s in samples if start <= s.at <= new.at)
    if spacing_s and kept and new.at - kept[-1].at < spacing_s:
        return kept
    return (*kept, new)


def _thin(samples: Sequence[Sample], max_points: int) -> Sequence[Sample]:
    if len(samples) <= max_points:
        return samples
    last = len(samples) - 1
    return [samples[round(i * last / (max_points - 1))] for i in range(max_points)]


def theil_sen(samples: Sequence[Sample], *, max_points: int = MAX_POINTS) -> float:
    """Median of pairwise slopes (value per second); 0 with fewer than two distinct times."""
    points = _thin(samples, max_points)
    slopes = [
        (b.value - a.value) / (b.at - a.at)
        for i, a in enumerate(points)
        for b in points[i + 1 :]
        if b.at != a.at
    ]
    return median(slopes) if slopes else 0.0


def _ceiling_text(limits: TrendLimits, unit: Unit) -> str:
    """The ceiling as messages name it: "1.0 GiB (25 % of node memory 4.0 GiB)", or "none"."""
    if limits.ceiling > 0:
        note = f" ({limits.ceiling_note})" if limits.ceiling_note else ""
        return f"{fmt(limits.ceiling, unit)}{note}"
    return "none"


def above_ceiling(
    latest: float, *, limits: TrendLimits, label: str, unit: Unit
) -> TrendVerdict | None:
    """CEILING if `latest` is above the ceiling: one reading is enough, no window needed."""
    if limits.ceiling > 0 and latest > limits.ceiling:
        return TrendVerdict(
            Finding.CEILING,
            f"{label} is {fmt(latest, unit)}, above its ceiling of {_ceiling_text(limits, unit)}",
            latest=latest,
        )
    return None


@dataclass(frozen=True, slots=True)
class _Fit:
    """A window's robust line (Theil-Sen slope, median intercept) and its recent half's slope."""

    span_s: float
    start: float
    """The line's value at the window's first sample."""
    end: float
    """The line's value at the window's last sample."""
    per_hour: float
    recent_per_hour: float
    """The slope over the newer half of the span; 0 with fewer than three samples there."""


def _fit(samples: Sequence[Sample]) -> _Fit:
    """The line through a window of two or more samples, oldest first."""
    span = samples[-1].at - samples[0].at
    slope = theil_sen(samples)
    t0 = samples[0].at
    intercept = median(s.value - slope * (s.at - t0) for s in samples)
    recent = [s for s in samples if s.at >= samples[-1].at - span / 2]
    recent_per_hour = theil_sen(recent) * 3600 if len(recent) >= 3 else 0.0
    return _Fit(span, intercept, intercept + slope * span, slope * 3600, recent_per_hour)


def _sustained(line: _Fit, limits: TrendLimits) -> bool:
    """Growth fast over the whole window and its recent half, and large next to the start."""
    relative = (line.end - line.start) / max(abs(line.start), 1.0)
    return (
        line.per_hour >= limits.min_growth_per_hour
        and line.recent_per_hour >= limits.min_growth_per_hour / 2
        and relative >= limits.min_relative_growth
    )


def judge(
    samples: Sequence[Sample], *, limits: TrendLimits, label: str, unit: Unit
) -> TrendVerdict:
    """Judge one signal's window (oldest first). `label` names it: "dockerd goroutines"."""
    if not samples:
        return TrendVerdict(Finding.TOO_SHORT, f"{label}: no samples yet")
    latest = samples[-1].value
    breach = above_ceiling(latest, limits=limits, label=label, unit=unit)
    if breach is not None:
        return breach
    span = samples[-1].at - samples[0].at
    if len(samples) < limits.min_samples or span < limits.min_span_s:
        return TrendVerdict(
            Finding.TOO_SHORT,
            f"{label} is {fmt(latest, unit)} ({len(samples)} samples over {_duration(span)}, "
            f"growth is judged after {limits.min_samples} samples over "
            f"{_duration(limits.min_span_s)})",
            latest=latest,
        )
    return _judge_growth(_fit(samples), latest=latest, limits=limits, label=label, unit=unit)


def _judge_growth(
    line: _Fit, *, latest: float, limits: TrendLimits, label: str, unit: Unit
) -> TrendVerdict:
    """GROWTH or STABLE for a window long enough to judge, worded with its rate."""
    sign = "+" if line.per_hour >= 0 else "-"
    rate = f"{sign}{fmt(abs(line.per_hour), unit)}/h"
    over = _duration(line.span_s)
    if _sustained(line, limits):
        return TrendVerdict(
            Finding.GROWTH,
            f"{label} grew from {fmt(line.start, unit)} to {fmt(line.end, unit)} over {over} "
            f"({rate}); ceiling {_ceiling_text(limits, unit)}",
            slope_per_hour=line.per_hour,
            latest=latest,
        )
    return TrendVerdict(
        Finding.STABLE,
        f"{label} is {fmt(latest, unit)}, no sustained growth over {over} "
        f"({rate}, a leak needs +{fmt(limits.min_growth_per_hour, unit)}/h and "
        f"+{limits.min_relative_growth:.0%})",
        slope_per_hour=line.per_hour,
        latest=latest,
    )
