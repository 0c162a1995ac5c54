"""Fixtures of the chart's tests against the real control plane (tests/conftest.py starts it)."""

from __future__ import annotations

import pytest

from tests.deploy import monitoring_crds
from tests.deploy.kubectl import CRDS, Kubectl
from tests.harness.kubecluster import KubeCluster
from tools import helm as h


@pytest.fixture(scope="session")
def kubectl(kube_cluster: KubeCluster) -> Kubectl:
    return Kubectl(kube_cluster.admin_kubeconfig)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    """The chart's CRDs and prometheus-operator's, established (dry-run needs the kinds)."""
    files = [*sorted((h.CHART / "crds").glob("*.yaml")), *monitoring_crds.crd_files()]
    for f in files:
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(f))
    names = [*CRDS, *(f"{k}.monitoring.coreos.com" for k in monitoring_crds.KINDS)]
    kubectl.run("wait", "--for", "condition=Established", "--timeout", "120s",
                *[f"crd/{n}" for n in names])
