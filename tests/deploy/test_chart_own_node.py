"""agent.ownNodeOnly on the real control plane: the token of the DaemonSet's agent pod on one node
patches that node's status (and its NodeRemediation's), and gets 403 from the admission policy on
another node's; a token bound to no pod writes none.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.deploy.kubectl import Kubectl, wait
from tests.harness.chart import Release, install
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.integration.operator.guard import ADMIN, admitted

pytestmark = pytest.mark.timeout(600)


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    claims: dict[str, Any] = json.loads(raw)
    return claims



OWN = "np-own"
"""Release and namespace of the install whose agent identity is tested."""
AGENT_POLICY = f"{OWN}-nodeprobe-agent-own-node"
NOT_OWN = "may write only its own node"


def _condition_patch() -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"conditions": [{
        "type": "ContainerRuntimeUnavailable", "status": "False", "reason": "NodeprobeTest",
        "message": "written by the agent's token", "lastHeartbeatTime": now,
        "lastTransitionTime": now}]}}


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


class TokenClient:
    """PATCH requests with only a bearer token, as the agent sends them (kubectl patch would
    GET the object first, which the agent's role does not allow and the agent never does)."""

    def __init__(self, cluster: KubeCluster, token: str) -> None:
        self.server = cluster.server
        self.token = token
        self.ssl = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))

    def patch(self, path: str, body: dict[str, Any], content_type: str) -> Reply:
        req = urllib.request.Request(
            self.server + path, data=json.dumps(body).encode(), method="PATCH",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                return Reply(resp.status, resp.read().decode())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read().decode())

    def node_status(self, node: str) -> Reply:
        return self.patch(f"/api/v1/nodes/{node}/status", _condition_patch(),
                          "application/strategic-merge-patch+json")

    def remediation_status(self, name: str) -> Reply:
        return self.patch(f"/apis/nodeprobe.io/v1alpha1/noderemediations/{name}/status",
                          {"status": {"agent": {"note": "from the agent"}}},
                          "application/merge-patch+json")


def _denied_by_policy(reply: Reply) -> bool:
    return reply.status == 403 and AGENT_POLICY in reply.body


@dataclass(frozen=True)
class Nodes:
    mine: str
    """Where the agent pod whose token is used runs."""
    other: str
    canary: str
    """A node the agent's token writes to until the policy denies it, so writes that land before
    the policy is enforced never land on `other`."""
    bound: TokenClient
    """The agent's token bound to the DaemonSet's pod on `mine` (so it names `mine`)."""
    unbound: TokenClient
    """The agent's token bound to nothing."""


@pytest.fixture(scope="module")
def release(kube_cluster: KubeCluster, kubectl: Kubectl) -> Iterator[Release]:
    """`helm install` under names of its own, in repair mode: the own-node policy is the same
    as by default, and only there may the agent write NodeRemediations (their status) too."""
    installed = install(kube_cluster, name=OWN, namespace=OWN,
                        values=["agent.repair.enabled=true"])
    try:
        # The admin opens NodeRemediations where the operator would: every NodeRemediation
        # guard (this install's, and the session's if there) admits it for this module.
        with admitted(kube_cluster, operators=(ADMIN,),
                      agents=(installed.username("agent"),)):
            yield installed
    finally:
        kubectl.helm("uninstall", OWN, "-n", OWN, "--wait", check=False)


@pytest.fixture
def agent_nodes(kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release
                ) -> Iterator[Nodes]:
    """Three Nodes, the install's agent pod on the first (made by the DaemonSet controller),
    that pod's token, and a NodeRemediation for each of the first two."""
    tag = uuid.uuid4().hex[:6]
    mine, other, canary = (f"own-{tag}-{n}" for n in ("mine", "other", "canary"))
    for node in (mine, other, canary):
        test_kubelet.register(node)
    sa = release.service_account("agent")
    try:
        pod = wait(lambda: release.agent_pod(mine), what=f"the agent pod on {mine}")
        for node in (mine, other):
            kube_cluster.must("POST", "/apis/nodeprobe.io/v1alpha1/noderemediations", {
                "apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
                "metadata": {"name": node, "labels": {"nodeprobe.io/node": node}},
                "spec": {"nodeName": node, "policy": "test"}})
        yield Nodes(
            mine=mine, other=other, canary=canary,
            bound=TokenClient(kube_cluster, kube_cluster.token(release.namespace, sa, pod=pod)),
            unbound=TokenClient(kube_cluster, kube_cluster.token(release.namespace, sa)))
    finally:
        for node in (mine, other):
            kube_cluster.request("DELETE", f"/apis/nodeprobe.io/v1alpha1/noderemediations/{node}")
        for node in (mine, other, canary):
            kube_cluster.request("DELETE", f"/api/v1/nodes/{node}")


def _enforced(nodes: Nodes) -> None:
    """A new policy is enforced once the API server has compiled it: wait for a denial."""
    wait(lambda: _denied_by_policy(nodes.bound.node_status(nodes.canary)),
          what="the own-node policy to be enforced")


def test_agent_token_patches_its_own_node_status_and_gets_403_on_another(
    kube_cluster: KubeCluster, kubectl: Kubectl, release: Release, agent_nodes: Nodes
) -> None:
    nodes = agent_nodes
    claims = token_claims(nodes.bound.token)
    assert claims["kubernetes.io"]["node"]["name"] == nodes.mine, claims
    # RBAC alone lets the agent write every node's status: the 403 below is the policy's.
    can = kubectl.run("auth", "can-i", "patch", "nodes", "--subresource=status", "--as",
                      release.username("agent"), check=False)
    assert can.stdout.strip() == "yes", can.stdout + can.stderr
    _enforced(nodes)

    denied = nodes.bound.node_status(nodes.other)
    assert _denied_by_policy(denied), denied.body
    assert f"nodeprobe agent on node {nodes.mine} {NOT_OWN}, not {nodes.other}" in denied.body
    own = nodes.bound.node_status(nodes.mine)
    assert own.status == 200, own.body

    def unavailable(node: str) -> list[dict[str, Any]]:
        obj = kube_cluster.must("GET", f"/api/v1/nodes/{node}")
        return [c for c in obj["status"].get("conditions") or []
                if c["type"] == "ContainerRuntimeUnavailable"]

    assert [c["reason"] for c in unavailable(nodes.mine)] == ["NodeprobeTest"]
    assert unavailable(nodes.other) == []

    # The same for the NodeRemediations the agent reports on.
    mine = nodes.bound.remediation_status(nodes.mine)
    assert mine.status == 200, mine.body
    theirs = nodes.bound.remediation_status(nodes.other)
    assert _denied_by_policy(theirs), theirs.body

    # A token bound to no pod names no node: it writes none.
    unbound = nodes.unbound.node_status(nodes.mine)
    assert _denied_by_policy(unbound), unbound.body
    assert "not bound to a pod on a node" in unbound.body


def test_other_identities_are_not_held_by_the_policy(
    kube_cluster: KubeCluster, agent_nodes: Nodes
) -> None:
    """The policy matches the agent's ServiceAccount only: the admin still writes any node."""
    _enforced(agent_nodes)
    kube_cluster.must("PATCH", f"/api/v1/nodes/{agent_nodes.other}/status", _condition_patch(),
                      content_type="application/strategic-merge-patch+json")
    obj = kube_cluster.must("GET", f"/api/v1/nodes/{agent_nodes.other}")
    assert "NodeprobeTest" in json.dumps(obj["status"])
