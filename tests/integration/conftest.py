"""Fixtures of the integration tests that meet the real control plane (`release` and
`agent_on_node` are in tests/conftest.py: tests/deploy uses them too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.chart import CHART, kubectl
from tests.harness.kubecluster import KubeCluster


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
