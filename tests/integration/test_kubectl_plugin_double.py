"""`kubectl nodeprobe` run by the real kubectl (plugin lookup on PATH) against the Kubernetes API
double, with a live agent watching the sandbox runtimes and a live operator.

Set NODEPROBE_CAPTURE=<dir> to keep each command's output (docs/dashboard.md shows them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe import kubectl as plugin
from tests.integration.agent.agent_process import NODE, AgentProcess, wait_for
from tests.integration.operator.cluster import add_node, add_policy, cluster, phases
from tests.integration.operator.operator_process import OperatorProcess
from tests.kube.double import KUBECTL, KubeDouble
from tests.kube.objects import kubelet_node, running_pod

UNAVAILABLE = "ContainerRuntimeUnavailable"
AGENT_INTERVAL_S = 2.0
"""The default interval of the fast checks (docker_ping, CRI lists): config.tree.CheckSettings."""
BIN = Path(sys.executable).parent


def kubectl(kube: KubeDouble, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """The real kubectl, finding kubectl-nodeprobe on PATH; credentials as a user sets them."""
    base = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(kube.directory),
            "KUBECONFIG": str(kube.kubeconfig)}
    done = subprocess.run([KUBECTL, *args], capture_output=True, text=True, timeout=60,
                          env={**base, **(env or {})}, check=False)
    capture = os.environ.get("NODEPROBE_CAPTURE")
    if capture:
        n = len(list(Path(capture).glob("*.txt")))
        Path(capture, f"{n:02d}-{args[1]}.txt").write_text(
            f"$ kubectl {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done


def condition(kube: KubeDouble) -> dict[str, Any]:
    node = kube.get("nodes", NODE) or {}
    return next((c for c in node.get("status", {}).get("conditions") or []
                 if c["type"] == UNAVAILABLE), {})


@pytest.fixture
def fleet(runtimes: Any, tmp_path: Path) -> Iterator[tuple[KubeDouble, AgentProcess]]:
    """node-a runs a real agent; node-b carries a healthy condition as its agent would write it."""
    with cluster() as kube:
        kube.put_object(kubelet_node(NODE))
        add_node(kube, "node-b")
        agent = AgentProcess(runtimes, tmp_path, kubeconfig=kube.kubeconfig)
        try:
            wait_for(lambda: condition(kube).get("status") == "False", timeout_s=30,
                     what="the agent's healthy condition on the Node")
            yield kube, agent
        finally:
            agent.stop()


def test_status_lists_nothing_on_a_healthy_cluster(fleet: Any) -> None:
    kube, _ = fleet
    add_policy(kube)
    done = kubectl(kube, "nodeprobe", "status")
    assert done.returncode == 0, done.stderr
    assert "No node has a nodeprobe condition that is not healthy." in done.stdout
    assert NODE not in done.stdout and "node-b" not in done.stdout
    assert "No open NodeRemediations." in done.stdout


def test_status_lists_the_hung_node_within_one_agent_interval(
        runtimes: Any, fleet: Any, tmp_path: Path) -> None:
    kube, _ = fleet
    # A ladder whose first rung waits for the agent (repair is off): the episode stays open.
    add_policy(kube, triggers=[{"type": UNAVAILABLE, "status": "True", "for": "1s"}],
               ladder=[{"action": "restart-runtime", "runtime": "docker", "timeout": "5m"},
                       {"action": "escalate"}])
    operator = OperatorProcess(kube.kubeconfig, tmp_path)
    try:
        with runtimes.dockerd.hung():
            wait_for(lambda: condition(kube).get("status") == "True", timeout_s=30,
                     what="DockerdHung on the Node")
            seen = time.monotonic()
            done = kubectl(kube, "nodeprobe", "status")
            latency = time.monotonic() - seen
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith(NODE)), "")
            assert "DockerdHung" in line and UNAVAILABLE in line, done.stdout + done.stderr
            assert "dockerd" in line  # the agent's message
            assert "node-b" not in done.stdout
            print(f"status after the condition was set: {latency:.2f}s")
            assert latency < AGENT_INTERVAL_S, f"{latency:.2f}s:\n{done.stdout}"

            wait_for(lambda: phases(kube).get(NODE) == "ActionRequested", timeout_s=60,
                     what="the operator asking node-a's agent for a restart")
            done = kubectl(kube, "nodeprobe", "status")
            [row] = [ln for ln in done.stdout.splitlines() if ln.startswith(f"{NODE}-")]
            assert row.split()[1:5] == [NODE, "p", "ActionRequested", "0"], done.stdout
            budget = next((ln for ln in done.stdout.splitlines() if ln.startswith("p ")), "")
            assert budget.split()[1:3] == ["1/1", "1/2"], done.stdout

            done = kubectl(kube, "nodeprobe", "describe", NODE)
            assert done.returncode == 0, done.stderr
            out = done.stdout
            assert "DockerdHung" in out.split("Events (nodeprobe):")[0]  # the condition
            events = out.split("Events (nodeprobe):")[1].split("Remediations:")[0]
            assert "DockerdHung" in events and "nodeprobe" in events
            assert "ActionRequested" in out.split("Remediations:")[1]
    finally:
        operator.stop()


def test_describe_unknown_node_is_a_clear_error(fleet: Any) -> None:
    kube, _ = fleet
    done = kubectl(kube, "nodeprobe", "describe", "nope")
    assert done.returncode == 1
    assert 'node "nope" not found' in done.stdout


def test_check_needs_a_running_agent_pod_on_the_node(fleet: Any) -> None:
    kube, _ = fleet
    done = kubectl(kube, "nodeprobe", "check", NODE)
    assert done.returncode == 1
    assert f"no running nodeprobe agent pod on node {NODE}" in done.stderr
    kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "nodeprobe"}})
    labels = {"app.kubernetes.io/name": "nodeprobe", "app.kubernetes.io/component": "agent"}
    for name, node in (("nodeprobe-agent-b", "node-b"), ("nodeprobe-agent-a", NODE)):
        kube.put_object(running_pod(name, node=node, namespace="nodeprobe", labels=labels))
    kube.put_object(running_pod("web", node=NODE, namespace="default"))
    kp = plugin.connect(str(kube.kubeconfig), None)
    assert plugin.agent_pod(kp, NODE, None) == ("nodeprobe", "nodeprobe-agent-a")
    assert plugin.agent_pod(kp, "node-b", "nodeprobe") == ("nodeprobe", "nodeprobe-agent-b")
    with pytest.raises(LookupError, match="in namespace kube-system"):
        plugin.agent_pod(kp, NODE, "kube-system")
    # Run without kubectl (e.g. the script called directly): a clear error, not a traceback.
    done = subprocess.run([str(BIN / "kubectl-nodeprobe"), "--kubeconfig", str(kube.kubeconfig),
                           "check", NODE], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": str(BIN)}, check=False)
    assert done.returncode == 1
    assert "no kubectl is on PATH" in done.stderr, done.stderr
    # The double serves no pods/exec: kubectl's own error and exit code come through.
    done = kubectl(kube, "nodeprobe", "check", NODE, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the server could not find the requested resource" in done.stderr


def test_kubeconfig_rules_are_kubectls(fleet: Any, tmp_path: Path) -> None:
    """--kubeconfig beats $KUBECONFIG, a `:` list is merged, --context picks a context."""
    kube, _ = fleet
    config = yaml.safe_load(kube.kubeconfig.read_text())
    dead = {"server": "https://127.0.0.1:1"}
    config["clusters"].append({"name": "dead", "cluster": dead})
    config["contexts"].append({"name": "dead", "context": {"cluster": "dead", "user": "double"}})
    config["current-context"] = "dead"
    two = tmp_path / "two-contexts.yaml"
    two.write_text(yaml.safe_dump(config))

    done = kubectl(kube, "nodeprobe", "status", env={"KUBECONFIG": str(two)})
    assert done.returncode == 1
    assert "cannot reach the Kubernetes API at https://127.0.0.1:1" in done.stderr
    done = kubectl(kube, "nodeprobe", "--context", "double", "status",
                   env={"KUBECONFIG": str(two)})
    assert done.returncode == 0, done.stderr
    done = kubectl(kube, "nodeprobe", "status", "--kubeconfig", str(kube.kubeconfig),
                   env={"KUBECONFIG": str(two)})
    assert done.returncode == 0, done.stderr
    merged = f"{tmp_path / 'missing.yaml'}:{kube.kubeconfig}"
    done = kubectl(kube, "nodeprobe", "status", env={"KUBECONFIG": merged})
    assert done.returncode == 0, done.stderr
    done = kubectl(kube, "nodeprobe", "status", "--kubeconfig", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1 and "cannot load kubeconfig" in done.stderr
