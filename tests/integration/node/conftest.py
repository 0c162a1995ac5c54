"""The real node of the session: its own control plane (with the scheduler and the node
controllers, so no stand-in kubelet meets it), kubelet + containerd 2.x, and the chart installed
as a user installs it, with only the image set, the image being the project's Dockerfile build.

One node per session, started by the first test that asks and stopped at the end of the session
(also after a failed test); every test leaves it healthy (containerd resumed).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.chart import Release, helm, install
from tests.harness.image import save
from tests.harness.kubecluster import KubeCluster, running_cluster
from tests.harness.kubecluster.node import RealNode, real_node
from tests.integration.node.pods import RELEASE_VALUES, wait_pods_ready


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[KubeCluster]:
    base = Path(tempfile.mkdtemp(prefix="np-nk-", dir="/tmp"))
    try:
        with running_cluster(base, for_node=True) as cluster:
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def node(node_cluster: KubeCluster, project_image: tuple[Any, float]) -> Iterator[RealNode]:
    """kubelet + containerd 2.x as Node `localhost`, with the project's image imported."""
    base = Path(tempfile.mkdtemp(prefix="np-n-", dir="/tmp"))
    client, _ = project_image
    started = time.monotonic()
    with real_node(node_cluster, base) as started_node:
        started_node.import_image(save(client, base / "image.tar"))
        print(f"real node Ready with the image imported in {time.monotonic() - started:.1f}s")
        yield started_node


@pytest.fixture
def healthy_node(node: RealNode) -> Iterator[RealNode]:
    """The node, its containerd resumed after the test whatever the test did."""
    yield node
    assert node.containerd is not None
    node.containerd.resume()


@pytest.fixture(scope="session")
def node_release(node_cluster: KubeCluster, node: RealNode) -> Iterator[Release]:
    """`helm install` with the defaults but the image; every pod of it Ready on the node."""
    release = install(node_cluster, values=RELEASE_VALUES)
    try:
        wait_pods_ready(node_cluster, release.namespace, count=3, timeout_s=180)
        yield release
    finally:
        helm(node_cluster, "uninstall", release.name, "-n", release.namespace, "--wait")
