"""Fixtures of the operator tests on the real control plane: a Fleet of the test's own Nodes,
and operator processes with the chart's operator identity, all removed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.chart import Release
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.integration.operator.cluster import API, Fleet, Operator, wait_for

OperatorFactory = Callable[..., Operator]


@pytest.fixture
def fleet(kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release,
          tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(kube_cluster, test_kubelet, release, tmp_path)
    for plural in ("noderemediations", "remediationpolicies"):  # the CRDs' storage is ready
        wait_for(lambda p=plural: kube_cluster.request("GET", f"{API}/{p}")[0] == 200,  # type: ignore[misc]
                 timeout_s=60, what=f"the API server to serve {plural}")
    wait_for(made.guard_enforced, timeout_s=60,
             what="the API server to enforce the release's NodeRemediation guard")
    try:
        yield made
    finally:
        made.delete()


@pytest.fixture
def operators(fleet: Fleet) -> Iterator[OperatorFactory]:
    started: list[Operator] = []

    def start(**kw: object) -> Operator:
        op = Operator(fleet, name=f"op{len(started)}", **kw)  # type: ignore[arg-type]
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()
