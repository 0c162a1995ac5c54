"""`nodeprobe agent` at its DEFAULT config against real runtimes and the real control plane.

Run with `python -m benchmarks.agent_bench [--steady-s S] [--injections N] [--load-s S]
[--workers W]`; prints a Markdown section and writes it to benchmarks/out/agent.md.

Phases, one agent process throughout (intervals 2 s, deadline 3 s, raiseAfter 2, clearAfter 3,
heartbeat 5 min, as shipped):
1. steady: healthy runtimes, idle; RSS/CPU of the agent from /proc; its requests from the API
   server's audit log;
2. detection: SIGSTOP dockerd at a random moment -> ContainerRuntimeUnavailable=True on the Node
   (the Node polled every 50 ms), SIGCONT -> False again; N times;
3. load: parallel `docker run --rm --network none busybox true` and repeated image imports;
   any condition that turns True is a false raise.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.agent_load import DefaultAgent, Load, histogram_p95
from benchmarks.agent_rss import table as rss_table
from benchmarks.real_kube import real_kube
from benchmarks.stats import machine, summarize
from tests.harness.agent_process import NODE, wait_for
from tests.harness.runtimes import Sandbox

UNHEALTHY = "ContainerRuntimeUnavailable"
OURS = ("ContainerRuntimeUnavailable", "ContainerRuntimeMemoryLeak", "ContainerRuntimeSlow")
POLL_S = 0.05
OUT = Path(__file__).with_name("out") / "agent.md"
MIB = 2**20


def conditions(kube: Any) -> dict[str, tuple[str, str]]:
    node = kube.get("nodes", NODE) or {}
    return {c["type"]: (c["status"], c.get("reason", ""))
            for c in node.get("status", {}).get("conditions") or []}


def wait_status(kube: Any, status: str, *, timeout_s: float) -> tuple[float, str]:
    """Poll every 50 ms until ContainerRuntimeUnavailable has `status`; (monotonic time, reason)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = conditions(kube).get(UNHEALTHY)
        if got is not None and got[0] == status:
            return time.monotonic(), got[1]
        time.sleep(POLL_S)
    raise AssertionError(f"{UNHEALTHY} not {status} within {timeout_s}s")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Watcher:
    """Counts False/absent -> True transitions of our conditions on the Node (polled)."""

    def __init__(self, kube: Any, period_s: float = 0.1) -> None:
        self.kube, self.period_s = kube, period_s
        self.raises: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = {t: s for t, (s, _) in conditions(self.kube).items()}
        while not self._stop.wait(self.period_s):
            now = conditions(self.kube)
            for kind in OURS:
                status, reason = now.get(kind, ("", ""))
                if status == "True" and last.get(kind) != "True":
                    self.raises.append((time.monotonic(), kind, reason))
                last[kind] = status

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def steady(kube: Any, agent: DefaultAgent, seconds: float, lines: list[str]) -> None:
    kube.reset_counters()
    la0 = loadavg()
    cpu0, t0 = agent.cpu_s(), time.monotonic()
    rss: list[int] = []
    while time.monotonic() - t0 < seconds:
        rss.append(agent.status()["rss"])
        time.sleep(1.0)
    cpu1, t1 = agent.cpu_s(), time.monotonic()
    end = agent.status()
    writes = kube.counts(writes_only=True)
    node_writes = sum(n for (_, res), n in writes.items() if res.startswith("nodes"))
    all_writes = sum(writes.values())
    reads = sum(kube.counts().values()) - all_writes
    cpu_pct = 100 * (cpu1 - cpu0) / (t1 - t0)
    per_hour = 3600 / (t1 - t0)
    s = summarize([r / MIB for r in rss])
    lines += [
        f"#### Steady state, healthy runtimes, {seconds / 60:g} min at default intervals", "",
        "| measure | value | goal |", "|---|---|---|",
        f"| RSS at end | {end['rss'] / MIB:.1f} MiB (RssAnon {end['anon'] / MIB:.1f} MiB) "
        f"| < 45 MB |",
        f"| RSS peak in window (1 s samples) | {s.maximum:.1f} MiB (median {s.median:.1f}) | |",
        f"| VmHWM (peak since start, incl. start-up) | {end['hwm'] / MIB:.1f} MiB | |",
        f"| CPU, averaged over the window | {cpu_pct:.2f} % of one core "
        f"({cpu1 - cpu0:.1f} s in {t1 - t0:.0f} s) | < 0.5 % |",
        f"| threads / fds at end | {end['threads']} / {end['fds']} | |",
        f"| API writes in window | {all_writes} ({dict(writes)}) | |",
        f"| node status writes, extrapolated | {node_writes * per_hour:.1f} per node per hour "
        f"| |",
        f"| API reads in window | {reads} | |",
        f"| load average start -> end | {la0} -> {loadavg()} | |", "",
        "Where the RSS goes: a fresh interpreter importing what the agent imports, step by step "
        "(benchmarks/agent_rss.py); the rest of the running agent's RSS is heap, thread stacks "
        "and allocator arenas of its threads at run time.", "",
        rss_table(), "",
    ]


