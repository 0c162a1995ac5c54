"""`nodeprobe agent` end to end: real runtimes, real faults, the real API server, real kubectl.

The agent authenticates only with the chart's agent ServiceAccount token, bound to the release's
agent pod on a Node of the test's own: what it writes also passes the chart's RBAC.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.agent_process import AgentProcess, wait_for
from tests.harness.chart import Release, kubectl
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.harness.runtimes import Sandbox
from tests.integration.kube.nodes import AgentNode, agent_node, condition, has, node_events

# Kubernetes-side behaviour: the same whichever containerd runs.
pytestmark = pytest.mark.containerd("1.6")

UNHEALTHY = "ContainerRuntimeUnavailable"


@pytest.fixture
def agent(runtimes: Sandbox, kube_cluster: KubeCluster, agent_on_node: AgentNode,
          tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(runtimes, tmp_path, kubeconfig=agent_on_node.kubeconfig,
                           node=agent_on_node.name)
    try:
        wait_for(lambda: has(kube_cluster, agent_on_node.name, UNHEALTHY, "False"), timeout_s=30,
                 what=f"a healthy start:\n{process.log()}")
        yield process
    finally:
        process.stop()


def test_sigstop_dockerd_sets_condition_and_event_then_clears(
    runtimes: Sandbox, kube_cluster: KubeCluster, agent_on_node: AgentNode, agent: AgentProcess
) -> None:
    c, node = kube_cluster, agent_on_node.name
    ready_before = condition(c, node, "Ready")
    with runtimes.dockerd.hung():
        wait_for(lambda: has(c, node, UNHEALTHY, "True", "DockerdHung"), timeout_s=15,
                 what="DockerdHung on the Node")
        wait_for(lambda: any(e["reason"] == "DockerdHung" and e["type"] == "Warning"
                             for e in node_events(c, node)), timeout_s=15,
                 what="a DockerdHung Event")
        described = kubectl(c, "describe", "node", node)
        assert described.returncode == 0, described.stderr
        assert "ContainerRuntimeUnavailable" in described.stdout
        assert "DockerdHung" in described.stdout
        assert "nodeprobe" in described.stdout.split("Events:")[1]  # the Event's source
    wait_for(lambda: has(c, node, UNHEALTHY, "False", "ContainerRuntimeIsAvailable"),
             timeout_s=15, what="the condition clearing after SIGCONT")
    wait_for(lambda: any(e["reason"] == "ContainerRuntimeIsAvailable"
                         for e in node_events(c, node)),
             timeout_s=15, what="a clearing Event")
    assert condition(c, node, "Ready") == ready_before, "kubelet's condition was touched"
    for kind in ("ContainerRuntimeMemoryLeak", "ContainerRuntimeSlow"):
        assert has(c, node, kind, "False")


def test_sigstop_containerd_names_containerd_on_the_node(
    runtimes: Sandbox, kube_cluster: KubeCluster, agent_on_node: AgentNode, agent: AgentProcess
) -> None:
    c, node = kube_cluster, agent_on_node.name
    with runtimes.containerd.hung():
        wait_for(lambda: has(c, node, UNHEALTHY, "True", "ContainerdHung"), timeout_s=15,
                 what="ContainerdHung on the Node")
        message = condition(c, node, UNHEALTHY)["message"]  # type: ignore[index]
        assert message.startswith("containerd is hung")
    wait_for(lambda: has(c, node, UNHEALTHY, "False"), timeout_s=20, what="clear")


def test_sigkill_dockerd_is_down_and_clears_after_restart(
    runtimes: Sandbox, kube_cluster: KubeCluster, agent_on_node: AgentNode, agent: AgentProcess
) -> None:
    c, node = kube_cluster, agent_on_node.name
    runtimes.dockerd.crash()
    wait_for(lambda: has(c, node, UNHEALTHY, "True", "DockerdDown"), timeout_s=25,
             what="DockerdDown on the Node")
    runtimes.heal()
    wait_for(lambda: has(c, node, UNHEALTHY, "False"), timeout_s=20, what="clear after restart")


def test_healthy_steady_state_writes_nothing_between_heartbeats(
    agent_on_node: AgentNode, agent: AgentProcess
) -> None:
    before = agent_on_node.writes()
    calls = agent.probe_calls()
    wait_for(lambda: agent.probe_calls() >= calls + 100, timeout_s=30,
             what="100 more probe calls")
    after = agent_on_node.writes()
    assert after[len(before):] == [], [e["requestURI"] for e in after[len(before):]]


def test_api_outage_across_a_transition_converges_to_the_truth(
    runtimes: Sandbox, kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release,
    agent_on_node: AgentNode, agent: AgentProcess, tmp_path: Path,
) -> None:
    """kube-apiserver is stopped for 60 s while dockerd hangs; the Node shows it when it is back."""
    c, node = kube_cluster, agent_on_node.name
    with runtimes.dockerd.hung():
        with c.outage():
            started = time.monotonic()
            wait_for(lambda: agent.condition_flag(UNHEALTHY, "DockerdHung"), timeout_s=15,
                     what="the agent judging DockerdHung (its own metrics)")
            wait_for(lambda: agent.metric("nodeprobe_publish_errors_total") >= 2, timeout_s=30,
                     what="failed writes while the API is away")
            wait_for(lambda: time.monotonic() - started >= 60, timeout_s=70,
                     what="60 s of outage")
            assert agent.healthy(), "the agent must stay live through an API outage"
        wait_for(lambda: has(c, node, UNHEALTHY, "True", "DockerdHung"), timeout_s=40,
                 what="the Node showing DockerdHung after the outage")
    wait_for(lambda: has(c, node, UNHEALTHY, "False"), timeout_s=40, what="clear after SIGCONT")
    # The session's cluster works again for the tests after this one: the controllers and the
    # test kubelet put the DaemonSet's agent pod on a new Node.
    with agent_node(c, test_kubelet, release, tmp_path, prefix="after-outage") as fresh:
        assert fresh.pod


def test_kubectl_get_nodes_shows_our_condition_columns(
    kube_cluster: KubeCluster, agent_on_node: AgentNode, agent: AgentProcess
) -> None:
    out = kubectl(kube_cluster, "get", "nodes", "-o",
                  "custom-columns=NAME:.metadata.name,"
                  "RUNTIME:.status.conditions[?(@.type=='ContainerRuntimeUnavailable')].status")
    assert out.returncode == 0, out.stderr
    rows = dict(line.split() for line in out.stdout.splitlines()[1:] if len(line.split()) == 2)
    assert rows[agent_on_node.name] == "False"
