"""The reconciler's wiring on an in-memory API: gates, ladder, drain and resume over many passes."""

from __future__ import annotations

from typing import Any

import pytest

from nodeprobe.model import EventType
from nodeprobe.operator import lifecycle
from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.ladder import iso, parse_iso
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.unit.operator.fake_kube import FakeKube

T0 = parse_iso("2027-01-15T08:00:00Z") or 0.0
SICK_SINCE = iso(T0 - 600)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def policy(kube: FakeKube, name: str = "p", **over: Any) -> None:
    spec: dict[str, Any] = {
        "triggers": [{"type": "ContainerRuntimeUnavailable", "status": "True", "for": "1m"}],
        "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "2m"},
                   {"action": "reboot", "timeout": "5m"}, {"action": "escalate"}],
        "maxConcurrent": 1, "minHealthy": "0%", "coolDown": "10m", "drain": {"timeout": "1m"},
        "settleWindow": "4s",
    }
    spec.update(over)
    kube.policies[name] = {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec}


def agent_pass(kube: FakeKube, clock: Clock, *, heal: bool = True) -> None:
    """What the node's agent would do: report the restart done and clear the condition."""
    for nr in kube.nrs.values():
        st = nr.get("status") or {}
        if st.get("phase") == "ActionRequested" and "agent" not in st:
            st["agent"] = {"rung": nr["status"]["rung"], "state": "Done", "message": "restarted"}
            if heal:
                kube.set_condition(nr["spec"]["nodeName"], "False", iso(clock.t))


def run(kube: FakeKube, rec: Reconciler, clock: Clock, *, passes: int, step_s: float = 2.0,
        heal: bool = True) -> list[set[str]]:
    seen = []
    kube.stamp = lambda: iso(clock.t)
    for _ in range(passes):
        kube.heartbeat(iso(clock.t))
        rec.reconcile()
        seen.append(kube.cordoned())
        agent_pass(kube, clock, heal=heal)
        clock.t += step_s
    return seen


def phases(kube: FakeKube) -> dict[str, str]:
    return {nr["spec"]["nodeName"]: (nr.get("status") or {}).get("phase", "")
            for nr in kube.nrs.values()}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_sick_node_restart_runtime_succeeds_and_is_uncordoned(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube)
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_node("b")
    kube.add_pod("a", "web", "web-1")
    kube.add_pod("a", "kube-system", "proxy", daemonset=True)
    kube.add_pod("a", "kube-system", "etcd", mirror=True)
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=10)
    assert phases(kube) == {"a": "Succeeded"}
    assert kube.cordoned() == set()
    assert set(kube.pods) == {"kube-system/proxy", "kube-system/etcd"}  # DS + mirror stay
    reasons = [e["reason"] for e in kube.events]
    assert "RemediationOpened" in reasons and "RemediationSucceeded" in reasons
    nr = next(iter(kube.nrs.values()))
    assert nr["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1", "kind": "Node", "name": "a", "uid": "uid-a",
        "blockOwnerDeletion": False}
    assert nr["status"]["cordonedByUs"] is True and nr["status"]["bootIDBefore"] == "boot-1"


def test_max_concurrent_never_exceeded_over_the_run(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, maxConcurrent=2)
    for i in range(10):
        kube.add_node(f"sick-{i}", sick_since=SICK_SINCE)
        kube.add_node(f"ok-{i}")
    rec = Reconciler(kube, clock=clock, settings=OperatorSettings(max_held=5))
    seen = run(kube, rec, clock, passes=80)
    assert max(len(s) for s in seen) == 2
    assert set(phases(kube).values()) == {"Succeeded"} and len(kube.nrs) == 10


def test_min_healthy_blocks_and_says_why(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, minHealthy="60%", maxConcurrent=5)
    for i in range(5):
        kube.add_node(f"sick-{i}", sick_since=SICK_SINCE)
        kube.add_node(f"ok-{i}")
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=3)
    assert kube.nrs == {} and kube.cordoned() == set()
    status = kube.policies["p"]["status"]
    assert "below minHealthy 60%" in status["message"]
    blocked = [e for e in kube.events if e["reason"] == "RemediationBlocked"]
    assert len(blocked) == 1 and "50% of 10 matched nodes are healthy" in blocked[0]["message"]


