"""The remediation operator on the real API server, 5,000 nodes, one policy.

Run with `python -m benchmarks.operator_bench [--nodes N] [--images I] [--sick S] [--idle-s S]
[--reps R] [--for-s F]`; prints a Markdown section and writes it to benchmarks/out/operator.md.
`--startup-scaling N1 N2 ...` measures only start-up, one fresh control plane per node count.

The backend is benchmarks/operator_real.RealBackend: the test control plane, the chart installed
with real helm, N Nodes created through the admin API, and `nodeprobe operator --standalone` (no
leader election, tick 2 s as shipped, `--max-concurrent S`) with the chart's operator
ServiceAccount. One RemediationPolicy matches every node (restart-runtime rung, trigger
ContainerRuntimeUnavailable=True for F s, maxConcurrent S, minHealthy 50 %, coolDown and
settleWindow 0s):
1. idle: after start-up settles (policy status shows every node matched), count every request
   and write the operator sends for --idle-s, and sample its RSS;
2. sick, R times with fresh nodes: S nodes get the condition True at once with
   lastTransitionTime T (whole second), so the trigger's duration elapses at E = T + F; cordon
   latency = the audit log's ResponseComplete stamp of the cordon PATCH - E. Requests are
   counted from E until the last remediation reached ActionRequested; then the agents' part is
   simulated (status.agent Done, condition False) until every episode Succeeded.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.audit import Request
from benchmarks.operator_nodes import UNHEALTHY, iso, make_node
from benchmarks.operator_real import RealBackend
from benchmarks.operator_report import Idle, Rep, Startup, report, scaling_report
from benchmarks.stats import cpu_s, loadavg, proc_status, summarize, wait_for

OUT = Path(__file__).with_name("out") / "operator.md"
MIB = 2**20
POLICY = "p"


def is_cordon(r: Request) -> bool:
    spec = r.body.get("spec") if isinstance(r.body, dict) else None
    return (r.resource == "nodes" and r.verb == "patch" and r.code < 300
            and isinstance(spec, dict) and spec.get("unschedulable") is True)


def is_phase_patch(r: Request, phase: str) -> bool:
    status = r.body.get("status") if isinstance(r.body, dict) else None
    return (r.resource == "noderemediations" and r.subresource == "status" and r.code < 300
            and isinstance(status, dict) and status.get("phase") == phase)


@dataclass
class Fleet:
    """A backend with N healthy Nodes and the one policy; the operator started."""

    backend: RealBackend
    nodes: int
    load_s: float = 0.0
    pid: int = 0

    def create(self, images: int, args: Any) -> None:
        t0 = time.perf_counter()
        self.backend.load([make_node(f"node-{i:05d}", images) for i in range(self.nodes)])
        self.load_s = time.perf_counter() - t0
        self.backend.add_policy(POLICY, {
            "triggers": [{"type": UNHEALTHY, "status": "True", "for": f"{args.for_s}s"}],
            "maxConcurrent": args.sick, "minHealthy": "50%", "coolDown": "0s",
            "settleWindow": "0s", "drain": {"timeout": "60s"},
            "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "300s"},
                       {"action": "escalate"}]})
        print(f"created {self.nodes} Nodes in {self.load_s:.1f} s", flush=True)

    def start(self, args: Any) -> float:
        """Start the operator; seconds to its first full pass."""
        started = time.time()
        self.pid = self.backend.start_operator(args.sick, 2.0, standalone=True)
        ready = wait_for(
            lambda: self.backend.policy_status(POLICY).get("matchedNodes") == self.nodes,
            timeout_s=args.startup_timeout_s, what="the first full reconcile pass")
        return ready - started

    def open_phases(self, names: set[str]) -> dict[str, str]:
        return {nr["spec"]["nodeName"]: (nr.get("status") or {}).get("phase", "")
                for nr in self.backend.remediations() if nr["spec"]["nodeName"] in names
                and (nr.get("status") or {}).get("phase") != "Succeeded"}

    def agents(self, names: set[str]) -> None:
        """The node agents' part: report Done for the rung and clear the condition."""
        for nr in self.backend.remediations():
            st = nr.get("status") or {}
            node = nr["spec"]["nodeName"]
            if node in names and st.get("phase") == "ActionRequested" and "agent" not in st:
                self.backend.agent_done(nr)
                self.backend.set_condition(node, False, iso(time.time()))


