"""Agent API writes per node per hour on the real API server, steady and during a hang.

`python -m benchmarks.agent_writes_real [--steady-min M] [--hang-min H]`: starts the test control
plane (tests/harness/kubecluster.py), installs the chart with real helm, registers one Node and
runs `nodeprobe agent` at its default intervals with a token of the chart's agent ServiceAccount
bound to the DaemonSet's pod on that node. Counts the agent identity's requests from the API
server's audit log: M minutes healthy, then H minutes with dockerd SIGSTOPped.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.agent_process import AgentProcess, wait_for
from tests.harness.chart import install
from tests.harness.kubecluster import KubeCluster, TestKubelet, running_cluster
from tests.harness.runtimes import Sandbox

READS = ("get", "list", "watch")


def _count(cluster: KubeCluster, user: str, since: int) -> tuple[collections.Counter[str], int]:
    events = cluster.audit(user)
    counter: collections.Counter[str] = collections.Counter()
    for e in events[since:]:
        ref = e.get("objectRef") or {}
        sub = ref.get("subresource")
        what = ref.get("resource", "?") + (f"/{sub}" if sub else "")
        counter[f"{e['verb']} {what}"] += 1
    return counter, len(events)


def _healthy(cluster: KubeCluster, node: str) -> bool:
    conditions = cluster.must("GET", f"/api/v1/nodes/{node}")["status"].get("conditions") or []
    return any(c["type"] == "ContainerRuntimeUnavailable" and c["status"] == "False"
               for c in conditions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steady-min", type=float, default=10.0)
    parser.add_argument("--hang-min", type=float, default=10.0)
    parser.add_argument("--keep-log", help="copy the agent's log here")
    args = parser.parse_args(argv if argv is not None else [])
    base = Path(tempfile.mkdtemp(prefix="np-bench-", dir="/tmp"))
    sandbox = Sandbox(base / "rt")
    try:
        sandbox.start()
        with running_cluster(base / "k8s") as cluster:
            kubelet = TestKubelet(cluster).start()
            release = install(cluster)
            kubelet.register("bench-node")
            pod = wait_for(lambda: release.agent_pod("bench-node"), timeout_s=60, what="agent pod")
            kubeconfig = cluster.token_kubeconfig(base / "agent.kubeconfig", release.namespace,
                                                  release.service_account("agent"), pod=pod)
            user = release.username("agent")
            agent = AgentProcess(sandbox, base, kubeconfig=kubeconfig, node="bench-node",
                                 fast=False)
            try:
                wait_for(lambda: _healthy(cluster, "bench-node"), timeout_s=60,
                         what="the first verdict on the Node")
                start, mark = _count(cluster, user, 0)
                time.sleep(args.steady_min * 60)  # the measured window itself
                steady, mark2 = _count(cluster, user, mark)
                with sandbox.dockerd.hung():
                    time.sleep(args.hang_min * 60)
                    hung, _ = _count(cluster, user, mark2)
            finally:
                agent.stop()
                kubelet.stop()
                if args.keep_log:
                    shutil.copy(agent.log_path, args.keep_log)
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)

    def table(title: str, counter: collections.Counter[str], minutes: float) -> list[str]:
        writes = sum(n for k, n in counter.items() if k.split()[0] not in READS)
        reads = sum(counter.values()) - writes
        rate = f"{writes * 60 / minutes:.1f}" if minutes else "-"
        return [f"| {title} | {minutes:g} min | {writes} | {rate} | "
                f"{reads} | {dict(sorted(counter.items()))} |"]

    lines = [
        "| window | length | writes | writes per hour | reads | requests |",
        "|---|---|---|---|---|---|",
        *table("start-up, to the first verdict", start, 0),
        *table("healthy (default intervals)", steady, args.steady_min),
        *table("dockerd hung (SIGSTOP)", hung, args.hang_min),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
