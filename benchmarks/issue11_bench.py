"""Cost of the issue-11 probes: canary latency, and the agent with canary, disk and log checks on.

Run with `python -m benchmarks.issue11_bench [--canaries N] [--steady-s S]`; prints Markdown and
writes it to benchmarks/out/issue11.md.

1. Canary latency on healthy sandbox runtimes: N runs of the Docker canary and N of the CRI canary
   (a pod through runtime.v1), one after the other, each with the product's default deadline.
2. Two real `nodeprobe agent --standalone` processes side by side for S seconds against the same
   runtimes: one at today's defaults (canary off, disk and log checks off), one with the canary
   on and the disk and runtime-log checks on, all at their default intervals (canary every
   300 s, so S=600 holds two runs per runtime). CPU from /proc/<pid>/stat, RSS sampled each second.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.stats import machine, summarize
from nodeprobe.model import Check, Outcome
from nodeprobe.probes.canary import DockerCanary
from nodeprobe.probes.canary_cri import CriCanary
from tests.harness.agent_process import free_port, terminate, wait_for
from tests.harness.cri import import_image_for_cri
from tests.harness.journal import write_journal
from tests.harness.runtimes import BUSYBOX_IMAGE, Sandbox

OUT = Path(__file__).with_name("out") / "issue11.md"
MIB = 2**20
CLK_TCK = 100
CRI_IMAGE = f"docker.io/{BUSYBOX_IMAGE}"


def canary_latency(sandbox: Sandbox, runs: int, lines: list[str]) -> None:
    rows = []
    for name, canary in (
        ("Docker (create, start, kill, wait, remove)",
         DockerCanary(str(sandbox.dockerd.socket), image=BUSYBOX_IMAGE, cleanup_deadline_s=120)),
        ("CRI (RunPodSandbox ... RemovePodSandbox)",
         CriCanary(str(sandbox.containerd.socket), image=CRI_IMAGE, cleanup_deadline_s=120)),
    ):
        starts, totals, bad = [], [], 0
        for _ in range(runs):
            t0 = time.monotonic()
            obs = canary.run(Check.CANARY, deadline_s=60, slow_s=10)
            totals.append(time.monotonic() - t0)
            if obs.outcome is Outcome.OK:
                starts.append(obs.latency_s)
            else:
                bad += 1
                print(f"  {name}: {obs.outcome} {obs.detail}", file=sys.stderr)
            time.sleep(0.5)
        s, t = summarize(starts), summarize(totals)
        rows.append(f"| {name} | {len(starts)}/{runs} OK | {s.median:.2f} s | {s.p95:.2f} s | "
                    f"{s.minimum:.2f}-{s.maximum:.2f} s | {t.median:.2f} s | {t.p95:.2f} s |")
    lines += [
        f"#### Canary latency, healthy runtimes (n={runs} each)", "",
        "Start = the observation's latency (create to running; CRI: sandbox included), what "
        "`checks.canary.slow` (10 s) judges. Whole run = through removal.", "",
        "| canary | OK | start p50 | start p95 | start range | whole run p50 | whole run p95 |",
        "|---|---|---|---|---|---|---|", *rows, "",
    ]


def _agent(sandbox: Sandbox, base: Path, name: str, body: dict[str, object]
           ) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = {
        "docker": {"socket": str(sandbox.dockerd.socket)},
        "containerd": {"socket": str(sandbox.containerd.socket)},
        "metrics": {"address": "127.0.0.1", "port": port},
        **body,
    }
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (base / f"{name}.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).with_name("nodeprobe")), "agent",
                             "--standalone", "--config", str(path)],
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, port


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MIB
    return 0.0


def _scrape(port: int) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def steady(sandbox: Sandbox, base: Path, seconds: float, lines: list[str]) -> None:
    journal = base / "journal"
    now = time.time()
    write_journal(journal, [(now - 30, "docker.service", "API listen on /run/docker.sock"),
                            (now - 20, "containerd.service", "containerd successfully booted")])
    today = {"checks": {"disk": {"enabled": False}, "runtimeLog": {"enabled": False}}}
    issue11 = {
        "checks": {"canary": {"enabled": True, "image": CRI_IMAGE}},
        "paths": {"hostRoot": "/"},
        "disk": {"dockerRoot": str(sandbox.base / "docker" / "root"),
                 "containerdRoot": str(sandbox.base / "containerd" / "root")},
        "runtimeLog": {"journalDirs": [str(journal)]},
    }
    # one image name for both canaries: dockerd reads docker.io/x as x
    agents = {"today's defaults": _agent(sandbox, base, "today", today),
              "canary + disk + log on": _agent(sandbox, base, "issue11", issue11)}
    try:
        for _proc, port in agents.values():
            wait_for(lambda p=port: "nodeprobe_condition_status" in _scrape(p), timeout_s=60,
                     what="an agent's /metrics")
        time.sleep(20.0)  # start-up done
        cpu0 = {k: _cpu_s(p.pid) for k, (p, _) in agents.items()}
        t0 = time.monotonic()
        rss: dict[str, list[float]] = {k: [] for k in agents}
        while time.monotonic() - t0 < seconds:
            for k, (p, _) in agents.items():
                rss[k].append(_rss(p.pid))
            time.sleep(1.0)
        elapsed = time.monotonic() - t0
        rows = []
        for k, (p, port) in agents.items():
            cpu = _cpu_s(p.pid) - cpu0[k]
            s = summarize(rss[k])
            text = _scrape(port)
            canaries = [ln for ln in text.splitlines()
                        if ln.startswith('nodeprobe_probe_outcomes_total{check="canary"')
                        and not ln.endswith(" 0.0")]
            checks = sorted({ln.split('check="')[1].split('"')[0] for ln in text.splitlines()
                             if ln.startswith("nodeprobe_probe_outcomes_total{")
                             and not ln.endswith(" 0.0")})
            rows.append(f"| {k} | {100 * cpu / elapsed:.2f} % ({cpu:.1f} s) | {s.median:.1f} MiB "
                        f"| {s.maximum:.1f} MiB | {', '.join(checks)} | "
                        f"{'; '.join(c.split('{')[1] for c in canaries) or '-'} |")
    finally:
        for proc, _ in agents.values():
            terminate(proc)
    lines += [
        f"#### Two agents side by side, {seconds / 60:g} min, healthy runtimes", "",
        "| agent | CPU (avg of one core) | RSS median | RSS max | checks that ran | canary runs |",
        "|---|---|---|---|---|---|", *rows, "",
    ]


HEALTHY = ("ContainerRuntimeIsAvailable", "ContainerRuntimeMemoryIsStable",
           "ContainerRuntimeIsResponsive", "ContainerRuntimeIsNotDegraded",
           "ContainerRuntimeStateUnknown")


def _label(line: str, name: str) -> str:
    return line.split(f'{name}="')[1].split('"')[0]


def _raised(text: str) -> set[str]:
    """condition/reason pairs whose nodeprobe_condition_status is 1 and not a healthy reason."""
    found = set()
    for line in text.splitlines():
        if line.startswith("nodeprobe_condition_status{") and line.endswith(" 1.0"):
            cond = line.split('condition="')[1].split('"')[0]
            reason = line.split('reason="')[1].split('"')[0]
            if reason not in HEALTHY:
                found.add(f"{cond}/{reason}")
    return found


def load_phase(sandbox: Sandbox, base: Path, seconds: float, lines: list[str]) -> None:
    """Every check on, the canary every 30 s, under `docker run` workers and an importer."""
    from benchmarks.agent_load import Load

    journal = base / "journal-load"
    write_journal(journal, [(time.time() - 30, "docker.service", "API listen")])
    body = {
        "checks": {"canary": {"enabled": True, "image": CRI_IMAGE, "interval": "30s"}},
        "paths": {"hostRoot": "/"},
        "disk": {"dockerRoot": str(sandbox.base / "docker" / "root"),
                 "containerdRoot": str(sandbox.base / "containerd" / "root")},
        "runtimeLog": {"journalDirs": [str(journal)]},
    }
    proc, port = _agent(sandbox, base, "load", body)
    raised: dict[str, int] = {}
    seen: set[str] = set()
    work = Load(sandbox, workers=3)
    try:
        wait_for(lambda: "nodeprobe_condition_status" in _scrape(port), timeout_s=60,
                 what="the agent's /metrics")
        time.sleep(20.0)
        t0 = time.monotonic()
        work.start()
        while time.monotonic() - t0 < seconds:
            now = _raised(_scrape(port))
            for key in now - seen:
                raised[key] = raised.get(key, 0) + 1
            seen = now
            time.sleep(1.0)
        work.stop()
        text = _scrape(port)
    finally:
        terminate(proc)
    outcomes = sorted(
        f"{_label(ln, 'check')} {_label(ln, 'runtime')} {_label(ln, 'outcome')}: "
        f"{float(ln.split()[-1]):.0f}"
        for ln in text.splitlines()
        if ln.startswith("nodeprobe_probe_outcomes_total{") and not ln.endswith(" 0.0")
        and _label(ln, "outcome") != "OK")
    canaries = [ln for ln in text.splitlines()
                if ln.startswith('nodeprobe_probe_outcomes_total{check="canary"')
                and not ln.endswith(" 0.0")]
    lines += [
        f"#### Heavy healthy load, {seconds / 60:g} min, every check on (canary every 30 s)", "",
        "| measure | value | goal |", "|---|---|---|",
        f"| condition raises (problem reason seen on /metrics, polled 1 s) | "
        f"{sum(raised.values())} {raised or ''} | 0 |",
        f"| non-OK probe outcomes | {'; '.join(outcomes) or 0} | |",
        f"| canary outcomes | {'; '.join(c.split('{')[1] for c in canaries)} | |",
        f"| container runs / image imports / load errors | {work.runs} / {work.imports} / "
        f"{dict(work.errors) or 0} | |", "",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="issue11_bench")
    parser.add_argument("--canaries", type=int, default=30)
    parser.add_argument("--steady-s", type=float, default=600.0)
    parser.add_argument("--load-s", type=float, default=600.0)
    args = parser.parse_args(argv or [])
    base = Path(tempfile.mkdtemp(prefix="np-i11-", dir="/tmp"))
    sandbox = Sandbox(base)
    lines = [f"### Issue 11 probes ({machine()})", "",
             "The 2 cores are shared with other engineers' test runs and a Go build.", ""]
    try:
        sandbox.start()
        sandbox.import_busybox()
        # the CRI canary's image (and the sandbox image) in containerd's k8s.io namespace
        import_image_for_cri(docker_socket=sandbox.dockerd.socket,
                             containerd_socket=sandbox.containerd.socket, tmp=base,
                             cri_name=CRI_IMAGE)
        if args.canaries:
            canary_latency(sandbox, args.canaries, lines)
        if args.steady_s:
            steady(sandbox, base, args.steady_s, lines)
        if args.load_s:
            load_phase(sandbox, base, args.load_s, lines)
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
