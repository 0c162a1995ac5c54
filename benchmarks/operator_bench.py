"""The remediation operator (kopf, its own process) against the Kubernetes API double, 5,000 nodes.

Run with `python -m benchmarks.operator_bench [--nodes N] [--sick S] [--idle-s S] [--reps R]
[--for-s F] [--tick-s T]`; prints a Markdown section and writes it to benchmarks/out/operator.md.

Phases, one operator process throughout (`nodeprobe.operator.run`, standalone, tick 2 s as
shipped unless --tick-s), one RemediationPolicy matching every node (restart-runtime rung,
trigger ContainerRuntimeUnavailable=True for F s, maxConcurrent = S, minHealthy 50 %, coolDown 0s):
1. idle: all nodes healthy; after start-up settles (policy status shows every node matched),
   count every request/write the double receives for --idle-s, and sample the operator's RSS;
2. sick, R times with fresh nodes: S nodes get ContainerRuntimeUnavailable=True at once with
   lastTransitionTime T (whole second), so the trigger's duration elapses at E = T + F. The
   double's request log is time-stamped when each answer is sent (a KubeDouble subclass here);
   cordon latency = stamp of the cordon PATCH - E. API calls are counted from E until the last
   remediation reached ActionRequested. Then the agents' part is simulated (status.agent Done,
   condition False, as nodeprobe/repair/executor.py and tests' fake_agent do) until Succeeded.
Nodes are arranged with put_object (not counted); everything the operator does is HTTP.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from benchmarks.apidouble.double import KubeDouble
from benchmarks.apidouble.objects import KUBELET_TIME, kubelet_node
from benchmarks.apidouble.operator import GROUP, UNHEALTHY, Operator, add_policy, remediations
from benchmarks.apidouble.server import Request
from benchmarks.stats import machine, summarize
from nodeprobe.operator import CRD_DIR

OUT = Path(__file__).with_name("out") / "operator.md"
MIB = 2**20
POLL_S = 0.1


class TimedDouble(KubeDouble):
    """The double, with the wall-clock instant each request was answered kept beside it."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.stamped: list[tuple[float, Request]] = []
        self._stamp_lock = threading.Lock()

    def record(self, request: Request) -> None:
        now = time.time()
        super().record(request)
        with self._stamp_lock:
            self.stamped.append((now, request))

    def since(self, start: float, end: float = math.inf) -> list[tuple[float, Request]]:
        with self._stamp_lock:
            return [(t, r) for t, r in self.stamped if start <= t <= end]


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def condition(sick: bool, since: str) -> dict[str, str]:
    return {"type": UNHEALTHY, "status": "True" if sick else "False", "lastTransitionTime": since,
            "lastHeartbeatTime": iso(time.time()), "reason": "DockerdHung" if sick else
            "ContainerRuntimeIsAvailable", "message": "dockerd did not answer" if sick else "ok"}


def make_node(name: str, images: int) -> dict[str, Any]:
    node = kubelet_node(name)
    node["status"]["conditions"].append(condition(False, KUBELET_TIME))
    if images:  # real nodes carry status.images (kubelet reports up to 50): bigger objects
        node["status"]["images"] = [
            {"names": [f"registry.example.com/team/app-{i}@sha256:{i:064x}",
                       f"registry.example.com/team/app-{i}:v1.{i}"], "sizeBytes": 10**8 + i}
            for i in range(images)]
    return node


def set_condition(kube: KubeDouble, name: str, sick: bool, since: str) -> None:
    node = kube.get("nodes", name)
    assert node is not None
    node["status"]["conditions"] = [c for c in node["status"]["conditions"]
                                    if c["type"] != UNHEALTHY] + [condition(sick, since)]
    kube.put_object(node)


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "Threads"):
            out[key] = int(value.split()[0]) * (1024 if value.strip().endswith("kB") else 1)
    return out


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_for(predicate: Any, *, timeout_s: float, what: str, every: Any = None) -> float:
    end = time.monotonic() + timeout_s
    while True:
        if predicate():
            return time.time()
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        if every is not None:
            every()
        time.sleep(POLL_S)


def policy_status(kube: KubeDouble) -> dict[str, Any]:
    return dict((kube.get("remediationpolicies", "p", group=GROUP) or {}).get("status") or {})


def key(r: Request) -> str:
    res = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
    return f"{r.verb} {res or '(discovery)'}"


