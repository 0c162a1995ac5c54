"""The whole repair loop on a real node, N times: containerd (the one kubelet uses, which runs the
agent, the operator and the workload) SIGSTOPped, then the seconds until each step was first
seen, up to repaired = the node schedulable again, the NodeRemediation Succeeded and both
workload pods Running and Ready.

    python -m benchmarks.realnode_repair [N] [IMAGE_TAR]
        N: loops (default 5; each about a minute, plus the wait for a healthy node between);
        IMAGE_TAR: a `docker save` of the project's image to use instead of building it

The setup is the end-to-end test's (tests/harness/kubecluster/repairloop.py): a default
`helm install` but the image and repair on, the node's `systemctl restart containerd` a real
restart of its containerd (units.py), a RemediationPolicy with short timings (trigger `for` 5 s,
drain timeout 30 s, terminatingSkip 10 s, settle window 5 s) and two busybox pods behind a
PodDisruptionBudget with minAvailable 1. Prints the Markdown docs/performance.md quotes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.peer_measure import loadavg
from benchmarks.realnode_hang import built_image
from benchmarks.stats import machine, summarize
from tests.harness.kubecluster import running_cluster
from tests.harness.kubecluster.node import real_node
from tests.harness.kubecluster.repairloop import (
    Loop,
    LoopFailed,
    create_policy,
    create_workload,
    healthy,
    helm_upgrade,
    release_node,
    repair_values,
    run_once,
    wait,
    wait_served,
)

RESTART_LOOP_COUNT = 100
STEPS = ("condition", "opened", "evicted", "ActionRequested", "kubelet NotReady", "Verifying",
         "kubelet Ready", "Succeeded", "repaired")


def measure(n: int, archive: Path | None = None) -> str:
    base = Path(tempfile.mkdtemp(prefix="np-br-", dir="/tmp"))
    loops: list[Loop] = []
    restarts: list[float] = []
    loads: list[float] = []
    failed: list[str] = []
    try:
        archive = archive or built_image(base)
        with running_cluster(base / "k", for_node=True) as cluster, \
                real_node(cluster, base / "n") as node:
            node.import_image(archive)
            values = repair_values(node)
            # One repair every ~2 min is this benchmark's point; the agent's restart-loop
            # check (3 restarts in 10 min) would call the third a crash loop (docs/performance.md).
            values["agent"]["config"]["judge"] = {"restart": {"count": RESTART_LOOP_COUNT}}
            helm_upgrade(cluster, values)
            wait_served(cluster)
            create_workload(cluster)
            create_policy(cluster)
            with loadavg(loads):
                for i in range(n):
                    wait(lambda: healthy(cluster), timeout_s=300, what="a healthy node")
                    try:
                        loops.append(run_once(cluster, node))
                    except LoopFailed as e:  # counted and shown; the next loop starts clean
                        failed.append(str(e))
                        print(f"loop {i + 1}/{n} FAILED: {e}", file=sys.stderr, flush=True)
                        release_node(cluster)
                        continue
                    restarts.append(node.units.restarts[-1].took_s)
                    print(f"loop {i + 1}/{n}: {json.dumps(loops[-1].seen)}", file=sys.stderr,
                          flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return _table(loops, restarts, loads) + "".join(f"\n\nFAILED: {f}" for f in failed)


def _table(loops: list[Loop], restarts: list[float], loads: list[float]) -> str:
    out = ["| loop | " + " | ".join(STEPS) + " | containerd restart (s) |",
           "|---|" + "---|" * (len(STEPS) + 1)]
    for i, (loop, took) in enumerate(zip(loops, restarts, strict=True), 1):
        cells = [f"{loop.seen[s]:.1f}" if s in loop.seen else "not seen" for s in STEPS]
        out.append(f"| {i} | " + " | ".join(cells) + f" | {took:.1f} |")
    out.append(f"\ntime to repair (hang -> schedulable, workload serving): "
               f"{summarize([loop.repaired_s for loop in loops]).row('s')}")
    out.append(f"\nrestart by the node's systemctl (SIGKILL, start, socket serving): "
               f"{summarize(restarts).row('s')}")
    out.append(f"\nload average (1 min) {min(loads, default=0):.1f}-"
               f"{max(loads, default=0):.1f}; {machine()}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(measure(int(args[0]) if args else 5, Path(args[1]) if len(args) > 1 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
