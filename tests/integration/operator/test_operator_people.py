"""The cases a burned platform team tries (issue 19), on the real API server: a refused cordon
write, a person's cordon and uncordon during an episode, a person's release of an escalation,
a node whose agent is known to be dead. People act through real kubectl (its own field
manager), so the Node's managedFields are the ones the API server records for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.harness.chart import kubectl
from tests.integration.operator.cluster import (
    MERGE,
    SMP,
    UNHEALTHY,
    Fleet,
    wait_for,
)
from tests.integration.operator.conftest import OperatorFactory

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
ANNOTATION = "nodeprobe.io/cordoned-by"
SENTINEL = "example.com/freeze-check"
"""A label whose change the freeze also refuses: how the test knows the policy is enforced."""


def person(fleet: Fleet, *args: str) -> None:
    done = kubectl(fleet.cluster, *args)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def cordon_refused_once(fleet: Fleet) -> Iterator[str]:
    """An admission policy that refuses the operator's cordon of node `a` until removed."""
    name = f"deny-cordon-{fleet.id}"
    user = fleet.release.username("operator")
    fleet.cluster.must("POST", f"{ADMISSION}/validatingadmissionpolicies", {
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
             "resources": ["nodes"]}]},
            "validations": [{"expression": (
                f"!(request.userInfo.username == '{user}' && request.name == "
                f"'{fleet.node('a')}' && has(object.spec.unschedulable) && "
                "object.spec.unschedulable) && !(has(object.metadata.labels) && "
                f"'{SENTINEL}' in object.metadata.labels)"),
                "message": "change freeze: no cordons now"}]}})
    fleet.cluster.must("POST", f"{ADMISSION}/validatingadmissionpolicybindings", {
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]}})
    try:
        yield name
    finally:
        for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            fleet.cluster.request("DELETE", f"{ADMISSION}/{kind}/{name}")


def _refusing(fleet: Fleet) -> bool:
    """The API server enforces the freeze: a dry-run change of node a carrying the sentinel
    label is refused (its admission cache picks a new policy up a moment after the create)."""
    status, reply = fleet.cluster.request(
        "PATCH", f"/api/v1/nodes/{fleet.node('a')}?dryRun=All",
        {"metadata": {"labels": {SENTINEL: "x"}}}, MERGE)
    return status >= 400 and "change freeze" in str(reply)


def test_a_refused_cordon_write_is_retried_and_the_episode_goes_on(
        fleet: Fleet, operators: OperatorFactory, cordon_refused_once: str) -> None:
    fleet.add_node("a", sick=True)
    wait_for(lambda: _refusing(fleet), timeout_s=30, what="the API server to enforce the freeze")
    fleet.add_policy()
    op = operators()
    wait_for(lambda: any(e["responseStatus"]["code"] >= 400 for e in fleet.operator_calls(
        verbs=frozenset({"patch"}), resource="nodes")), timeout_s=60,
        what=lambda: f"the operator's cordon to be refused\n{op.text()}")
    assert fleet.phases() == {"a": "Pending"}  # the status does not claim a cordon it lacks
    for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
        fleet.cluster.must("DELETE", f"{ADMISSION}/{kind}/{cordon_refused_once}")
    wait_for(lambda: fleet.phases() == {"a": "Succeeded"}, timeout_s=90,
             what=lambda: f"the episode to go on and succeed\n{op.text()}", every=fleet.fake_agent)
    assert fleet.cordoned() == set()
    [nr] = fleet.remediations()
    assert not any("uncordoned" in m for m in nr["status"]["messages"])


