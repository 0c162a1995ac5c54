"""Pure parts: strategic merge and merge patch, selectors, timestamps, watch event choice."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube import times
from tests.kube.errors import ApiError
from tests.kube.patch import COMMON_KEYS, STRATEGIC_KEYS, PatchError, merge_patch, strategic_merge
from tests.kube.resources import ResourceType
from tests.kube.selectors import SelectorError, field_selector, label_selector
from tests.kube.store import Change
from tests.kube.watch import events_for

NODE_KEYS = {**COMMON_KEYS, **STRATEGIC_KEYS[("", "nodes")]}
POD_KEYS = {**COMMON_KEYS, **STRATEGIC_KEYS[("", "pods")]}
NODE = {
    "metadata": {"name": "n", "finalizers": ["a"],
                 "ownerReferences": [{"uid": "u1", "name": "x"}]},
    "spec": {"taints": [{"key": "t1", "effect": "NoSchedule"}]},
    "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"},
                              {"type": "DiskPressure", "status": "False"}],
               "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
}


def test_conditions_merge_by_type_and_leave_others_untouched() -> None:
    out = strategic_merge(NODE, {"status": {"conditions": [
        {"type": "DiskPressure", "status": "True"}, {"type": "X", "status": "True"}]}},
        keys=NODE_KEYS)

    assert out["status"]["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "KubeletReady"},
        {"type": "DiskPressure", "status": "True"}, {"type": "X", "status": "True"}]
    assert NODE["status"]["conditions"][1]["status"] == "False"  # input not mutated


def test_patch_delete_and_replace_directives() -> None:
    deleted = strategic_merge(NODE, {"status": {"conditions": [
        {"type": "DiskPressure", "$patch": "delete"}]}}, keys=NODE_KEYS)
    replaced = strategic_merge(NODE, {"status": {"addresses": [
        {"$patch": "replace"}, {"type": "Hostname", "address": "n"}]}}, keys=NODE_KEYS)
    map_replaced = strategic_merge(NODE, {"metadata": {"$patch": "replace", "name": "n"}},
                                   keys=NODE_KEYS)

    assert [c["type"] for c in deleted["status"]["conditions"]] == ["Ready"]
    assert replaced["status"]["addresses"] == [{"type": "Hostname", "address": "n"}]
    assert map_replaced["metadata"] == {"name": "n"}


def test_taints_are_atomic_like_the_real_node_spec() -> None:
    out = strategic_merge(NODE, {"spec": {"taints": [{"key": "t2", "effect": "NoExecute"}]}},
                          keys=NODE_KEYS)

    assert out["spec"]["taints"] == [{"key": "t2", "effect": "NoExecute"}]


def test_finalizers_are_a_set_and_owner_references_merge_by_uid() -> None:
    out = strategic_merge(NODE, {"metadata": {
        "finalizers": ["b", "a"], "ownerReferences": [{"uid": "u1", "name": "y"},
                                                      {"uid": "u2", "name": "z"}]}},
        keys=NODE_KEYS)
    removed = strategic_merge(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
                              keys=NODE_KEYS)

    assert out["metadata"]["finalizers"] == ["a", "b"]
    assert out["metadata"]["ownerReferences"] == [{"uid": "u1", "name": "y"},
                                                  {"uid": "u2", "name": "z"}]
    assert removed["metadata"]["finalizers"] == ["b"]


def test_pod_containers_merge_by_name_down_to_env() -> None:
    pod = {"spec": {"containers": [
        {"name": "a", "image": "i1", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "i2"}]}}
    out = strategic_merge(pod, {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}, keys=POD_KEYS)

    assert out["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"},
                                                   {"name": "Y", "value": "2"}]
    assert out["spec"]["containers"][1] == {"name": "b", "image": "i2"}


def test_merge_list_element_without_its_key_is_an_error() -> None:
    with pytest.raises(PatchError, match="merge key 'type'"):
        strategic_merge(NODE, {"status": {"conditions": [{"status": "True"}]}}, keys=NODE_KEYS)


def test_merge_patch_rfc7386_examples() -> None:
    assert merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}}) == {
        "a": "z", "c": {"d": "e"}}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"a": "foo"}, "bar") == "bar"
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}


def test_label_and_field_selectors() -> None:
    obj = {"metadata": {"name": "p", "labels": {"app": "web", "tier": "1"}},
           "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}

    assert label_selector("app in (web, db),tier!=2,!missing")(obj)
    assert not label_selector("app notin (web)")(obj)
    assert field_selector("spec.nodeName=n1,status.phase!=Succeeded")(obj)
    assert field_selector("involvedObject.namespace=")(obj)
    with pytest.raises(SelectorError):
        label_selector("app in web")


def test_times_are_normalised_like_metav1_time_and_microtime() -> None:
    nodes = ResourceType("", "v1", "nodes", "Node", False)
    events = ResourceType("", "v1", "events", "Event", True)
    node = {"status": {"conditions": [{"lastHeartbeatTime": "2026-01-01T02:00:00.75+02:00"}]}}
    event = {"eventTime": "2026-01-01T00:00:00.123456+00:00", "lastTimestamp": None}

    times.normalize(nodes, node)
    times.normalize(events, event)

    assert node["status"]["conditions"][0]["lastHeartbeatTime"] == "2026-01-01T00:00:00Z"
    assert event == {"eventTime": "2026-01-01T00:00:00.123456Z", "lastTimestamp": None}
    with pytest.raises(ApiError) as e:
        times.normalize(events, {"eventTime": "2026-01-01T00:00:00Z"})
    assert e.value.code == 400


def test_watch_events_follow_the_selector() -> None:
    pods = ResourceType("", "v1", "pods", "Pod", True, storage=("", "pods"))
    web = label_selector("app=web")

    def pod(app: str) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": "ns", "labels": {"app": app}}}

    def events(kind: str, old: Any, new: Any, ns: str | None = None) -> list[str]:
        change = Change(1, kind, ("", "pods"), old, new)
        return [t for t, _ in events_for(change, rt=pods, ns=ns, match=web,
                                         view=lambda rt, o: o)]

    assert events("ADDED", None, pod("web")) == ["ADDED"]
    assert events("MODIFIED", pod("web"), pod("web")) == ["MODIFIED"]
    assert events("MODIFIED", pod("web"), pod("db")) == ["DELETED"]
    assert events("MODIFIED", pod("db"), pod("web")) == ["ADDED"]
    assert events("MODIFIED", pod("db"), pod("db")) == []
    assert events("DELETED", pod("web"), pod("web")) == ["DELETED"]
    assert events("ADDED", None, pod("web"), ns="other") == []