def breakdown(entries: list[tuple[float, Request]]) -> str:
    c = Counter(key(r) for _, r in entries)
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "none"


def is_cordon(r: Request) -> bool:
    spec = (r.body or {}).get("spec") if isinstance(r.body, dict) else None
    return (r.resource == "nodes" and r.verb == "patch" and r.code < 300
            and isinstance(spec, dict) and spec.get("unschedulable") is True)


def is_phase_patch(r: Request, phase: str) -> bool:
    status = (r.body or {}).get("status") if isinstance(r.body, dict) else None
    return (r.resource == "noderemediations" and r.subresource == "status" and r.code < 300
            and isinstance(status, dict) and status.get("phase") == phase)


def my_phases(kube: KubeDouble, names: set[str]) -> dict[str, str]:
    return {nr["spec"]["nodeName"]: (nr.get("status") or {}).get("phase", "")
            for nr in remediations(kube) if nr["spec"]["nodeName"] in names
            and (nr.get("status") or {}).get("phase") not in ("Succeeded",)}


def fake_agent(kube: KubeDouble, names: set[str]) -> None:
    """The node agents' part: report Done for the rung and clear the condition."""
    for nr in remediations(kube):
        st = nr.get("status") or {}
        node = nr["spec"]["nodeName"]
        if node in names and st.get("phase") == "ActionRequested" and "agent" not in st:
            st["agent"] = {"rung": nr["spec"].get("rung", 0), "state": "Done",
                           "message": "restarted"}
            kube.put_object(nr)
            set_condition(kube, node, False, iso(time.time()))


