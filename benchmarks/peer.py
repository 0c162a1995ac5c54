"""nodeprobe beside node-problem-detector, on the same runtimes and the same faults.

`make bench-peer` (or `python -m benchmarks.peer [INJECTIONS] [STEADY_S] [LOAD_S] [FAULTS]`, FAULTS
comma-separated words of the fault names to run only those) builds NPD,
its health-checker and crictl from the Go module proxy (tools/go/build npd crictl, cached outside
the tree), then runs three watchers at once against ONE sandbox (dockerd 20.10 on containerd 1.6)
and the real API server of the tests (benchmarks/peer_kube.py). Each tool has its own Node and its
own ServiceAccount, so conditions are read per Node and API writes counted per identity from the
audit log:

- `npd`: node-problem-detector with its shipped `health-checker-docker.json` and
  `health-checker-containerd.json`, changed only where this machine needs it: the health-checker
  path, `--enable-repair=false` (its repair runs `systemctl kill` on the host), crictl's path and
  the sandbox's CRI socket; `DOCKER_HOST` points `docker ps` at the sandbox. Condition
  `ContainerRuntimeUnhealthy`.
- `nodeprobe`: `nodeprobe agent` at its defaults. Condition `ContainerRuntimeUnavailable`.
- `npd+check`: node-problem-detector running `nodeprobe check` through deploy/npd/ (sockets added
  to the args). Conditions `DockerdUnhealthy` / `ContainerdUnhealthy`.

Per fault and injection (random phase: 0-10 s after the previous one healed): time from the fault
to each tool's condition True on its Node, and from the repair to False again (capped). The crash
loop restarts every tool after each injection instead: nodeprobe holds DockerdRestartLoop until
10 quiet minutes pass, so a restart is what makes the next injection independent. Steady: RSS
of each tool's process tree (children included, sampled every 0.5 s, mean of the sums), CPU of
the tree (utime+stime+cutime+cstime), API writes per hour over the healthy windows. Load:
healthy `docker run` workers; any True is a false raise. The machine's load average is sampled
every 30 s throughout.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.agent_load import DefaultAgent, Load
from benchmarks.peer_kube import PeerKube, peer_kube
from benchmarks.peer_measure import loadavg, sampling, tree_cpu_s
from benchmarks.stats import summarize
from tests.harness.agent_process import free_port, terminate
from tests.harness.runtimes import GO_BUILD, ROOT, Sandbox, go_versions, tools_cache

DETECT_CAP_S = 120.0
"""Longest wait for a tool to raise (NPD's shipped docker check times out `docker ps` at 60 s)."""
CLEAR_CAP_S = 90.0
POLL_S = 0.1


def build_peer() -> dict[str, Path]:
    subprocess.run([str(GO_BUILD), "npd", "crictl"], check=True)
    v = go_versions()
    cache = tools_cache()
    return {"npd": cache / f"npd-{v['NPD']}" / "node-problem-detector",
            "health-checker": cache / f"npd-{v['NPD']}" / "health-checker",
            "crictl": cache / f"crictl-{v['CRI_TOOLS']}" / "crictl"}


def shipped_configs() -> Path:
    """NPD's own config/ directory from the module cache (`go mod download` puts it there)."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    go = "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else "go"
    out = subprocess.run([go, "mod", "download", "-json",
                          f"k8s.io/node-problem-detector@{go_versions()['NPD']}"],
                         cwd=ROOT / "tools" / "go" / "npd", env=env, check=True,
                         capture_output=True, text=True).stdout
    return Path(json.loads(out)["Dir"]) / "config"


@dataclass
class Tool:
    """One watcher: its Node, its identity, and how to (re)start it."""

    name: str
    conditions: tuple[str, ...]
    kube: PeerKube
    user: str
    launch: Callable[[Tool], subprocess.Popen[bytes] | DefaultAgent]
    running: subprocess.Popen[bytes] | DefaultAgent | None = None
    samples: list[float] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"peer-{self.name.replace('+', '-')}"

    @property
    def pid(self) -> int:
        assert self.running is not None
        return self.running.proc.pid if isinstance(self.running, DefaultAgent) \
            else self.running.pid

    def start(self) -> Tool:
        self.running = self.launch(self)
        return self

    def raised(self) -> bool:
        return any(c["type"] in self.conditions and c["status"] == "True"
                   for c in self.kube.conditions(self.node))

    def stop(self) -> None:
        if isinstance(self.running, DefaultAgent):
            self.running.stop()
        elif self.running is not None:
            terminate(self.running)
        self.running = None


def npd(monitors: list[Path], kubeconfig: Path, sandbox: Sandbox, bins: dict[str, Path],
        base: Path) -> Callable[[Tool], subprocess.Popen[bytes]]:
    """NPD with its k8s exporter on the tool's Node, authenticated by `kubeconfig` only."""
    server = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]

    def launch(tool: Tool) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{sandbox.dockerd.socket}",
               "NODE_NAME": tool.node}
        argv = [str(bins["npd"]), "--config.custom-plugin-monitor=" + ",".join(map(str, monitors)),
                f"--apiserver-override={server}?inClusterConfig=false&auth={kubeconfig}",
                f"--hostname-override={tool.node}", f"--port={free_port()}",
                "--prometheus-port=0", "--logtostderr"]
        with (base / f"{tool.node}.log").open("ab") as log:
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    return launch