def startup_and_idle(fleet: Fleet, args: Any) -> tuple[Startup, Idle]:
    started = time.time()
    startup_s = fleet.start(args)
    time.sleep(max(3 * args.tick_s, 5.0))  # let start-up writes (status, Events) land
    settled = time.time()
    log = fleet.backend.log(0, settled)
    lists = [t for t, r in log if r.resource == "nodes" and r.verb == "list"]
    startup = Startup(startup_s, (lists[0] - started) if lists else math.nan, log,
                      proc_status(fleet.pid))
    print(f"operator ready in {startup_s:.1f}s; idle window {args.idle_s:.0f}s", flush=True)
    samples: list[float] = []
    cpu0, w0 = cpu_s(fleet.pid), time.time()
    while time.time() < w0 + args.idle_s:
        samples.append(proc_status(fleet.pid)["VmRSS"] / MIB)
        time.sleep(1.0)
    w1 = time.time()
    return startup, Idle(w1 - w0, fleet.backend.log(w0, w1), cpu_s(fleet.pid) - cpu0,
                         summarize(samples))


def sick_episode(fleet: Fleet, args: Any, rep: int) -> Rep:
    names = {f"node-{(rep * args.sick + i) % args.nodes:05d}" for i in range(args.sick)}
    since = math.floor(time.time())
    elapse = since + args.for_s
    for n in sorted(names):
        fleet.backend.set_condition(n, True, iso(since))
    ar = wait_for(lambda: (lambda ph: len(ph) == len(names) and set(ph.values()) == {
        "ActionRequested"})(fleet.open_phases(names)),
        timeout_s=args.for_s + 120, what="every remediation at ActionRequested")
    done0 = time.time()
    done1 = wait_for(lambda: not fleet.open_phases(names), timeout_s=180,
                     what="every remediation Succeeded", every=lambda: fleet.agents(names))
    time.sleep(1.0)  # the audit log is written when each answer completes
    log = fleet.backend.log(elapse, math.inf)
    requested = sorted(t for t, r in log if is_phase_patch(r, "ActionRequested"))
    last_ar = requested[-1] if requested else ar
    uncordoned = all(not fleet.backend.node(n)["spec"].get("unschedulable") for n in names)
    rec = Rep(
        elapse=elapse, cordons=sorted(t for t, r in log if is_cordon(r) and r.name in names),
        opened=sorted(t for t, r in log if r.resource == "noderemediations"
                      and r.verb == "create" and r.code < 300),
        phase1=[(t, r) for t, r in log if t <= last_ar], last_ar=last_ar,
        full=[(t, r) for t, r in log if t <= done1 + 0.5], succ_s=done1 - done0,
        uncordoned=uncordoned, rss=proc_status(fleet.pid)["VmRSS"] / MIB)
    print(f"rep {rep + 1}: first cordon {rec.first:.2f}s, {len(rec.cordons)}th "
          f"{rec.kth:.2f}s after the duration elapsed; {len(rec.phase1)} requests to "
          f"ActionRequested", flush=True)
    return rec


def startup_scaling(sizes: list[int], args: Any) -> str:
    """Start-up only: operator start -> first full reconcile pass, per node count."""
    rows = []
    for n in sizes:
        fleet = Fleet(RealBackend(), n)
        try:
            fleet.create(args.images, args)
            ready_s = fleet.start(args)
            rows.append((n, fleet.load_s, ready_s, cpu_s(fleet.pid),
                         proc_status(fleet.pid)["VmHWM"] / MIB))
        finally:
            fleet.backend.close()
    return scaling_report(rows, args.images)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--startup-scaling", type=int, nargs="*", default=None,
                   help="only measure start-up at these node counts "
                        "(writes benchmarks/out/operator_startup.md)")
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--sick", type=int, default=50)
    p.add_argument("--idle-s", type=float, default=180.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--for-s", type=int, default=10)
    p.add_argument("--tick-s", type=float, default=2.0,
                   help="the operator's tick: only the shipped 2 s (the CLI has no flag)")
    p.add_argument("--startup-timeout-s", type=float, default=900.0)
    p.add_argument("--images", type=int, default=50, help="status.images entries per Node")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv if argv is not None else [])
    if args.startup_scaling:
        text = startup_scaling(args.startup_scaling, args)
        print(text)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.with_name("operator_startup.md").write_text(text + "\n")
        return 0
    load_start = loadavg()
    fleet = Fleet(RealBackend(), args.nodes)
    try:
        fleet.create(args.images, args)
        startup, idle = startup_and_idle(fleet, args)
        reps = [sick_episode(fleet, args, rep) for rep in range(args.reps)]
        final = proc_status(fleet.pid)
        alive = fleet.backend.operator_alive()
        log_text = fleet.backend.operator_log()
    finally:
        fleet.backend.close()
    text = report(args, fleet.backend.where, fleet.load_s, startup, idle, reps, final=final,
                  alive=alive, log_text=log_text, load=(load_start, loadavg()))
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

