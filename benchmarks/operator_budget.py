"""Issue 10: the one cluster budget at 5,000 nodes, 50 sick under 3 overlapping policies.

`python -m benchmarks.operator_bench --budget B [--nodes N] [--sick S] [--reps R]`: the operator
(`nodeprobe.operator.run`, leader election on, tick 2 s as shipped) against the API double;
three RemediationPolicies that overlap (every node; half the nodes; every node again, on the
same trigger), each `maxConcurrent` B, the cluster budget (`--max-concurrent`) B. S nodes turn
sick at once; the node agents' part is simulated (Done + condition cleared) until every episode
Succeeded. Measured: time from the trigger's duration elapsing to the first cordon; the peak
number of nodes held at one instant, replayed from every cordon/uncordon and node-Lease write
the double answered (must equal B); API requests and writes per episode; operator RSS.
Writes benchmarks/out/operator_budget.md.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.apidouble.operator import UNHEALTHY, Operator, add_policy, remediations
from benchmarks.apidouble.server import Request
from benchmarks.stats import machine, summarize
from nodeprobe.operator import CRD_DIR

OUT = Path(__file__).with_name("out") / "operator_budget.md"
MIB = 2**20


def _held_peaks(log: list[tuple[float, Request]]) -> tuple[int, int]:
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


def breakdown(entries: list[tuple[float, Request]]) -> str:
    counts: dict[str, int] = {}
    for _, r in entries:
        res = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
        k = f"{r.verb} {res or '(discovery)'}"
        counts[k] = counts.get(k, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def run_budget(args: Any, *, timed_double: Any, make_node: Any, set_condition: Any,
               proc_status: Any, wait_for: Any, iso: Any, loadavg: Any) -> str:
    directory = Path(tempfile.mkdtemp(prefix="np-opbudget-", dir="/tmp"))
    (directory / "op").mkdir()
    kube = timed_double(directory=directory / "kube", history=400_000)
    kube.start()
    op = None
    reps: list[dict[str, Any]] = []
    load0 = loadavg()
    try:
        for f in sorted(CRD_DIR.glob("*.yaml")):
            kube.put_object(yaml.safe_load(f.read_text()))
        for i in range(args.nodes):
            node = make_node(f"node-{i:05d}", args.images)
            node["metadata"]["labels"]["pool"] = "ab"[i % 2]
            kube.put_object(node)
        common = {"triggers": [{"type": UNHEALTHY, "status": "True", "for": f"{args.for_s}s"}],
                  "ladder": [{"action": "restart-runtime", "runtime": "docker",
                              "timeout": "300s"}, {"action": "escalate"}],
                  "maxConcurrent": args.budget, "coolDown": "0s", "settleWindow": "0s"}
        add_policy(kube, "all", **common)
        add_policy(kube, "pool-a", nodeSelector={"matchLabels": {"pool": "a"}}, **common)
        add_policy(kube, "same-trigger", **common)
        op = Operator(kube, directory / "op", name="operator", standalone=False,
                      tick_s=args.tick_s, max_concurrent=args.budget, lease=(15, 10, 2))
        pid = op.proc.pid
        wait_for(lambda: all((kube.get("remediationpolicies", p, group="nodeprobe.io") or {})
                             .get("status", {}).get("matchedNodes") for p in
                             ("all", "pool-a", "same-trigger")),
                 timeout_s=args.startup_timeout_s, what="the first full pass")
        time.sleep(max(3 * args.tick_s, 5.0))
        for rep in range(args.reps):
            names = {f"node-{(rep * args.sick + i) % args.nodes:05d}" for i in range(args.sick)}
            since = math.floor(time.time())
            elapse = since + args.for_s
            for n in sorted(names):
                set_condition(kube, n, True, iso(since))

            def pending(names: set[str] = names, since: float = since) -> dict[str, str]:
                return {nr["spec"]["nodeName"]: (nr.get("status") or {}).get("phase", "")
                        for nr in remediations(kube) if nr["spec"]["nodeName"] in names
                        and nr["spec"].get("episodeStart") == iso(since)}

            def agents(names: set[str] = names) -> None:
                for nr in remediations(kube):
                    st = nr.get("status") or {}
                    node = nr["spec"]["nodeName"]
                    if node in names and st.get("phase") == "ActionRequested" \
                            and "agent" not in st:
                        st["agent"] = {"rung": nr["spec"].get("rung", 0), "state": "Done",
                                       "message": "restarted"}
                        kube.put_object(nr)
                        set_condition(kube, node, False, iso(time.time()))

            def finished(names: set[str] = names) -> bool:
                ph = pending()
                return len(ph) == len(names) and set(ph.values()) == {"Succeeded"}

            done = wait_for(finished,
                            timeout_s=args.for_s + 60 + 30 * args.sick / args.budget,
                            what="every episode Succeeded", every=agents)
            time.sleep(0.5)
            log = kube.since(elapse - 1.0, math.inf)
            cordons = sorted(t for t, r in log if r.resource == "nodes" and r.verb == "patch"
                             and isinstance(r.body, dict)
                             and (r.body.get("spec") or {}).get("unschedulable") is True)
            peak_c, peak_l = _held_peaks(kube.since(0, math.inf))
            window = [(t, r) for t, r in log if t <= done + 0.5]
            reps.append({
                "first": cordons[0] - elapse if cordons else float("nan"),
                "all": done - elapse, "peak_c": peak_c, "peak_l": peak_l,
                "req": len(window) / args.sick,
                "writes": sum(1 for _, r in window if r.write) / args.sick,
                "conflicts": sum(1 for _, r in window if r.code == 409),
                "rss": proc_status(pid)["VmRSS"] / MIB, "window": window})
            print(f"rep {rep + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in reps[-1].items()
                                                 if k != "window"), flush=True)
        hwm = proc_status(pid)["VmHWM"] / MIB
        alive = op.proc.poll() is None
    finally:
        if op is not None:
            op.stop()
        kube.stop()
        shutil.rmtree(directory, ignore_errors=True)
    first = summarize([r["first"] for r in reps])
    every = summarize([r["all"] for r in reps])
    req = summarize([r["req"] for r in reps])
    wr = summarize([r["writes"] for r in reps])
    rss = summarize([r["rss"] for r in reps])
    lines = [
        f"### Issue 10: one budget, {args.nodes:,} nodes, {args.sick} sick under 3 overlapping "
        f"policies ({machine()}, shared; load {load0} -> {loadavg()})",
        "",
        f"`nodeprobe.operator.run(standalone=False, max_concurrent={args.budget}, "
        f"tick_s={args.tick_s:g})` (leader election on, Lease timings as shipped: 15 s / 10 s / "
        "2 s) in its own process against the API "
        f"double; policies `all` (every node), `pool-a` (half) and `same-trigger` (every node, "
        f"the same trigger), each maxConcurrent {args.budget}; {args.sick} nodes turn sick at "
        f"once, {len(reps)} repetition(s); agents simulated. Times from the trigger's duration "
        "elapsing.",
        "",
        "| measure | median | min | max | n |",
        "|---|---|---|---|---|",
        f"| **time to first cordon** | **{first.median:.2f} s** | {first.minimum:.2f} | "
        f"{first.maximum:.2f} | {first.n} |",
        f"| all {args.sick} episodes Succeeded | {every.median:.1f} s | {every.minimum:.1f} | "
        f"{every.maximum:.1f} | {every.n} |",
        f"| **API requests per episode** (elapse -> last Succeeded, all requests / {args.sick}) "
        f"| **{req.median:.1f}** | {req.minimum:.1f} | {req.maximum:.1f} | {req.n} |",
        f"| API writes per episode | {wr.median:.1f} | {wr.minimum:.1f} | {wr.maximum:.1f} | "
        f"{wr.n} |",
        f"| operator VmRSS after each repetition | {rss.median:.1f} MiB | {rss.minimum:.1f} | "
        f"{rss.maximum:.1f} | {rss.n} |",
        "",
        f"Peak nodes held at one instant, replayed from every write the double answered "
        f"(budget {args.budget}): cordoned "
        + ", ".join(str(r["peak_c"]) for r in reps) + "; node Leases held "
        + ", ".join(str(r["peak_l"]) for r in reps)
        + f". 409 answers: {sum(r['conflicts'] for r in reps)}. VmHWM {hwm:.1f} MiB. "
        f"Operator alive at the end: {'yes' if alive else 'NO'}.",
        "",
        f"Requests in repetition 1 ({args.sick} episodes): {breakdown(reps[0]['window'])}.",
        ""]
    text = "\n".join(lines)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text + "\n")
    return text
