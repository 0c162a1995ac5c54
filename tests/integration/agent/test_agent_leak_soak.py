"""Real leaks raise ContainerRuntimeMemoryLeak; a long hang does not make the agent leak."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.agent_process import AgentProcess, wait_for
from tests.harness.kubecluster import KubeCluster
from tests.harness.runtimes import Sandbox
from tests.integration.kube.nodes import AgentNode, condition, has

# Leak judgement over minutes: the same on 2.x, and CI time matters.
pytestmark = pytest.mark.containerd("1.6")

LEAK = "ContainerRuntimeMemoryLeak"
SHORT_WINDOW = {"leak": {"window": "60s", "minSpan": "8s", "minSamples": 6}}
MAX_STREAMS = 400


class EventStreams:
    """Held GET /events streams: each costs dockerd goroutines and an fd until closed."""

    def __init__(self, docker_socket: Path) -> None:
        self.path = str(docker_socket)
        self.socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self, n: int) -> None:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(self.path)
            s.sendall(b"GET /v1.41/events HTTP/1.1\r\nHost: docker\r\n\r\n")
            self.socks.append(s)

    def grow(self, *, per_second: float) -> None:
        """Open streams at a steady rate in the background, up to MAX_STREAMS."""
        def run() -> None:
            while len(self.socks) < MAX_STREAMS and not self._stop.wait(1 / per_second):
                self.open(1)
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()
        self.socks.clear()


@pytest.fixture
def streams(runtimes) -> Iterator[EventStreams]:
    held = EventStreams(runtimes.dockerd.socket)
    try:
        yield held
    finally:
        held.close()


def test_held_event_streams_raise_a_goroutine_or_fd_leak(
    runtimes: Sandbox, kube_cluster: KubeCluster, agent_on_node: AgentNode, tmp_path: Path,
    streams: EventStreams,
) -> None:
    c, node = kube_cluster, agent_on_node.name
    agent = AgentProcess(runtimes, tmp_path, kubeconfig=agent_on_node.kubeconfig, node=node,
                         config={"judge": SHORT_WINDOW})
    try:
        wait_for(lambda: has(c, node, LEAK, "False"), timeout_s=30, what="a calm start")
        streams.grow(per_second=10)
        wait_for(lambda: has(c, node, LEAK, "True"), timeout_s=40,
                 what=f"ContainerRuntimeMemoryLeak from held /events streams:\n{agent.log()}")
        cond = condition(c, node, LEAK)
        assert cond is not None
        assert cond["reason"] in ("DockerdGoroutineLeak", "DockerdFdLeak"), cond
        assert "dockerd" in cond["message"] and "grew" in cond["message"]
        assert has(c, node, "ContainerRuntimeUnavailable", "False")
    finally:
        agent.stop()


def test_flat_but_high_series_does_not_raise(runtimes, tmp_path, streams):
    streams.open(300)
    agent = AgentProcess(runtimes, tmp_path, kubeconfig=None, config={"judge": SHORT_WINDOW})
    try:
        calls = agent.metric("nodeprobe_probe_outcomes_total", check="docker_info")
        # Enough /info samples (1 s apart) to span the 8 s minimum twice over.
        wait_for(lambda: agent.metric("nodeprobe_probe_outcomes_total",
                                      check="docker_info") >= calls + 18,
                 timeout_s=40, what="18 more /info samples")
        assert agent.metric("nodeprobe_runtime_goroutines", runtime="dockerd") > 300
        assert agent.metric("nodeprobe_condition_status", condition=LEAK) == 0
    finally:
        agent.stop()


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_five_minute_hang_agent_stays_flat_and_keeps_heartbeating(
    runtimes: Sandbox, kube_cluster: KubeCluster, agent_on_node: AgentNode, tmp_path: Path
) -> None:
    c, node = kube_cluster, agent_on_node.name
    unavailable = "ContainerRuntimeUnavailable"
    agent = AgentProcess(runtimes, tmp_path, kubeconfig=agent_on_node.kubeconfig, node=node,
                         config={"kubernetes": {"heartbeat": "30s"}})
    try:
        wait_for(lambda: has(c, node, unavailable, "False"), timeout_s=30,
                 what="a healthy start")
        with runtimes.dockerd.hung():
            start = time.monotonic()
            wait_for(lambda: has(c, node, unavailable, "True", "DockerdHung"),
                     timeout_s=15, what="DockerdHung")
            wait_for(lambda: time.monotonic() - start >= 60, timeout_s=70, what="warm-up")
            early = agent.usage()
            calls = agent.probe_calls()
            beat = condition(c, node, unavailable)["lastHeartbeatTime"]  # type: ignore[index]
            wait_for(lambda: time.monotonic() - start >= 300, timeout_s=250, what="5 minutes")
            late = agent.usage()
            assert agent.healthy()
            assert agent.probe_calls() > calls + 1000, "metrics kept flowing"
            now_beat = condition(c, node, unavailable)["lastHeartbeatTime"]  # type: ignore[index]
            assert now_beat > beat, "heartbeats kept flowing"
            assert late["threads"] <= early["threads"] + 1, (early, late)
            assert late["fds"] <= early["fds"] + 2, (early, late)
            assert late["rss"] <= early["rss"] + 3 * 2**20, (early, late)
    finally:
        agent.stop()
