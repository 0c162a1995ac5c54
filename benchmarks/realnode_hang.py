"""nodeprobe against kubelet on a real node: the containerd kubelet uses (and that runs the agent's
own pod) SIGSTOPped, N times; per injection the seconds until nodeprobe's
ContainerRuntimeUnavailable is True on the Node and until kubelet's Ready is False.

    python -m benchmarks.realnode_hang [N] [IMAGE_TAR]
        N: injections (default 3; each waits ~2 min for kubelet, then for recovery);
        IMAGE_TAR: a `docker save` of the project's image to use instead of building it

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
from pathlib import Path

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


def _built_image(base: Path) -> Path:
    with Sandbox(base / "sb") as sandbox:
        import docker

        client = docker.APIClient(base_url=f"unix://{sandbox.dockerd.socket}", version="auto",
                                  timeout=600)
        try:
            image.build(client, base / "ctx")
            return image.save(client, base / "image.tar")
        finally:
            client.close()


def _install(cluster: KubeCluster) -> None:
    repo, tag = image.IMAGE.rsplit(":", 1)
    subprocess.run(
        [str(tool("helm")), "--kubeconfig", str(cluster.admin_kubeconfig), "install",
         "nodeprobe", str(CHART), "-n", "nodeprobe", "--create-namespace",
         "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never"], check=True, capture_output=True, timeout=300)


def _agent_peak_mib(cluster: KubeCluster) -> float:
    """The agent pod's peak memory (its v1 memory cgroup, page cache included) in MiB."""
    (pod,) = cluster.must("GET", "/api/v1/namespaces/nodeprobe/pods?labelSelector="
                                 "app.kubernetes.io/component=agent")["items"]
    uid = pod["metadata"]["uid"]
    found = list(Path("/sys/fs/cgroup/memory/kubepods").glob(f"*/pod{uid}"))
    if not found:
        return float("nan")
    return int((found[0] / "memory.max_usage_in_bytes").read_text()) / 2**20


def _agent_restarts(cluster: KubeCluster) -> int:
    pods = cluster.must("GET", "/api/v1/namespaces/nodeprobe/pods?labelSelector="
                               "app.kubernetes.io/component=agent")["items"]
    return sum(c.get("restartCount", 0) for p in pods
               for c in p.get("status", {}).get("containerStatuses") or [])


def measure(n: int, archive: Path | None = None) -> str:
    base = Path(tempfile.mkdtemp(prefix="np-bn-", dir="/tmp"))
    rows: list[tuple[float | None, float | None]] = []
    loads: list[float] = []
    try:
        archive = archive or _built_image(base)
        with running_cluster(base / "k", for_node=True) as cluster, \
                real_node(cluster, base / "n") as node:
            node.import_image(archive)
            _install(cluster)
            _until(lambda: _status(node, UNAVAILABLE) == "False", 180)
            restarts = _agent_restarts(cluster)
            with loadavg(loads):
                for i in range(n):
                    healthy = _until(lambda: _status(node, UNAVAILABLE) == "False"
                                     and _status(node, "Ready") == "True", 300)
                    assert healthy is not None, "the node did not recover"
                    start = time.monotonic()
                    assert node.containerd is not None
                    with node.containerd.hung():
                        np_s = _until(lambda: _status(node, UNAVAILABLE) == "True", 60)
                        kl = _until(lambda: _status(node, "Ready") == "False", KUBELET_WAIT_S)
                        kl_s = None if kl is None else time.monotonic() - start
                    rows.append((np_s, kl_s))
                    print(f"injection {i + 1}/{n}: nodeprobe {np_s} s, kubelet {kl_s} s",
                          file=sys.stderr, flush=True)
            restarts = _agent_restarts(cluster) - restarts
            peak_mib = _agent_peak_mib(cluster)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return _table(rows, loads, restarts, peak_mib)


def _table(rows: list[tuple[float | None, float | None]], loads: list[float],
           restarts: int, peak_mib: float) -> str:
    out = ["| injection | nodeprobe condition True (s) | kubelet Ready=False (s) |",
           "|---|---|---|"]
    for i, (np_s, kl_s) in enumerate(rows, 1):
        out.append(f"| {i} | {_s(np_s)} | {_s(kl_s)} |")
    for name, col in (("nodeprobe", 0), ("kubelet", 1)):
        got = [x for x in (r[col] for r in rows) if x is not None]
        if got:
            out.append(f"\n{name}: {summarize(got).row('s')}")
    out.append(f"\nagent pod restarts during the hangs: {restarts}; its peak memory "
               f"{peak_mib:.0f} MiB (cgroup, page cache included) of its 192 MiB limit; "
               f"load average (1 min) {min(loads, default=0):.1f}-{max(loads, default=0):.1f}; "
               f"{machine()}")
    return "\n".join(out)


def _s(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(measure(int(args[0]) if args else 3, Path(args[1]) if len(args) > 1 else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
