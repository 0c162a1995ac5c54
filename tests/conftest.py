"""Shared fixtures: one real containerd + dockerd per test session and containerd version,
healed after every test.

The probe and agent integration tests run against every containerd in `CONTAINERDS` (Debian's
1.6 and 2.x from the Go module proxy); `--containerd 1.6` narrows the run, and a test marked
`@pytest.mark.containerd("1.6")` runs against the named ones only. Every other test that
uses the runtimes runs against 1.6. Each test records the versions it ran against in its
`user_properties` (JUnit XML: <property>), and the summary counts tests per version.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import gotools, image, ordering
from tests.harness.chart import Release, helm, install
from tests.harness.gotools import kube_versions
from tests.harness.kubecluster import KubeCluster, TestKubelet, running_cluster
from tests.harness.runtimes import (
    CONTAINERD_2,
    CONTAINERD_16,
    CONTAINERDS,
    HarnessError,
    Sandbox,
    containerd_build,
    which,
)
from tests.integration.kube.nodes import AgentNode, agent_node

MATRIX_DIRS = ("tests/integration/probes", "tests/integration/agent")
"""Tests under these directories run against every containerd."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--containerd", action="append", choices=CONTAINERDS, default=None,
        help="containerd(s) the probe and agent integration tests run against "
             f"(repeatable; default: all of {', '.join(CONTAINERDS)})")


def _in_matrix(path: Path, rootdir: Path) -> bool:
    rel = path.resolve().relative_to(rootdir.resolve()).as_posix()
    return rel.startswith(MATRIX_DIRS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "containerd" not in metafunc.fixturenames:
        return
    labels = [CONTAINERD_16]
    if _in_matrix(metafunc.definition.path, metafunc.config.rootpath):
        labels = metafunc.config.getoption("containerd") or list(CONTAINERDS)
        only = metafunc.definition.get_closest_marker("containerd")
        if only is not None:
            labels = [label for label in labels if label in only.args]
    metafunc.parametrize("containerd", labels, indirect=True, scope="session",
                         ids=[f"containerd-{label}" for label in labels])


def _runtime_versions(label: str, *, wait: bool = True) -> tuple[tuple[str, str], ...]:
    """The versions a sandbox with containerd `label` runs (for reports)."""
    try:
        containerd = containerd_build(label, wait=wait).version()
    except (HarnessError, OSError, subprocess.SubprocessError) as e:
        containerd = f"unavailable ({e})"
    docker = subprocess.run([which("dockerd"), "--version"], capture_output=True, text=True,
                            timeout=30).stdout.split()
    runc = subprocess.run([which("runc"), "--version"], capture_output=True, text=True,
                          timeout=30).stdout.split()
    return (("containerd", containerd),
            ("dockerd", docker[2].rstrip(",") if len(docker) > 2 else "?"),
            ("runc", runc[2] if len(runc) > 2 else "?"))


_versions = functools.cache(_runtime_versions)
"""Per test: waits for a containerd that tools/go/build is still making."""


def pytest_report_header(config: pytest.Config) -> list[str]:
    labels = config.getoption("containerd") or list(CONTAINERDS)
    return [kube_versions()] + [
        f"runtimes [{label}]: "
        + ", ".join(f"{k} {v}" for k, v in _runtime_versions(label, wait=False))
        for label in labels]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need no Go tool first, so `make test` builds the tools meanwhile (after
    pytest's own order, which keeps each session sandbox's tests together; see
    tests/harness/ordering.py)."""
    def key(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        label = callspec.params.get("containerd") if callspec is not None else None
        module = getattr(item, "module", None)
        return ordering.stage(ordering.needs_of(getattr(item, "fixturenames", ()), label,
                                                module), CONTAINERD_2)
    items.sort(key=key)

SERVED_VERSION = pytest.StashKey[str]()
"""kube-apiserver's /version gitVersion, once the session's control plane has started."""


@pytest.fixture(scope="session")
def containerd(request: pytest.FixtureRequest) -> str:
    """The containerd this test runs against (a label of CONTAINERDS)."""
    return str(getattr(request, "param", CONTAINERD_16))


@pytest.fixture(autouse=True)
def _record_runtime_versions(request: pytest.FixtureRequest) -> None:
    if "containerd" in request.fixturenames:
        label = request.getfixturevalue("containerd")
        request.node.user_properties.extend(_versions(label))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    served = config.stash.get(SERVED_VERSION, None)
    if served is not None:
        terminalreporter.write_line(f"kube-apiserver /version: {served}")
    for target, seconds in sorted(gotools.WAITED.items()):
        if seconds >= 1:
            terminalreporter.write_line(f"waited {seconds:.0f} s for tools/go/build {target}")
    counts: Counter[str] = Counter()
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            props = dict(getattr(report, "user_properties", ()))
            if "containerd" in props:
                counts[f"containerd {props['containerd']} + dockerd {props['dockerd']} "
                       f"+ runc {props['runc']}: {report.outcome}"] += 1
    if counts:
        terminalreporter.section("runtime versions per test")
        for line, n in sorted(counts.items()):
            terminalreporter.write_line(f"{n:4d} {line}")


@pytest.fixture(scope="session")
def _session_sandbox(containerd: str) -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="np-", dir="/tmp"))
    sandbox = Sandbox(base, containerd=containerd)
    try:
        sandbox.start()
        sandbox.import_busybox()
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def project_image(_session_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[Any, float]]:
    """The project's Dockerfile built once per session in the sandbox dockerd (offline, on a
    debootstrapped base): a docker.APIClient for that dockerd and the build's seconds."""
    import docker  # the SDK, for the harness only

    client = docker.APIClient(base_url=f"unix://{_session_sandbox.dockerd.socket}",
                              version="auto", timeout=600)
    try:
        started = time.monotonic()
        try:
            image.build(client, tmp_path_factory.mktemp("image"))
        except image.ImageBuildError as e:
            pytest.fail(str(e))
        yield client, time.monotonic() - started
    finally:
        client.close()


@pytest.fixture
def runtimes(_session_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session's real runtimes; whatever the test did (hang, crash), they are healed after."""
    _session_sandbox.heal()
    yield _session_sandbox
    _session_sandbox.heal()


@pytest.fixture
def own_runtimes(containerd: str) -> Iterator[Sandbox]:
    """A private pair of runtimes for tests that must not share (restarts, leaks, soaks)."""
    base = Path(tempfile.mkdtemp(prefix="np-", dir="/tmp"))
    sandbox = Sandbox(base, containerd=containerd)
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
    """`helm install` of the chart into namespace `nodeprobe`, defaults but `agent.repair`: the
    agent identity then has everything it can have (NodeRemediations too), so every agent test
    runs with the chart's RBAC and admission policy as a repairing node has them."""
    installed = install(kube_cluster, values=["agent.repair.enabled=true"])
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
