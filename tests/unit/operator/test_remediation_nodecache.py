"""The node view's pure half: what one watch event does to it, and what is kept of a Node."""

from __future__ import annotations

from typing import Any

import pytest

from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.nodecache import Gone, apply_event, slim_node
from nodeprobe.operator.reconcile import node_view


def node(name: str, rv: str, *, status: str = "False") -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": rv},
            "status": {"conditions": [{"type": "ContainerRuntimeUnavailable", "status": status,
                                       "lastTransitionTime": "2026-11-29T05:00:00Z"}]}}


def test_added_modified_deleted_fold_into_the_view_and_move_the_resume_point() -> None:
    nodes: dict[str, dict[str, Any]] = {}
    assert apply_event(nodes, {"type": "ADDED", "object": node("a", "11")}) == "11"
    assert apply_event(nodes, {"type": "ADDED", "object": node("b", "12")}) == "12"
    assert apply_event(nodes, {"type": "MODIFIED", "object": node("a", "13", status="True")}
                       ) == "13"
    assert node_view(nodes["a"]).conditions["ContainerRuntimeUnavailable"].status == "True"
    assert apply_event(nodes, {"type": "DELETED", "object": node("b", "14")}) == "14"
    assert sorted(nodes) == ["a"]


def test_a_bookmark_moves_only_the_resume_point() -> None:
    nodes = {"a": slim_node(node("a", "1"))}
    event = {"type": "BOOKMARK", "object": {"kind": "Node", "metadata": {"resourceVersion": "99"}}}
    assert apply_event(nodes, event) == "99"
    assert nodes == {"a": slim_node(node("a", "1"))}


def test_deleting_an_unknown_node_is_harmless() -> None:
    nodes: dict[str, dict[str, Any]] = {}
    assert apply_event(nodes, {"type": "DELETED", "object": node("x", "5")}) == "5"
    assert nodes == {}


def test_an_expired_watch_asks_for_a_new_list() -> None:
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                         "message": "too old resource version: 5 (900)"}}
    with pytest.raises(Gone, match="too old resource version"):
        apply_event({}, error)


@pytest.mark.parametrize("event, message", [
    ({"type": "ERROR", "object": {"code": 500, "reason": "InternalError", "message": "etcd"}},
     "InternalError: etcd"),
    ({"type": "SURPRISE", "object": node("a", "1")}, "unknown event type 'SURPRISE'"),
    ({"type": "ADDED"}, "event without an object"),
])
def test_bad_events_say_what_was_wrong_and_leave_the_view_alone(event: dict[str, Any],
                                                               message: str) -> None:
    nodes = {"a": slim_node(node("a", "1"))}
    with pytest.raises(KubeError, match=message):
        apply_event(nodes, event)
    assert nodes == {"a": slim_node(node("a", "1"))}


def test_the_view_keeps_only_what_the_reconciler_reads() -> None:
    full = {
        "metadata": {"name": "n1", "uid": "u1", "labels": {"a": "b"}, "annotations": {"x": "y"},
                     "managedFields": [{"manager": "kubelet"}] * 50},
        "spec": {"unschedulable": True, "podCIDR": "10.0.0.0/24"},
        "status": {
            "conditions": [{"type": "ContainerRuntimeUnavailable", "status": "True",
                            "reason": "DockerdHung", "message": "m" * 500,
                            "lastTransitionTime": "2026-11-29T05:00:00Z",
                            "lastHeartbeatTime": "2026-11-29T05:00:00Z"}],
            "nodeInfo": {"bootID": "boot-1", "kernelVersion": "6.1"},
            "images": [{"names": [f"img{i}"], "sizeBytes": i} for i in range(50)],
        },
    }
    slim = slim_node(full)
    assert node_view(slim) == node_view(full)
    assert "images" not in slim["status"] and slim["metadata"]["annotations"] == {}
    assert len(repr(slim)) < len(repr(full)) / 10
