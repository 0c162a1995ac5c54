"""Real control plane fixtures: the chart installed once per session with real helm."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.kubecluster import KubeCluster
from tests.integration.kube.chart import Release, helm, install


@pytest.fixture(scope="session")
def release(kube_cluster: KubeCluster) -> Iterator[Release]:
    """`helm install` of the chart with default values, into namespace `nodeprobe`."""
    installed = install(kube_cluster)
    try:
        yield installed
    finally:
        helm(kube_cluster, "uninstall", installed.name, "-n", installed.namespace)
