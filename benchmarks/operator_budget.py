"""Issue 10: the one cluster budget at 5,000 nodes, 50 sick under 3 overlapping policies.

`python -m benchmarks.operator_real --budget B [--nodes N] [--sick S] [--reps R]`: `nodeprobe
operator` (leader election on, tick 2 s as shipped) against the real API server;
three RemediationPolicies that overlap (every node; half the nodes; every node again, on the
same trigger), each `maxConcurrent` B, the cluster budget (`--max-concurrent`) B. S nodes turn
sick at once; the node agents' part is simulated (Done + condition cleared) until every episode
Succeeded. Measured: time from the trigger's duration elapsing to the first cordon; the peak
number of nodes held at one instant, replayed from every cordon/uncordon and node-Lease write
the server answered (must equal B); API requests and writes per episode; operator RSS.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Protocol

from benchmarks.audit import Stamped, breakdown
from benchmarks.operator_nodes import UNHEALTHY, iso, make_node
from benchmarks.stats import loadavg, machine, proc_status, summarize, wait_for

OUT = Path(__file__).with_name("out") / "operator_budget.md"
MIB = 2**20


def _held_peaks(log: list[Stamped]) -> tuple[int, int]:
    """Most nodes cordoned by us, and most node Leases held, at one instant."""
    cordoned: dict[str, bool] = {}
    leased: dict[str, bool] = {}
    peak_c = peak_l = 0
    for _, r in log:
        body = r.body if isinstance(r.body, dict) else {}
        spec = body.get("spec")
        if r.code >= 300 or not isinstance(spec, dict):
            continue
        if r.resource == "nodes" and "unschedulable" in spec:
            cordoned[r.name] = bool(spec["unschedulable"])
            peak_c = max(peak_c, sum(cordoned.values()))
        elif r.resource == "leases" and "holderIdentity" in spec:
            name = r.name or str((body.get("metadata") or {}).get("name", ""))
            if name.startswith("node-"):
                leased[name] = bool(spec["holderIdentity"])
                peak_l = max(peak_l, sum(leased.values()))
    return peak_c, peak_l


class Backend(Protocol):
    """What the scenario needs of its API server: operator_real.RealBackend (a Protocol, as
    operator_real imports this module)."""

    where: str
    """How the report names the API server and the operator's credentials."""

    def load(self, nodes: list[dict[str, Any]]) -> None: ...
    def add_policy(self, name: str, spec: dict[str, Any]) -> None: ...
    def start_operator(self, budget: int, tick_s: float) -> int: ...
    def operator_alive(self) -> bool: ...
    def matched(self, policy: str) -> bool: ...
    def remediations(self) -> list[dict[str, Any]]: ...
    def set_condition(self, node: str, sick: bool, since: str) -> None: ...
    def agent_done(self, nr: dict[str, Any]) -> None: ...
    def log(self, start: float, end: float) -> list[Stamped]:
        """The operator's requests answered in [start, end], stamped with the answer's time."""
        ...
    def close(self) -> None: ...


POLICIES = ("all", "pool-a", "same-trigger")


def _policies(args: Any) -> dict[str, dict[str, Any]]:
    common = {"triggers": [{"type": UNHEALTHY, "status": "True", "for": f"{args.for_s}s"}],
              "ladder": [{"action": "restart-runtime", "runtime": "docker",
                          "timeout": "300s"}, {"action": "escalate"}],
              "maxConcurrent": args.budget, "minHealthy": "0%", "coolDown": "0s",
              "settleWindow": "0s", "drain": {"timeout": "60s"}}
    return {"all": dict(common),
            "pool-a": {"nodeSelector": {"matchLabels": {"pool": "a"}}, **common},
            "same-trigger": dict(common)}


