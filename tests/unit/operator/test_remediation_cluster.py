"""Issue 10's "must be true" list on a synthetic clock: the whole reconciler over many passes on
the in-memory API, with the node agents simulated (report Done, heal, heartbeat)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodeprobe.operator import lifecycle
from nodeprobe.operator.blockers import firing_alerts
from nodeprobe.operator.grammar import iso, parse_iso
from nodeprobe.operator.names import ANNOTATION_CORDONED_BY, FINALIZER, LABEL_ESCALATED
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.unit.operator.fake_kube import FakeKube

T0 = parse_iso("2027-01-15T08:00:00Z") or 0.0  # a Friday
SICK_SINCE = iso(T0 - 600)


class Sim:
    def __init__(self, *, max_held: int = 1,
                 alerts: Callable[[str, str], str | None] | None = None) -> None:
        self.kube = FakeKube()
        self.t = T0
        self.kube.stamp = lambda: iso(self.t)
        self.rec = Reconciler(self.kube, clock=lambda: self.t, alerts=alerts or (lambda u, q: None),
                              settings=OperatorSettings(max_held=max_held,
                                                        event_namespace="nodeprobe"))
        self.peak_cordoned = 0
        self.peak_held = 0
        self.heal = True
        self.on_pass: Callable[[], None] = lambda: None

    def policy(self, name: str = "p", **over: Any) -> None:
        spec: dict[str, Any] = {
            "triggers": [{"type": "ContainerRuntimeUnavailable", "status": "True", "for": "1m"}],
            "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "2m"},
                       {"action": "reboot", "timeout": "5m"}, {"action": "escalate"}],
            "maxConcurrent": 1, "minHealthy": "0%", "coolDown": "10m", "settleWindow": "4s",
            "drain": {"timeout": "1m"}}
        spec.update(over)
        # kopf adds its finalizer as soon as it sees the policy (handlers.py's delete handler)
        self.kube.policies[name] = {"metadata": {"name": name, "uid": f"uid-{name}",
                                                 "resourceVersion": "1",
                                                 "finalizers": [FINALIZER]}, "spec": spec}

    def kopf_validate(self) -> None:
        """kopf's create/update handlers (`handlers.register`): the spec's validity in status."""
        for name, body in self.kube.policies.items():
            self.kube.request("PATCH", f"/apis/nodeprobe.io/v1alpha1/remediationpolicies/{name}"
                              "/status", body={"status": lifecycle.validation(
                                  body, lambda *_: None)})

    def kopf_delete(self) -> None:
        """kopf's delete handler (`handlers.register`): wait while episodes live, then let the
        finalizer go."""
        for name, body in list(self.kube.policies.items()):
            if not body["metadata"].get("deletionTimestamp"):
                continue
            live = lifecycle.live_episodes(list(self.kube.nrs.values()), name)
            wait = lifecycle.deletion_wait(body, live, lambda *_: None)
            path = f"/apis/nodeprobe.io/v1alpha1/remediationpolicies/{name}"
            if wait is not None:
                self.kube.request("PATCH", f"{path}/status", body={"status": wait})
            else:
                self.kube.request("PATCH", path, body={"metadata": {"finalizers": None}})

    def run(self, passes: int, *, step_s: float = 2.0) -> None:
        for _ in range(passes):
            self.kube.heartbeat(iso(self.t))
            self.kopf_validate()
            self.rec.reconcile()
            self.kopf_delete()
            ours = {n for n, o in self.kube.nodes.items() if o["spec"].get("unschedulable")
                    and (o["metadata"].get("annotations") or {}).get(ANNOTATION_CORDONED_BY)}
            self.peak_cordoned = max(self.peak_cordoned, len(ours))
            self.peak_held = max(self.peak_held, len(self.kube.held()))
            self.agent()
            self.on_pass()
            self.t += step_s

    def agent(self) -> None:
        for nr in self.kube.nrs.values():
            st = nr.get("status") or {}
            if st.get("phase") == "ActionRequested" and "agent" not in st:
                node = nr["spec"]["nodeName"]
                st["agent"] = {"rung": nr["status"]["rung"], "state": "Done",
                               "message": "restarted"}
                self.kube.unhang(node)  # the restarted runtime stops the stuck pods
                if self.heal:
                    self.kube.set_condition(node, "False", iso(self.t))

    def phases(self) -> dict[str, str]:
        return {n: (o.get("status") or {}).get("phase", "") for n, o in self.kube.nrs.items()}

    def by_node(self) -> dict[str, str]:
        return {o["spec"]["nodeName"]: (o.get("status") or {}).get("phase", "")
                for o in self.kube.nrs.values()}

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.kube.events]


def test_two_policies_one_cluster_budget_never_exceeded_and_no_409s() -> None:
    sim = Sim(max_held=2)
    sim.policy("pool-a", nodeSelector={"matchLabels": {"pool": "a"}})
    sim.policy("pool-b", nodeSelector={"matchLabels": {"pool": "b"}})
    sim.policy("overlap")  # same trigger, every node: must never collide with the others
    for i in range(10):
        sim.kube.add_node(f"sick-{i}", sick_since=SICK_SINCE, labels={"pool": "ab"[i % 2]})
        sim.kube.add_pod(f"sick-{i}", "web", f"web-{i}")
    sim.run(400)
    assert set(sim.by_node().values()) == {"Succeeded"} and len(sim.by_node()) == 10
    assert sim.peak_cordoned == 2 and sim.peak_held == 2  # the budget, never more
    assert sim.kube.errors[409] == 0
    assert sim.kube.cordoned() == set() and sim.kube.held() == set()


def test_hung_runtime_drain_times_out_then_the_action_frees_the_pods() -> None:
    sim = Sim()
    sim.policy(drain={"timeout": "1m", "terminatingSkip": "10m"})
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "web", "web-1")
    sim.kube.hung.add("a")
    sim.run(20)
    assert sim.kube.pods["web/web-1"]["metadata"].get("deletionTimestamp")  # stuck Terminating
    assert sim.by_node() == {"a": "Draining"}
    sim.run(30)
    nr = next(iter(sim.kube.nrs.values()))
    assert nr["status"]["rung"] == 0  # the restart ran on its own rung, no escalation
    assert nr["status"]["phase"] == "Succeeded"
    assert any("the repair is what frees them" in m for m in nr["status"]["messages"])
    assert "web/web-1" not in sim.kube.pods  # the restarted runtime let it finish
    assert sim.kube.cordoned() == set()


def test_pods_terminating_past_the_skip_stop_blocking() -> None:
    sim = Sim()
    sim.policy(drain={"timeout": "30m", "terminatingSkip": "20s"})
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "web", "web-1")
    sim.kube.hung.add("a")
    sim.run(30)
    nr = next(iter(sim.kube.nrs.values()))
    assert nr["status"]["phase"] == "Succeeded"
    assert not any("drain timed out" in m for m in nr["status"]["messages"])


def test_crash_looping_runtime_for_a_day_stops_at_the_flap_limit() -> None:
    sim = Sim()
    sim.policy(flapLimit={"attempts": 3, "window": "24h"}, coolDown="10m")
    sim.kube.add_node("a")
    sim.kube.add_node("b")
    state = {"healthy_since": T0}

    def crash_loop() -> None:  # 15 minutes after every recovery, the runtime crashes again
        cond = next(c for c in sim.kube.nodes["a"]["status"]["conditions"]
                    if c["type"] == "ContainerRuntimeUnavailable")
        if cond["status"] == "False":
            state["healthy_since"] = min(state["healthy_since"], sim.t)
            if sim.t - (parse_iso(cond["lastTransitionTime"]) or 0) > 900:
                sim.kube.set_condition("a", "True", iso(sim.t))

    sim.on_pass = crash_loop
    sim.kube.set_condition("a", "True", iso(T0))
    sim.run(24 * 60, step_s=60)
    actions = [o for o in sim.kube.nrs.values() if o["status"].get("bootIDBefore")]
    assert len(actions) == 3
    escalated = [o for o in sim.kube.nrs.values() if o["status"]["phase"] == "Escalated"]
    assert len(escalated) == 1 and escalated[0]["status"]["attemptsInWindow"] == 3
    assert len(sim.kube.nrs) == 4  # then quiet: no fifth episode all day
    assert sim.kube.cordoned() == {"a"}
    assert sim.kube.nodes["a"]["metadata"]["labels"][LABEL_ESCALATED] == "true"


def test_policy_deleted_mid_drain_is_aborted_uncordoned_then_released() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "db", "db-0")
    sim.kube.pdb_blocked.add("db/db-0")
    sim.run(5)
    assert sim.by_node() == {"a": "Draining"}
    assert FINALIZER in sim.kube.policies["p"]["metadata"]["finalizers"]
    sim.kube.delete_policy("p")
    assert "p" in sim.kube.policies  # held by the finalizer
    sim.run(1)
    assert sim.by_node() == {"a": "Failed"} and sim.kube.cordoned() == set()
    assert "aborted: policy p is being deleted" in next(iter(sim.kube.nrs.values()))[
        "status"]["message"]
    sim.run(1)
    assert "p" not in sim.kube.policies and sim.kube.held() == set()


def test_policy_deletion_waits_for_an_episode_past_its_action_and_says_so() -> None:
    sim = Sim()
    sim.heal = False
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(5)
    assert sim.by_node() == {"a": "Verifying"}
    sim.kube.delete_policy("p")
    sim.run(1)
    assert "deletion waits for 1 live episode" in sim.kube.policies["p"]["status"]["message"]
    sim.kube.set_condition("a", "False", iso(sim.t))
    sim.run(5)
    assert sim.by_node() == {"a": "Succeeded"} and "p" not in sim.kube.policies
    assert sim.kube.cordoned() == set()


def test_dry_run_switched_on_mid_episode_stops_every_node_and_pod_write() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "db", "db-0")
    sim.kube.pdb_blocked.add("db/db-0")
    sim.run(6)
    assert sim.by_node() == {"a": "Draining"}
    sim.kube.policies["p"]["spec"]["dryRun"] = True
    writes, evictions = sim.kube.node_writes(), sum(sim.kube.evictions.values())
    sim.run(60)
    assert sim.kube.node_writes() == writes and sum(sim.kube.evictions.values()) == evictions
    nr = next(iter(sim.kube.nrs.values()))
    assert nr["status"]["frozen"] == "policy p is in dry run"
    assert nr["status"]["phase"] == "Draining"


def test_unreplicated_empty_dir_and_protected_pods_stay_and_are_listed() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "web", "web-1")
    sim.kube.add_pod("a", "x", "bare", controller=False)
    sim.kube.add_pod("a", "x", "scratch", empty_dir=True)
    sim.kube.add_pod("a", "x", "precious", annotations={"nodeprobe.io/protect": "true"})
    sim.run(10)
    assert sim.by_node() == {"a": "Succeeded"}
    assert set(sim.kube.pods) == {"x/bare", "x/scratch", "x/precious"}
    kept = next(iter(sim.kube.nrs.values()))["status"]["podsKept"]
    assert kept == ["x/bare (no controller)", "x/scratch (emptyDir data)",
                    "x/precious (protected)"]
    # opted in: evicted
    sim2 = Sim()
    sim2.policy(drain={"evict": {"unreplicated": True, "emptyDir": True, "protected": True}})
    sim2.kube.add_node("a", sick_since=SICK_SINCE)
    sim2.kube.add_pod("a", "x", "bare", controller=False)
    sim2.kube.add_pod("a", "x", "scratch", empty_dir=True)
    sim2.run(10)
    assert sim2.kube.pods == {}


def test_operator_pods_leave_last_and_never_both_replicas() -> None:
    sim = Sim()
    sim.policy()
    op = {"app.kubernetes.io/part-of": "nodeprobe", "app.kubernetes.io/component": "operator"}
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_node("b")
    sim.kube.add_pod("a", "nodeprobe", "operator-1", labels=op)
    sim.kube.add_pod("b", "nodeprobe", "operator-2", labels=op)
    sim.kube.add_pod("a", "db", "db-0")
    sim.kube.pdb_blocked.add("db/db-0")
    sim.run(8)
    assert sim.kube.evictions["nodeprobe/operator-1"] == 0  # another pod still to go
    sim.kube.pdb_blocked.clear()
    sim.kube.pods["nodeprobe/operator-2"]["metadata"]["deletionTimestamp"] = iso(sim.t)
    sim.run(4)
    assert sim.kube.evictions["nodeprobe/operator-1"] == 0  # the other replica is leaving
    del sim.kube.pods["nodeprobe/operator-2"]
    sim.kube.add_pod("b", "nodeprobe", "operator-3", labels=op)
    sim.run(10)
    assert sim.kube.evictions["nodeprobe/operator-1"] == 1 and sim.by_node() == {"a": "Succeeded"}


def test_outside_the_window_nothing_starts_and_says_why() -> None:
    sim = Sim()
    sim.policy(maintenanceWindows=[{"days": ["Sat", "Sun"], "start": "22:00", "end": "06:00",
                                    "timeZone": "Europe/Berlin"}])
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(5)
    assert sim.kube.nrs == {}
    status = sim.kube.policies["p"]["status"]
    assert "outside the maintenance window (Sat,Sun 22:00-06:00 Europe/Berlin)" in \
        status["message"]
    assert sim.reasons().count("RemediationBlocked") == 1
    sim.t = (parse_iso("2027-01-16T21:30:00Z") or 0.0)  # Saturday 22:30 in Berlin
    sim.run(3)
    assert sim.by_node() == {"a": "Draining"}


def test_a_blocking_pod_on_the_node_keeps_it_waiting_and_says_why() -> None:
    sim = Sim(max_held=2)
    sim.policy(maxConcurrent=2, blockers={"podSelector": {"matchLabels": {"app": "batch"}}})
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_node("b", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "jobs", "nightly", labels={"app": "batch"})
    sim.run(3)
    assert set(sim.by_node()) == {"b"}
    why = sim.kube.policies["p"]["status"]["waiting"]["a"]
    assert why == "blocking pod jobs/nightly on the node matches blockers.podSelector"
    assert any(e["reason"] == "RemediationWaiting" and "jobs/nightly" in e["message"]
               for e in sim.kube.events)


def test_a_firing_alert_or_an_unreachable_prometheus_blocks() -> None:
    answers: list[str | None] = ["1 firing alert(s) match ALERTS (NodeMaintenance): ..."]
    sim = Sim(alerts=lambda url, q: answers[0])
    sim.policy(blockers={"prometheus": {"url": "http://127.0.0.1:1"}})
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(3)
    assert sim.kube.nrs == {} and "NodeMaintenance" in sim.kube.policies["p"]["status"]["message"]
    answers[0] = None
    sim.run(2)
    assert sim.by_node() == {"a": "Cordoned"} or sim.by_node() == {"a": "Draining"}
    # nothing listens on port 1: asking fails, and a failure blocks
    why = firing_alerts("http://127.0.0.1:1", 'ALERTS{alertstate="firing"}', timeout_s=2)
    assert why is not None and why.startswith("cannot ask Prometheus at http://127.0.0.1:1")


def test_exclude_label_and_one_control_plane_node_at_a_time() -> None:
    sim = Sim(max_held=3)
    sim.policy(maxConcurrent=3)
    cp = {"node-role.kubernetes.io/control-plane": ""}
    sim.kube.add_node("cp-1", sick_since=SICK_SINCE, labels=cp)
    sim.kube.add_node("cp-2", sick_since=SICK_SINCE, labels=cp)
    sim.kube.add_node("w", sick_since=SICK_SINCE, labels={"nodeprobe.io/exclude": "true"})
    sim.run(2)
    assert set(sim.by_node()) == {"cp-1"}
    waiting = sim.kube.policies["p"]["status"]["waiting"]
    assert waiting["cp-2"] == "another control-plane node is held: one at a time"
    assert "exclude" in waiting["w"]


def test_a_person_cordoning_mid_episode_keeps_the_cordon() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(1)  # opened, not yet cordoned
    sim.kube.nodes["a"]["spec"]["unschedulable"] = True  # kubectl cordon a
    sim.run(10)
    assert sim.by_node() == {"a": "Succeeded"} and sim.kube.cordoned() == {"a"}
    # or: a person takes over our cordon by removing the annotation
    sim2 = Sim()
    sim2.policy()
    sim2.kube.add_node("a", sick_since=SICK_SINCE)
    sim2.run(3)
    assert sim2.kube.nodes["a"]["metadata"]["annotations"][ANNOTATION_CORDONED_BY]
    del sim2.kube.nodes["a"]["metadata"]["annotations"][ANNOTATION_CORDONED_BY]
    sim2.run(10)
    assert sim2.by_node() == {"a": "Succeeded"} and sim2.kube.cordoned() == {"a"}


def test_a_person_uncordoning_an_escalated_node_frees_its_slot() -> None:
    sim = Sim()
    sim.policy(ladder=[{"action": "escalate"}])
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_node("b", sick_since=iso(T0 - 300))
    sim.run(6)
    assert sim.by_node() == {"a": "Escalated"} and sim.kube.cordoned() == {"a"}
    sim.run(20)
    assert "b" not in sim.by_node()  # a holds the only slot
    sim.kube.nodes["a"]["spec"]["unschedulable"] = False  # fixed: kubectl uncordon a
    sim.run(1)
    nr = next(o for o in sim.kube.nrs.values() if o["spec"]["nodeName"] == "a")
    assert "a person uncordoned the node" in nr["status"]["message"]
    assert LABEL_ESCALATED not in sim.kube.nodes["a"]["metadata"]["labels"]
    sim.run(2)
    assert sim.by_node()["b"] in ("Cordoned", "Draining", "Escalated")
    assert "RemediationReleased" in sim.reasons()


def test_deleting_a_finished_remediation_never_restarts_its_episode() -> None:
    sim = Sim()
    sim.policy(ladder=[{"action": "escalate"}], coolDown="1h")
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(4)
    sim.kube.nodes["a"]["spec"]["unschedulable"] = False
    sim.run(2)
    assert sim.by_node() == {"a": "Escalated"}
    sim.kube.nrs.clear()  # kubectl delete noderemediation --all
    sim.run(20)
    assert sim.kube.nrs == {}
    assert "already ended" in sim.kube.policies["p"]["status"]["waiting"]["a"]
    sim.kube.set_condition("a", "False", iso(sim.t))
    sim.run(1)
    sim.kube.set_condition("a", "True", iso(sim.t))  # a new episode, inside the cool-down
    sim.run(60)
    assert sim.kube.nrs == {} and "cool-down until" in \
        sim.kube.policies["p"]["status"]["waiting"]["a"]


def test_finished_remediations_are_retired_by_age_and_count() -> None:
    sim = Sim()
    sim.policy(coolDown="0s", retention={"keep": 1, "for": "1h"})
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(10)
    first = set(sim.kube.nrs)
    sim.kube.set_condition("a", "True", iso(sim.t - 120))
    sim.run(10)
    assert len(sim.kube.nrs) == 1 and set(sim.kube.nrs) != first  # keep 1 per node
    sim.t += 3700
    sim.run(1)
    assert sim.kube.nrs == {}


def test_an_episode_runs_the_ladder_it_started_with() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(2)
    sim.kube.policies["p"]["spec"]["ladder"] = [{"action": "escalate"}]  # reordered mid-episode
    sim.kube.policies["p"]["spec"]["triggers"] = "garbage"  # and then made invalid
    sim.run(10)
    assert sim.by_node() == {"a": "Succeeded"}
    assert sim.kube.policies["p"]["status"]["valid"] is False


def test_another_remediators_node_lease_is_honoured() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.leases["node-a"] = {"metadata": {"name": "node-a", "resourceVersion": "1"},
                                 "spec": {"holderIdentity": "self-node-remediation/a",
                                          "leaseDurationSeconds": 600,
                                          "renewTime": iso(T0)}}
    sim.run(5)
    assert sim.kube.nrs == {} and sim.kube.node_writes() == 0
    assert "held by self-node-remediation/a" in sim.kube.policies["p"]["status"]["waiting"]["a"]
    sim.t += 700  # their lease expired
    sim.run(3)
    assert sim.by_node() == {"a": "Draining"}
    assert sim.kube.leases["node-a"]["spec"]["holderIdentity"].startswith("nodeprobe/a-")


def test_a_dead_agent_is_a_start_gate_nothing_is_cordoned_or_evicted() -> None:
    sim = Sim()
    sim.policy(agentSilence="5m")
    sim.kube.add_node("a", sick_since=SICK_SINCE, heartbeat=iso(T0 - 3600))
    sim.kube.add_pod("a", "web", "web-0")
    sim.kube.heartbeat = lambda at: None  # type: ignore[method-assign]  # the agent is gone
    sim.run(6)
    assert sim.kube.nrs == {} and sim.kube.node_writes() == 0
    assert sum(sim.kube.evictions.values()) == 0
    assert "agent has not reported" in sim.kube.policies["p"]["status"]["waiting"]["a"]


def test_a_policy_without_a_brake_is_rejected() -> None:
    sim = Sim()
    sim.policy(minHealthy="0%", maxConcurrent="100%")
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.run(1)
    status = sim.kube.policies["p"]["status"]
    assert status["valid"] is False and "no brake" in status["message"]
    assert sim.kube.nrs == {}


def test_paused_mid_episode_freezes_then_resumes_where_it_was() -> None:
    sim = Sim()
    sim.policy()
    sim.kube.add_node("a", sick_since=SICK_SINCE)
    sim.kube.add_pod("a", "db", "db-0")
    sim.kube.pdb_blocked.add("db/db-0")
    sim.run(4)
    sim.kube.policies["p"]["spec"]["paused"] = True
    writes = sim.kube.node_writes()
    sim.run(10)
    assert sim.kube.node_writes() == writes
    assert next(iter(sim.kube.nrs.values()))["status"]["frozen"] == "policy p is paused"
    sim.kube.policies["p"]["spec"]["paused"] = False
    sim.kube.pdb_blocked.clear()
    sim.run(10)
    nr = next(iter(sim.kube.nrs.values()))
    assert nr["status"]["phase"] == "Succeeded" and "frozen" not in nr["status"]
    assert sim.kube.cordoned() == set()


def test_terminating_skip_counts_from_the_eviction_not_the_end_of_the_grace() -> None:
    """The API server sets deletionTimestamp to eviction + grace period: a 30 s grace must not
    stretch a 20 s skip to 50 s (issue 19)."""
    from nodeprobe.operator.drain import Drainer
    from nodeprobe.operator.policy import Drain

    kube = FakeKube()
    kube.add_pod("a", "web", "web-0")
    evicted = T0 - 25
    meta = kube.pods["web/web-0"]["metadata"]
    meta["deletionTimestamp"] = iso(evicted + 30)
    meta["deletionGracePeriodSeconds"] = 30
    drainer = Drainer(kube, clock=lambda: T0)
    out = drainer.drain_once(drainer.pods("a"), Drain(terminating_skip_s=20))
    assert out.stuck == ["web/web-0"] and out.left == 0
    out = drainer.drain_once(drainer.pods("a"), Drain(terminating_skip_s=60))
    assert out.stuck == [] and out.left == 1
