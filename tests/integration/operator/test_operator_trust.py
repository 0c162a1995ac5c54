"""Only the operator starts a repair (issue 18): the chart's admission guard and CRD rules on the
real API server, and the operator's own refusal of a NodeRemediation it did not open.

Identities are real ServiceAccount tokens; requests go through real kubectl; what was refused is
read from the API server's audit log.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness.agent_process import gauge
from tests.harness.gotools import tool
from tests.integration.operator.cluster import API, MERGE, Fleet, wait_for
from tests.integration.operator.conftest import OperatorFactory

ATTACK_PLAN = {"triggers": [{"type": "ContainerRuntimeUnavailable"}],
               "ladder": [{"action": "reboot"}],
               "drain": {"timeout": "1s", "actionOnTimeout": True}}
"""The plan of the three-node attack in issue 18: reboot at once, whatever the drain says."""


class Identity:
    """kubectl with a token of one ServiceAccount only."""

    def __init__(self, fleet: Fleet, namespace: str, account: str) -> None:
        self.fleet = fleet
        self.username = f"system:serviceaccount:{namespace}:{account}"
        self.kubeconfig = fleet.cluster.token_kubeconfig(
            fleet.tmp / f"{account}.kubeconfig", namespace, account)

    def create(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tool("kubectl")), "--kubeconfig", str(self.kubeconfig), "create", "-f", "-",
             "-o", "json"], input=json.dumps(obj), capture_output=True, text=True, timeout=60,
            check=False)

    def codes(self, verb: str) -> list[int]:
        """HTTP status of each `verb` on noderemediations this identity made (audit log)."""
        return [int(e["responseStatus"]["code"])
                for e in self.fleet.cluster.audit(self.username)
                if e["verb"] == verb and (e.get("objectRef") or {}).get("resource")
                == "noderemediations"]


@pytest.fixture
def intruder(fleet: Fleet) -> Iterator[Identity]:
    """A CI/GitOps-like identity with full RBAC on NodeRemediations (and their status)."""
    ns = fleet.ns("ci")
    name = f"np-ci-{fleet.id}"
    c = fleet.cluster
    c.must("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "ci"}})
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    c.must("POST", f"{rbac}/clusterroles", {"metadata": {"name": name}, "rules": [
        {"apiGroups": ["nodeprobe.io"], "resources": ["noderemediations",
                                                      "noderemediations/status"],
         "verbs": ["*"]}]})
    c.must("POST", f"{rbac}/clusterrolebindings", {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": ns}]})
    try:
        yield Identity(fleet, ns, "ci")
    finally:
        c.request("DELETE", f"{rbac}/clusterrolebindings/{name}")
        c.request("DELETE", f"{rbac}/clusterroles/{name}")


def remediation(fleet: Fleet, short: str) -> dict[str, Any]:
    node = fleet.node(short)
    return {"apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
            "metadata": {"name": f"{node}-1", "labels": {"nodeprobe.io/node": node}},
            "spec": {"nodeName": node, "policy": fleet.policy(), "plan": ATTACK_PLAN}}


def attack_targets(fleet: Fleet) -> list[str]:
    """Three healthy excluded nodes, each with a pod under a PDB that allows no disruption."""
    shorts = ["a", "b", "c"]
    for short in shorts:
        fleet.add_node(short)
        fleet.cluster.must("PATCH", f"/api/v1/nodes/{fleet.node(short)}",
                           {"metadata": {"labels": {"nodeprobe.io/exclude": "true"}}}, MERGE)
        fleet.add_pod(short, "web", f"web-{short}", labels={"app": "web"})
    fleet.add_pdb("web", "web")
    fleet.add_policy()
    return shorts


def test_another_identity_cannot_open_a_noderemediation(
        fleet: Fleet, operators: OperatorFactory, intruder: Identity) -> None:
    shorts = attack_targets(fleet)
    op = operators()
    for short in shorts:
        done = intruder.create(remediation(fleet, short))
        assert done.returncode != 0 and "Forbidden" in done.stderr, done.stdout + done.stderr
        assert "only the nodeprobe operator" in done.stderr
    assert intruder.codes("create") == [403, 403, 403]
    wait_for(lambda: "admission guard on NodeRemediations in place" in op.text(), timeout_s=60,
             what=lambda: f"the operator to see its guard\n{op.text()}")
    assert fleet.remediations() == []
    assert fleet.cordoned() == set()


def test_the_three_node_attack_with_the_operators_own_token_cordons_and_evicts_nothing(
        fleet: Fleet, operators: OperatorFactory) -> None:
    """Even a create that passes admission (the operator's own token, stolen) runs no plan:
    the operator refuses what it did not open, in the NodeRemediation's status."""
    shorts = attack_targets(fleet)
    own = Identity(fleet, fleet.release.namespace,
                   fleet.release.service_account("operator"))
    op = operators()
    for short in shorts:
        done = own.create(remediation(fleet, short))
        assert done.returncode == 0, done.stderr
    wait_for(lambda: sorted(fleet.phases().values()) == ["Failed"] * 3, timeout_s=60,
             what=lambda: f"the three to be refused\n{op.text()}")
    for nr in fleet.remediations():
        assert "not opened by the nodeprobe operator" in nr["status"]["message"]
    assert fleet.cordoned() == set()
    assert fleet.node_writes() == 0
    assert fleet.operator_calls(resource="pods/eviction") == []
    assert all(fleet.pod_phase("web", f"web-{s}") == "Running" for s in shorts)


def test_a_finished_noderemediation_stays_finished_and_its_spec_never_changes(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_policy()
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "Succeeded"}, timeout_s=90,
             what=lambda: f"a remediation\n{op.text()}", every=fleet.fake_agent)
    [nr] = fleet.remediations()
    path = f"{API}/noderemediations/{nr['metadata']['name']}"
    # Even the cluster admin: re-opened as the reboot request of issue 18, or re-planned.
    status, reply = fleet.cluster.request("PATCH", f"{path}/status", {"status": {
        "phase": "ActionRequested", "action": "reboot", "agent": None}}, MERGE)
    assert status in (403, 422) and "final phase" in reply["message"], reply
    status, reply = fleet.cluster.request("PATCH", f"{path}/status", {"status": None}, MERGE)
    assert status in (403, 422), reply  # no way round: removing the status first
    status, reply = fleet.cluster.request(
        "PATCH", path, {"spec": {"plan": ATTACK_PLAN}}, MERGE)
    assert status in (403, 422) and "immutable" in reply["message"], reply


