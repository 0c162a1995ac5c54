"""The chart's NodeRemediation guard when a test runs more than one install in one cluster.

Each install's ValidatingAdmissionPolicy `<release>-noderemediations` admits only its own
operator (and agent): with two installs, each guard refuses the other's operator, as it should
in a real cluster (one nodeprobe per cluster; see docs/remediation.md). A test that runs a second
install, or writes as the cluster admin where the operator would, admits those identities in
every guard for its duration, as an administrator would edit the policy, and puts it back.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster
from tests.integration.operator.cluster import wait_for

POLICIES = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
ADMIN = "nodeprobe-test-admin"
"""The harness's cluster-admin user (its client certificate's CN)."""


def _guards(cluster: KubeCluster) -> list[dict[str, Any]]:
    return [p for p in cluster.must("GET", f"{POLICIES}?labelSelector="
                                          "app.kubernetes.io%2Fcomponent%3Dguard")["items"]]


def _widened(policy: dict[str, Any], operators: tuple[str, ...], agents: tuple[str, ...]
             ) -> list[dict[str, Any]]:
    out = []
    for var in policy["spec"]["variables"]:
        extra = operators if var["name"] == "operator" else agents if var["name"] == "agent" \
            else ()
        expr = var["expression"]
        for user in extra:
            expr = f"({expr}) || request.userInfo.username == {json.dumps(user)}"
        out.append({**var, "expression": expr})
    return out


def admits_as_operator(cluster: KubeCluster, user: str) -> bool:
    """A server-side dry-run create as `user` passes every guard (policies are compiled anew
    a moment after an update)."""
    body = {"apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
            "metadata": {"name": "guard-check"}, "spec": {"nodeName": "x", "policy": "x"}}
    args = ["create", "--dry-run=server", "-f", "-", "-o", "name"]
    if user != ADMIN:
        args = [f"--as={user}", *args]
    done = subprocess.run(
        [str(tool("kubectl")), "--kubeconfig", str(cluster.admin_kubeconfig), *args],
        input=json.dumps(body), capture_output=True, text=True, timeout=60, check=False)
    return done.returncode == 0


@contextlib.contextmanager
def admitted(cluster: KubeCluster, *, operators: tuple[str, ...] = (),
             agents: tuple[str, ...] = ()) -> Iterator[None]:
    """Every guard in the cluster also admits `operators` as operators, `agents` as agents."""
    saved = {p["metadata"]["name"]: p["spec"]["variables"] for p in _guards(cluster)}
    for policy in _guards(cluster):
        cluster.must("PATCH", f"{POLICIES}/{policy['metadata']['name']}",
                     {"spec": {"variables": _widened(policy, operators, agents)}},
                     "application/merge-patch+json")
    try:
        for user in operators:
            wait_for(lambda u=user: admits_as_operator(cluster, u),  # type: ignore[misc]
                     timeout_s=30, what=f"every guard to admit {user}")
        yield
    finally:
        for name, variables in saved.items():
            cluster.request("PATCH", f"{POLICIES}/{name}", {"spec": {"variables": variables}},
                            "application/merge-patch+json")
