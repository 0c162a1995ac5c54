"""Pod blockers on the real API server: a policy's podSelector goes to the server as one
labelSelector (matchLabels and each matchExpressions operator), read before the pass decides;
the node with a matching pod waits and says why, and the next sick node starts."""

from __future__ import annotations

import urllib.parse

from tests.integration.operator.cluster import Fleet, wait_for
from tests.integration.operator.conftest import OperatorFactory

SELECTOR = {
    "matchLabels": {"tier": "etl"},
    "matchExpressions": [
        {"key": "app", "operator": "In", "values": ["batch", "backup"]},
        {"key": "app", "operator": "NotIn", "values": ["web"]},
        {"key": "tier", "operator": "Exists"},
        {"key": "nodeprobe.io/no-block", "operator": "DoesNotExist"},
    ],
}
QUERY = ("tier in (etl),app in (batch,backup),app notin (web),tier,!nodeprobe.io/no-block")


def test_a_pod_blocker_keeps_its_node_waiting_and_the_next_sick_node_starts(
        fleet: Fleet, operators: OperatorFactory) -> None:
    fleet.add_node("a", sick=True)
    fleet.add_node("b", sick=True)
    fleet.add_pod("a", "jobs", "nightly", labels={"app": "batch", "tier": "etl"})
    fleet.add_pod("b", "web", "web-0", labels={"app": "web", "tier": "etl"})
    fleet.add_policy(blockers={"podSelector": SELECTOR})
    op = operators()

    def a_waits_b_started() -> bool:
        why = (fleet.policy_status().get("waiting") or {}).get(fleet.node("a"), "")
        return "b" in fleet.phases() and why.startswith(
            f"blocking pod {fleet.ns('jobs')}/nightly on the node")

    wait_for(a_waits_b_started, timeout_s=60,
             what=lambda: f"node a to wait on its blocking pod and b to start; phases "
             f"{fleet.phases()}, policy status {fleet.policy_status()}\n{op.text()}")
    assert "a" not in fleet.phases()
    lists = [e for e in fleet.cluster.audit(fleet.release.username("operator"))
             if e["verb"] == "list" and (e.get("objectRef") or {}).get("resource") == "pods"
             and "labelSelector" in e["requestURI"]]
    selectors = {urllib.parse.parse_qs(urllib.parse.urlsplit(e["requestURI"]).query)
                 ["labelSelector"][0] for e in lists}
    assert QUERY in selectors
    assert {e["responseStatus"]["code"] for e in lists} == {200}
