"""The chart installed with real helm into the real control plane, as a user would on Friday."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "nodeprobe"


def helm(cluster: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("helm")), "--kubeconfig", str(cluster.admin_kubeconfig), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


def kubectl(cluster: KubeCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("kubectl")), "--kubeconfig", str(cluster.admin_kubeconfig), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


@dataclass(frozen=True)
class Release:
    """One `helm install` of the chart: where it lives and the identities it created."""

    cluster: KubeCluster
    name: str
    namespace: str

    def objects(self, kind: str) -> list[dict[str, Any]]:
        out = kubectl(self.cluster, "-n", self.namespace, "get", kind, "-o", "json",
                      "-l", f"app.kubernetes.io/instance={self.name}")
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["items"])

    def service_account(self, component: str) -> str:
        for sa in self.objects("serviceaccounts"):
            if sa["metadata"]["labels"].get("app.kubernetes.io/component") == component:
                return str(sa["metadata"]["name"])
        raise AssertionError(f"the release has no {component} ServiceAccount")

    def agent_pod(self, node: str) -> str:
        """The name of the agent DaemonSet's pod on `node` (made by the real controller)."""
        out = kubectl(self.cluster, "-n", self.namespace, "get", "pods", "-o", "json",
                      "-l", f"app.kubernetes.io/instance={self.name},"
                            "app.kubernetes.io/component=agent",
                      "--field-selector", f"spec.nodeName={node}")
        assert out.returncode == 0, out.stderr
        items = json.loads(out.stdout)["items"]
        return str(items[0]["metadata"]["name"]) if items else ""

    def username(self, component: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account(component)}"


def install(cluster: KubeCluster, *, name: str = "nodeprobe", namespace: str = "nodeprobe",
            values: list[str] | None = None) -> Release:
    args = ["install", name, str(CHART), "-n", namespace, "--create-namespace"]
    for value in values or []:
        args += ["--set", value]
    done = helm(cluster, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return Release(cluster, name, namespace)
