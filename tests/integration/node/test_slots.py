"""Real nodes side by side: a second node (with its own control plane) starts next to the
session's in another slot, each runs a pod on its own bridge and subnet, and stopping the second
removes all of its own from the host and nothing of the first's."""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.kubecluster import KubeCluster, running_cluster
from tests.harness.kubecluster.images import NODE_BUSYBOX
from tests.harness.kubecluster.node import RealNode, real_node
from tests.integration.node.pods import pods, wait_pods_ready

pytestmark = pytest.mark.real_node


def _run_pod(cluster: KubeCluster, node: RealNode) -> dict[str, Any]:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    cluster.must("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    cluster.must("POST", f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "sleeper", "image": NODE_BUSYBOX,
                                 "imagePullPolicy": "Never", "command": ["sleep", "3600"]}],
                 "terminationGracePeriodSeconds": 0}})
    (pod,) = wait_pods_ready(cluster, namespace, count=1, timeout_s=90)
    assert ipaddress.ip_address(pod["status"]["podIP"]) in \
        ipaddress.ip_network(node.slot.pod_subnet), pod["status"]
    assert node.pod_cgroup("memory", pod["metadata"]["uid"]) is not None
    return pod


def test_two_real_nodes_run_side_by_side_and_the_second_stops_clean(
        node_cluster: KubeCluster, healthy_node: RealNode) -> None:
    first_pod = _run_pod(node_cluster, healthy_node)
    base = Path(tempfile.mkdtemp(prefix="np-n2-", dir="/tmp"))
    try:
        with running_cluster(base / "k", for_node=True) as cluster:
            with real_node(cluster, base / "n") as second:
                assert second.slot != healthy_node.slot
                second_pod = _run_pod(cluster, second)
                assert healthy_node.ready() and second.ready()
            # real_node raised if the second left anything; and it removed nothing of the first's.
            assert second.leftovers() == []
            assert not any(d.exists() for d in second.slot.cgroup_dirs())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    namespace = first_pod["metadata"]["namespace"]
    assert healthy_node.pod_cgroup("memory", first_pod["metadata"]["uid"]) is not None
    (still,) = pods(node_cluster, namespace)
    assert still["status"]["phase"] == "Running" and healthy_node.ready()
    assert Path("/sys/class/net", healthy_node.slot.bridge).exists()
    assert second_pod["status"]["podIP"] != first_pod["status"]["podIP"]
    node_cluster.must("DELETE", f"/api/v1/namespaces/{namespace}")