def test_dry_run_writes_nothing_to_nodes_or_pods(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, dryRun=True, maxConcurrent=3)
    for i in range(3):
        kube.add_node(f"sick-{i}", sick_since=SICK_SINCE)
        kube.add_pod(f"sick-{i}", "web", f"web-{i}")
    rec = Reconciler(kube, clock=clock, settings=OperatorSettings(max_held=3))
    run(kube, rec, clock, passes=5)
    node_or_pod_writes = {k: v for k, v in kube.writes.items()
                          if "/nodes" in k or "/pods" in k}
    assert node_or_pod_writes == {} and sum(kube.evictions.values()) == 0
    assert kube.nrs == {}
    plan = kube.policies["p"]["status"]["dryRunPlan"]
    assert len(plan) == 3 and "would cordon sick-0, evict 1 pod(s)" in plan[0]
    assert len([e for e in kube.events if e["reason"] == "DryRun"]) == 3


def test_pdb_blocked_drain_retries_evictions_then_moves_on(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, ladder=[{"action": "restart-runtime", "runtime": "docker"}],
           drain={"timeout": "30s", "onTimeout": "fail", "actionOnTimeout": False})
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_pod("a", "db", "db-0")
    kube.pdb_blocked.add("db/db-0")
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=30)
    assert kube.evictions["db/db-0"] >= 3  # retried with back-off, never deleted directly
    assert "db/db-0" in kube.pods
    nr = next(iter(kube.nrs.values()))
    assert nr["status"]["phase"] == "Failed" and "drain timed out" in nr["status"]["message"]
    assert kube.cordoned() == set()  # a failed episode gives our cordon back


def test_pdb_timeout_with_next_goes_to_the_next_rung(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, drain={"timeout": "30s", "actionOnTimeout": False})
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_pod("a", "db", "db-0")
    kube.pdb_blocked.add("db/db-0")
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=20)
    nr = next(iter(kube.nrs.values()))
    assert nr["status"]["rung"] == 1


def test_restarted_reconciler_resumes_the_same_remediation(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube)
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_pod("a", "db", "db-0")
    kube.pdb_blocked.add("db/db-0")
    run(kube, Reconciler(kube, clock=clock), clock, passes=4)
    assert phases(kube) == {"a": "Draining"}
    kube.pdb_blocked.clear()
    run(kube, Reconciler(kube, clock=clock), clock, passes=10)  # a fresh process, no memory
    assert len(kube.nrs) == 1 and phases(kube) == {"a": "Succeeded"}
    assert kube.cordoned() == set()


def test_person_uncordoning_mid_drain_is_respected(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube)
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_pod("a", "db", "db-0")
    kube.pdb_blocked.add("db/db-0")
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=4)
    kube.nodes["a"]["spec"]["unschedulable"] = False  # kubectl uncordon a
    evictions = kube.evictions["db/db-0"]
    run(kube, rec, clock, passes=5)
    assert phases(kube) == {"a": "Failed"} and kube.cordoned() == set()
    assert kube.evictions["db/db-0"] == evictions  # no more evictions after the uncordon


def test_invalid_policy_rejected_with_clear_message(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, ladder=[{"action": "reimage"}], coolDown="-5m",
           nodeSelector={"matchExpressions": [{"key": "x", "operator": "Near"}]})
    kube.add_node("a", sick_since=SICK_SINCE)
    Reconciler(kube, clock=clock).reconcile()
    assert kube.nrs == {} and "status" not in kube.policies["p"]  # the pass skips it
    said: list[tuple[EventType, str, str]] = []
    status = lifecycle.validation(kube.policies["p"], lambda _, *e: said.append(e))
    assert status["valid"] is False
    text = " ".join(status["problems"])
    for needle in ("unknown action 'reimage'", "spec.coolDown: duration must not be negative",
                   "operator 'Near'"):
        assert needle in text
    assert {(kind, reason) for kind, reason, _ in said} == {(EventType.WARNING, "PolicyInvalid")}
    assert len(said) == len(status["problems"])
    again = lifecycle.validation({**kube.policies["p"], "status": status},
                                 lambda _, *e: said.append(e))
    assert again == status and len(said) == len(status["problems"])  # a resume repeats none


def test_healthy_cluster_costs_no_writes_after_the_first_pass(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube)
    for i in range(5):
        kube.add_node(f"ok-{i}")
    rec = Reconciler(kube, clock=clock)
    rec.reconcile()
    before = sum(kube.writes.values())
    run(kube, rec, clock, passes=20)
    assert sum(kube.writes.values()) == before