BINDINGS = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"


@pytest.fixture
def guard_unbound(fleet: Fleet) -> Iterator[None]:
    """The release's NodeRemediation guard unbound (as on a cluster without it), put back
    afterwards."""
    name = f"{fleet.release.name}-noderemediations"
    saved = fleet.cluster.must("GET", f"{BINDINGS}/{name}")
    fleet.cluster.must("DELETE", f"{BINDINGS}/{name}")
    # The API server drops a deleted binding from its admission cache a moment later; an
    # operator started before that finds the guard and asks again only after a minute.
    wait_for(lambda: not fleet.guard_enforced(), timeout_s=30,
             what=f"the API server to stop enforcing {name}")
    try:
        yield
    finally:
        meta = {k: v for k, v in saved["metadata"].items()
                if k in ("name", "labels", "annotations")}
        fleet.cluster.must("POST", BINDINGS, {"apiVersion": saved["apiVersion"],
                                              "kind": saved["kind"], "metadata": meta,
                                              "spec": saved["spec"]})
        wait_for(fleet.guard_enforced, timeout_s=30,
                 what=f"the API server to enforce {name} again")


def test_without_the_guard_the_operator_acts_on_nothing_and_says_so(
        fleet: Fleet, operators: OperatorFactory, guard_unbound: None) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_policy()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    op = operators(metrics_port=port)
    wait_for(lambda: "the operator acts on nothing until it is" in op.text(), timeout_s=60,
             what=lambda: f"the operator to say why it does nothing\n{op.text()}")
    assert gauge(port, "nodeprobe_operator_admission_guard") == 0
    assert fleet.remediations() == [] and fleet.node_writes() == 0
