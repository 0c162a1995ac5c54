"""`kubectl nodeprobe` against the real API server: the chart installed with helm, the DaemonSet
controller's agent pod on a registered node, a live agent with the chart's agent identity, and
the real kubectl (v1.37) finding the plugin on PATH with an admin kubeconfig.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from nodeprobe import kubectl as plugin
from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.harness.runtimes import Sandbox
from tests.integration.agent.agent_process import AgentProcess, wait_for
from tests.integration.kube.chart import CHART, Release, helm, kubectl

UNAVAILABLE = "ContainerRuntimeUnavailable"
AGENT_INTERVAL_S = 2.0
"""The default interval of the fast checks (docker_ping, CRI lists): config.tree.CheckSettings."""
BIN = Path(sys.executable).parent


def kubectl_nodeprobe(cluster: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "KUBECONFIG": str(cluster.admin_kubeconfig)}
    done = subprocess.run([str(tool("kubectl")), "nodeprobe", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    capture = os.environ.get("NODEPROBE_CAPTURE")  # docs/dashboard.md shows these
    if capture:
        n = len(list(Path(capture).glob("*.txt")))
        Path(capture, f"real-{n:02d}-{args[0]}.txt").write_text(
            f"$ kubectl nodeprobe {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done


def condition(cluster: KubeCluster, node: str) -> dict[str, Any]:
    obj = cluster.must("GET", f"/api/v1/nodes/{node}")
    return next((c for c in obj.get("status", {}).get("conditions") or []
                 if c["type"] == UNAVAILABLE), {})


def listed(out: str, node: str) -> list[str]:
    return [line for line in out.splitlines() if line.split()[:1] == [node]]


def test_status_lists_the_hung_node_within_one_agent_interval_and_not_before(
    kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release, runtimes: Sandbox,
    tmp_path: Path,
) -> None:
    node = f"plugin-{uuid.uuid4().hex[:6]}"
    test_kubelet.register(node)
    pod = wait_for(lambda: release.agent_pod(node), timeout_s=60,
                   what="the DaemonSet controller's agent pod on the node")
    # `check NODE` finds that very pod: the chart's labels, the node's field selector.
    kube = plugin.connect(str(kube_cluster.admin_kubeconfig), None)
    wait_for(lambda: (kube_cluster.must("GET", f"/api/v1/namespaces/{release.namespace}/pods/"
                                               f"{pod}").get("status") or {}).get("phase")
             == "Running", timeout_s=60, what="the agent pod Running")
    assert plugin.agent_pod(kube, node, None) == (release.namespace, pod)

    kubeconfig = kube_cluster.token_kubeconfig(
        tmp_path / "agent.kubeconfig", release.namespace, release.service_account("agent"),
        pod=pod)
    agent = AgentProcess(runtimes, tmp_path, kubeconfig=kubeconfig, node=node)
    try:
        wait_for(lambda: condition(kube_cluster, node).get("status") == "False", timeout_s=30,
                 what=f"a healthy start:\n{agent.log()}")
        done = kubectl_nodeprobe(kube_cluster, "status")
        assert done.returncode == 0, done.stderr
        assert listed(done.stdout, node) == [], done.stdout
        assert "No open NodeRemediations." in done.stdout  # the chart's CRDs are there

        with runtimes.dockerd.hung():
            wait_for(lambda: condition(kube_cluster, node).get("status") == "True",
                     timeout_s=30, what=f"DockerdHung on the Node:\n{agent.log()}")
            seen = time.monotonic()
            done = kubectl_nodeprobe(kube_cluster, "status")
            latency = time.monotonic() - seen
            [line] = listed(done.stdout, node)
            assert line.split()[1:4] == [UNAVAILABLE, "True", "DockerdHung"], done.stdout
            print(f"status after the condition was set (real API server): {latency:.2f}s")
            assert latency < AGENT_INTERVAL_S, f"{latency:.2f}s:\n{done.stdout}"

            done = kubectl_nodeprobe(kube_cluster, "describe", node)
            assert done.returncode == 0, done.stderr
            conditions, events = done.stdout.split("Events (nodeprobe):")
            assert "DockerdHung" in conditions
            assert "DockerdHung" in events.split("Remediations:")[0]
    finally:
        agent.stop()


def test_the_dashboard_configmap_is_accepted_by_the_api_server(kube_cluster: KubeCluster,
                                                               tmp_path: Path) -> None:
    rendered = helm(kube_cluster, "template", "nodeprobe", str(CHART), "-n", "default",
                    "--kube-version", "1.37.2",
                    "-f", str(CHART / "ci" / "dashboard-values.yaml"),
                    "--show-only", "templates/grafana-dashboard.yaml")
    assert rendered.returncode == 0, rendered.stderr
    manifest = tmp_path / "dashboard.yaml"
    manifest.write_text(rendered.stdout)
    done = kubectl(kube_cluster, "apply", "--dry-run=server", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    assert "configmap/nodeprobe-dashboard created (server dry run)" in done.stdout
