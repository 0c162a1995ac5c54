"""The test control plane is the real thing: RBAC enforced, bound tokens, a working kubelet."""

from __future__ import annotations

import uuid

from tests.harness.agent_process import wait_for
from tests.harness.kubecluster import KubeCluster, TestKubelet


def test_rbac_is_enforced_and_bound_tokens_carry_the_node(
    kube_cluster: KubeCluster, test_kubelet: TestKubelet
) -> None:
    ns, node = f"t-{uuid.uuid4().hex[:6]}", f"n-{uuid.uuid4().hex[:6]}"
    test_kubelet.register(node)
    kube_cluster.must("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    kube_cluster.must("POST", f"/api/v1/namespaces/{ns}/serviceaccounts",
                      {"metadata": {"name": "nobody"}})
    kube_cluster.must("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": "p"}, "spec": {
        "nodeName": node, "serviceAccountName": "nobody",
        "containers": [{"name": "c", "image": "busybox"}]}})
    wait_for(lambda: kube_cluster.must("GET", f"/api/v1/namespaces/{ns}/pods/p")
             .get("status", {}).get("phase") == "Running", timeout_s=30,
             what="the test kubelet to run the pod")
    token = kube_cluster.token(ns, "nobody", pod="p")
    review = kube_cluster.must("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}})
    user = review["status"]["user"]
    assert user["username"] == f"system:serviceaccount:{ns}:nobody"
    assert user["extra"]["authentication.kubernetes.io/node-name"] == [node]
    review = kube_cluster.must("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": user["username"], "groups": user["groups"],
                 "resourceAttributes": {"verb": "patch", "resource": "nodes",
                                        "subresource": "status", "name": node}}})
    assert review["status"]["allowed"] is False
    kube_cluster.must("DELETE", f"/api/v1/namespaces/{ns}/pods/p")
    wait_for(lambda: kube_cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/p")[0] == 404,
             timeout_s=30, what="the test kubelet to finish the pod's deletion")