def _start(backend: Backend, args: Any) -> tuple[float, float, int]:
    """Nodes, policies, operator: seconds to create the Nodes, to the first full pass; its pid."""
    nodes = []
    for i in range(args.nodes):
        node = make_node(f"node-{i:05d}", args.images)
        node["metadata"]["labels"]["pool"] = "ab"[i % 2]
        nodes.append(node)
    t0 = time.monotonic()
    backend.load(nodes)
    load_s = time.monotonic() - t0
    print(f"{args.nodes} nodes created in {load_s:.1f} s", flush=True)
    for name, spec in _policies(args).items():
        backend.add_policy(name, spec)
    started = time.time()
    pid = backend.start_operator(args.budget, args.tick_s)
    ready = wait_for(lambda: all(backend.matched(p) for p in POLICIES),
                     timeout_s=args.startup_timeout_s, what="the first full pass")
    time.sleep(max(3 * args.tick_s, 5.0))  # let start-up writes (status, Events) land
    print(f"operator ready in {ready - started:.1f} s; idle {args.idle_s:.0f} s", flush=True)
    return load_s, ready - started, pid


def _idle(backend: Backend, args: Any, pid: int) -> dict[str, Any]:
    w0, samples = time.time(), []
    while time.time() < w0 + args.idle_s:
        samples.append(proc_status(pid)["VmRSS"] / MIB)
        time.sleep(1.0)
    w1 = time.time()
    quiet = backend.log(w0, w1)
    writes = [r for _, r in quiet if r.write]
    return {"s": w1 - w0, "req": len(quiet), "writes": len(writes),
            "node_writes": sum(1 for r in writes if r.resource == "nodes"),
            "rss": summarize(samples), "what": breakdown(quiet)}


class _Wave:
    """One repetition: S nodes sick since `since`; the agents' part simulated."""

    def __init__(self, backend: Backend, args: Any, rep: int) -> None:
        self.backend = backend
        self.names = {f"node-{(rep * args.sick + i) % args.nodes:05d}" for i in range(args.sick)}
        self.since = math.floor(time.time())
        for n in sorted(self.names):
            backend.set_condition(n, True, iso(self.since))

    def phases(self) -> dict[str, str]:
        return {nr["spec"]["nodeName"]: (nr.get("status") or {}).get("phase", "")
                for nr in self.backend.remediations() if nr["spec"]["nodeName"] in self.names
                and nr["spec"].get("episodeStart") == iso(self.since)}

    def agents(self) -> None:
        for nr in self.backend.remediations():
            st = nr.get("status") or {}
            node = nr["spec"]["nodeName"]
            if node in self.names and st.get("phase") == "ActionRequested" and "agent" not in st:
                self.backend.agent_done(nr)
                self.backend.set_condition(node, False, iso(time.time()))

    def finished(self) -> bool:
        ph = self.phases()
        return len(ph) == len(self.names) and set(ph.values()) == {"Succeeded"}


def _wave(backend: Backend, args: Any, pid: int, rep: int) -> dict[str, Any]:
    wave = _Wave(backend, args, rep)
    elapse = wave.since + args.for_s
    done = wait_for(wave.finished, timeout_s=args.for_s + 60 + 30 * args.sick / args.budget,
                    what="every episode Succeeded", every=wave.agents)
    time.sleep(1.0)  # the audit log is written when each answer completes
    log = backend.log(elapse - 1.0, math.inf)
    cordons = sorted(t for t, r in log if r.resource == "nodes" and r.verb == "patch"
                     and isinstance(r.body, dict)
                     and (r.body.get("spec") or {}).get("unschedulable") is True)
    peak_c, peak_l = _held_peaks(backend.log(0, math.inf))
    window = [(t, r) for t, r in log if t <= done + 0.5]
    rec = {"first": cordons[0] - elapse if cordons else float("nan"),
           "all": done - elapse, "peak_c": peak_c, "peak_l": peak_l,
           "req": len(window) / args.sick,
           "writes": sum(1 for _, r in window if r.write) / args.sick,
           "conflicts": sum(1 for _, r in window if r.code == 409),
           "rss": proc_status(pid)["VmRSS"] / MIB, "window": window}
    print(f"rep {rep + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rec.items()
                                         if k != "window"), flush=True)
    return rec


