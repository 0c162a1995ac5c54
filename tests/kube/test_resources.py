"""Resource semantics beyond nodes: CRs, leases, namespaces, legacy watch, deletecollection."""

from __future__ import annotations

import datetime
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from tests.kube.double import KubeDouble
from tests.kube.objects import crd


def _raw(kube: KubeDouble, method: str, path: str, body: Any = None,
         content_type: str = "application/json",
         accept: str = "application/json") -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(kube.url + path, method=method, data=data,
                                     headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


CR_PATH = "/apis/nodeprobe.io/v1alpha1/noderemediations"


def test_custom_resources_generation_status_and_patch_types(kube: KubeDouble) -> None:
    kube.put_object(crd("nodeprobe.io", "noderemediations", "NodeRemediation"))
    code, created = _raw(kube, "POST", CR_PATH, {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
        "metadata": {"name": "r1"}, "spec": {"action": "restart"},
        "status": {"phase": "dropped on create"}})
    _, spec_patched = _raw(kube, "PATCH", f"{CR_PATH}/r1", {"spec": {"action": "reboot"}},
                           "application/merge-patch+json")
    _, status_patched = _raw(kube, "PATCH", f"{CR_PATH}/r1/status",
                             {"status": {"phase": "Done"}}, "application/merge-patch+json")
    strategic, refused = _raw(kube, "PATCH", f"{CR_PATH}/r1", {"spec": {}},
                              "application/strategic-merge-patch+json")
    apply, _ = _raw(kube, "PATCH", f"{CR_PATH}/r1", {}, "application/apply-patch+yaml")

    assert code == 201 and "status" not in created and created["metadata"]["generation"] == 1
    assert spec_patched["metadata"]["generation"] == 2
    assert status_patched["metadata"]["generation"] == 2
    assert status_patched["status"] == {"phase": "Done"}
    assert (strategic, refused["reason"]) == (415, "UnsupportedMediaType")
    assert apply == 415


def test_deleting_a_crd_removes_its_api_and_objects(kube: KubeDouble) -> None:
    kube.put_object(crd("nodeprobe.io", "noderemediations", "NodeRemediation"))
    kube.put_object({"apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
                     "metadata": {"name": "r1"}})

    code, _ = _raw(kube, "DELETE",
                   "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                   "noderemediations.nodeprobe.io")
    gone, status = _raw(kube, "GET", CR_PATH)
    _, groups = _raw(kube, "GET", "/apis")

    assert code == 200
    assert (gone, status["reason"]) == (404, "NotFound")
    assert "nodeprobe.io" not in [g["name"] for g in groups["groups"]]


def test_lease_round_trip_with_microsecond_times(kube: KubeDouble) -> None:
    leases = client.CoordinationV1Api(kube.api_client())
    renew = datetime.datetime(2026, 1, 1, 0, 0, 1, 250000, tzinfo=datetime.UTC)

    leases.create_namespaced_lease("kube-node-lease", {
        "metadata": {"name": "node-a"},
        "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 40, "renewTime": renew}})
    lease = leases.read_namespaced_lease("node-a", "kube-node-lease")

    assert lease.spec.renew_time == renew
    stored = kube.get("leases", "node-a", namespace="kube-node-lease",
                      group="coordination.k8s.io")
    assert stored is not None and stored["spec"]["renewTime"] == "2026-01-01T00:00:01.250000Z"


def test_create_in_a_missing_namespace_is_404(kube: KubeDouble) -> None:
    code, status = _raw(kube, "POST", "/api/v1/namespaces/nowhere/pods", {
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})

    assert (code, status["message"]) == (404, 'namespaces "nowhere" not found')


def test_legacy_watch_prefix_and_deletecollection(kube: KubeDouble) -> None:
    core = client.CoreV1Api(kube.api_client())
    for name in ("a", "b"):
        kube.put_object({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": name, "namespace": "default",
                                      "labels": {"set": "x"}}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version

    code, _ = _raw(kube, "DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=set%3Dx")
    request = urllib.request.Request(
        f"{kube.url}/api/v1/watch/namespaces/default/configmaps?resourceVersion={rv}"
        "&timeoutSeconds=1&allowWatchBookmarks=true")
    with urllib.request.urlopen(request, timeout=5) as response:
        events = [json.loads(line) for line in response.read().splitlines()]

    assert code == 200
    assert [(e["type"], e["object"]["metadata"].get("name")) for e in events] == [
        ("DELETED", "a"), ("DELETED", "b"), ("BOOKMARK", None)]
    assert core.list_namespaced_config_map("default").items == []


def test_protobuf_only_accept_is_406(kube: KubeDouble) -> None:
    code, _ = _raw(kube, "GET", "/api/v1/nodes", accept="application/vnd.kubernetes.protobuf")

    assert code == 406


@pytest.mark.parametrize("path", ["/api/v1/nodes/x/nope", "/apis/nope/v1/things", "/nope"])
def test_unknown_paths_are_404_status(kube: KubeDouble, path: str) -> None:
    code, status = _raw(kube, "GET", path)

    assert (code, status["kind"], status["reason"]) == (404, "Status", "NotFound")
