"""kubectl drain, a realistic client of the Eviction API, against PodDisruptionBudgets."""

from __future__ import annotations

import time

from tests.kube.double import KubeDouble
from tests.kube.objects import kubelet_node, running_pod

PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
       "metadata": {"name": "web", "namespace": "default"},
       "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
DRAIN = ("drain", "node-a", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout", "5s")


def test_drain_blocked_by_pdb_retries_then_times_out_and_pod_stays(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))
    kube.put_object(running_pod("web-1", node="node-a"))
    kube.put_object(PDB)

    started = time.monotonic()
    result = kube.kubectl(*DRAIN)
    took = time.monotonic() - started

    assert result.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in result.stderr
    assert kube.get("pods", "web-1", namespace="default") is not None
    assert "will retry after 5s" in result.stderr
    assert "global timeout reached: 5s" in result.stderr
    assert kube.requests(verb="create", resource="pods/eviction") >= 1
    assert kube.evictions == []
    assert 5 <= took < 15
    node = kube.get("nodes", "node-a")
    assert node is not None and node["spec"]["unschedulable"] is True


def test_drain_without_pdb_evicts_the_pod(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))
    kube.put_object(running_pod("web-1", node="node-a"))
    kube.put_object(running_pod("elsewhere", node="node-b"))

    result = kube.kubectl(*DRAIN, "--grace-period", "7")

    assert result.returncode == 0, result.stderr
    assert "pod/web-1 evicted" in result.stdout
    assert kube.get("pods", "web-1", namespace="default") is None
    assert kube.get("pods", "elsewhere", namespace="default") is not None
    assert kube.evictions == [("default", "web-1", 7)]


def test_drain_with_pdb_that_allows_one_disruption_evicts(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))
    kube.put_object(running_pod("web-1", node="node-a"))
    kube.put_object(running_pod("web-2", node="node-b"))
    kube.put_object({**PDB, "spec": {"maxUnavailable": "50%",
                                     "selector": {"matchLabels": {"app": "web"}}}})

    result = kube.kubectl(*DRAIN)

    assert result.returncode == 0, result.stderr
    assert kube.get("pods", "web-1", namespace="default") is None
    pdb = kube.get("poddisruptionbudgets", "web", namespace="default", group="policy")
    assert pdb is not None and pdb["status"]["currentHealthy"] == 2


def test_drain_skips_daemonset_pods(kube: KubeDouble) -> None:
    kube.put_object(kubelet_node("node-a"))
    ds = kube.put_object({"apiVersion": "apps/v1", "kind": "DaemonSet",
                          "metadata": {"name": "nodeprobe", "namespace": "kube-system"},
                          "spec": {"selector": {"matchLabels": {"app": "nodeprobe"}}}})
    agent = running_pod("nodeprobe-x", node="node-a", namespace="kube-system",
                        labels={"app": "nodeprobe"})
    agent["metadata"]["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "nodeprobe",
        "uid": ds["metadata"]["uid"], "controller": True}]
    kube.put_object(agent)

    result = kube.kubectl(*DRAIN)

    assert result.returncode == 0, result.stderr
    assert "ignoring DaemonSet-managed Pods: kube-system/nodeprobe-x" in result.stderr
    assert kube.get("pods", "nodeprobe-x", namespace="kube-system") is not None
