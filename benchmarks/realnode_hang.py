"""nodeprobe against kubelet on a real node: the containerd kubelet uses (and that runs the agent's
own pod) SIGSTOPped, N times; per injection the seconds until nodeprobe's
ContainerRuntimeUnavailable is True on the Node and until kubelet's Ready is False.

    python -m benchmarks.realnode_hang [N] [IMAGE_TAR] [HOLD_S]
        N: injections (default 3; each waits ~2 min for kubelet, then for recovery);
        IMAGE_TAR: a `docker save` of the project's image to use instead of building it ("" to
        build); HOLD_S: hold each hang this long at least (default 0: until kubelet's Ready=False;
        300 for the 5-minute hang, during which the agent must not be restarted by its own
        liveness probe and must stay under its memory limit)

The setup is the tests' (tests/harness only): the project's image built from its Dockerfile in a
private dockerd, a control plane with kube-scheduler and the node controllers, kubelet +
containerd 2.x as Node `localhost`, and a default `helm install` with only the image set.
Prints the Markdown table docs/performance.md quotes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.peer_measure import loadavg
from benchmarks.stats import machine, summarize
from tests.harness import image
from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster, running_cluster
from tests.harness.kubecluster.node import RealNode, real_node
from tests.harness.runtimes import Sandbox

CHART = Path(__file__).resolve().parents[1] / "charts" / "nodeprobe"
UNAVAILABLE = "ContainerRuntimeUnavailable"
KUBELET_WAIT_S = 240.0
"""Longest wait for kubelet's Ready=False (runtimeRequestTimeout 2 min, then one status sync)."""


def _status(node: RealNode, kind: str) -> str:
    cond = node.condition(kind)
    return cond["status"] if cond else "absent"


def _until(predicate: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until `predicate` held (polled every 0.2 s), or None after `timeout_s`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def built_image(base: Path) -> Path:
    with Sandbox(base / "sb") as sandbox:
        import docker

        client = docker.APIClient(base_url=f"unix://{sandbox.dockerd.socket}", version="auto",
                                  timeout=600)
        try:
            image.build(client, base / "ctx")
            return image.save(client, base / "image.tar")
        finally:
            client.close()


def install(cluster: KubeCluster, *values: str) -> None:
    """A default `helm install` but the image (and `values`), waited on until the agent pod is
    Ready."""
    repo, tag = image.IMAGE.rsplit(":", 1)
    sets = [f"image.repository={repo}", f"image.tag={tag}", "image.pullPolicy=Never", *values]
    subprocess.run(
        [str(tool("helm")), "--kubeconfig", str(cluster.admin_kubeconfig), "install",
         "nodeprobe", str(CHART), "-n", "nodeprobe", "--create-namespace",
         *(arg for value in sets for arg in ("--set", value))],
        check=True, capture_output=True, timeout=300)
    ready = _until(lambda: _pod_ready(agent_pod(cluster)), 180)
    assert ready is not None, "the agent pod is not Ready"


def agent_pod(cluster: KubeCluster) -> dict[str, Any]:
    """The agent's pod (one node, one pod; an empty record before the DaemonSet made it)."""
    pods = cluster.must("GET", "/api/v1/namespaces/nodeprobe/pods?labelSelector="
                               "app.kubernetes.io/component=agent")["items"]
    return dict(pods[0]) if pods else {}


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in pod.get("status", {}).get("conditions") or [])


def _agent_restarts(cluster: KubeCluster) -> int:
    return sum(c.get("restartCount", 0)
               for c in agent_pod(cluster).get("status", {}).get("containerStatuses") or [])


def _memory(node: RealNode, cluster: KubeCluster) -> Path:
    """The agent pod's v1 memory cgroup."""
    found = node.pod_cgroup("memory", agent_pod(cluster)["metadata"]["uid"])
    assert found is not None, "the agent pod has no memory cgroup"
    return found


def working_set_mib(memory_cgroup: Path) -> float:
    """usage minus inactive file pages, as kubelet and cAdvisor count a working set (MiB)."""
    usage = int((memory_cgroup / "memory.usage_in_bytes").read_text())
    stat = dict(line.split() for line in (memory_cgroup / "memory.stat").read_text().splitlines())
    return max(0, usage - int(stat.get("total_inactive_file", 0))) / 2**20


