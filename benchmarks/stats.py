"""Small helpers shared by the benchmarks: summaries and child-process measurements."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


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


def loadavg() -> str:
    """The machine's 1, 5 and 15-minute load averages, as /proc/loadavg writes them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon (bytes) and Threads of a live process, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
            out[key] = int(value.split()[0]) * (1024 if value.strip().endswith("kB") else 1)
    return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: str,
             every: Callable[[], object] | None = None) -> float:
    """Poll a real state until true; returns the wall-clock instant it was seen. `every` runs
    on each round (the simulated agents' part)."""
    end = time.monotonic() + timeout_s
    while True:
        if predicate():
            return time.time()
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        if every is not None:
            every()
        time.sleep(0.1)  # pacing of the poll, not synchronisation
