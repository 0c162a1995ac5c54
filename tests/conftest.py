"""Shared fixtures: one real containerd + dockerd per test session, healed after every test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.gotools import kube_versions
from tests.harness.kubecluster import KubeCluster, TestKubelet, running_cluster
from tests.harness.runtimes import Sandbox
from tests.integration.kube.chart import Release, helm, install
from tests.integration.kube.nodes import AgentNode, agent_node

SERVED_VERSION = pytest.StashKey[str]()
"""kube-apiserver's /version gitVersion, once the session's control plane has started."""


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [kube_versions()]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    served = config.stash.get(SERVED_VERSION, None)
    if served is not None:
        terminalreporter.write_line(f"kube-apiserver /version: {served}")


@pytest.fixture(scope="session")
def _session_sandbox() -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="np-", dir="/tmp"))
    sandbox = Sandbox(base)
    try:
        sandbox.start()
        sandbox.import_busybox()
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def runtimes(_session_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session's real runtimes; whatever the test did (hang, crash), they are healed after."""
    _session_sandbox.heal()
    yield _session_sandbox
    _session_sandbox.heal()


@pytest.fixture
def own_runtimes() -> Iterator[Sandbox]:
    """A private pair of runtimes for tests that must not share (restarts, leaks, soaks)."""
    base = Path(tempfile.mkdtemp(prefix="np-", dir="/tmp"))
    sandbox = Sandbox(base)
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_cluster(pytestconfig: pytest.Config) -> Iterator[KubeCluster]:
    """A real control plane (etcd, kube-apiserver, kube-controller-manager) for the session.

    Tests share it: each registers Nodes and namespaces under names of its own.
    """
    base = Path(tempfile.mkdtemp(prefix="np-k8s-", dir="/tmp"))
    try:
        with running_cluster(base) as cluster:
            version = cluster.must("GET", "/version")
            pytestconfig.stash[SERVED_VERSION] = (
                f"{version['gitVersion']} ({version['goVersion']}, {version['platform']})")
            yield cluster
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def test_kubelet(kube_cluster: KubeCluster) -> Iterator[TestKubelet]:
    """Plays kubelet for the Nodes tests register (Ready nodes, Running pods, finished deletes)."""
    kubelet = TestKubelet(kube_cluster).start()
    try:
        yield kubelet
    finally:
        kubelet.stop()


@pytest.fixture(scope="session")
def release(kube_cluster: KubeCluster) -> Iterator[Release]:
    """`helm install` of the chart with default values, into namespace `nodeprobe`."""
    installed = install(kube_cluster)
    try:
        yield installed
    finally:
        helm(kube_cluster, "uninstall", installed.name, "-n", installed.namespace)


@pytest.fixture
def agent_on_node(kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release,
                  tmp_path: Path) -> Iterator[AgentNode]:
    """A fresh Node with the release's agent pod, and the agent's token bound to that pod."""
    with agent_node(kube_cluster, test_kubelet, release, tmp_path) as node:
        yield node