def test_reboot_rung_needs_a_new_boot_id(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, ladder=[{"action": "reboot", "timeout": "1m"}, {"action": "escalate"}],
           settleWindow="10s")
    kube.add_node("a", sick_since=SICK_SINCE)
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=45, heal=False)  # agent says Done, bootID never changes
    nr = next(iter(kube.nrs.values()))
    assert nr["status"]["phase"] == "Escalated"
    assert kube.cordoned() == {"a"}
    assert kube.nodes["a"]["metadata"]["labels"]["nodeprobe.io/escalated"] == "true"
    assert "Escalated" in [e["reason"] for e in kube.events]

    kube2 = FakeKube()
    policy(kube2, ladder=[{"action": "reboot", "timeout": "1m"}], settleWindow="10s")
    kube2.add_node("a", sick_since=SICK_SINCE)
    rec = Reconciler(kube2, clock=clock)
    run(kube2, rec, clock, passes=5, heal=False)
    assert phases(kube2) == {"a": "ActionRequested"}
    kube2.nodes["a"]["status"]["nodeInfo"]["bootID"] = "boot-2"  # the node came back
    kube2.set_condition("a", "False", iso(clock.t))
    run(kube2, rec, clock, passes=12)
    nr = next(iter(kube2.nrs.values()))
    assert nr["status"]["phase"] == "Succeeded" and nr["status"]["bootIDAfter"] == "boot-2"


def test_storm_recorded_then_cool_down_without_a_write_per_pass(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, minHealthy="60%", maxConcurrent=5, stormCoolDown="5m")
    for i in range(5):
        kube.add_node(f"sick-{i}", sick_since=SICK_SINCE)
        kube.add_node(f"ok-{i}")
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=2)
    assert kube.policies["p"]["status"]["stormSince"]
    for i in range(1, 5):
        kube.set_condition(f"sick-{i}", "False", iso(clock.t))
    run(kube, rec, clock, passes=2)
    status = kube.policies["p"]["status"]
    assert "stormSince" not in status and status["stormEndedAt"]
    assert "storm cool-down until" in status["message"] and kube.nrs == {}
    before = sum(kube.writes.values())
    run(kube, rec, clock, passes=10)
    assert sum(kube.writes.values()) == before  # stable message: no write per pass
    clock.t += 300
    run(kube, rec, clock, passes=10)
    assert phases(kube) == {"sick-0": "Succeeded"}


def test_a_noderemediation_the_operator_did_not_open_is_refused(clock: Clock) -> None:
    """Made by hand (say, where the admission guard was bypassed): its own plan, on an excluded
    node, past every gate. The node's Lease does not name it, so it is refused in its status."""
    kube = FakeKube()
    kube.add_node("a", labels={"nodeprobe.io/exclude": "true"})
    kube.add_pod("a", "web", "web-0")
    policy(kube)
    kube.nrs["a-1"] = {"metadata": {"name": "a-1"}, "spec": {
        "nodeName": "a", "policy": "p", "plan": {
            "triggers": [{"type": "ContainerRuntimeUnavailable"}],
            "ladder": [{"action": "reboot"}],
            "drain": {"timeout": "1s", "actionOnTimeout": True}}}}
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=6)
    status = kube.nrs["a-1"]["status"]
    assert status["phase"] == "Failed" and "not opened by the nodeprobe operator" in \
        status["message"]
    assert kube.cordoned() == set()
    assert sum(kube.evictions.values()) == 0
    assert any(e["reason"] == "RemediationRefused" for e in kube.events)


class RefusesFirstCordon(FakeKube):
    """An admission policy that denies the first cordon write (422)."""

    refused = 0

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        body = kw.get("body") or {}
        if method == "PATCH" and path.startswith("/api/v1/nodes/") and not self.refused \
                and isinstance(body, dict) and (body.get("spec") or {}).get("unschedulable"):
            self.refused += 1
            raise KubeError(422, "denied by an admission policy")
        return super().request(method, path, **kw)


def test_a_refused_cordon_write_is_retried_and_the_episode_goes_on(clock: Clock) -> None:
    kube = RefusesFirstCordon()
    policy(kube)
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_pod("a", "web", "web-1")
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=10)
    assert kube.refused == 1
    assert phases(kube) == {"a": "Succeeded"}
    assert kube.cordoned() == set()
    assert "kube-system/web-1" not in kube.pods and "web/web-1" not in kube.pods


