"""Synthetic probe observations for the Judge, on an explicit clock starting at T0.

Shared by the Judge's unit tests and benchmarks/fault_matrix.py (memory growth fed hour by hour).
"""

from __future__ import annotations

from nodeprobe.model import Check, Observation, Outcome, Runtime, Value

T0 = 1_700_000_000.0


def process(runtime: Runtime, at: float, rss: float) -> Observation:
    """The process check's observation of `runtime` at `at`: anonymous RSS `rss` bytes."""
    return Observation(
        runtime,
        Check.PROCESS,
        Outcome.OK,
        0.01,
        at,
        values={Value.RSS_ANON_BYTES: rss, Value.FDS: 40.0},
    )
