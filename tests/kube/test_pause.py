"""pause()/resume(): the API server goes away (connection refused) and comes back with its state."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import urllib3
from kubernetes import client, watch

from tests.kube.double import KubeDouble
from tests.kube.objects import kubelet_node


def test_requests_during_pause_are_refused_promptly_and_state_survives(
        kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))
    core = client.CoreV1Api(kube.api_client())
    core.patch_node_status("node-a", {"status": {"conditions": [
        {"type": "ContainerRuntimeUnavailable", "status": "True", "reason": "DockerdHung"}]}})
    port = kube.port

    kube.pause()
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with pytest.raises(urllib3.exceptions.MaxRetryError) as failed:
        core.read_node("node-a", _request_timeout=2)
    refused_in = time.monotonic() - started
    kube.resume()
    node = core.read_node("node-a")

    assert isinstance(failed.value.reason, urllib3.exceptions.NewConnectionError)
    assert refused_in < 1.0
    assert kube.port == port
    assert [c.type for c in node.status.conditions] == ["Ready", "ContainerRuntimeUnavailable"]


def test_pause_ends_open_watches(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))
    core = client.CoreV1Api(kube.api_client())
    ended = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for _ in watch.Watch().stream(core.list_node, timeout_seconds=30):
                pass
        except Exception as e:  # the stream may end cleanly or with a protocol error
            errors.append(e)
        ended.set()

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    deadline = time.monotonic() + 5
    while not kube.open_watches("nodes") and time.monotonic() < deadline:
        if ended.wait(0.02):
            break
    assert kube.open_watches("nodes") == 1
    kube.pause()

    assert ended.wait(5), "the watch outlived the API server"
    deadline = time.monotonic() + 5
    while kube.open_watches("nodes") and time.monotonic() < deadline:
        ended.wait(0.02)  # the server side notices the cut connection on its own
    assert kube.open_watches("nodes") == 0
    kube.resume()
    assert kube.get("nodes", "node-a") is not None
