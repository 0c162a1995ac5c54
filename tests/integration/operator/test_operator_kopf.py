"""The operator as it runs: kopf in its own process against the real control plane.

The operator authenticates with a token of the chart's operator ServiceAccount (so the chart's
RBAC is what it meets); evictions meet real PodDisruptionBudgets computed by the disruption
controller; the leader Lease is a real coordination.k8s.io Lease; NodeRemediations go with their
Node through the real garbage collector; `kubectl get` prints the CRD's columns. The node agents
are simulated (Fleet.fake_agent); the real agent is in tests/integration/kube/.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from tests.harness.chart import kubectl
from tests.integration.operator.cluster import API, UNHEALTHY, CordonWatch, Fleet, wait_for
from tests.integration.operator.conftest import OperatorFactory


def test_max_concurrent_never_exceeded_with_six_sick_nodes(
        fleet: Fleet, operators: OperatorFactory) -> None:
    for i in range(6):
        fleet.add_node(f"sick-{i}", sick=True)
        fleet.add_node(f"ok-{i}")
    watch = CordonWatch(fleet)
    watch.start()
    fleet.add_policy(maxConcurrent=2)
    op = operators(max_concurrent=2)
    wait_for(lambda: sorted(fleet.phases().values()) == ["Succeeded"] * 6, timeout_s=240,
             what=lambda: f"all six remediations to succeed\n{op.text()}", every=fleet.fake_agent)
    peak, ever = watch.stop()
    assert peak == 2, f"at some instant {peak} nodes were cordoned by nodeprobe"
    assert ever == {f"sick-{i}" for i in range(6)}
    assert fleet.cordoned() == set()


def test_min_healthy_holds_and_says_why(fleet: Fleet, operators: OperatorFactory) -> None:
    for i in range(5):
        fleet.add_node(f"sick-{i}", sick=True)
        fleet.add_node(f"ok-{i}")
    fleet.add_policy(minHealthy="60%", maxConcurrent=5)
    op = operators()
    wait_for(lambda: any(e["reason"] == "RemediationBlocked"
                         and "below minHealthy 60%" in e["message"] for e in fleet.events()),
             timeout_s=60, what=lambda: f"a RemediationBlocked event\n{op.text()}")
    assert "50% of 10 matched nodes are healthy" in fleet.policy_status()["message"]
    assert fleet.remediations() == []
    assert fleet.node_writes() == 0


def test_dry_run_writes_nothing_to_nodes_and_pods(fleet: Fleet,
                                                  operators: OperatorFactory) -> None:
    for i in range(3):
        fleet.add_node(f"sick-{i}", sick=True)
        fleet.add_pod(f"sick-{i}", "web", f"web-{i}")
    fleet.add_policy(dryRun=True, maxConcurrent=3)
    op = operators(max_concurrent=3)
    wait_for(lambda: len(fleet.policy_status().get("dryRunPlan") or []) == 3, timeout_s=60,
             what=lambda: f"the dry-run plan in the policy status\n{op.text()}")
    wait_for(lambda: sum(e["reason"] == "DryRun" for e in fleet.events()) == 3, timeout_s=20,
             what="three DryRun events")
    assert fleet.node_writes() == 0
    assert fleet.operator_calls(verbs=frozenset({"create", "delete", "patch"}),
                                resource="pods/eviction") == []
    assert fleet.remediations() == []
    plan = " ".join(fleet.policy_status()["dryRunPlan"])
    assert f"would cordon {fleet.node('sick-0')}, evict 1 pod(s)" in plan, plan


def test_pdb_blocked_drain_retries_evictions_never_deletes(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_pod("a", "db", "db-0", labels={"app": "db"})
    fleet.add_pdb("db", "db")
    fleet.add_policy(drain={"timeout": "6s", "onTimeout": "fail", "actionOnTimeout": False})
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "Failed"}, timeout_s=90,
             what=lambda: f"the drain to time out\n{op.text()}")
    attempts = fleet.operator_calls(verbs=frozenset({"create"}), resource="pods/eviction")
    # Retried with back-off within the timeout; the real Eviction API answers 429 each time.
    assert len(attempts) >= 2, attempts
    assert {e["responseStatus"]["code"] for e in attempts} == {429}
    # Only db-0: the release's agent pod (a DaemonSet's) on the node stays.
    assert {e["objectRef"]["name"] for e in attempts} == {"db-0"}
    assert fleet.operator_calls(verbs=frozenset({"delete"}), resource="pods") == []
    assert fleet.pod_phase("db", "db-0") == "Running"
    assert "drain timed out" in fleet.remediations()[0]["status"]["message"]
    assert fleet.cordoned() == set()  # a failed episode gives our cordon back


def test_sigkilled_mid_drain_resumes_the_same_remediation(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_pod("a", "db", "db-0", labels={"app": "db"})
    fleet.add_pdb("db", "db")
    fleet.add_policy(drain={"timeout": "300s", "gracePeriodSeconds": 1})
    first = operators()
    wait_for(lambda: fleet.phases() == {"a": "Draining"} and fleet.operator_calls(
        verbs=frozenset({"create"}), resource="pods/eviction"),
        timeout_s=90, what=lambda: f"the drain to start\n{first.text()}")
    first.kill()
    name = fleet.remediations()[0]["metadata"]["name"]
    fleet.delete_pdb("db", "db")
    second = operators()
    wait_for(lambda: fleet.phases() == {"a": "Succeeded"}, timeout_s=120,
             what=lambda: f"the restarted operator to finish\n{second.text()}",
             every=fleet.fake_agent)
    assert [nr["metadata"]["name"] for nr in fleet.remediations()] == [name]  # no duplicate
    done = [e for e in fleet.operator_calls(verbs=frozenset({"create"}),
                                            resource="pods/eviction")
            if e["responseStatus"]["code"] == 201]
    assert [e["objectRef"]["name"] for e in done] == ["db-0"]
    assert fleet.pod_phase("db", "db-0") is None  # the test kubelet finished the eviction
    assert fleet.cordoned() == set()


def leader(fleet: Fleet) -> str:
    """The holder of the operator's leader Lease in the release namespace ("" when none)."""
    lease = (f"/apis/coordination.k8s.io/v1/namespaces/{fleet.release.namespace}/leases/"
             "nodeprobe-operator")
    status, obj = fleet.cluster.request("GET", lease)
    return str((obj.get("spec") or {}).get("holderIdentity") or "") if status == 200 else ""


