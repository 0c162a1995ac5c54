"""The RemediationPolicy lifecycle as kopf runs it, on the real control plane: the finalizer
holds a deletion while episodes live (docs/remediation.md, "Policies that change"), Events about
the policy come from kopf's poster, and kopf's liveness endpoint reports the pass."""

from __future__ import annotations

import json
import urllib.request

from tests.integration.operator.cluster import API, Fleet, wait_for
from tests.integration.operator.conftest import OperatorFactory
from tests.integration.operator.test_operator_kopf import _free_port

FINALIZER = "nodeprobe.io/live-episodes"


def _policy(fleet: Fleet) -> tuple[int, dict]:  # type: ignore[type-arg]
    return fleet.cluster.request("GET", f"{API}/remediationpolicies/{fleet.policy()}")


def test_deleting_a_policy_mid_drain_aborts_gives_the_node_back_then_it_goes(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_pod("a", "db", "db-0", labels={"app": "db"})
    fleet.add_pdb("db", "db")  # the drain cannot finish
    fleet.add_policy(drain={"timeout": "300s"})
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "Draining"}, timeout_s=90,
             what=lambda: f"the drain to start\n{op.text()}")
    _, body = _policy(fleet)
    assert FINALIZER in body["metadata"]["finalizers"]  # kopf's, under our name
    fleet.cluster.must("DELETE", f"{API}/remediationpolicies/{fleet.policy()}")
    wait_for(lambda: _policy(fleet)[0] == 404, timeout_s=60,
             what=lambda: f"the policy to go once its episode ended\n{op.text()}")
    assert fleet.phases() == {"a": "Failed"}
    assert "aborted: policy" in fleet.remediations()[0]["status"]["message"]
    assert fleet.cordoned() == set()  # our cordon given back
    assert fleet.pod_phase("db", "db-0") == "Running"


def test_deletion_waits_for_an_episode_past_its_action_and_says_so_in_an_event(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    full = fleet.add_policy()
    op = operators()
    wait_for(lambda: fleet.phases() == {"a": "ActionRequested"}, timeout_s=90,
             what=lambda: f"the action to be requested\n{op.text()}")
    fleet.cluster.must("DELETE", f"{API}/remediationpolicies/{full}")
    wait_for(lambda: any(e["reason"] == "DeletionWaits" for e in fleet.events()),
             timeout_s=30, what=lambda: f"a DeletionWaits Event on the policy\n{op.text()}")
    waits = next(e for e in fleet.events() if e["reason"] == "DeletionWaits")
    assert waits["involvedObject"]["kind"] == "RemediationPolicy"
    assert waits["reportingComponent"] == "kopf"  # posted by kopf, not by hand
    assert "deletion waits for 1 live episode" in fleet.policy_status()["message"]
    assert _policy(fleet)[0] == 200  # held by the finalizer
    wait_for(lambda: _policy(fleet)[0] == 404, timeout_s=90,
             what=lambda: f"the episode to finish and the policy to go\n{op.text()}",
             every=fleet.fake_agent)
    assert fleet.phases() == {"a": "Succeeded"} and fleet.cordoned() == set()


def test_kopf_liveness_reports_the_pass_and_policy_events_come_from_kopf(
        fleet: Fleet, operators: OperatorFactory) -> None:
    for i in range(2):
        fleet.add_node(f"sick-{i}", sick=True)
    fleet.add_policy(minHealthy="60%")
    op = operators(liveness_port=_free_port())
    wait_for(lambda: any(e["reason"] == "RemediationBlocked" for e in fleet.events()),
             timeout_s=60, what=lambda: f"a RemediationBlocked event\n{op.text()}")
    blocked = next(e for e in fleet.events() if e["reason"] == "RemediationBlocked")
    assert blocked["reportingComponent"] == "kopf"
    with urllib.request.urlopen(f"http://127.0.0.1:{op.liveness_port}/healthz",
                                timeout=5) as resp:
        report = json.load(resp)
    assert report["pass"]["nodeViewLive"] is True, report
    assert report["pass"]["lastPassAgoSeconds"] < 10, report
