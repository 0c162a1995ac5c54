"""The operator as it runs: kopf in its own process against the team's Kubernetes API double.

Covers issue 4's "must be true" list that needs the real operator process: the gates over a run,
dry-run write counts, PDB-blocked drains, SIGKILL mid-drain, two replicas, reboot by bootID,
invalid policies. The node agents are simulated here (fake_agent); the real agent executor with
a real dockerd is in test_operator_e2e.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.operator.cluster import (
    GROUP,
    Operator,
    add_node,
    add_pod,
    add_policy,
    cluster,
    cordon_peak,
    cordoned,
    events,
    fake_agent,
    phases,
    policy_status,
    remediations,
    set_boot_id,
    set_sick,
    wait_for,
    writers,
)
from tests.kube.double import KubeDouble

OperatorFactory = Callable[..., Operator]


@pytest.fixture
def kube() -> Iterator[KubeDouble]:
    with cluster() as double:
        yield double


@pytest.fixture
def operators(kube: KubeDouble, tmp_path: Path) -> Iterator[OperatorFactory]:
    started: list[Operator] = []

    def start(**kw: object) -> Operator:
        op = Operator(kube, tmp_path, name=f"op{len(started)}", **kw)  # type: ignore[arg-type]
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def pdb(kube: KubeDouble, ns: str, app: str) -> None:
    kube.put_object({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": app, "namespace": ns},
                     "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}})


def test_max_concurrent_never_exceeded_with_ten_sick_nodes(
        kube: KubeDouble, operators: OperatorFactory) -> None:
    for i in range(10):
        add_node(kube, f"sick-{i}", sick=True)
        add_node(kube, f"ok-{i}")
    add_policy(kube, maxConcurrent=2)
    operators(max_concurrent=2)
    wait_for(lambda: sorted(phases(kube).values()) == ["Succeeded"] * 10, timeout_s=150,
             what="all ten remediations to succeed", every=lambda: fake_agent(kube))
    peak, ever = cordon_peak(kube)
    assert peak == 2, f"at some instant {peak} nodes were cordoned by nodeprobe"
    assert ever == {f"sick-{i}" for i in range(10)}
    assert cordoned(kube) == set()


def test_min_healthy_holds_and_says_why(kube: KubeDouble, operators: OperatorFactory) -> None:
    for i in range(5):
        add_node(kube, f"sick-{i}", sick=True)
        add_node(kube, f"ok-{i}")
    add_policy(kube, minHealthy="60%", maxConcurrent=5)
    operators()
    wait_for(lambda: any(e["reason"] == "RemediationBlocked"
                         and "below minHealthy 60%" in e["message"] for e in events(kube)),
             timeout_s=30, what="a RemediationBlocked event")
    assert "50% of 10 matched nodes are healthy" in policy_status(kube)["message"]
    assert remediations(kube) == []
    assert kube.writes(resource="nodes") == 0


def test_dry_run_writes_nothing_to_nodes_and_pods(kube: KubeDouble,
                                                  operators: OperatorFactory) -> None:
    for i in range(3):
        add_node(kube, f"sick-{i}", sick=True)
        add_pod(kube, f"sick-{i}", "web", f"web-{i}")
    add_policy(kube, dryRun=True, maxConcurrent=3)
    operators(max_concurrent=3)
    wait_for(lambda: len(policy_status(kube).get("dryRunPlan") or []) == 3, timeout_s=30,
             what="the dry-run plan in the policy status")
    wait_for(lambda: sum(e["reason"] == "DryRun" for e in events(kube)) == 3, timeout_s=10,
             what="three DryRun events")
    assert kube.writes(resource="nodes") == 0 and kube.writes(resource="pods") == 0
    assert remediations(kube) == []
    assert "would cordon sick-0, evict 1 pod(s)" in policy_status(kube)["dryRunPlan"][0]


def test_pdb_blocked_drain_retries_evictions_never_deletes(
        kube: KubeDouble, operators: OperatorFactory) -> None:
    add_node(kube, "a", sick=True)
    add_pod(kube, "a", "db", "db-0", labels={"app": "db"})
    add_pod(kube, "a", "kube-system", "proxy", daemonset=True)
    pdb(kube, "db", "db")
    add_policy(kube, drain={"timeout": "4s", "onTimeout": "fail", "actionOnTimeout": False})
    operators()
    wait_for(lambda: phases(kube) == {"a": "Failed"}, timeout_s=40, what="the drain to time out")
    attempts = kube.log(verb="create", resource="pods/eviction")
    # Retried (back-off 1 s, 2 s, ... within the 4 s timeout): at least a second attempt.
    assert len(attempts) >= 2 and {r.code for r in attempts} == {429}
    assert {r.name for r in attempts} == {"db-0"}  # the DaemonSet pod stays
    assert kube.writes(verb="delete", resource="pods") == 0
    assert "drain timed out" in remediations(kube)[0]["status"]["message"]
    assert cordoned(kube) == set()  # a failed episode gives our cordon back


def test_sigkilled_mid_drain_resumes_the_same_remediation(
        kube: KubeDouble, operators: OperatorFactory) -> None:
    add_node(kube, "a", sick=True)
    add_pod(kube, "a", "db", "db-0", labels={"app": "db"})
    pdb(kube, "db", "db")
    add_policy(kube, drain={"timeout": "120s"})
    first = operators()
    wait_for(lambda: phases(kube) == {"a": "Draining"}
             and kube.requests(verb="create", resource="pods/eviction") >= 1,
             timeout_s=30, what="the drain to start")
    first.kill()
    name = remediations(kube)[0]["metadata"]["name"]
    kube.delete_object("poddisruptionbudgets", "db", namespace="db", group="policy")
    operators()
    wait_for(lambda: phases(kube) == {"a": "Succeeded"}, timeout_s=60,
             what="the restarted operator to finish", every=lambda: fake_agent(kube))
    assert [nr["metadata"]["name"] for nr in remediations(kube)] == [name]  # no duplicate
    assert kube.evictions == [("db", "db-0", None)]
    assert cordoned(kube) == set()


def test_two_replicas_one_leads_by_lease_and_the_other_takes_over(
        kube: KubeDouble, operators: OperatorFactory) -> None:
    """A default install: two replicas, no extra CRD; a Lease elects the one that acts."""
    add_node(kube, "a")
    add_node(kube, "b")
    first = operators(standalone=False)
    wait_for(lambda: (kube.get("leases", "nodeprobe-operator", namespace="default",
                               group="coordination.k8s.io") or {}).get("spec", {})
             .get("holderIdentity"), timeout_s=30, what="a leader")
    second = operators(standalone=False)
    add_policy(kube, maxConcurrent=1)
    set_sick(kube, "a", True)
    wait_for(lambda: phases(kube) == {"a": "Succeeded"}, timeout_s=60,
             what="the first remediation", every=lambda: fake_agent(kube))
    acted = writers(kube, "nodes") | writers(kube, "noderemediations")
    assert acted == {first.field_manager_prefix}, acted
    first.kill()  # the leader dies without releasing: the other takes over after expiry
    set_sick(kube, "b", True)
    wait_for(lambda: phases(kube).get("b") == "Succeeded", timeout_s=90,
             what="the second replica to take over", every=lambda: fake_agent(kube))
    acted = writers(kube, "nodes") | writers(kube, "noderemediations")
    assert acted == {first.field_manager_prefix, second.field_manager_prefix}, acted
    assert second.proc.poll() is None


def test_reboot_counts_only_when_boot_id_changes(kube: KubeDouble,
                                                 operators: OperatorFactory) -> None:
    add_node(kube, "a", sick=True)
    add_node(kube, "b", sick=True)
    add_policy(kube, maxConcurrent=2, settleWindow="1s",
               ladder=[{"action": "reboot", "timeout": "4s"}, {"action": "escalate"}])
    operators(max_concurrent=2)

    def agents() -> None:
        for nr in remediations(kube):
            st = nr.get("status") or {}
            if st.get("phase") != "ActionRequested" or "agent" in st:
                continue
            st["agent"] = {"rung": 0, "state": "Done", "message": "reboot issued"}
            kube.put_object(nr)
            if nr["spec"]["nodeName"] == "b":  # b comes back with a new boot; a never reboots
                set_boot_id(kube, "b", "boot-2")
                set_sick(kube, "b", False)

    wait_for(lambda: phases(kube) == {"a": "Escalated", "b": "Succeeded"}, timeout_s=60,
             what="a escalated and b rebooted", every=agents)
    assert cordoned(kube) == {"a"}  # the escalated node stays cordoned
    node_a = kube.get("nodes", "a")
    assert node_a is not None and node_a["metadata"]["labels"]["nodeprobe.io/escalated"] == "true"
    b = next(nr for nr in remediations(kube) if nr["spec"]["nodeName"] == "b")
    assert (b["status"]["bootIDBefore"], b["status"]["bootIDAfter"]) == ("boot-1", "boot-2")
    wait_for(lambda: any(e["reason"] == "Escalated" for e in events(kube)),
             timeout_s=10, what="the Escalated event")  # written right after the status


def test_invalid_policy_rejected_with_clear_message(kube: KubeDouble,
                                                   operators: OperatorFactory) -> None:
    add_node(kube, "a", sick=True)
    add_policy(kube, ladder=[{"action": "reimage"}], coolDown="-5m",
               nodeSelector={"matchExpressions": [{"key": "x", "operator": "Near"}]})
    operators()
    wait_for(lambda: policy_status(kube).get("valid") is False, timeout_s=30,
             what="the policy to be marked invalid")
    text = " ".join(policy_status(kube)["problems"])
    assert "unknown action 'reimage'" in text and "must not be negative" in text
    assert "operator 'Near'" in text
    wait_for(lambda: any(e["reason"] == "PolicyInvalid" for e in events(kube)), timeout_s=10,
             what="a PolicyInvalid event")
    assert remediations(kube) == []
    assert kube.get("remediationpolicies", "p", group=GROUP) is not None


def test_kubectl_get_noderemediations_shows_the_columns(
        kube: KubeDouble, operators: OperatorFactory) -> None:
    add_node(kube, "a", sick=True)
    add_policy(kube)
    operators()
    wait_for(lambda: phases(kube) == {"a": "Succeeded"}, timeout_s=30, what="a remediation",
             every=lambda: fake_agent(kube))
    out = kube.kubectl("get", "noderemediations")
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "NODE", "POLICY", "RUNG", "PHASE", "AGE"]
    assert row.split()[1:5] == ["a", "p", "0", "Succeeded"]
