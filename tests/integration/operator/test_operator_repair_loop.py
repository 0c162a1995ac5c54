"""Closed loop: hung real dockerd -> operator ladder -> agent restarts it -> Succeeded, uncordoned.

The Kubernetes API is the in-memory stand-in from the unit tests (until the team's API double
carries the kopf end-to-end); dockerd, its hang (SIGSTOP) and its restart are real.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodeprobe.model import Runtime
from nodeprobe.operator.ladder import iso
from nodeprobe.operator.reconcile import Reconciler
from nodeprobe.repair import actions
from nodeprobe.repair.actions import ActionSettings
from nodeprobe.repair.executor import RepairExecutor
from tests.harness.runtimes import Sandbox
from tests.integration.repair.systemd_stub import Servicer
from tests.integration.repair.test_repair_actions import settings_for
from tests.unit.operator.fake_kube import FakeKube


class FakeKubeStore:
    """The executor's view of NodeRemediations, through the same in-memory API."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def for_node(self, node: str) -> list[dict[str, Any]]:
        return [nr for nr in self.kube.request(
            "GET", "/apis/nodeprobe.io/v1alpha1/noderemediations")["items"]
            if nr["metadata"]["labels"]["nodeprobe.io/node"] == node]

    def patch_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.kube.request("PATCH", f"/apis/nodeprobe.io/v1alpha1/noderemediations/{name}/status",
                          body={"status": dict(status)})


def publish_condition(kube: FakeKube, node: str, s: ActionSettings) -> None:
    """What the agent's judge + publisher do, reduced to one real probe of dockerd."""
    status = "False" if actions.answers(Runtime.DOCKERD, s) else "True"
    cond = next(c for c in kube.nodes[node]["status"]["conditions"]
                if c["type"] == "ContainerRuntimeUnavailable")
    if cond["status"] != status:
        kube.set_condition(node, status, iso(time.time()))


def test_hung_dockerd_is_restarted_and_node_uncordoned(own_runtimes: Sandbox,
                                                       tmp_path: Path) -> None:
    kube = FakeKube(created_at=iso(time.time()))
    kube.policies["p"] = {"metadata": {"name": "p", "uid": "u"}, "spec": {
        "triggers": [{"type": "ContainerRuntimeUnavailable", "for": "1s"}],
        "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "60s"},
                   {"action": "escalate"}],
        "drain": {"timeout": "30s"}, "minHealthy": "0%", "settleWindow": "1s"}}
    kube.add_node("node-a")
    kube.add_node("node-b")
    kube.add_pod("node-a", "web", "web-1")
    s = settings_for(own_runtimes, tmp_path, dump_wait_s=1.0)
    rec = Reconciler(kube, settings=None)
    ex = RepairExecutor("node-a", None, s, store=FakeKubeStore(kube))
    own_runtimes.dockerd.hang()
    cordoned_seen: set[str] = set()
    deadline = time.monotonic() + 90
    phase = ""
    with Servicer(own_runtimes, tmp_path) as servicer:
        while time.monotonic() < deadline:
            publish_condition(kube, "node-a", s)
            rec.reconcile("p")
            cordoned_seen |= kube.cordoned()
            ex.poll_once()
            phases = [(nr.get("status") or {}).get("phase") for nr in kube.nrs.values()]
            phase = phases[0] if phases else ""
            if phase in ("Succeeded", "Failed", "Escalated"):
                break
            time.sleep(0.2)  # pacing of the poll loop, not synchronisation
    assert phase == "Succeeded", kube.nrs
    assert servicer.restarts["docker"] == 1
    assert cordoned_seen == {"node-a"} and kube.cordoned() == set()
    assert "web/web-1" not in kube.pods  # drained through the Eviction API first
    nr = next(iter(kube.nrs.values()))
    assert nr["status"]["agent"]["state"] == "Done"
    assert actions.answers(Runtime.DOCKERD, s)