def test_two_replicas_one_leads_by_lease_and_the_other_takes_over(
        fleet: Fleet, operators: OperatorFactory) -> None:
    """A default install: two replicas, no extra CRD; a real Lease elects the one that acts."""
    fleet.add_node("a")
    fleet.add_node("b")
    def holder() -> str:
        return leader(fleet)

    first = operators(standalone=False)
    wait_for(lambda: holder().endswith(f"-{first.proc.pid}"), timeout_s=60,
             what=lambda: f"the first replica to lead\n{first.text()}")
    second = operators(standalone=False)
    fleet.add_policy(maxConcurrent=1)
    fleet.set_sick("a", True)
    wait_for(lambda: fleet.phases() == {"a": "Succeeded"}, timeout_s=90,
             what=lambda: f"the first remediation\n{first.text()}", every=fleet.fake_agent)
    assert fleet.writers() == {first.field_manager_prefix}, fleet.writers()
    first.kill()  # the leader dies without releasing: the other takes over after expiry
    fleet.set_sick("b", True)
    wait_for(lambda: fleet.phases().get("b") == "Succeeded", timeout_s=120,
             what=lambda: f"the second replica to take over\n{second.text()}",
             every=fleet.fake_agent)
    assert holder().endswith(f"-{second.proc.pid}")
    assert fleet.writers() == {first.field_manager_prefix, second.field_manager_prefix}
    assert second.proc.poll() is None
    second.stop()  # releases the Lease for the tests after this one


