"""Small helpers shared by the benchmarks: summaries and child-process measurements."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    p95: float
    minimum: float
    maximum: float
    stdev: float

    def row(self, unit: str, scale: float = 1.0) -> str:
        f = scale
        return (f"{self.median * f:.1f} {unit} (p95 {self.p95 * f:.1f}, "
                f"min {self.minimum * f:.1f}, max {self.maximum * f:.1f}, "
                f"sd {self.stdev * f:.1f}; n={self.n})")


def summarize(samples: Sequence[float]) -> Summary:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Summary(
        n=len(ordered),
        median=statistics.median(ordered),
        p95=p95,
        minimum=ordered[0],
        maximum=ordered[-1],
        stdev=statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
    )


@dataclass(frozen=True)
class ChildRun:
    wall_s: float
    peak_rss_bytes: int
    exit_code: int


def run_child(argv: Sequence[str]) -> ChildRun:
    """Run a command; wall time and the child's own peak RSS (wait4's rusage, not the group's)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(wall_s=wall, peak_rss_bytes=usage.ru_maxrss * 1024, exit_code=proc.returncode)


def machine() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    model = "unknown cpu"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cpus} cores ({model}), {mem_kib / 1024 / 1024:.0f} GiB"
