"""End to end: a hung real dockerd on node A, the kopf operator in its own process, the agent's
real RepairExecutor over HTTP, all against the team's Kubernetes API double -> dockerd restarted
for real -> condition clears -> Succeeded -> A uncordoned."""

from __future__ import annotations

from pathlib import Path

from nodeprobe.model import Runtime
from nodeprobe.repair import actions
from nodeprobe.repair.executor import RepairExecutor
from tests.harness.runtimes import Sandbox
from tests.integration.operator.cluster import (
    Operator,
    add_node,
    add_pod,
    add_policy,
    cluster,
    cordon_peak,
    cordoned,
    events,
    phases,
    remediations,
    set_sick,
    wait_for,
)
from tests.integration.repair.systemd_stub import Servicer
from tests.integration.repair.test_repair_actions import settings_for


def test_hung_dockerd_restarted_by_agent_node_uncordoned(own_runtimes: Sandbox,
                                                         tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = settings_for(own_runtimes, spool, dump_wait_s=1.0)
    with cluster() as kube:
        add_node(kube, "node-a")
        add_node(kube, "node-b")
        add_pod(kube, "node-a", "web", "web-1")
        add_policy(kube)
        api = kube.api_client()
        executor = RepairExecutor("node-a", api, settings)
        operator = Operator(kube, tmp_path)
        try:
            own_runtimes.dockerd.hang()

            def agent_round() -> None:
                """The node agent: publish what the real probe sees, carry out requests."""
                set_sick(kube, "node-a", not actions.answers(Runtime.DOCKERD, settings))
                executor.poll_once()

            with Servicer(own_runtimes, spool) as servicer:
                wait_for(lambda: phases(kube).get("node-a") == "Succeeded", timeout_s=120,
                         what="the remediation of node-a", every=agent_round)
            wanted = {"RemediationOpened", "RemediationStarted", "RemediationSucceeded"}
            wait_for(lambda: wanted <= {e["reason"] for e in events(kube)}, timeout_s=10,
                     what="the remediation's events")
        finally:
            operator.stop()
            api.close()
        assert servicer.restarts["docker"] == 1
        assert actions.answers(Runtime.DOCKERD, settings)
        assert cordoned(kube) == set()
        assert cordon_peak(kube) == (1, {"node-a"})  # only A was ever cordoned
        assert kube.get("pods", "web-1", namespace="web") is None  # evicted before the restart
        assert kube.evictions == [("web", "web-1", None)]
        nr = remediations(kube)[0]
        assert nr["status"]["agent"]["state"] == "Done"
        assert nr["metadata"]["ownerReferences"][0]["name"] == "node-a"
