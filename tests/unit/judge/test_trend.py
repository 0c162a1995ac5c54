"""Leak detection on synthetic series: what raises and what must not."""

from __future__ import annotations

import random
import statistics

import pytest

from nodeprobe.config import Config
from nodeprobe.judge.trend import (
    Finding,
    Sample,
    TrendLimits,
    Unit,
    fmt,
    judge,
    median,
    slide,
    theil_sen,
)

LEAK = Config.defaults().judge.leak
GOROUTINES = TrendLimits.from_settings(LEAK, LEAK.goroutines)
MEMORY = TrendLimits.from_settings(LEAK, LEAK.memory)
MiB = 2**20


def series(
    values: list[float], *, every_s: float = 10.0, t0: float = 1_700_000_000.0
) -> list[Sample]:
    return [Sample(t0 + i * every_s, v) for i, v in enumerate(values)]


def linear(start: float, per_hour: float, *, minutes: float, every_s: float = 10.0) -> list[float]:
    return [start + per_hour * i * every_s / 3600 for i in range(int(minutes * 60 / every_s) + 1)]


def goroutines(samples: list[Sample], limits: TrendLimits = GOROUTINES):
    return judge(samples, limits=limits, label="dockerd goroutines", unit=Unit.COUNT)


def test_linear_growth_raises_with_a_human_message() -> None:
    verdict = goroutines(series(linear(80, 7000, minutes=12)))
    assert verdict.finding is Finding.GROWTH and verdict.raised
    assert verdict.message == (
        "dockerd goroutines grew from 80 to 1,480 over 12 min (+7,000/h); ceiling 50,000"
    )


def test_memory_growth_message_in_bytes() -> None:
    samples = series(linear(100 * MiB, 600 * MiB, minutes=30, every_s=15), every_s=15)
    verdict = judge(samples, limits=MEMORY, label="dockerd RssAnon", unit=Unit.BYTES)
    assert verdict.raised
    assert "from 100.0 MiB to 400.0 MiB over 30 min (+600.0 MiB/h); ceiling 2.0 GiB" in (
        verdict.message
    )


def test_flat_high_series_does_not_raise() -> None:
    verdict = goroutines(series([40_000.0] * 360))
    assert verdict.finding is Finding.STABLE and verdict.slope_per_hour == 0


@pytest.mark.parametrize("seed", range(10))
def test_noisy_flat_series_does_not_raise(seed: int) -> None:
    rng = random.Random(seed)
    values = [5000 * (1 + rng.uniform(-0.1, 0.1)) for _ in range(360)]
    assert not goroutines(series(values)).raised


@pytest.mark.parametrize("seed", range(5))
def test_noisy_linear_growth_still_raises(seed: int) -> None:
    rng = random.Random(seed)
    values = [v * (1 + rng.uniform(-0.1, 0.1)) for v in linear(200, 3000, minutes=30)]
    assert goroutines(series(values)).raised


def test_single_spike_does_not_raise() -> None:
    values = [100.0] * 120
    values[100] = 100_000.0 - 1  # below the ceiling, far above everything else
    assert not goroutines(series(values)).raised
    values[-1] = 30_000.0  # even as the very last sample
    assert not goroutines(series(values)).raised


@pytest.mark.parametrize("step_at_fraction", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_step_up_then_flat_is_not_a_leak(step_at_fraction: float) -> None:
    """A one-time step (containers started, a cache filled) is not sustained growth: the recent
    half of the window is flat. The ceilings exist for steps that land too high."""
    n = 360
    values = [100.0 if i < n * step_at_fraction else 2000.0 for i in range(n)]
    assert not goroutines(series(values)).raised


def test_staircase_that_keeps_climbing_is_a_leak() -> None:
    values = [100.0 + 300 * (i // 30) for i in range(360)]  # +300 every 5 min
    assert goroutines(series(values)).raised


def test_slow_growth_below_rate_does_not_raise() -> None:
    assert not goroutines(series(linear(100, 500, minutes=60))).raised  # 500/h < 1000/h


def test_fast_but_small_relative_growth_does_not_raise() -> None:
    # +2,000/h on 40,000 over 15 min is +500, 1.25 %: a busy daemon, not a leak.
    assert not goroutines(series(linear(40_000, 2000, minutes=15))).raised


def test_ceiling_raises_immediately() -> None:
    verdict = goroutines(series([60_000.0]))
    assert verdict.finding is Finding.CEILING
    assert verdict.message == "dockerd goroutines is 60,000, above its ceiling of 50,000"


def test_percent_of_node_memory_ceiling() -> None:
    limits = TrendLimits.from_settings(LEAK, LEAK.memory, node_memory_bytes=4 * 2**30)
    assert limits.ceiling == 2**30  # 25 % of 4 GiB is below the 2 GiB absolute ceiling
    verdict = judge(series([1.5 * 2**30]), limits=limits, label="dockerd RssAnon", unit=Unit.BYTES)
    assert verdict.finding is Finding.CEILING
    assert "ceiling of 1.0 GiB (25 % of node memory 4.0 GiB)" in verdict.message
    big = TrendLimits.from_settings(LEAK, LEAK.memory, node_memory_bytes=64 * 2**30)
    assert big.ceiling == 16 * 2**30 and big.ceiling_note == "25 % of node memory 64.0 GiB"
    unknown = TrendLimits.from_settings(LEAK, LEAK.memory, node_memory_bytes=None)
    assert unknown.ceiling == 2 * 2**30 and unknown.ceiling_note == ""


def test_short_window_never_raises_growth() -> None:
    fast = linear(100, 500_000, minutes=5)  # huge rate, but only 5 minutes, below the ceiling
    verdict = goroutines(series(fast))
    assert verdict.finding is Finding.TOO_SHORT
    few = series([100.0, 10_000.0, 20_000.0], every_s=600)  # long span, 3 samples
    assert goroutines(few).finding is Finding.TOO_SHORT
    assert goroutines([]).finding is Finding.TOO_SHORT


def test_slide_drops_old_samples() -> None:
    window: tuple[Sample, ...] = ()
    for i in range(100):
        window = slide(window, Sample(i * 60.0, float(i)), window_s=1800)
    assert window[0].at == 99 * 60 - 1800 and window[-1].at == 99 * 60
    assert len(window) == 31


def test_theil_sen_is_exact_on_a_line_and_thins_big_windows() -> None:
    samples = series([3.0 * i for i in range(1000)], every_s=1.0)
    assert theil_sen(samples) == pytest.approx(3.0)
    assert theil_sen(samples[:1]) == 0.0


def test_fmt() -> None:
    assert fmt(1480, Unit.COUNT) == "1,480"
    assert fmt(3 * 2**30, Unit.BYTES) == "3.0 GiB"
    assert fmt(512, Unit.BYTES) == "512 B"


@pytest.mark.parametrize("seed", range(5))
def test_median_is_statistics_median(seed: int) -> None:
    rng = random.Random(seed)
    for n in (1, 2, 3, 10, 11):
        values = [rng.uniform(-1e6, 1e6) for _ in range(n)]
        assert median(iter(values)) == statistics.median(values)
    with pytest.raises(ValueError):
        median([])