@dataclass
class Hang:
    """One injection: seconds to nodeprobe's condition and to kubelet's Ready=False."""

    nodeprobe_s: float | None
    kubelet_s: float | None
    held_s: float


def _inject(node: RealNode, memory: Path, hold_s: float, peak: list[float]) -> Hang:
    """containerd SIGSTOPped until kubelet said Ready=False and `hold_s` passed; the agent's
    working set sampled into `peak` meanwhile."""
    def sampled(predicate: Callable[[], bool]) -> Callable[[], bool]:
        def check() -> bool:
            peak.append(working_set_mib(memory))
            return predicate()
        return check

    start = time.monotonic()
    assert node.containerd is not None
    with node.containerd.hung():
        np_s = _until(sampled(lambda: _status(node, UNAVAILABLE) == "True"), 60)
        kl = _until(sampled(lambda: _status(node, "Ready") == "False"), KUBELET_WAIT_S)
        kl_s = None if kl is None else time.monotonic() - start
        _until(sampled(lambda: time.monotonic() - start >= hold_s), hold_s + 1)
        held = time.monotonic() - start
    return Hang(np_s, kl_s, held)


def measure(n: int, archive: Path | None = None, hold_s: float = 0.0) -> str:
    base = Path(tempfile.mkdtemp(prefix="np-bn-", dir="/tmp"))
    rows: list[Hang] = []
    loads: list[float] = []
    peak: list[float] = []
    try:
        archive = archive or built_image(base)
        with running_cluster(base / "k", for_node=True) as cluster, \
                real_node(cluster, base / "n") as node:
            node.import_image(archive)
            install(cluster)
            _until(lambda: _status(node, UNAVAILABLE) == "False", 180)
            restarts, memory = _agent_restarts(cluster), _memory(node, cluster)
            with loadavg(loads):
                for i in range(n):
                    healthy = _until(lambda: _status(node, UNAVAILABLE) == "False"
                                     and _status(node, "Ready") == "True", 300)
                    assert healthy is not None, "the node did not recover"
                    rows.append(_inject(node, memory, hold_s, peak))
                    print(f"injection {i + 1}/{n}: {rows[-1]}", file=sys.stderr, flush=True)
            restarts = _agent_restarts(cluster) - restarts
            limit_mib = int((memory / "memory.limit_in_bytes").read_text()) / 2**20
            max_usage_mib = int((memory / "memory.max_usage_in_bytes").read_text()) / 2**20
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return _table(rows, loads, restarts, (max(peak, default=0), max_usage_mib, limit_mib))


def _table(rows: list[Hang], loads: list[float], restarts: int,
           memory: tuple[float, float, float]) -> str:
    out = ["| injection | nodeprobe condition True (s) | kubelet Ready=False (s) | held (s) |",
           "|---|---|---|---|"]
    for i, row in enumerate(rows, 1):
        out.append(f"| {i} | {_s(row.nodeprobe_s)} | {_s(row.kubelet_s)} | {row.held_s:.0f} |")
    for name, got in (("nodeprobe", [r.nodeprobe_s for r in rows]),
                      ("kubelet", [r.kubelet_s for r in rows])):
        seen = [x for x in got if x is not None]
        if seen:
            out.append(f"\n{name}: {summarize(seen).row('s')}")
    working_set, max_usage, limit = memory
    out.append(f"\nagent pod restarts during the hangs: {restarts}; its peak working set "
               f"{working_set:.0f} MiB (sampled at every poll, 0.2 s or more apart; cgroup "
               f"max_usage {max_usage:.0f} MiB, page cache included) of its {limit:.0f} MiB "
               "limit; load average (1 min) "
               f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f}; {machine()}")
    return "\n".join(out)


def _s(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(measure(int(args[0]) if args else 3,
                  Path(args[1]) if len(args) > 1 and args[1] else None,
                  float(args[2]) if len(args) > 2 else 0.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
