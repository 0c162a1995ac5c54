"""`kubectl nodeprobe` against the real API server: the chart installed with helm, the DaemonSet
controller's agent pod on a registered node, a live agent with the chart's agent identity, and
the real kubectl (v1.37) finding the plugin on PATH with an admin kubeconfig.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe import kubectl as plugin
from tests.harness.agent_process import AgentProcess, wait_for
from tests.harness.chart import CHART, Release, helm, kubectl
from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.harness.runtimes import Sandbox
from tests.integration.kube.nodes import AgentNode
from tests.integration.operator.cluster import Fleet, Operator

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

            # For scripts: the same data as JSON/YAML, a node label selector, a wide table.
            done = kubectl_nodeprobe(kube_cluster, "status", "-o", "json",
                                     "-l", f"kubernetes.io/hostname={node}")
            assert done.returncode == 0, done.stderr
            [shown] = json.loads(done.stdout)["nodes"]
            assert shown["name"] == node
            assert [(c["type"], c["reason"]) for c in shown["conditions"]] == [
                (UNAVAILABLE, "DockerdHung")]
            done = kubectl_nodeprobe(kube_cluster, "status", "-l", "kubernetes.io/hostname=none")
            assert listed(done.stdout, node) == [], done.stdout
            done = kubectl_nodeprobe(kube_cluster, "describe", node, "-o", "yaml")
            described = yaml.safe_load(done.stdout)
            assert described["node"] == node
            assert any(e["reason"] == "DockerdHung" for e in described["events"])
            done = kubectl_nodeprobe(kube_cluster, "status", "-o", "wide")
            [line] = listed(done.stdout, node)
            assert "HEARTBEAT" in done.stdout.splitlines()[0]
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


def test_status_and_describe_show_an_open_remediation_and_the_budget(
    kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release, tmp_path: Path,
) -> None:
    """The operator (chart identity) holds node a in ActionRequested: a ladder whose first rung
    waits for an agent that never answers. Node b stays healthy."""
    fleet = Fleet(kube_cluster, test_kubelet, release, tmp_path)
    operator = None
    try:
        a = fleet.add_node("a", sick=True)
        fleet.add_node("b")
        policy = fleet.add_policy(ladder=[
            {"action": "restart-runtime", "runtime": "docker", "timeout": "5m"},
            {"action": "escalate"}])
        operator = Operator(fleet)
        wait_for(lambda: fleet.phases().get("a") == "ActionRequested", timeout_s=90,
                 what=lambda: f"the operator asking a's agent for a restart\n{operator.text()}")
        done = kubectl_nodeprobe(kube_cluster, "status")
        assert done.returncode == 0, done.stderr
        [line] = listed(done.stdout, a)
        assert line.split()[1:4] == [UNAVAILABLE, "True", "DockerdHung"], done.stdout
        assert listed(done.stdout, fleet.node("b")) == []
        [row] = [ln for ln in done.stdout.splitlines() if ln.startswith(f"{a}-")]
        assert row.split()[1:5] == [a, policy, "ActionRequested", "0"], done.stdout
        [budget] = listed(done.stdout, policy)
        assert budget.split()[1:3] == ["1/1", "1/2"], done.stdout  # held/max, sick/matched

        done = kubectl_nodeprobe(kube_cluster, "describe", a)
        assert done.returncode == 0, done.stderr
        assert "ActionRequested" in done.stdout.split("Remediations:")[1]
    finally:
        if operator is not None:
            operator.stop()
        fleet.delete()


def test_clear_errors_and_kubectls_kubeconfig_rules(kube_cluster: KubeCluster,
                                                    agent_on_node: AgentNode,
                                                    tmp_path: Path) -> None:
    done = kubectl_nodeprobe(kube_cluster, "describe", "nope")
    assert (done.returncode, done.stdout) == (4, "")
    assert 'node "nope" not found' in done.stderr
    done = kubectl_nodeprobe(kube_cluster, "check", "nope")
    assert done.returncode == 4
    assert "no running nodeprobe agent pod on node nope" in done.stderr
    kube = plugin.connect(str(kube_cluster.admin_kubeconfig), None)
    with pytest.raises(LookupError, match="in namespace kube-system"):
        plugin.agent_pod(kube, "nope", "kube-system")
    # Run without kubectl (the script called directly): a clear error, not a traceback.
    admin = str(kube_cluster.admin_kubeconfig)
    wait_for(lambda: (kube_cluster.must("GET", f"/api/v1/namespaces/nodeprobe/pods/"
                                               f"{agent_on_node.pod}").get("status") or {})
             .get("phase") == "Running", timeout_s=60, what="the agent pod Running")
    done = subprocess.run([str(BIN / "kubectl-nodeprobe"), "--kubeconfig", admin, "check",
                           agent_on_node.name], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(BIN)}, check=False)
    assert done.returncode == 4
    assert "no kubectl is on PATH" in done.stderr, done.stderr

    # --kubeconfig beats $KUBECONFIG, a `:` list is merged, --context picks a context.
    config = yaml.safe_load(kube_cluster.admin_kubeconfig.read_text())
    config["clusters"].append({"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}})
    config["contexts"].append({"name": "dead", "context": {"cluster": "dead", "user": "user"}})
    context = config["current-context"]
    config["current-context"] = "dead"
    two = tmp_path / "two-contexts.yaml"
    two.write_text(yaml.safe_dump(config))

    def run(*args: str, env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tool("kubectl")), "nodeprobe", *args], capture_output=True, text=True,
            timeout=60, check=False,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "KUBECONFIG": env,
                 "HOME": str(tmp_path)})

    done = run("status", env=str(two))
    assert done.returncode == 4
    assert "cannot reach the Kubernetes API at https://127.0.0.1:1" in done.stderr
    done = run("--context", context, "status", env=str(two))
    assert done.returncode == 0, done.stderr
    done = run("status", "--kubeconfig", admin, env=str(two))
    assert done.returncode == 0, done.stderr
    done = run("status", env=f"{tmp_path / 'missing.yaml'}:{admin}")
    assert done.returncode == 0, done.stderr
    done = run("status", "--kubeconfig", str(tmp_path / "missing.yaml"), env=admin)
    assert done.returncode == 4 and "cannot load kubeconfig" in done.stderr


def test_check_when_exec_hangs_says_so_and_shows_the_nodes_conditions(
    kube_cluster: KubeCluster, agent_on_node: AgentNode,
) -> None:
    """The node's kubelet address is a loopback listener that accepts and never answers, as a
    kubelet whose runtime hangs does for exec: the real kubectl exec through the real API server
    hangs, and the plugin gives up at --exec-timeout with the Node's conditions instead."""
    node = agent_on_node.name
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts; nothing ever reads or answers
        kube_cluster.must("PATCH", f"/api/v1/nodes/{node}/status", {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": silent.getsockname()[1]}}}},
            content_type="application/strategic-merge-patch+json")
        wait_for(lambda: (kube_cluster.must("GET", f"/api/v1/namespaces/nodeprobe/pods/"
                                                   f"{agent_on_node.pod}").get("status") or {})
                 .get("phase") == "Running", timeout_s=60, what="the agent pod Running")
        started = time.monotonic()
        done = kubectl_nodeprobe(kube_cluster, "check", node, "--exec-timeout", "3")
        took = time.monotonic() - started
        assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
        assert "kubectl exec did not answer within 3s" in done.stderr
        assert "may be hung" in done.stderr
        assert "none: no nodeprobe agent has reported on this node" in done.stdout
        assert took < 10, took

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kube_cluster.must("PATCH", f"/api/v1/nodes/{node}/status", {"status": {"conditions": [
            {"type": UNAVAILABLE, "status": "True", "reason": "ContainerdHung",
             "message": "CRI Version did not answer within 5s", "lastHeartbeatTime": now,
             "lastTransitionTime": now}]}},
            content_type="application/strategic-merge-patch+json")
        done = kubectl_nodeprobe(kube_cluster, "check", node, "--exec-timeout", "2",
                                 "-o", "json")
        assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
        assert "did not answer within 2s" in done.stderr
        shown = json.loads(done.stdout)
        assert (shown["node"], shown["checked"]) == (node, False)
        assert [(c["type"], c["status"], c["reason"]) for c in shown["conditions"]] == [
            (UNAVAILABLE, "True", "ContainerdHung")]
