"""Fixtures of the integration tests that meet the real control plane.

The chart is installed once per session (real helm); each test that needs an agent identity
gets a Node of its own with the release's agent pod on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.integration.kube.chart import CHART, Release, helm, install, kubectl
from tests.integration.kube.nodes import AgentNode, agent_node


@pytest.fixture(scope="session")
def release(kube_cluster: KubeCluster) -> Iterator[Release]:
    """`helm install` of the chart into namespace `nodeprobe`, defaults but `agent.repair`: the
    agent identity then has everything it can have (NodeRemediations too), so every agent test
    runs with the chart's RBAC and admission policy as a repairing node has them."""
    installed = install(kube_cluster, values=["agent.repair.enabled=true"])
    try:
        yield installed
    finally:
        helm(kube_cluster, "uninstall", installed.name, "-n", installed.namespace)


@pytest.fixture(scope="session")
def crds(kube_cluster: KubeCluster) -> Path:
    """The chart's CRDs applied with kubectl (as `helm upgrade` users must) and Established."""
    directory = CHART / "crds"
    done = kubectl(kube_cluster, "apply", "-f", str(directory))
    assert done.returncode == 0, done.stdout + done.stderr
    done = kubectl(kube_cluster, "wait", "--for=condition=Established", "--timeout=60s",
                   "-f", str(directory))
    assert done.returncode == 0, done.stdout + done.stderr
    return directory


@pytest.fixture
def agent_on_node(kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release,
                  tmp_path: Path) -> Iterator[AgentNode]:
    """A fresh Node with the release's agent pod, and the agent's token bound to that pod."""
    with agent_node(kube_cluster, test_kubelet, release, tmp_path) as node:
        yield node
