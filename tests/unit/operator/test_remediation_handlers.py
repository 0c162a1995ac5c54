"""kopf wiring: what is registered where, and that nothing could write kopf state onto Nodes."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
from kubernetes import client

from nodeprobe.operator import run
from nodeprobe.operator.handlers import connection_info, register
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.unit.operator.fake_kube import FakeKube


def test_registration_watches_nodes_without_writing_to_them() -> None:
    registry = kopf.OperatorRegistry()
    api = client.ApiClient()
    register(registry, reconciler=Reconciler(FakeKube(), settings=OperatorSettings(tick_s=3)),
             api=api)
    indexing = registry._indexing.get_all_handlers()
    assert [h.selector.any_name for h in indexing if h.selector] == ["nodes"]
    # change-tracking handlers (the ones that store progress/diff-base annotations): none at all
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._watching.get_all_handlers()) == []
    timers = list(registry._spawning.get_all_handlers())
    assert len(timers) == 1
    timer = timers[0]
    assert timer.selector is not None
    assert (timer.selector.group, timer.selector.any_name) == ("nodeprobe.io",
                                                              "remediationpolicies")
    assert timer.interval == 3  # type: ignore[attr-defined]


def test_connection_info_carries_the_client_credentials() -> None:
    cfg = client.Configuration()
    cfg.host = "https://127.0.0.1:6443"
    cfg.api_key = {"BearerToken": "Bearer s3cr3t"}
    cfg.verify_ssl = False
    info = connection_info(client.ApiClient(cfg))
    assert info.server == "https://127.0.0.1:6443"
    assert (info.scheme, info.token, info.insecure) == ("Bearer", "s3cr3t", True)


def test_run_with_missing_kubeconfig_says_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"cannot load Kubernetes credentials \(.*nope"):
        run(kubeconfig=str(tmp_path / "nope"), standalone=True)


def test_the_node_index_keeps_only_what_the_reconciler_reads() -> None:
    from nodeprobe.operator.handlers import slim_node
    from nodeprobe.operator.reconcile import node_view

    full = {
        "metadata": {"name": "n1", "uid": "u1", "labels": {"a": "b"}, "annotations": {"x": "y"},
                     "managedFields": [{"manager": "kubelet"}] * 50},
        "spec": {"unschedulable": True, "podCIDR": "10.0.0.0/24"},
        "status": {
            "conditions": [{"type": "ContainerRuntimeUnhealthy", "status": "True",
                            "reason": "DockerdHung", "message": "m" * 500,
                            "lastTransitionTime": "2026-11-29T05:00:00Z",
                            "lastHeartbeatTime": "2026-11-29T05:00:00Z"}],
            "nodeInfo": {"bootID": "boot-1", "kernelVersion": "6.1"},
            "images": [{"names": [f"img{i}"], "sizeBytes": i} for i in range(50)],
        },
    }
    slim = slim_node(full)
    assert node_view(slim) == node_view(full)
    assert "images" not in slim["status"] and "annotations" not in slim["metadata"]
    assert len(repr(slim)) < len(repr(full)) / 10
