"""The real node itself: a pod on the CNI network is Running, `kubectl logs` and `kubectl exec`
reach its container through the API server and kubelet, and the host keeps its own sysctls and
paths while kubelet writes them in its private mount namespace."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

import pytest

from tests.harness.chart import kubectl
from tests.harness.kubecluster import KubeCluster
from tests.harness.kubecluster.images import NODE_BUSYBOX
from tests.harness.kubecluster.node import SYSCTLS, RealNode
from tests.integration.node.pods import wait_pods_ready

pytestmark = pytest.mark.real_node


def test_a_pod_runs_and_logs_and_exec_reach_it(node_cluster: KubeCluster,
                                                 healthy_node: RealNode) -> None:
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    assert kubectl(node_cluster, "create", "namespace", namespace).returncode == 0
    try:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sh"},
               "spec": {"containers": [{
                   "name": "sh", "image": NODE_BUSYBOX, "imagePullPolicy": "Never",
                   "command": ["sh", "-c", "echo hello from the node; exec sleep 3600"]}],
                   "terminationGracePeriodSeconds": 0}}
        node_cluster.must("POST", f"/api/v1/namespaces/{namespace}/pods", pod)
        (ready,) = wait_pods_ready(node_cluster, namespace, count=1, timeout_s=60)
        assert ready["spec"]["nodeName"] == healthy_node.name
        subnet = ipaddress.ip_network(healthy_node.slot.pod_subnet)
        assert ipaddress.ip_address(ready["status"]["podIP"]) in subnet, ready["status"]
        logs = kubectl(node_cluster, "-n", namespace, "logs", "sh")
        assert logs.stdout == "hello from the node\n", logs.stderr
        done = kubectl(node_cluster, "-n", namespace, "exec", "sh", "--", "sh", "-c", "exit 7")
        assert done.returncode == 7, done.stderr
    finally:
        kubectl(node_cluster, "delete", "namespace", namespace, "--wait=false")


def test_kubelet_writes_its_sysctls_and_paths_only_inside_the_node(healthy_node: RealNode
                                                                   ) -> None:
    in_node = {key: healthy_node.host_path(f"/proc/sys/{key}").read_text() for key in SYSCTLS}
    host = {key: Path("/proc/sys", key).read_text() for key in SYSCTLS}
    # kubelet set kernel.panic to 10 and vm.overcommit_memory to 1, on the node's copies only.
    assert in_node["kernel/panic"].strip() == "10"
    assert in_node["vm/overcommit_memory"].strip() == "1"
    assert host == healthy_node.host_sysctls
    for path in ("/var/lib/kubelet/device-plugins", "/var/log/containers"):
        assert healthy_node.host_path(path).is_dir(), path
        assert not Path(path).exists(), f"kubelet made {path} on the host"