def agent(kubeconfig: Path, sandbox: Sandbox, base: Path) -> Callable[[Tool], DefaultAgent]:
    return lambda tool: DefaultAgent(sandbox, base, kubeconfig=kubeconfig, node=tool.node)


def npd_monitors(base: Path, sandbox: Sandbox, bins: dict[str, Path]) -> list[Path]:
    shipped = shipped_configs()
    out = []
    for name, extra in (("health-checker-docker.json", []),
                        ("health-checker-containerd.json",
                         [f"--cri-socket-path=unix://{sandbox.containerd.socket}",
                          f"--crictl-path={bins['crictl']}"])):
        body = json.loads((shipped / name).read_text())
        for rule in body["rules"]:
            rule["path"] = str(bins["health-checker"])
            rule["args"] = [a.replace("--enable-repair=true", "--enable-repair=false")
                            for a in rule["args"]] + extra
        path = base / f"npd-{name}"
        path.write_text(json.dumps(body, indent=2))
        out.append(path)
    return out


def check_monitor(base: Path, sandbox: Sandbox) -> list[Path]:
    body = json.loads((ROOT / "deploy" / "npd" / "nodeprobe-plugin-monitor.json").read_text())
    nodeprobe = str(Path(sys.executable).with_name("nodeprobe"))
    for rule in body["rules"]:
        rule["path"] = nodeprobe
        rule["args"] = [*rule["args"], "--docker-socket", str(sandbox.dockerd.socket),
                        "--containerd-socket", str(sandbox.containerd.socket)]
    path = base / "npd-nodeprobe-check.json"
    path.write_text(json.dumps(body, indent=2))
    return [path]


# ---- faults -----------------------------------------------------------------------------------


def watch(tools: list[Tool], want: bool, since: float, cap_s: float,
          during: Callable[[], None] | None = None) -> dict[str, float | None]:
    """Seconds from `since` until each tool's raised() == want (None: not within cap_s)."""
    got: dict[str, float | None] = {t.name: None for t in tools}
    while time.monotonic() - since < cap_s and any(v is None for v in got.values()):
        for t in tools:
            if got[t.name] is None and t.raised() == want:
                got[t.name] = time.monotonic() - since
        if during is not None:
            during()
        time.sleep(POLL_S)  # polling real state at 10 Hz, not synchronization
    return got


class CrashLoop:
    """dockerd killed every ~5 s and restarted 1 s later, as systemd's Restart= would do."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox, self.next_at, self.down = sandbox, time.monotonic(), False

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        d = self.sandbox.dockerd
        if self.down:
            d.proc = None
            d.start()
            self.down, self.next_at = False, now + 5.0
        else:
            d.crash()
            self.down, self.next_at = True, now + 1.0


RESTARTED = "restarted after each injection"
"""Faults after which every tool is restarted instead of waiting for its clear."""

FAULTS: dict[str, tuple[Callable[[Sandbox], Any], Callable[[Sandbox], None], bool]] = {
    "dockerd hung (SIGSTOP)": (lambda s: s.dockerd.hang(), lambda s: s.dockerd.resume(), False),
    "containerd hung (SIGSTOP)": (lambda s: s.containerd.hang(), lambda s: s.containerd.resume(),
                                  False),
    "dockerd killed (SIGKILL)": (lambda s: s.dockerd.crash(), lambda s: s.heal(), False),
    "containerd killed (SIGKILL)": (lambda s: s.containerd.crash(), lambda s: s.heal(), False),
    "dockerd crash-looping (killed every 5 s, back after 1 s)": (CrashLoop, lambda s: s.heal(),
                                                                 True),
}


def restart_all(tools: list[Tool]) -> None:
    """Fresh processes: nodeprobe forgets the loop it holds for 10 quiet minutes; NPD too."""
    for t in tools:
        t.stop()
        t.start()


@dataclass
class Outcomes:
    """One tool's results for one fault."""

    detected: list[float] = field(default_factory=list)
    missed: int = 0
    cleared: list[float] = field(default_factory=list)
    not_cleared: int = 0
    """Raised, and still True CLEAR_CAP_S after the repair (then every tool is restarted)."""