def test_reboot_counts_only_when_boot_id_changes(fleet: Fleet,
                                                 operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_node("b", sick=True)
    fleet.add_policy(maxConcurrent=2, settleWindow="1s",
                     ladder=[{"action": "reboot", "timeout": "6s"}, {"action": "escalate"}])
    op = operators(max_concurrent=2)

    def agents() -> None:
        for nr in fleet.remediations():
            st = nr.get("status") or {}
            if st.get("phase") != "ActionRequested" or "agent" in st:
                continue
            fleet.report_done(nr, "reboot issued")
            if fleet.short(nr["spec"]["nodeName"]) == "b":  # b boots anew; a never reboots
                fleet.set_boot_id("b", "boot-2")
                fleet.set_sick("b", False)

    wait_for(lambda: fleet.phases() == {"a": "Escalated", "b": "Succeeded"}, timeout_s=120,
             what=lambda: f"a escalated and b rebooted\n{op.text()}", every=agents)
    assert fleet.cordoned() == {"a"}  # the escalated node stays cordoned
    assert fleet.get_node("a")["metadata"]["labels"]["nodeprobe.io/escalated"] == "true"
    b = next(nr for nr in fleet.remediations() if nr["spec"]["nodeName"] == fleet.node("b"))
    assert (b["status"]["bootIDBefore"], b["status"]["bootIDAfter"]) == ("boot-1", "boot-2")
    wait_for(lambda: any(e["reason"] == "Escalated" for e in fleet.events()),
             timeout_s=20, what="the Escalated event")  # written right after the status


def test_policy_schema_defaults_and_the_operators_own_validation(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    # The CRD's schema: the real server refuses what it can check, naming the field.
    status, reply = fleet.cluster.request("POST", f"{API}/remediationpolicies", {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "RemediationPolicy",
        "metadata": {"name": fleet.policy("bad")},
        "spec": {"triggers": [{"type": UNHEALTHY}], "ladder": [{"action": "escalate"}],
                 "drain": {"onTimeout": "sometimes"}}})
    assert status == 422, reply
    assert "spec.drain.onTimeout" in reply["message"] and "sometimes" in reply["message"]
    # What the schema cannot check, the operator reports in the policy's status.
    full = fleet.add_policy(ladder=[{"action": "reimage"}], coolDown="-5m",
                            maintenanceWindows=[{"days": ["Funday"], "timeZone": "Mars/Olympus"}],
                            nodeSelector={"matchLabels": {"np-op": fleet.id},
                                          "matchExpressions": [{"key": "x",
                                                                "operator": "Near"}]})
    stored = fleet.cluster.must("GET", f"{API}/remediationpolicies/{full}")["spec"]
    assert stored["triggers"][0]["for"] == "1s" and stored["agentSilence"] == "11m"  # defaulted
    op = operators()
    wait_for(lambda: fleet.policy_status().get("valid") is False, timeout_s=60,
             what=lambda: f"the policy to be marked invalid\n{op.text()}")
    text = " ".join(fleet.policy_status()["problems"])
    assert "unknown action 'reimage'" in text and "must not be negative" in text
    assert "operator 'Near'" in text
    assert "unknown day 'Funday'" in text and "unknown time zone 'Mars/Olympus'" in text
    wait_for(lambda: any(e["reason"] == "PolicyInvalid" for e in fleet.events()),
             timeout_s=20, what="a PolicyInvalid event")
    assert fleet.remediations() == []


def test_printer_columns_and_the_garbage_collector_takes_them_with_the_node(
        fleet: Fleet, operators: OperatorFactory) -> None:
    node = fleet.add_node("a", sick=True)
    fleet.add_policy()
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "Succeeded"}, timeout_s=90,
             what=lambda: f"a remediation\n{op.text()}", every=fleet.fake_agent)
    [nr] = fleet.remediations()
    name = nr["metadata"]["name"]
    out = kubectl(fleet.cluster, "get", "noderemediations", name)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "NODE", "POLICY", "RUNG", "PHASE", "AGE"]
    assert row.split()[1:5] == [node, fleet.policy(), "0", "Succeeded"]
    [owner] = nr["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Node", node)
    fleet.cluster.must("DELETE", f"/api/v1/nodes/{node}")  # the node leaves the cluster
    wait_for(lambda: fleet.cluster.request("GET", f"{API}/noderemediations/{name}")[0] == 404,
             timeout_s=90, what="the garbage collector to delete the NodeRemediation")


