"""The Python `kubernetes` client against the double: watch, conflicts, patches, counters."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.kube.double import KubeDouble
from tests.kube.objects import kubelet_node


@pytest.fixture
def core(kube: KubeDouble) -> client.CoreV1Api:
    kube.put_object(kubelet_node("node-a"))
    return client.CoreV1Api(kube.api_client())


def _status(e: pytest.ExceptionInfo[ApiException]) -> tuple[int, str]:
    return e.value.status, json.loads(e.value.body)["reason"]


def _raw(kube: KubeDouble, method: str, path: str, body: Any,
         content_type: str = "application/json") -> tuple[int, Any]:
    """A plain HTTP request, for content types the generated client does not let us choose."""
    request = urllib.request.Request(kube.url + path, method=method,
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_watch_sees_modified_after_a_status_patch(kube: KubeDouble, core: client.CoreV1Api) -> None:
    listed = core.list_node()
    seen: list[tuple[str, Any]] = []
    stream = watch.Watch()

    def consume() -> None:
        rv = listed.metadata.resource_version
        for event in stream.stream(core.list_node, resource_version=rv, timeout_seconds=10):
            seen.append((event["type"], event["object"]))
            stream.stop()

    reader = threading.Thread(target=consume)
    reader.start()
    core.patch_node_status("node-a", {"status": {"conditions": [
        {"type": "ContainerRuntimeUnavailable", "status": "False", "reason": "RuntimeHealthy"}]}})
    reader.join(timeout=10)

    assert [t for t, _ in seen] == ["MODIFIED"]
    node = seen[0][1]
    assert [c.type for c in node.status.conditions] == ["Ready", "ContainerRuntimeUnavailable"]
    assert int(node.metadata.resource_version) > int(listed.metadata.resource_version)


def test_watch_from_a_compacted_version_gets_410(tmp_path: Any) -> None:
    double = KubeDouble(directory=tmp_path, history=3).start()
    try:
        double.put_object(kubelet_node("node-a"))
        old_rv = double.get("nodes", "node-a")["metadata"]["resourceVersion"]  # type: ignore[index]
        for boot in range(5):
            double.put_object(kubelet_node("node-a", boot_id=f"boot-{boot}"))
        core = client.CoreV1Api(double.api_client())
        with pytest.raises(ApiException) as e:
            for _ in watch.Watch().stream(core.list_node, resource_version=old_rv,
                                          timeout_seconds=5):
                pass
        assert e.value.status == 410
    finally:
        double.stop()


def test_update_with_stale_resource_version_is_409(core: client.CoreV1Api) -> None:
    stale = core.read_node("node-a")
    fresh = core.read_node("node-a")
    fresh.metadata.labels["nodeprobe.io/checked"] = "yes"
    core.replace_node("node-a", fresh)
    stale.metadata.labels["nodeprobe.io/checked"] = "no"

    with pytest.raises(ApiException) as e:
        core.replace_node("node-a", stale)

    assert _status(e) == (409, "Conflict")
    assert core.read_node("node-a").metadata.labels["nodeprobe.io/checked"] == "yes"


def test_json_patch_and_merge_patch_follow_their_rfcs(kube: KubeDouble,
                                                      core: client.CoreV1Api) -> None:
    def patch(body: Any, content_type: str) -> Any:
        return _raw(kube, "PATCH", "/api/v1/nodes/node-a", body, content_type)

    _, merged = patch({"metadata": {"labels": {"a": "1", "kubernetes.io/hostname": None}},
                    "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}},
                   "application/merge-patch+json")
    _, patched = patch([{"op": "add", "path": "/metadata/labels/b", "value": "2"},
                     {"op": "remove", "path": "/metadata/labels/a"},
                     {"op": "replace", "path": "/spec/taints/0/effect", "value": "NoExecute"}],
                    "application/json-patch+json")
    code, failed = patch([{"op": "test", "path": "/metadata/labels/b", "value": "3"},
                          {"op": "add", "path": "/metadata/labels/c", "value": "3"}],
                         "application/json-patch+json")

    assert merged["metadata"]["labels"] == {"a": "1"}
    assert patched["metadata"]["labels"] == {"b": "2"}
    assert patched["spec"]["taints"] == [{"key": "k", "effect": "NoExecute"}]
    assert (code, failed["kind"], failed["reason"]) == (422, "Status", "Invalid")
    assert kube.get("nodes", "node-a")["metadata"]["labels"] == {"b": "2"}  # type: ignore[index]


def test_write_counters_count_exactly(kube: KubeDouble, core: client.CoreV1Api) -> None:
    kube.reset_counters()
    for beat in range(3):
        core.patch_node_status("node-a", {"status": {"conditions": [
            {"type": "KernelDeadlock", "status": "False", "reason": f"beat-{beat}"}]}})
    core.read_node("node-a")
    core.list_node()
    core.create_namespaced_event("default", {
        "metadata": {"generateName": "node-a."}, "reason": "R", "message": "m",
        "involvedObject": {"kind": "Node", "name": "node-a"}})
    with pytest.raises(ApiException):
        core.patch_node("node-b", {"spec": {"unschedulable": True}})

    assert kube.writes(verb="patch", resource="nodes") == 4
    assert kube.writes(verb="patch", resource="nodes/status") == 3
    assert kube.writes(resource="events") == 1
    assert kube.writes() == 5
    assert kube.requests(verb="get", resource="nodes") == 1
    assert kube.requests(verb="list", resource="nodes") == 1
    assert [r.code for r in kube.log(writes_only=True)] == [200, 200, 200, 201, 404]
    kube.reset_counters()
    assert kube.writes() == 0


def test_main_resource_ignores_status_and_status_ignores_the_rest(core: client.CoreV1Api) -> None:
    core.patch_node("node-a", {"metadata": {"labels": {"x": "1"}},
                               "status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    core.patch_node_status("node-a", {"metadata": {"labels": {"y": "1"}},
                                      "spec": {"unschedulable": True}})
    node = core.read_node("node-a")

    assert node.metadata.labels.get("x") == "1" and "y" not in node.metadata.labels
    assert not node.spec.unschedulable
    assert node.status.conditions[0].status == "True"


def test_finalizers_hold_deletion_until_the_last_is_removed(kube: KubeDouble,
                                                            core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "held", "finalizers": ["nodeprobe.io/x"]}})
    core.delete_namespace("held")
    marked = core.read_namespace("held")
    core.patch_namespace("held", {"metadata": {"$deleteFromPrimitiveList/finalizers":
                                               ["nodeprobe.io/x"]}})

    assert marked.metadata.deletion_timestamp is not None
    assert kube.get("namespaces", "held") is None


def test_selectors_and_not_found_status(kube: KubeDouble, core: client.CoreV1Api) -> None:
    for name, pool in (("node-b", "gpu"), ("node-c", "cpu")):
        node = kubelet_node(name)
        node["metadata"]["labels"]["pool"] = pool
        kube.put_object(node)

    def names(**kw: str) -> list[str]:
        return [n.metadata.name for n in core.list_node(**kw).items]

    assert names(label_selector="pool in (gpu,cpu)") == ["node-b", "node-c"]
    assert names(label_selector="pool!=gpu") == ["node-a", "node-c"]
    assert names(label_selector="!pool") == ["node-a"]
    assert names(label_selector="pool,pool notin (cpu)") == ["node-b"]
    assert names(field_selector="metadata.name=node-c") == ["node-c"]
    with pytest.raises(ApiException) as e:
        core.read_node("node-z")
    assert _status(e) == (404, "NotFound")
    with pytest.raises(ApiException) as bad:
        core.list_node(label_selector="pool in gpu")
    assert bad.value.status == 400


def test_create_twice_is_409_already_exists_and_bad_names_are_422(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as dup:
        core.create_node({"metadata": {"name": "node-a"}})
    with pytest.raises(ApiException) as bad:
        core.create_node({"metadata": {"name": "Node_A"}})

    assert _status(dup) == (409, "AlreadyExists")
    assert _status(bad) == (422, "Invalid")


def test_event_time_without_microseconds_is_refused_like_the_real_server(kube: KubeDouble) -> None:
    code, status = _raw(kube, "POST", "/apis/events.k8s.io/v1/namespaces/default/events", {
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"},
        "eventTime": "2026-01-01T00:00:00+00:00", "action": "Probe", "reason": "R",
        "reportingController": "c", "reportingInstance": "i"})

    assert (code, status["reason"]) == (400, "BadRequest")
    assert "six fractional digits" in status["message"]