def run_faults(tools: list[Tool], sandbox: Sandbox, injections: int, rng: random.Random,
               only: list[str]) -> dict[str, dict[str, Outcomes]]:
    results: dict[str, dict[str, Outcomes]] = {}
    for fault, (inject, heal, restart) in FAULTS.items():
        if only and not any(word in fault for word in only):
            continue
        per = {t.name: Outcomes() for t in tools}
        for i in range(injections):
            time.sleep(rng.uniform(0, 10))  # random phase against every tool's interval
            t0 = time.monotonic()
            effect = inject(sandbox)
            during = effect if callable(effect) else None
            try:
                raised = watch(tools, True, t0, DETECT_CAP_S, during)
            finally:
                heal(sandbox)
            t1 = time.monotonic()
            if restart:
                restart_all(tools)
            cleared = watch(tools, False, t1, CLEAR_CAP_S)
            if not all(v is not None for v in cleared.values()):
                restart_all(tools)  # independence of the next injection comes first
                healthy = watch(tools, False, time.monotonic(), CLEAR_CAP_S)
                assert all(v is not None for v in healthy.values()), f"not healthy: {healthy}"
            for name, seconds in raised.items():
                got, took = per[name], cleared[name]
                if seconds is None:
                    got.missed += 1
                    continue
                got.detected.append(seconds)
                if restart:
                    continue
                if took is None:
                    got.not_cleared += 1
                else:
                    got.cleared.append(took)
            print(f"{time.strftime('%H:%M:%S')} {fault} #{i + 1}: raised {raised}, "
                  f"cleared {cleared}{' (restarted)' if restart else ''}", file=sys.stderr,
                  flush=True)
        results[fault] = per
    return results


def _cell(got: Outcomes, n: int) -> str:
    if not got.detected:
        return f"not detected (0/{n} within {DETECT_CAP_S:g} s)"
    s = summarize(got.detected)
    miss = f", {got.missed}/{n} missed" if got.missed else ""
    cell = f"{s.median:.1f} / {s.p95:.1f} s{miss}"
    late = f"{got.not_cleared}/{len(got.detected)} not within {CLEAR_CAP_S:g} s"
    if got.cleared:
        c = summarize(got.cleared)
        cell += f" (clear {c.median:.1f} / {c.p95:.1f} s" + (f", {late})" if got.not_cleared
                                                             else ")")
    elif got.not_cleared:
        cell += f" (clear: {late})"
    return cell


def _ratio(a: list[float], b: list[float]) -> str:
    if not a or not b:
        return "—"
    return f"{summarize(a).p95 / summarize(b).p95:.1f}x"


def report(tools: list[Tool], faults: dict[str, dict[str, Outcomes]],
           steady: dict[str, dict[str, float]], load: dict[str, Any], injections: int) -> str:
    names = [t.name for t in tools]
    head = "| fault: p50 / p95 to the Node condition (clear) | " + " | ".join(names) + \
        " | ratio npd / nodeprobe (faults: p95) |"
    lines = [head, "|---" * (len(names) + 2) + "|"]
    for fault, per in faults.items():
        cells = [_cell(per[name], injections) for name in names]
        label = f"{fault}, {RESTARTED}" if FAULTS[fault][2] else fault
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + _ratio(per["npd"].detected, per["nodeprobe"].detected) + " |")
    for label, key, fmt in (("steady RSS, process + children (MiB, mean of sums)", "rss", "{:.1f}"),
                            ("CPU, process + children (% of a core)", "cpu", "{:.2f}"),
                            ("API writes per hour (healthy windows)", "writes", "{:.0f}")):
        vals = [steady[n][key] for n in names]
        ratio = f"{vals[0] / vals[1]:.1f}x" if vals[1] else "—"
        lines.append(f"| {label} | " + " | ".join(fmt.format(v) for v in vals) + f" | {ratio} |")
    lines.append(f"| false raises under load ({load['seconds']:g} s: {load['runs']} docker runs, "
                 f"{load['imports']} imports) | " + " | ".join(str(load[n]) for n in names)
                 + " | |")
    return "\n".join(lines)