def test_a_persons_cordon_during_an_episode_stays_after_it(
        fleet: Fleet, operators: OperatorFactory) -> None:
    node = fleet.add_node("a", sick=True)
    fleet.add_pod("a", "db", "db-0", labels={"app": "db"})
    fleet.add_pdb("db", "db")  # the drain waits here, long enough for a person to act
    fleet.add_policy(drain={"timeout": "300s"})
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "Draining"}, timeout_s=60,
             what=lambda: f"the drain to start\n{op.text()}")
    assert fleet.get_node("a")["metadata"]["annotations"][ANNOTATION]
    person(fleet, "uncordon", node)  # and at once cordon again, their own way
    person(fleet, "cordon", node)
    fleet.delete_pdb("db", "db")
    wait_for(lambda: fleet.phases().get("a") in ("Succeeded", "Failed"), timeout_s=120,
             what=lambda: f"the episode to end\n{op.text()}", every=fleet.fake_agent)
    assert fleet.cordoned() == {"a"}, "the person's cordon was undone"
    assert ANNOTATION not in (fleet.get_node("a")["metadata"].get("annotations") or {})


def test_a_persons_release_of_an_escalation_holds_while_the_condition_stays(
        fleet: Fleet, operators: OperatorFactory) -> None:
    node = fleet.add_node("a", sick=True)
    fleet.add_policy(ladder=[{"action": "escalate"}])
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "Escalated"}, timeout_s=60,
             what=lambda: f"the escalation\n{op.text()}")
    wait_for(lambda: (fleet.policy_status().get("waiting") or {}).get(node, "")
             .startswith("escalated"), timeout_s=30,
             what=lambda: f"the escalated node named in the policy status\n{op.text()}")
    person(fleet, "uncordon", node)  # "fixed", says a person; the condition is still True
    wait_for(lambda: "released escalated episode" in
             (fleet.policy_status().get("waiting") or {}).get(node, ""), timeout_s=60,
             what=lambda: f"the release to be seen and held\n{op.text()}")
    assert len(fleet.remediations()) == 1
    assert fleet.cordoned() == set()


def _silent_since(minutes: int) -> dict[str, object]:
    at = (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": UNHEALTHY, "status": "True", "lastTransitionTime": at,
            "lastHeartbeatTime": at, "reason": "DockerdHung", "message": "dockerd hung"}


def test_a_node_whose_agent_is_silent_is_never_cordoned_or_drained(
        fleet: Fleet, operators: OperatorFactory) -> None:
    node = fleet.add_node("a")
    fleet.add_pod("a", "web", "web-0")
    fleet.cluster.must("PATCH", f"/api/v1/nodes/{node}/status",
                       {"status": {"conditions": [_silent_since(20)]}}, SMP)
    fleet.add_policy(agentSilence="11m")
    op = operators()
    wait_for(lambda: "agent has not reported" in
             (fleet.policy_status().get("waiting") or {}).get(node, ""), timeout_s=60,
             what=lambda: f"the policy to say why the node waits\n{op.text()}")
    assert fleet.remediations() == []
    assert fleet.node_writes() == 0
    assert fleet.operator_calls(resource="pods/eviction") == []


def test_terminating_skip_counts_from_the_eviction(
        fleet: Fleet, operators: OperatorFactory) -> None:
    """A hung runtime cannot stop the evicted pod (the test kubelet holds it Terminating). The
    server sets its deletionTimestamp to eviction + 30 s grace; a 3 s skip must count from the
    eviction (issue 19: it used to count from deletionTimestamp, 33 s)."""
    node = fleet.add_node("a", sick=True)
    fleet.add_pod("a", "web", "web-0")
    fleet.kubelet.hold(node)
    try:
        fleet.add_policy(drain={"timeout": "120s", "gracePeriodSeconds": 30,
                                "terminatingSkip": "3s", "actionOnTimeout": False})
        op = operators()
        wait_for(lambda: fleet.operator_calls(verbs=frozenset({"create"}),
                                              resource="pods/eviction"), timeout_s=60,
                 what=lambda: f"the eviction\n{op.text()}")
        wait_for(lambda: fleet.phases() == {"a": "ActionRequested"}, timeout_s=20,
                 what=lambda: f"the stuck pod to stop counting 3 s after its eviction\n{op.text()}")
        assert fleet.pod_phase("web", "web-0") is not None  # still there, Terminating
    finally:
        fleet.kubelet.release(node)
