"""`nodeprobe agent` end to end: real runtimes, real faults, the Kubernetes API double, kubectl."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.agent.agent_process import NODE, AgentProcess, wait_for
from tests.kube.objects import kubelet_node

UNHEALTHY = "ContainerRuntimeUnavailable"


def node_condition(kube: Any, kind: str) -> dict[str, Any] | None:
    node = kube.get("nodes", NODE)
    for cond in (node or {}).get("status", {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return None


def has(kube: Any, kind: str, status: str, reason: str | None = None) -> bool:
    cond = node_condition(kube, kind)
    return cond is not None and cond["status"] == status and (
        reason is None or cond["reason"] == reason)


def events(kube: Any) -> list[dict[str, Any]]:
    return [e for e in kube.list("events", namespace="default")
            if e.get("involvedObject", {}).get("name") == NODE]


@pytest.fixture
def agent(runtimes, kube, tmp_path) -> Iterator[AgentProcess]:
    kube.put_object(kubelet_node(NODE))
    process = AgentProcess(runtimes, tmp_path, kubeconfig=kube.kubeconfig)
    try:
        wait_for(lambda: has(kube, UNHEALTHY, "False"), timeout_s=20,
                 what=f"a healthy start:\n{process.log()}")
        yield process
    finally:
        process.stop()


def test_sigstop_dockerd_sets_condition_and_event_then_clears(runtimes, kube, agent):
    ready_before = node_condition(kube, "Ready")
    with runtimes.dockerd.hung():
        wait_for(lambda: has(kube, UNHEALTHY, "True", "DockerdHung"), timeout_s=10,
                 what="DockerdHung on the Node")
        wait_for(lambda: any(e["reason"] == "DockerdHung" and e["type"] == "Warning"
                             for e in events(kube)), timeout_s=10, what="a DockerdHung Event")
        described = kube.kubectl("describe", "node", NODE)
        assert described.returncode == 0, described.stderr
        assert "ContainerRuntimeUnavailable" in described.stdout
        assert "DockerdHung" in described.stdout
        assert "nodeprobe" in described.stdout  # the Event's source
    wait_for(lambda: has(kube, UNHEALTHY, "False", "ContainerRuntimeIsAvailable"), timeout_s=10,
             what="the condition clearing after SIGCONT")
    wait_for(lambda: any(e["reason"] == "ContainerRuntimeIsAvailable" for e in events(kube)),
             timeout_s=10, what="a clearing Event")
    assert node_condition(kube, "Ready") == ready_before, "kubelet's condition was touched"
    for kind in ("ContainerRuntimeMemoryLeak", "ContainerRuntimeSlow"):
        assert has(kube, kind, "False")


def test_sigstop_containerd_names_containerd_on_the_node(runtimes, kube, agent):
    with runtimes.containerd.hung():
        wait_for(lambda: has(kube, UNHEALTHY, "True", "ContainerdHung"), timeout_s=10,
                 what="ContainerdHung on the Node")
        message = node_condition(kube, UNHEALTHY)["message"]  # type: ignore[index]
        assert message.startswith("containerd is hung")
    wait_for(lambda: has(kube, UNHEALTHY, "False"), timeout_s=15, what="clear")


def test_sigkill_dockerd_is_down_and_clears_after_restart(runtimes, kube, agent):
    runtimes.dockerd.crash()
    wait_for(lambda: has(kube, UNHEALTHY, "True", "DockerdDown"), timeout_s=25,
             what="DockerdDown on the Node")
    runtimes.heal()
    wait_for(lambda: has(kube, UNHEALTHY, "False"), timeout_s=15, what="clear after restart")


def test_healthy_steady_state_writes_nothing_between_heartbeats(kube, agent):
    kube.reset_counters()
    calls = agent.probe_calls()
    wait_for(lambda: agent.probe_calls() >= calls + 100, timeout_s=30,
             what="100 more probe calls")
    assert kube.writes() == 0, kube.counts(writes_only=True)


def test_api_outage_across_a_transition_converges_to_the_truth(runtimes, kube, agent):
    """The API server is away for 60 s while dockerd hangs; the Node shows it when it is back."""
    kube.pause()
    started = time.monotonic()
    try:
        with runtimes.dockerd.hung():
            wait_for(lambda: agent.condition_flag(UNHEALTHY, "DockerdHung"), timeout_s=10,
                     what="the agent judging DockerdHung (its own metrics)")
            wait_for(lambda: agent.metric("nodeprobe_publish_errors_total") >= 2, timeout_s=30,
                     what="failed writes while the API is away")
            wait_for(lambda: time.monotonic() - started >= 60, timeout_s=70,
                     what="60 s of outage")
            assert agent.healthy(), "the agent must stay live through an API outage"
            kube.resume()
            wait_for(lambda: has(kube, UNHEALTHY, "True", "DockerdHung"), timeout_s=40,
                     what="the Node showing DockerdHung after the outage")
    finally:
        if kube.paused:
            kube.resume()
    wait_for(lambda: has(kube, UNHEALTHY, "False"), timeout_s=40, what="clear after SIGCONT")


def test_kubectl_get_nodes_shows_our_condition_columns(kube, agent):
    out = kube.kubectl("get", "nodes", "-o",
                       "custom-columns=NAME:.metadata.name,"
                       "RUNTIME:.status.conditions[?(@.type=='ContainerRuntimeUnavailable')].status")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == [NODE, "False"]