def false_raises(tools: list[Tool], seconds: float) -> dict[str, int]:
    raises = {t.name: 0 for t in tools}
    was = {t.name: False for t in tools}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for t in tools:
            now = t.raised()
            raises[t.name] += int(now and not was[t.name])
            was[t.name] = now
        time.sleep(0.5)  # polling real state
    return raises


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    injections = int(args[0]) if args else 10
    steady_s = float(args[1]) if len(args) > 1 else 300.0
    load_s = float(args[2]) if len(args) > 2 else 600.0
    only = args[3].split(",") if len(args) > 3 else []
    rng = random.Random(12)
    bins = build_peer()
    base = Path(tempfile.mkdtemp(prefix="np-peer-", dir="/tmp"))
    sandbox = Sandbox(base)
    tools: list[Tool] = []
    loads: list[float] = []
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        stack.callback(sandbox.stop)
        stack.enter_context(loadavg(loads))
        kube = stack.enter_context(peer_kube(["peer-npd", "peer-nodeprobe", "peer-npd-check"]))
        sandbox.start()
        sandbox.import_busybox()
        ids = {name: kube.identity(name) for name in ("npd", "nodeprobe", "npd-check")}
        tools = [
            Tool("npd", ("ContainerRuntimeUnhealthy",), kube, ids["npd"][1],
                 npd(npd_monitors(base, sandbox, bins), ids["npd"][0], sandbox, bins, base)),
            Tool("nodeprobe", ("ContainerRuntimeUnavailable",), kube, ids["nodeprobe"][1],
                 agent(ids["nodeprobe"][0], sandbox, base)),
            Tool("npd+check", ("DockerdUnhealthy", "ContainerdUnhealthy"), kube,
                 ids["npd-check"][1],
                 npd(check_monitor(base, sandbox), ids["npd-check"][0], sandbox, bins, base)),
        ]
        for t in tools:
            t.start()
            stack.callback(t.stop)
        started = watch(tools, False, time.monotonic(), 60)
        assert all(v is not None for v in started.values()), f"not healthy at start: {started}"
        time.sleep(20)  # warm-up of a measurement: every tool has run its checks
        mark = kube.mark()
        cpu0 = {t.name: tree_cpu_s(t.pid) for t in tools}
        t0 = time.monotonic()
        with sampling(tools):
            time.sleep(steady_s)  # the steady window itself
        wall = time.monotonic() - t0
        steady = {t.name: {"rss": sum(t.samples) / len(t.samples) / 2**20,
                           "cpu": 100 * (tree_cpu_s(t.pid) - cpu0[t.name]) / wall}
                  for t in tools}
        load_runner = Load(sandbox)
        load_runner.start()
        raises = false_raises(tools, load_s)
        load_runner.stop()
        healthy_s = time.monotonic() - t0
        writes = kube.writes(mark)
        for t in tools:
            steady[t.name]["writes"] = writes[t.user] * 3600 / healthy_s
        load = {"seconds": load_s, "runs": load_runner.runs, "imports": load_runner.imports,
                **raises}
        faults = run_faults(tools, sandbox, injections, rng, only)
        refused = {t.name: dict(kube.rejected(t.user)) for t in tools}
    v = go_versions()
    ld = summarize(loads)
    print(f"machine: {os.cpu_count()} cores, 1-min load average median {ld.median:.1f} "
          f"(min {ld.minimum:.1f}, max {ld.maximum:.1f}; {ld.n} samples every 30 s); "
          f"node-problem-detector {v['NPD']}, crictl {v['CRI_TOOLS']}, dockerd 20.10 + "
          f"containerd 1.6 (Debian), kube-apiserver {v['KUBERNETES']}; {injections} "
          f"injections per fault; steady {steady_s:g} s, load {load_s:g} s; requests the API "
          f"server refused, per tool: {refused}")
    print(report(tools, faults, steady, load, injections))


if __name__ == "__main__":
    main()
