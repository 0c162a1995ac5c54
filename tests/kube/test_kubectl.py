"""The real kubectl against the double: get, apply, cordon (the operator tests use them)."""

from __future__ import annotations

import json
import textwrap

from kubernetes import client

from tests.kube.double import KubeDouble
from tests.kube.objects import kubelet_node


def _ok(kube: KubeDouble, *args: str) -> str:
    result = kube.kubectl(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_get_nodes_prints_table_and_json(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))

    table = _ok(kube, "get", "nodes")
    listed = json.loads(_ok(kube, "get", "nodes", "-o", "json"))

    assert table.split("\n")[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert table.split("\n")[1].split()[:2] == ["node-a", "Ready"]
    assert [n["metadata"]["name"] for n in listed["items"]] == ["node-a"]
    assert listed["items"][0]["status"]["nodeInfo"]["bootID"] == "boot-1"


CRD = textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: noderemediations.nodeprobe.io
    spec:
      group: nodeprobe.io
      scope: Cluster
      names: {plural: noderemediations, singular: noderemediation, kind: NodeRemediation,
              shortNames: [nrm]}
      versions:
      - name: v1alpha1
        served: true
        storage: true
        subresources: {status: {}}
        schema:
          openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
        additionalPrinterColumns:
        - {name: Node, type: string, jsonPath: .spec.nodeName}
        - {name: Phase, type: string, jsonPath: .status.phase}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    """)


def test_apply_crd_then_get_custom_resources_created_by_python(kube: KubeDouble) -> None:
    path = kube.directory / "crd.yaml"
    path.write_text(CRD)

    applied = _ok(kube, "apply", "-f", str(path))
    custom = client.CustomObjectsApi(kube.api_client())
    custom.create_cluster_custom_object("nodeprobe.io", "v1alpha1", "noderemediations", {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
        "metadata": {"name": "node-a-restart"}, "spec": {"nodeName": "node-a"}})
    custom.patch_cluster_custom_object_status(
        "nodeprobe.io", "v1alpha1", "noderemediations", "node-a-restart",
        {"status": {"phase": "ActionRequested"}})
    listed = _ok(kube, "get", "noderemediations")
    short = _ok(kube, "get", "nrm", "node-a-restart", "-o", "jsonpath={.status.phase}")

    assert "customresourcedefinition.apiextensions.k8s.io/noderemediations.nodeprobe.io" in applied
    assert listed.split("\n")[0].split() == ["NAME", "NODE", "PHASE", "AGE"]
    assert listed.split("\n")[1].split()[:3] == ["node-a-restart", "node-a", "ActionRequested"]
    assert short == "ActionRequested"


def test_cordon_and_uncordon_patch_spec_unschedulable(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))

    _ok(kube, "cordon", "node-a")
    cordoned = kube.get("nodes", "node-a")
    table = _ok(kube, "get", "nodes")
    _ok(kube, "uncordon", "node-a")
    uncordoned = kube.get("nodes", "node-a")

    assert cordoned is not None and cordoned["spec"]["unschedulable"] is True
    assert "Ready,SchedulingDisabled" in table
    assert uncordoned is not None and not uncordoned["spec"].get("unschedulable")
    assert kube.writes(verb="patch", resource="nodes") == 2
    assert cordoned["status"]["conditions"][0]["type"] == "Ready"