def startup_scaling(sizes: list[int], tick_s: float) -> str:
    """Start-up only: operator start -> first full reconcile pass, per node count."""
    rows = []
    for n in sizes:
        directory = Path(tempfile.mkdtemp(prefix="np-opbench-", dir="/tmp"))
        (directory / "op").mkdir()
        kube = TimedDouble(directory=directory / "kube", history=200_000)
        kube.start()
        op = None
        try:
            for f in sorted(CRD_DIR.glob("*.yaml")):
                kube.put_object(yaml.safe_load(f.read_text()))
            for i in range(n):
                kube.put_object(make_node(f"node-{i:05d}", 0))
            add_policy(kube, maxConcurrent=50, minHealthy="50%", coolDown="0s")
            started = time.time()
            op = Operator(kube, directory / "op", name="operator", standalone=True, tick_s=tick_s)
            ready = wait_for(lambda n=n, kube=kube: policy_status(kube).get("matchedNodes") == n,
                             timeout_s=900, what="the first full reconcile pass")
            cpu = cpu_s(op.proc.pid)
            hwm = proc_status(op.proc.pid)["VmHWM"] / MIB
            rows.append(f"| {n:,} | {ready - started:.1f} s | {cpu:.1f} s | {hwm:.1f} MiB |")
            print(rows[-1], flush=True)
        finally:
            if op is not None:
                op.stop()
            kube.stop()
            shutil.rmtree(directory, ignore_errors=True)
    return "\n".join([
        f"#### Operator start-up vs node count ({machine()}, shared; load {loadavg()} at end)",
        "",
        "Operator start -> first full reconcile pass (policy status shows every node matched); "
        "the operator process's CPU time and VmHWM at that moment.",
        "",
        "| nodes | start -> first pass | operator CPU | VmHWM |",
        "|---|---|---|---|",
        *rows, ""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--startup-scaling", type=int, nargs="*", default=None,
                   help="only measure start-up time at these node counts "
                        "(writes benchmarks/out/operator_startup.md)")
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--sick", type=int, default=50)
    p.add_argument("--idle-s", type=float, default=180.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--for-s", type=int, default=10)
    p.add_argument("--tick-s", type=float, default=2.0)
    p.add_argument("--startup-timeout-s", type=float, default=900.0)
    p.add_argument("--images", type=int, default=0,
                   help="status.images entries per node (0: objects.kubelet_node as is)")
    p.add_argument("--budget", type=int, default=0,
                   help="issue 10: 3 overlapping policies, this cluster budget "
                        "(writes benchmarks/out/operator_budget.md)")
    args = p.parse_args(argv if argv is not None else [])
    if args.budget:
        from benchmarks.operator_budget import run_budget

        print(run_budget(args, timed_double=TimedDouble, make_node=make_node,
                         set_condition=set_condition, proc_status=proc_status,
                         wait_for=wait_for, iso=iso, loadavg=loadavg))
        return 0
    if args.startup_scaling:
        text = startup_scaling(args.startup_scaling, args.tick_s)
        print(text)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.with_name("operator_startup.md").write_text(text + "\n")
        return 0

    directory = Path(tempfile.mkdtemp(prefix="np-opbench-", dir="/tmp"))
    tmp = directory / "op"
    tmp.mkdir()
    kube = TimedDouble(directory=directory / "kube", history=200_000)
    kube.start()
    lines: list[str] = []
    load_start = loadavg()
    op: Operator | None = None
    try:
        for f in sorted(CRD_DIR.glob("*.yaml")):
            kube.put_object(yaml.safe_load(f.read_text()))
        t0 = time.perf_counter()
        for i in range(args.nodes):
            kube.put_object(make_node(f"node-{i:05d}", args.images))
        load_s = time.perf_counter() - t0
        add_policy(kube, triggers=[{"type": UNHEALTHY, "status": "True", "for": f"{args.for_s}s"}],
                   maxConcurrent=args.sick, minHealthy="50%", coolDown="0s",
                   drain={"timeout": "60s"},
                   ladder=[{"action": "restart-runtime", "runtime": "docker", "timeout": "300s"},
                           {"action": "escalate"}])
        print(f"loaded {args.nodes} nodes in {load_s:.1f}s; starting the operator", flush=True)

        # ---- start-up -------------------------------------------------------------------
        started = time.time()
        op = Operator(kube, tmp, name="operator", standalone=True, tick_s=args.tick_s,
                      max_concurrent=args.sick)
        pid = op.proc.pid
        ready = wait_for(lambda: policy_status(kube).get("matchedNodes") == args.nodes,
                         timeout_s=args.startup_timeout_s,
                         what="the first full reconcile pass")
        startup_s = ready - started
        time.sleep(max(3 * args.tick_s, 5.0))  # let start-up writes (status, Events) land
        settled = time.time()
        startup = kube.since(0, settled)
        startup_writes = [(t, r) for t, r in startup if r.write]
        node_list = [t for t, r in startup if r.resource == "nodes" and r.verb == "list"]
        listed_s = (node_list[0] - started) if node_list else float("nan")
        rss_after_start = proc_status(pid)
        print(f"operator ready in {startup_s:.1f}s; idle window {args.idle_s:.0f}s", flush=True)

        # ---- idle -------------------------------------------------------------------------
        rss_samples: list[int] = []
        cpu0, w0 = cpu_s(pid), time.time()
        end = w0 + args.idle_s
        while time.time() < end:
            rss_samples.append(proc_status(pid)["VmRSS"])
            time.sleep(1.0)
        w1, cpu1 = time.time(), cpu_s(pid)
        idle = kube.since(w0, w1)
        idle_writes = [(t, r) for t, r in idle if r.write]
        idle_node_writes = [(t, r) for t, r in idle_writes if r.resource == "nodes"]
        window = w1 - w0
        per_node_hour = len(idle_writes) / window * 3600 / args.nodes
        idle_cpu_pct = 100 * (cpu1 - cpu0) / window
        rss_idle = summarize([s / MIB for s in rss_samples])
        print(f"idle: {len(idle)} requests, {len(idle_writes)} writes", flush=True)

        # ---- sick episodes ----------------------------------------------------------------
        reps: list[dict[str, Any]] = []
        for rep in range(args.reps):
            names = {f"node-{(rep * args.sick + i) % args.nodes:05d}" for i in range(args.sick)}
            since = math.floor(time.time())
            elapse = since + args.for_s
            put0 = time.time()
            for n in sorted(names):
                set_condition(kube, n, True, iso(since))
            put_s = time.time() - put0
            ar = wait_for(lambda names=names: (lambda ph: len(ph) == len(names) and set(
                ph.values()) == {"ActionRequested"})(my_phases(kube, names)),
                timeout_s=args.for_s + 120, what="every remediation at ActionRequested")
            time.sleep(0.2)
            log = kube.since(elapse - 0.0, math.inf)
            cordons = sorted(t for t, r in log if is_cordon(r) and r.name in names)
            requested = sorted(t for t, r in log if is_phase_patch(r, "ActionRequested"))
            opened = sorted(t for t, r in log if r.resource == "noderemediations"
                            and r.verb == "create" and r.code < 300)
            last_ar = requested[-1] if requested else ar
            phase1 = [(t, r) for t, r in log if t <= last_ar]
            # ---- the agents' part, then Succeeded and uncordon ----
            done0 = time.time()
            wait_for(lambda names=names: not my_phases(kube, names),
                     timeout_s=180, what="every remediation Succeeded",
                     every=lambda names=names: fake_agent(kube, names))
            done1 = time.time()
            time.sleep(0.2)
            uncordoned = all(not (kube.get("nodes", n) or {}).get("spec", {}).get("unschedulable")
                             for n in names)
            full = kube.since(elapse, done1 + 0.2)
            rec = {
                "first": cordons[0] - elapse, "kth": cordons[-1] - elapse, "n": len(cordons),
                "opened_first": opened[0] - elapse if opened else float("nan"),
                "all_ar": last_ar - elapse, "put_s": put_s,
                "req": len(phase1), "writes": sum(1 for _, r in phase1 if r.write),
                "phase1": phase1, "full_req": len(full),
                "full_writes": sum(1 for _, r in full if r.write), "succ_s": done1 - done0,
                "uncordoned": uncordoned, "opened": len(opened),
            }
            reps.append(rec)
            print(f"rep {rep + 1}: first cordon {rec['first']:.2f}s, {rec['n']}th "
                  f"{rec['kth']:.2f}s after the duration elapsed; {rec['req']} requests, "
                  f"{rec['writes']} writes to ActionRequested", flush=True)
            time.sleep(2 * args.tick_s)
        final = proc_status(pid)
        load_end = loadavg()
        op_alive = op.proc.poll() is None
        log_text = op.text()
    finally:
        if op is not None:
            op.stop()
        kube.stop()
        shutil.rmtree(directory, ignore_errors=True)

    # ---- report ---------------------------------------------------------------------------
    s = args.sick
    first = summarize([r["first"] for r in reps])
    kth = summarize([r["kth"] for r in reps])
    opened_first = summarize([r["opened_first"] for r in reps])
    all_ar = summarize([r["all_ar"] for r in reps])
    req_per = summarize([r["req"] / r["opened"] for r in reps])
    wr_per = summarize([r["writes"] / r["opened"] for r in reps])
    full_req_per = summarize([r["full_req"] / r["opened"] for r in reps])
    full_wr_per = summarize([r["full_writes"] / r["opened"] for r in reps])
    peak = final["VmHWM"] / MIB
    warnings = sum(1 for ln in log_text.splitlines() if "WARNING" in ln or "ERROR" in ln)
    tick_note = "as shipped (`run()`/`nodeprobe operator` default)" \
        if args.tick_s == 2.0 else "NOT the shipped default of 2 s"

    lines += [
        f"### Remediation operator at {args.nodes:,} nodes ({machine()})",
        "",
        "The 2 cores are shared with another engineer's agent benchmark (dockerd, containerd, "
        "agents, pytest) running at the same time, and the API double runs in the benchmark's own "
        "process on the same cores: latency and CPU figures include that contention. "
        f"Load average start -> end: {load_start} -> {load_end}.",
        "",
        f"Setup: `nodeprobe.operator.run(standalone=True, tick_s={args.tick_s:g})` in its own "
        f"process (tick {tick_note}) against the API double (`benchmarks/apidouble`); "
        f"{args.nodes:,} Nodes "
        f"from `objects.kubelet_node` (+ our condition"
        + (f", {args.images} status.images entries each" if args.images else
           ", no status.images, so smaller than real Nodes")
        + f") put directly, not counted; one RemediationPolicy matching all of them: "
        f"trigger `{UNHEALTHY}=True for {args.for_s}s`, ladder restart-runtime(docker) -> "
        f"escalate, maxConcurrent {s}, minHealthy 50 %, coolDown 0s. Request times are the "
        "instants the double sent each answer (its request log, time-stamped by a subclass in "
        "the benchmark).",
        "",
        f"#### Start-up and idle ({args.nodes:,} healthy nodes)",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| start to first full reconcile (policy status shows {args.nodes:,} matched) | "
        f"{startup_s:.1f} s (the initial LIST of nodes was answered {listed_s:.1f} s after "
        "start: the rest is the operator's own processing) | |",
        f"| requests during start-up | {len(startup)} ({breakdown(startup)}) | |",
        f"| writes during start-up | {len(startup_writes)} ({breakdown(startup_writes)}) | |",
        f"| idle window | {window:.0f} s, {len(idle)} requests ({breakdown(idle)}) | |",
        f"| writes in idle window | {len(idle_writes)} (to Nodes: {len(idle_node_writes)}; "
        f"{breakdown(idle_writes)}) | 0 |",
        f"| **writes per healthy node per hour** | **{per_node_hour:.3g}** "
        f"({len(idle_writes)} in {window:.0f} s x 3600 / {args.nodes:,}"
        + ("" if idle_writes else f"; < {3600 / window / args.nodes:.2g} if one had come")
        + ") | 0 |",
        f"| operator CPU, idle | {idle_cpu_pct:.1f} % of one core ({cpu1 - cpu0:.1f} s in "
        f"{window:.0f} s) | |",
        f"| **operator RSS, steady** (1 s samples over the idle window) | "
        f"**{rss_idle.median:.1f} MiB** (min {rss_idle.minimum:.1f}, max {rss_idle.maximum:.1f}); "
        f"RssAnon after start-up {rss_after_start['RssAnon'] / MIB:.1f} MiB | < 250 MB |",
        "",
        f"#### {s} nodes turn sick at once, {len(reps)} repetition(s) (fresh nodes each time)",
        "",
        "Times are from the instant the trigger's duration elapsed (lastTransitionTime + "
        f"{args.for_s} s) to the double answering the operator's request. The ladder moves at "
        f"most one phase per pass (every {args.tick_s:g} s): open -> cordon -> drain -> "
        "ActionRequested, so a cordon lands one to two ticks after the duration elapses.",
        "",
        "| measure | median | min | max | sd | goal |",
        "|---|---|---|---|---|---|",
        f"| first NodeRemediation created | {opened_first.median:.2f} s | "
        f"{opened_first.minimum:.2f} | {opened_first.maximum:.2f} | {opened_first.stdev:.2f} | |",
        f"| **first cordon** | **{first.median:.2f} s** | {first.minimum:.2f} | "
        f"{first.maximum:.2f} | {first.stdev:.2f} | |",
        f"| **{s}th cordon** (= maxConcurrent) | **{kth.median:.2f} s** | {kth.minimum:.2f} | "
        f"{kth.maximum:.2f} | {kth.stdev:.2f} | |",
        f"| all {s} at ActionRequested | {all_ar.median:.2f} s | {all_ar.minimum:.2f} | "
        f"{all_ar.maximum:.2f} | {all_ar.stdev:.2f} | |",
        f"| **API requests per remediation** (elapse -> last ActionRequested) | "
        f"**{req_per.median:.1f}** | {req_per.minimum:.1f} | {req_per.maximum:.1f} | "
        f"{req_per.stdev:.1f} | |",
        f"| **API writes per remediation** (same window) | **{wr_per.median:.1f}** | "
        f"{wr_per.minimum:.1f} | {wr_per.maximum:.1f} | {wr_per.stdev:.1f} | |",
        f"| requests / writes per remediation, whole episode to Succeeded (agent simulated) | "
        f"{full_req_per.median:.1f} / {full_wr_per.median:.1f} | "
        f"{full_req_per.minimum:.1f} / {full_wr_per.minimum:.1f} | "
        f"{full_req_per.maximum:.1f} / {full_wr_per.maximum:.1f} | | |",
        "",
        "Per repetition: " + "; ".join(
            f"#{i + 1}: first {r['first']:.2f} s, {r['n']}th {r['kth']:.2f} s, "
            f"{r['opened']} opened, {r['req']} requests / {r['writes']} writes to "
            f"ActionRequested, Succeeded {r['succ_s']:.1f} s after the agents reported, "
            f"uncordoned: {'yes' if r['uncordoned'] else 'NO'}"
            for i, r in enumerate(reps)) + ".",
        "",
        f"Requests from elapse to ActionRequested, repetition 1 ({reps[0]['opened']} "
        f"remediations): {breakdown(reps[0]['phase1'])}.",
        "",
        "#### Memory",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| **VmHWM (peak since start, start-up and all episodes included)** | **{peak:.1f} MiB** "
        f"| < 250 MB |",
        f"| VmRSS steady (idle median) / at end | {rss_idle.median:.1f} / "
        f"{final['VmRSS'] / MIB:.1f} MiB (RssAnon at end {final['RssAnon'] / MIB:.1f}) | |",
        f"| threads at end | {final['Threads']} | |",
        "",
        f"Operator process alive at the end: {'yes' if op_alive else 'NO'}; warning/error lines "
        f"in its log: {warnings}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