def detection(kube: Any, sandbox: Sandbox, injections: int, lines: list[str]) -> None:
    rng = random.Random(20261129)
    detect, clear, reasons = [], [], set()
    la0 = loadavg()
    for _ in range(injections):
        time.sleep(rng.uniform(0.0, 2.0))  # anywhere within one 2 s probe interval
        t0 = time.monotonic()
        with sandbox.dockerd.hung():
            t1, reason = wait_status(kube, "True", timeout_s=60)
            reasons.add(reason)
            t2 = time.monotonic()
        t3, _ = wait_status(kube, "False", timeout_s=60)
        detect.append(t1 - t0)
        clear.append(t3 - t2)
    d, c = summarize(detect), summarize(clear)
    lines += [
        f"#### Detection: SIGSTOP dockerd -> {UNHEALTHY}=True on the Node ({injections} "
        "injections)", "",
        "Injection moment uniform within one 2 s interval; the Node polled every 50 ms "
        "(adds <= 50 ms). Reason(s): " + ", ".join(sorted(reasons)) + ".", "",
        "| measure | p50 | p95 | min | max | goal |", "|---|---|---|---|---|---|",
        f"| detection | {d.median:.2f} s | {d.p95:.2f} s | {d.minimum:.2f} s | {d.maximum:.2f} s "
        "| p95 < 10 s |",
        f"| clear after SIGCONT | {c.median:.2f} s | {c.p95:.2f} s | {c.minimum:.2f} s | "
        f"{c.maximum:.2f} s | |", "",
        f"Load average start -> end: {la0} -> {loadavg()}.", "",
    ]


def load(kube: Any, agent: DefaultAgent, sandbox: Sandbox, seconds: float, workers: int,
         lines: list[str]) -> None:
    time.sleep(3.0)  # the Event of the last clear lands before the snapshot (publish every 1 s)
    hist0 = agent.samples("nodeprobe_probe_duration_seconds_bucket")
    out0 = agent.samples("nodeprobe_probe_outcomes_total")
    events0 = {e["metadata"]["name"]: e.get("count", 1)
               for e in kube.list("events", namespace="default")}
    kube.reset_counters()
    la0 = loadavg()
    cpu0, t0 = agent.cpu_s(), time.monotonic()
    work = Load(sandbox, workers=workers)
    with Watcher(kube) as watcher:
        work.start()
        time.sleep(seconds)
        work.stop()
        time.sleep(3.0)  # the last probes of the load window land
    cpu1, t1 = agent.cpu_s(), time.monotonic()
    p95 = histogram_p95(hist0, agent.samples("nodeprobe_probe_duration_seconds_bucket"))
    out1 = agent.samples("nodeprobe_probe_outcomes_total")
    bad: dict[str, int] = {}
    for labels, value in out1.items():
        d = dict(labels)
        n = int(value - out0.get(labels, 0.0))
        if d["outcome"] != "OK" and n:
            bad[f"{d['runtime']}/{d['check']} {d['outcome']}"] = n
    events = [f"{e['type']} {e['reason']}" for e in kube.list("events", namespace="default")
              if e.get("count", 1) != events0.get(e["metadata"]["name"])]
    st = agent.status()
    runs = summarize(work.run_latencies) if work.run_latencies else None
    lines += [
        f"#### Healthy load: {seconds / 60:g} min, {workers} `docker run --rm --network none "
        "busybox true` workers + 1 image importer", "",
        "| measure | value | goal |", "|---|---|---|",
        f"| condition True transitions on the Node (false raises) | {len(watcher.raises)} "
        f"{[(k, r) for _, k, r in watcher.raises] or ''} | 0 |",
        f"| Events created or bumped during load | {len(events)} {events or ''} | |",
        f"| container runs done | {work.runs} ({work.runs / (t1 - t0):.2f}/s; run wall "
        + (runs.row("s") if runs else "n/a") + ") | |",
        f"| image imports done | {work.imports} | |",
        f"| load errors | {dict(work.errors) or 0} | |",
        f"| non-OK probe outcomes | {bad or 0} | |",
        f"| agent CPU during load | {100 * (cpu1 - cpu0) / (t1 - t0):.2f} % of one core | |",
        f"| agent RSS at end / VmHWM | {st['rss'] / MIB:.1f} / {st['hwm'] / MIB:.1f} MiB | |",
        f"| API writes during load | {dict(kube.counts(writes_only=True)) or 0} | |",
        f"| load average start -> end | {la0} -> {loadavg()} | |", "",
        "Probe latency p95 during load (from `nodeprobe_probe_duration_seconds` bucket deltas; "
        "the bucket bound holding the 95th percentile):", "",
        "| runtime/check | calls | p95 |", "|---|---|---|",
        *[f"| {k} | {n} | {b} |" for k, (n, b) in sorted(p95.items())], "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agent_bench")
    parser.add_argument("--steady-s", type=float, default=300.0)
    parser.add_argument("--injections", type=int, default=20)
    parser.add_argument("--load-s", type=float, default=600.0)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv or [])
    base = Path(tempfile.mkdtemp(prefix="np-ab-", dir="/tmp"))
    sandbox = Sandbox(base)
    started = time.monotonic()
    lines = [f"### Agent at default config ({machine()})", "",
             "The 2 cores are shared with another engineer's operator benchmark (and test runs) "
             "running at the same time: CPU and latency figures include that contention.", ""]
    agent = None
    try:
        with real_kube(NODE) as kube:
            sandbox.start()
            sandbox.import_busybox()
            agent = DefaultAgent(sandbox, base, kubeconfig=kube.kubeconfig)
            wait_for(lambda: conditions(kube).get(UNHEALTHY, ("",))[0] == "False",
                     timeout_s=30, what="a healthy start")
            time.sleep(15.0)  # start-up done: imports, first round, first write
            if args.steady_s > 0:
                steady(kube, agent, args.steady_s, lines)
            if args.injections > 0:
                detection(kube, sandbox, args.injections, lines)
            if args.load_s > 0:
                load(kube, agent, sandbox, args.load_s, args.workers, lines)
            agent.stop()
    finally:
        if agent is not None:
            agent.stop()
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    lines.append(f"Total run time {(time.monotonic() - started) / 60:.1f} min "
                 f"(steady {args.steady_s:g} s, {args.injections} injections, "
                 f"load {args.load_s:g} s).")
    text = "\n".join(lines)
    print(text)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