def test_sigterm_stops_the_leader_at_once_and_gives_the_lease_back(
        fleet: Fleet, operators: OperatorFactory) -> None:
    """A rollout sends SIGTERM: the leader exits well within a Pod's 30 s grace period (it used
    to hang until SIGKILL, kopf's stop flag left waiting in an executor thread) and releases the
    Lease, so the new replica leads at once instead of after the lease expires."""
    import signal
    import time

    def holder() -> str:
        return leader(fleet)

    op = operators(standalone=False)
    wait_for(lambda: holder().endswith(f"-{op.proc.pid}"), timeout_s=60,
             what=lambda: f"the replica to lead\n{op.text()}")
    started = time.monotonic()
    op.proc.send_signal(signal.SIGTERM)
    code = op.proc.wait(30)
    took = time.monotonic() - started
    assert code == 0, op.text()
    assert took < 10, f"took {took:.1f}s to stop\n{op.text()}"
    assert holder() == ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _liveness(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0  # connection refused: what the kubelet's probe got before (issue 17)


def test_a_standby_replica_answers_its_liveness_probe_while_it_waits(
        fleet: Fleet, operators: OperatorFactory) -> None:
    """The chart's liveness probe reaches a replica that does not lead: it waits, alive."""
    first = operators(standalone=False, liveness_port=_free_port())
    wait_for(lambda: leader(fleet).endswith(f"-{first.proc.pid}"), timeout_s=60,
             what=lambda: f"the first replica to lead\n{first.text()}")
    wait_for(lambda: _liveness(first.liveness_port) == 200, timeout_s=30,
             what=lambda: f"the leader's kopf liveness endpoint\n{first.text()}")
    second = operators(standalone=False, liveness_port=_free_port())
    wait_for(lambda: _liveness(second.liveness_port) == 200, timeout_s=30,
             what=lambda: f"the standby's liveness endpoint\n{second.text()}")
    assert leader(fleet).endswith(f"-{first.proc.pid}")  # it answered as a standby
    assert second.proc.poll() is None
    first.stop()  # hands the Lease over: the standby's server gives the port to kopf
    wait_for(lambda: leader(fleet).endswith(f"-{second.proc.pid}"), timeout_s=60,
             what=lambda: f"the standby to lead\n{second.text()}")
    wait_for(lambda: _liveness(second.liveness_port) == 200,
             timeout_s=30,
             what=lambda: f"kopf's liveness endpoint on the new leader\n{second.text()}")
    second.stop()


def test_a_misspelt_field_makes_the_policy_invalid_and_it_acts_on_nothing(
        fleet: Fleet, operators: OperatorFactory) -> None:
    """`dryrun: true` (lower case) posted without strict field validation: the CRD keeps the
    field instead of pruning it, so the policy is never live with dryRun off (issue 18)."""
    fleet.add_node("a", sick=True)
    full = fleet.add_policy(dryrun=True)
    stored = fleet.cluster.must("GET", f"{API}/remediationpolicies/{full}")["spec"]
    assert stored["dryrun"] is True and stored["dryRun"] is False  # kept; dryRun defaulted
    op = operators()
    wait_for(lambda: fleet.policy_status().get("valid") is False, timeout_s=60,
             what=lambda: f"the policy to be marked invalid\n{op.text()}")
    assert any("spec.dryrun: unknown field" in p for p in fleet.policy_status()["problems"])
    assert fleet.remediations() == []
    assert fleet.node_writes() == 0
    # `days: []` never means every day (the schema refuses it).
    status, reply = fleet.cluster.request("POST", f"{API}/remediationpolicies", {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "RemediationPolicy",
        "metadata": {"name": fleet.policy("nodays")},
        "spec": {"triggers": [{"type": UNHEALTHY}], "ladder": [{"action": "escalate"}],
                 "maintenanceWindows": [{"days": []}]}})
    assert status == 422 and "days" in reply["message"], reply
