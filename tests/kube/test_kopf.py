"""kopf, the operator framework nodeprobe uses, runs against the double: CRDs, watches, peering."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from tests.kube.double import KubeDouble
from tests.kube.objects import crd

GROUP, VERSION, PLURAL = "nodeprobe.io", "v1alpha1", "noderemediations"


@pytest.fixture
def operator(kube: KubeDouble) -> Iterator[dict[str, Any]]:
    """A kopf operator (clusterwide peering) in a thread, stopped through its stop flag."""
    kube.put_object(crd(GROUP, PLURAL, "NodeRemediation"))
    kube.put_object(crd("kopf.dev", "clusterkopfpeerings", "ClusterKopfPeering", status=False))
    registry = kopf.OperatorRegistry()
    seen: dict[str, Any] = {"created": []}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=kube.url, insecure=True, token="ignored")

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="created")
    def created(name: str, spec: Any, **_: Any) -> dict[str, str]:
        seen["created"].append((name, spec.get("nodeName")))
        return {"phase": "ActionRequested"}

    stop = threading.Event()
    ready = threading.Event()

    def run() -> None:
        asyncio.run(kopf.operator(registry=registry, clusterwide=True, stop_flag=stop,
                                  ready_flag=ready, peering_name="default"))

    kube.put_object({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                     "metadata": {"name": "default"}})
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(15), "kopf did not get ready against the double"
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=15)


def _until(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        threading.Event().wait(0.05)  # polling a real state


def test_kopf_handles_a_custom_resource_and_patches_its_status(
        kube: KubeDouble, operator: dict[str, Any]) -> None:
    kube.put_object({"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeRemediation",
                     "metadata": {"name": "node-a-restart"}, "spec": {"nodeName": "node-a"}})

    _until(lambda: (kube.get(PLURAL, "node-a-restart", group=GROUP) or {}).get(
        "status", {}).get("created") is not None)
    obj = kube.get(PLURAL, "node-a-restart", group=GROUP)

    assert operator["created"] == [("node-a-restart", "node-a")]
    assert obj is not None and obj["status"]["created"] == {"phase": "ActionRequested"}
    assert "kopf.zalando.org/last-handled-configuration" in obj["metadata"]["annotations"]
    assert kube.writes(verb="patch", resource=f"{PLURAL}/status") == 1
    assert kube.open_watches(PLURAL) == 1
    peering = kube.get("clusterkopfpeerings", "default", group="kopf.dev")
    assert peering is not None and len(peering["status"]) == 1  # kopf announced itself
