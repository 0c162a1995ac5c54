"""Measurements for benchmarks/peer.py: a process tree's RSS and CPU, the machine's load.

A tool's cost includes what it runs: NPD's health-checker, crictl and docker; NPD's
`nodeprobe check` interpreters. RSS sums the live tree (sampled); CPU counts reaped children
through cutime/cstime.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from benchmarks.agent_load import CLK_TCK


class Sampled(Protocol):
    @property
    def pid(self) -> int: ...

    samples: list[float]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def tree_rss(pid: int, kids: dict[int, list[int]]) -> float:
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
        stack.extend(kids.get(p, []))
    return total


def tree_cpu_s(pid: int) -> float:
    """utime+stime of the process and of every child it has reaped (cutime+cstime)."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / CLK_TCK


@contextmanager
def sampling(tools: Sequence[Sampled]) -> Iterator[None]:
    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            kids = _children()
            for t in tools:
                t.samples.append(tree_rss(t.pid, kids))
            stop.wait(0.5)

    for t in tools:
        t.samples.clear()
    with _background(run):
        yield


@contextmanager
def loadavg(samples: list[float]) -> Iterator[None]:
    """The machine's 1-minute load average every 30 s (the machine is shared)."""
    def run(stop: threading.Event) -> None:
        while not stop.wait(0 if not samples else 30):
            samples.append(os.getloadavg()[0])

    with _background(run):
        yield


@contextmanager
def _background(run: Callable[[threading.Event], None]) -> Iterator[None]:
    """`run(stop)` in a daemon thread for the body of the with-block."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
