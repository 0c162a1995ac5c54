"""The agent's steady footprint at default config, its breakdown, and the floor.

`python -m benchmarks.agent_footprint [SECONDS] [AGENTS]` (defaults 180 s, 3 agents at once on the
same sandbox runtimes and the test control plane). After a 30 s warm-up, every 5 s: VmRSS /
RssAnon per agent; CPU is utime+stime over the window. Then, per agent: smaps grouped by
mapping (anon heap vs each shared library), and threads by name. The floor is the same
interpreter importing only what the default agent cannot do without (prometheus_client, yaml,
grpc + stubs, ssl, http.server), idle, measured the same way (the Docker probe needs only the
standard library).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks.agent_load import CLK_TCK, DefaultAgent
from benchmarks.real_kube import real_kube
from benchmarks.stats import summarize
from tests.harness.agent_process import NODE
from tests.harness.runtimes import Sandbox

WARMUP_S = 30.0
PERIOD_S = 5.0

FLOOR = """
import prometheus_client, yaml, ssl, http.server, logging, threading
import nodeprobe.cri.runtime_v1_pb2_grpc, grpc
import time
print('ready', flush=True)
time.sleep(3600)
"""
"""The mandatory imports of an agent probing both runtimes, and nothing else."""


def _status(pid: int) -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(m.group(1)) * 1024 for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")
            if (m := re.search(rf"{k}:\s+(\d+)", text))}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def smaps(pid: int, top: int = 8) -> list[tuple[str, int]]:
    """Rss per mapping name (anonymous mappings as `[anon]`), largest first."""
    per: Counter[str] = Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = parts[5] if len(parts) > 5 else "[anon]"
            name = Path(name).name if name.startswith("/") else name
        elif parts and parts[0] == "Rss:":
            per[name] += int(parts[1]) * 1024
    return per.most_common(top)


def threads(pid: int) -> Counter[str]:
    names: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[(task / "comm").read_text().strip()] += 1
        except OSError:
            continue
    return names


def measure(pids: list[int], seconds: float) -> tuple[list[float], list[float], list[float]]:
    """(RSS samples, RssAnon samples, CPU % of a core per pid) over `seconds`."""
    rss: list[float] = []
    anon: list[float] = []
    cpu0 = {pid: _cpu_s(pid) for pid in pids}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for pid in pids:
            st = _status(pid)
            rss.append(st["VmRSS"])
            anon.append(st["RssAnon"])
        time.sleep(PERIOD_S)  # sampling period of a measurement, not synchronization
    wall = time.monotonic() - t0
    cpu = [100 * (_cpu_s(pid) - cpu0[pid]) / wall for pid in pids]
    return rss, anon, cpu


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    seconds = float(args[0]) if args else 180.0
    count = int(args[1]) if len(args) > 1 else 3
    base = Path(tempfile.mkdtemp(prefix="np-fp-", dir="/tmp"))
    sandbox = Sandbox(base)
    agents: list[DefaultAgent] = []
    floor = None
    lines = [f"agents: {count} at once, default config, window {seconds:g} s after {WARMUP_S:g} s "
             f"warm-up, samples every {PERIOD_S:g} s; load {os.getloadavg()[0]:.1f}"]
    try:
        with real_kube(NODE) as kube:
            sandbox.start()
            agents = [DefaultAgent(sandbox, base, kubeconfig=kube.kubeconfig)
                      for _ in range(count)]
            floor = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE,
                                     text=True)
            assert floor.stdout is not None and floor.stdout.readline().strip() == "ready"
            time.sleep(WARMUP_S)  # warm-up of a measurement: let every check run a few times
            pids = [a.proc.pid for a in agents]
            rss, anon, cpu = measure([*pids, floor.pid], seconds)
            n = len(pids) + 1
            agent_rss = [v for i, v in enumerate(rss) if i % n != n - 1]
            agent_anon = [v for i, v in enumerate(anon) if i % n != n - 1]
            floor_rss = [v for i, v in enumerate(rss) if i % n == n - 1]
            mib = 1 / 2**20
            lines.append(f"agent VmRSS: {summarize(agent_rss).row('MiB', mib)}")
            lines.append(f"agent RssAnon: {summarize(agent_anon).row('MiB', mib)}")
            lines.append(f"agent VmHWM: {max(_status(p)['VmHWM'] for p in pids) * mib:.1f} MiB")
            c = summarize(cpu[:-1])
            lines.append(f"agent CPU % of a core: median {c.median:.2f} (min {c.minimum:.2f}, "
                         f"max {c.maximum:.2f}; n={c.n} agents)")
            lines.append(f"floor VmRSS: {summarize(floor_rss).row('MiB', mib)}; "
                         f"CPU {cpu[-1]:.2f} %")
            lines.append("agent smaps, Rss by mapping: " + ", ".join(
                f"{name} {size * mib:.1f}" for name, size in smaps(pids[0])))
            lines.append("floor smaps, Rss by mapping: " + ", ".join(
                f"{name} {size * mib:.1f}" for name, size in smaps(floor.pid)))
            lines.append("agent threads: " + ", ".join(
                f"{name} x{k}" for name, k in sorted(threads(pids[0]).items())))
    finally:
        for agent in agents:
            agent.stop()
        if floor is not None:
            floor.kill()
            floor.wait()
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