def run_scenario(backend: Backend, args: Any, *, out: Path) -> str:
    load0 = loadavg()
    try:
        load_s, startup_s, pid = _start(backend, args)
        idle = _idle(backend, args, pid)
        reps = [_wave(backend, args, pid, rep) for rep in range(args.reps)]
        hwm = proc_status(pid)["VmHWM"] / MIB
        alive = backend.operator_alive()
    finally:
        backend.close()
    text = "\n".join([
        f"### One budget, {args.nodes:,} nodes, {args.sick} sick under 3 overlapping "
        f"policies ({machine()}, shared; load {load0} -> {loadavg()})", "",
        f"Against {backend.where}. Cluster budget (`--max-concurrent`) {args.budget}, tick "
        f"{args.tick_s:g} s, leader election on; policies `all` (every node), `pool-a` (half) "
        f"and `same-trigger` (every node, the same trigger), each maxConcurrent {args.budget}; "
        f"{args.images} status.images per node; {args.sick} nodes turn sick at once, "
        f"{len(reps)} repetition(s); agents simulated. Times from the trigger's duration "
        "elapsing.", "",
        *_table(args, load_s, startup_s, idle, reps), "",
        f"Peak nodes held at one instant, replayed from every write the server answered "
        f"(budget {args.budget}): cordoned " + ", ".join(str(r["peak_c"]) for r in reps)
        + "; node Leases held " + ", ".join(str(r["peak_l"]) for r in reps)
        + f". 409 answers: {sum(r['conflicts'] for r in reps)}. VmHWM {hwm:.1f} MiB. "
        f"Operator alive at the end: {'yes' if alive else 'NO'}.", "",
        f"Idle window requests: {idle['what'] or 'none'}.", "",
        f"Requests in repetition 1 ({args.sick} episodes): {breakdown(reps[0]['window'])}.",
        ""])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    return text


def _table(args: Any, load_s: float, startup_s: float, idle: dict[str, Any],
           reps: list[dict[str, Any]]) -> list[str]:
    first, every, req, wr, rss = (summarize([r[k] for r in reps])
                                  for k in ("first", "all", "req", "writes", "rss"))
    per_hour = idle["writes"] / idle["s"] * 3600 / args.nodes
    node_per_hour = idle["node_writes"] / idle["s"] * 3600 / args.nodes
    return [
        "| measure | median | min | max | n |",
        "|---|---|---|---|---|",
        f"| {args.nodes:,} Nodes created | {load_s:.1f} s | | | 1 |",
        f"| operator start -> first full pass (every policy's status matched) | "
        f"{startup_s:.1f} s | | | 1 |",
        f"| **time to first cordon** | **{first.median:.2f} s** | {first.minimum:.2f} | "
        f"{first.maximum:.2f} | {first.n} |",
        f"| all {args.sick} episodes Succeeded | {every.median:.1f} s | {every.minimum:.1f} | "
        f"{every.maximum:.1f} | {every.n} |",
        f"| **API requests per episode** (elapse -> last Succeeded, all requests / {args.sick}) "
        f"| **{req.median:.1f}** | {req.minimum:.1f} | {req.maximum:.1f} | {req.n} |",
        f"| API writes per episode | {wr.median:.1f} | {wr.minimum:.1f} | {wr.maximum:.1f} | "
        f"{wr.n} |",
        f"| operator VmRSS, steady (1 s samples, idle window) | {idle['rss'].median:.1f} MiB | "
        f"{idle['rss'].minimum:.1f} | {idle['rss'].maximum:.1f} | {idle['rss'].n} |",
        f"| operator VmRSS after each repetition | {rss.median:.1f} MiB | {rss.minimum:.1f} | "
        f"{rss.maximum:.1f} | {rss.n} |",
        f"| **writes per healthy node per hour** (idle {idle['s']:.0f} s: {idle['writes']} "
        f"writes, {idle['node_writes']} to Nodes) | **{per_hour:.2g}** (to Nodes "
        f"{node_per_hour:.2g}) | | | 1 |"]