def test_storm_state_is_read_from_the_status_only_at_first_sight(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube)
    kube.add_node("a", sick_since=SICK_SINCE)
    # An earlier operator process wrote that a storm ended just now: its cool-down holds.
    kube.policies["p"]["status"] = {"stormEndedAt": iso(clock.t)}
    rec = Reconciler(kube, clock=clock, settings=OperatorSettings(max_held=2))
    rec.reconcile()
    assert kube.nrs == {} and "storm cool-down" in kube.policies["p"]["status"]["message"]
    clock.t += 301  # past the default 5 min storm cool-down
    rec.reconcile()
    assert len(kube.nrs) == 1
    # From now on the status is output only: an edit there is not read back as a storm.
    kube.add_node("b", sick_since=SICK_SINCE)
    kube.policies["p"]["status"]["stormEndedAt"] = iso(clock.t)
    kube.policies["p"]["spec"]["maxConcurrent"] = 2
    clock.t += 2
    rec.reconcile()
    assert sorted(nr["spec"]["nodeName"] for nr in kube.nrs.values()) == ["a", "b"]


BLOCKER = {"podSelector": {"matchLabels": {"app": "batch"}}}


def test_a_pass_reads_everything_it_decides_on_before_its_first_write(clock: Clock) -> None:
    """read -> decide -> execute: node a's episode moves on (a status write, an eviction) in the
    same pass as sick node b is weighed against a pod blocker; every read comes first."""
    kube = FakeKube()
    policy(kube, maxConcurrent=2, blockers=BLOCKER)
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_pod("a", "web", "web-1")
    rec = Reconciler(kube, clock=clock, settings=OperatorSettings(max_held=2))
    run(kube, rec, clock, passes=2)
    assert phases(kube) == {"a": "Cordoned"}
    kube.add_node("b", sick_since=SICK_SINCE)
    kube.add_pod("b", "jobs", "nightly", labels={"app": "batch"})
    kube.log.clear()
    run(kube, rec, clock, passes=1)
    assert phases(kube) == {"a": "Draining"}
    assert "POST /api/v1/namespaces/web/pods/web-1/eviction" in kube.log
    first_write = next(i for i, line in enumerate(kube.log) if not line.startswith("GET "))
    assert [line for line in kube.log[first_write:] if line.startswith("GET ")] == []
    assert kube.policies["p"]["status"]["waiting"]["b"].startswith("blocking pod jobs/nightly")


def test_pod_blockers_cost_one_list_per_pass_whatever_the_number_of_sick_nodes(
        clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, blockers=BLOCKER)
    for i in range(20):
        kube.add_node(f"n{i:02}", sick_since=SICK_SINCE)
        kube.add_pod(f"n{i:02}", "jobs", f"nightly-{i}", labels={"app": "batch"})
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=1)
    assert kube.nrs == {}
    assert kube.log.count("GET /api/v1/pods") == 1
    assert len(kube.policies["p"]["status"]["waiting"]) == 20


def test_a_healthy_cluster_reads_no_pods_and_asks_no_alerts(clock: Clock) -> None:
    kube = FakeKube()
    policy(kube, blockers={**BLOCKER, "prometheus": {"url": "http://127.0.0.1:1"}})
    kube.add_node("a")
    asked: list[str] = []
    rec = Reconciler(kube, clock=clock, alerts=lambda url, q: asked.append(url) or None)
    run(kube, rec, clock, passes=3)
    assert asked == [] and "GET /api/v1/pods" not in kube.log


class RefusesUncordon(FakeKube):
    """An admission policy that denies every uncordon while `refusing`."""

    refusing = True

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        spec = (kw.get("body") or {}).get("spec") or {}
        if self.refusing and method == "PATCH" and path.startswith("/api/v1/nodes/") \
                and "unschedulable" in spec and spec["unschedulable"] is None:
            raise KubeError(422, "denied by an admission policy")
        return super().request(method, path, **kw)


def test_a_slot_is_given_to_another_node_only_after_the_write_that_frees_it_landed(
        clock: Clock) -> None:
    """Budget 1: node a's episode would end (uncordon, Succeeded) but the uncordon is refused,
    so b waits; once it lands, b opens on the next pass, never in the same one."""
    kube = RefusesUncordon()
    policy(kube)
    kube.add_node("a", sick_since=SICK_SINCE)
    kube.add_node("b", sick_since=SICK_SINCE)
    rec = Reconciler(kube, clock=clock)
    run(kube, rec, clock, passes=12)
    assert phases(kube) == {"a": "Verifying"} and kube.cordoned() == {"a"}
    kube.refusing = False
    run(kube, rec, clock, passes=1)
    assert phases(kube) == {"a": "Succeeded"}
    run(kube, rec, clock, passes=1)
    assert phases(kube) == {"a": "Succeeded", "b": "Pending"}
