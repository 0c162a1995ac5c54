"""Clear time after a hang: SIGSTOP until raised, held 5-45 s, SIGCONT, time to nothing flagged.

Run with `python -m benchmarks.recovery [INJECTIONS]`: dockerd and containerd in two processes at
once, each with its own sandbox and one `nodeprobe agent --standalone` at the shipped defaults
(benchmarks/fault_inject.py's Watch polls its /metrics every 0.1 s). Each injection starts 0-10 s
after the previous one cleared; the hold after the raise is random, so the held calls' late
answers come before and after the 30 s horizon. Also counted: reasons raised after SIGCONT that
were not flagged before it (a recovery must raise nothing). Prints Markdown and writes it to
benchmarks/out/recovery.md.
"""

from __future__ import annotations

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

from benchmarks.fault_inject import POLL_S, Watch, healthy_agent
from benchmarks.stats import machine, summarize
from nodeprobe.model import Reason
from tests.harness.runtimes import Sandbox

OUT = Path(__file__).with_name("out")
CAP_S = 90.0
"""A condition still flagged this long after SIGCONT counts as not cleared."""
REASONS = {"dockerd": Reason.DOCKERD_HUNG, "containerd": Reason.CONTAINERD_HUNG}


def _wait(predicate: object, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(POLL_S)
    return False


def _cleared(watch: Watch, resumed: float) -> tuple[float | None, set[str]]:
    """Seconds from SIGCONT to the first empty flagged set; reasons first flagged after it."""
    before = {r for at, flagged in watch.changes if at <= resumed for r in flagged}
    _wait(lambda: watch.changes[-1][0] > resumed and not watch.changes[-1][1], CAP_S)
    after = [(at, flagged) for at, flagged in watch.changes if at > resumed]
    new = {r for _, flagged in after for r in flagged} - before
    empty = [at for at, flagged in after if not flagged]
    return (empty[0] - resumed if empty else None), new


def run(daemon: str, n: int) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="nprc-", dir="/tmp"))
    result: dict[str, object] = {"daemon": daemon, "detect": [], "clear": [], "hold": [],
                                 "missed_clear": 0, "new": []}
    try:
        with Sandbox(base) as sandbox, healthy_agent(sandbox, base) as watch:
            target = sandbox.dockerd if daemon == "dockerd" else sandbox.containerd
            for _ in range(n):
                _wait(lambda: not watch.flagged(), CAP_S)
                time.sleep(random.uniform(0.0, 10.0))
                start = time.monotonic()
                target.hang()
                try:
                    _wait(lambda: REASONS[daemon] in watch.flagged(), 60)
                    raised = time.monotonic() - start
                    hold = random.uniform(5.0, 45.0)
                    time.sleep(hold)  # the fault's length
                finally:
                    target.resume()
                resumed = time.monotonic()
                took, new = _cleared(watch, resumed)
                result["detect"].append(raised)  # type: ignore[attr-defined]
                result["hold"].append(hold)  # type: ignore[attr-defined]
                result["new"].append(sorted(new))  # type: ignore[attr-defined]
                if took is None:
                    result["missed_clear"] = int(result["missed_clear"]) + 1  # type: ignore[call-overload]
                else:
                    result["clear"].append(took)  # type: ignore[attr-defined]
                print(f"  {daemon}: raised {raised:.1f} s, held {hold:.0f} s more, cleared "
                      f"{'-' if took is None else f'{took:.1f}'} s after SIGCONT, new {new}",
                      flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return result


def _cell(values: list[float]) -> str:
    s = summarize(values)
    return f"{s.median:.1f} / {s.p95:.1f} s ({s.minimum:.1f}-{s.maximum:.1f})"


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    n = int(args[0]) if args else 10
    if len(args) > 1:
        print(json.dumps(run(args[1], n)))
        return
    load: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(15.0):
            load.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    started = time.monotonic()
    procs = {d: subprocess.Popen([sys.executable, "-m", "benchmarks.recovery", str(n), d],
                                 stdout=subprocess.PIPE, text=True) for d in REASONS}
    results = []
    for proc in procs.values():
        out, _ = proc.communicate()
        print(out, end="")
        results.append(json.loads(out.strip().splitlines()[-1]))
    stop.set()
    lines = [f"{machine()}; both at once, {(time.monotonic() - started) / 60:.0f} min; 1-min "
             f"load average p50 {summarize(load or [0.0]).median:.1f}, max {max(load or [0.0]):.1f}"
             " (machine shared with other engineers' runs).", "",
             "| hang (SIGSTOP) | n | detect p50 / p95 (range) | held after the raise | "
             "clear after SIGCONT p50 / p95 (range) | not cleared in 90 s | "
             "new raises on recovery |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        new = sum(1 for x in r["new"] if x)
        lines.append(f"| {r['daemon']} | {len(r['detect'])} | {_cell(r['detect'])} | "
                     f"{min(r['hold']):.0f}-{max(r['hold']):.0f} s | {_cell(r['clear'])} | "
                     f"{r['missed_clear']} | {new} |")
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "recovery.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
