"""Detection time per fault of docs/faults.md: p50/p95 over N real injections each.

Run with `python -m benchmarks.fault_matrix [INJECTIONS] [--only FAULT ...]`; prints Markdown and
writes it to benchmarks/out/fault_matrix.md. Each real fault runs in its own process with its own
sandbox (benchmarks/fault_inject.py), all at once; a single `--only` runs in this process.
The hang/kill faults compared with NPD (benchmarks/peer.py) are not repeated here.

Synthetic rows (memory growth over hours) are judgement only: the real Judge fed process samples
every 15 s (checks.process.interval), the growth starting a random 0..7.2 min (the long window's
thinning period) after the agent started.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.stats import machine, summarize

OUT = Path(__file__).with_name("out")
GIB = 2**30
ROWS: dict[str, tuple[str, str, str]] = {
    # fault: (injection, agent config beyond the shipped defaults, reason)
    "containerd-loop": ("containerd SIGKILLed + restarted every 30 s, from the 1st kill",
                        "defaults", "ContainerdRestartLoop"),
    "dockerd-loop": ("dockerd SIGKILLed + restarted every 30 s, from the 1st kill", "defaults",
                     "DockerdRestartLoop"),
    "intermittent": ("proxy holds every 2nd /_ping reply (600 s)",
                     "dockerVersion, dockerInfo, process off (as the test)", "DockerdHung"),
    "slow": ("proxy holds every dockerd reply 8 s", "process off (the proxy is not dockerd)",
             "DockerdAPISlow"),
    "canary": ("runc sleeps 15 s before `runc start`", "canary on, interval 20 s (shipped 300 s); "
               "Docker canary only (containerd off, as the test)", "ContainerStartSlow"),
    "disk": ("160 MiB ext4 data-root filled to 95 %", "disk.dockerRoot set; disk interval 60 s",
             "DockerRootDiskLow"),
    "journal": ("10 overlay2 corruption lines, 1 s apart, from the 10th",
                "runtimeLog.journalDirs set; interval 60 s", "RuntimeStorageCorrupt"),
    "containerd-down": ("containerd SIGKILLed, not restarted", "defaults", "ContainerdDown"),
}


def run_one(name: str, n: int) -> dict[str, object]:
    from benchmarks.fault_inject import FAULTS

    base = Path(tempfile.mkdtemp(prefix="npfm-", dir="/tmp"))
    try:
        measured = FAULTS[name](base, n)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result = {"fault": name, "times": measured.times, "missed": measured.missed,
              "counts": measured.counts}
    (OUT / "fault_matrix").mkdir(parents=True, exist_ok=True)
    (OUT / "fault_matrix" / f"{name}.json").write_text(json.dumps(result))
    return result


def synthetic(n: int, *, start: float, per_hour: float, hours: float) -> list[float | None]:
    """Hours from growth start to the first MemoryLeak Event (None: none within `hours`)."""
    from nodeprobe.config import Config
    from nodeprobe.judge.continuous import Judge
    from nodeprobe.model import Check, Runtime
    from tests.harness.observations import T0, process

    out: list[float | None] = []
    every = 15.0
    for _ in range(n):
        judge = Judge(Config.defaults(), expected=[(Runtime.DOCKERD, Check.PROCESS)], now=T0,
                      node_memory_bytes=64 * GIB)
        grow_at = T0 + random.uniform(0.0, 432.0)
        raised = None
        for i in range(int(hours * 3600 / every)):
            at = T0 + every * i
            rss = start + per_hour * max(0.0, at - grow_at) / 3600
            if judge.observe(process(Runtime.DOCKERD, at, rss), now=at):
                raised = (at - grow_at) / 3600
                break
        out.append(raised)
    return out


def _load_sampler(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(30.0):
        samples.append(os.getloadavg()[0])


def _cell(times: list[float]) -> str:
    if not times:
        return "- | - | - |"
    s = summarize(times)
    return f"{s.median:.1f} s | {s.p95:.1f} s | {s.minimum:.1f}-{s.maximum:.1f} s |"


def table(results: list[dict[str, object]], n: int) -> list[str]:
    lines = ["| fault (injection) | agent config | reason | p50 | p95 | min-max | n | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        injection, config, reason = ROWS[str(r["fault"])]
        times = [float(t) for t in r["times"]]  # type: ignore[attr-defined]
        counts = dict(r["counts"])  # type: ignore[call-overload]
        notes = [f"missed {r['missed']}"] if r["missed"] else []
        if "kills" in counts:
            notes.append(f"kills until raised: {sorted(counts['kills'])}")
        if "hung_first_s" in counts:
            notes.append(f"DockerdHung before the late answers: {len(counts['hung_first_s'])}"
                         f"/{n} injections, {_span(counts['hung_first_s'])}; DockerdHung raised "
                         f"again in the 60 s after the Slow raise: {counts['hung_after_slow']}")
        lines.append(f"| {injection} | {config} | {reason} | {_cell(times)} {len(times)} | "
                     f"{'; '.join(notes) or '-'} |")
    return lines


def _span(values: list[float]) -> str:
    if not values:
        return "never"
    s = summarize(values)
    return f"lasting p50 {s.median:.1f} s (max {s.maximum:.1f} s)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fault_matrix")
    parser.add_argument("injections", nargs="?", type=int, default=10)
    parser.add_argument("--only", action="append", choices=sorted(ROWS))
    args = parser.parse_args(argv or [])
    n = args.injections
    names = args.only or list(ROWS)
    if len(names) == 1:
        print(json.dumps(run_one(names[0], n)))
        return
    load: list[float] = [os.getloadavg()[0]]
    stop = threading.Event()
    threading.Thread(target=_load_sampler, args=(load, stop), daemon=True).start()
    started = time.monotonic()
    procs = {name: subprocess.Popen([sys.executable, "-m", "benchmarks.fault_matrix", str(n),
                                     "--only", name]) for name in names}
    for proc in procs.values():
        proc.wait()
    stop.set()
    results = []
    for name in names:
        path = OUT / "fault_matrix" / f"{name}.json"
        if procs[name].returncode == 0 and path.exists():
            results.append(json.loads(path.read_text()))
    growth = synthetic(n, start=800e6, per_hour=70 * 2**20, hours=6)
    flat = synthetic(n, start=3 * GIB, per_hour=0.0, hours=26)
    hours = [h for h in growth if h is not None]
    g = summarize(hours) if hours else None
    lines = [f"{machine()}; all faults at once, {(time.monotonic() - started) / 60:.0f} min; "
             f"1-min load average p50 {summarize(load).median:.1f}, max {max(load):.1f} "
             f"(machine shared with other engineers' runs).", "", *table(results, n), "",
             "| synthetic (judge only, process sample every 15 s) | reason | p50 | p95 | "
             "min-max | n |", "|---|---|---|---|---|---|"]
    if g:
        lines.append(f"| dockerd RssAnon 800 MB growing 70 MiB/h, from growth start | "
                     f"DockerdMemoryGrowth | {g.median:.2f} h | {g.p95:.2f} h | "
                     f"{g.minimum:.2f}-{g.maximum:.2f} h | {len(hours)} (missed "
                     f"{len(growth) - len(hours)} in 6 h) |")
    raised = sum(h is not None for h in flat)
    lines.append(f"| flat 3 GiB on a 64 GiB node, 26 h | none | raised {raised} of {len(flat)} "
                 f"| | | {len(flat)} |")
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "fault_matrix.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
