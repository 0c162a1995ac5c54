"""The executor carries out a NodeRemediation on the real sandbox dockerd and reports back."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nodeprobe.config import Config
from nodeprobe.model import REMEDIATION_NODE_LABEL, Condition, ConditionType, Runtime, Status
from nodeprobe.publish.kubeclient import rfc3339
from nodeprobe.repair import actions
from nodeprobe.repair.executor import RepairExecutor
from nodeprobe.repair.guard import AdmissionGuard, kube_fetch
from nodeprobe.repair.verify import Request, TriggerMemory
from tests.harness.agent_process import wait_for
from tests.harness.kubecluster import KubeCluster
from tests.harness.runtimes import Sandbox
from tests.integration.kube.nodes import AgentNode
from tests.integration.operator.guard import ADMIN, admits_as_operator, admitted
from tests.integration.repair.systemd_stub import Servicer
from tests.integration.repair.test_repair_actions import settings_for

NODEREMEDIATIONS = "/apis/nodeprobe.io/v1alpha1/noderemediations"
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
GUARD = Config().repair.admission_guard
"""The release fixture is `helm install nodeprobe`: its guard has the config's default name."""


def in_place() -> str | None:
    """The admission guard as the MemoryStore tests assume it: in place."""
    return None


class MemoryStore:
    """NodeRemediations in a dict: the executor's own decisions, without an API server.

    What goes over the wire (CRD schema, status subresource, RBAC) is tested on the real API
    server in test_start_executor_from_agent_config_over_http."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.warnings: list[tuple[str, str, str]] = []

    def for_node(self, node: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.objs.values() if o["spec"]["nodeName"] == node]

    def patch_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.patches.append((name, copy.deepcopy(dict(status))))
        self.objs[name].setdefault("status", {}).update(copy.deepcopy(dict(status)))

    def warn(self, req: Request, reason: str, message: str) -> None:
        self.warnings.append((req.name, reason, message))


OPERATOR_WROTE = [{"manager": "nodeprobe-operator-a", "operation": "Update",
                   "subresource": "status",
                   "fieldsV1": {"f:status": {"f:phase": {}, "f:action": {}}}}]


def nr(name: str, node: str, *, action: str = "restart-runtime", runtime: str = "dockerd",
       rung: int = 0, phase: str = "ActionRequested") -> dict[str, Any]:
    """A NodeRemediation as the operator writes it: its plan's rung is the action asked for."""
    return {"metadata": {"name": name, "uid": f"uid-{name}", "managedFields": OPERATOR_WROTE},
            "spec": {"nodeName": node, "rung": rung, "plan": {
                "triggers": [{"type": ConditionType.UNAVAILABLE.value}],
                "ladder": [*[{"action": "escalate"}] * rung,
                           {"action": action, "runtime": runtime}]}},
            "status": {"phase": phase, "action": action, "runtime": runtime}}


def sick() -> TriggerMemory:
    """The agent's own judgement: its node's runtime is unavailable right now."""
    memory = TriggerMemory()
    memory.update({ConditionType.UNAVAILABLE: Condition(
        ConditionType.UNAVAILABLE, Status.TRUE, "DockerdHung", "hung", 0.0)}, now=time.time())
    return memory


def test_restart_hung_dockerd_and_report(own_runtimes: Sandbox, tmp_path: Path) -> None:
    store = MemoryStore(nr("a-1", "node-a"), nr("b-1", "node-b"),
                        nr("a-0", "node-a", phase="Draining"))
    s = settings_for(own_runtimes, tmp_path, dump_wait_s=2.0)
    ex = RepairExecutor("node-a", None, s, store=store,
                        triggers=sick(), guard=in_place)
    own_runtimes.dockerd.hang()
    with Servicer(own_runtimes, tmp_path) as servicer:
        assert ex.poll_once() == ["a-1"]
    assert servicer.restarts == {"docker": 1, "containerd": 0}
    assert actions.answers(Runtime.DOCKERD, s)
    status = store.objs["a-1"]["status"]
    assert status["agent"]["state"] == "Done" and status["agent"]["rung"] == 0
    assert "restarted dockerd" in status["agent"]["message"]
    # Started was written before acting, so a crashed agent never repeats blindly
    assert [p[1]["agent"]["state"] for p in store.patches if "agent" in p[1]] == [
        "Started", "Done"]
    assert "status" not in store.objs["b-1"] or "agent" not in store.objs["b-1"]["status"]
    assert ex.poll_once() == []  # reported already: nothing twice


def test_restart_records_goroutine_dump(own_runtimes: Sandbox, tmp_path: Path) -> None:
    """A leaking or slow dockerd still handles SIGUSR1: the dump path lands in the status."""
    store = MemoryStore(nr("a-1", "node-a"))
    ex = RepairExecutor("node-a", None, settings_for(own_runtimes, tmp_path), store=store,
                        guard=in_place,
                        triggers=sick())
    old_pid = own_runtimes.dockerd.pid
    with Servicer(own_runtimes, tmp_path):
        assert ex.poll_once() == ["a-1"]
    status = store.objs["a-1"]["status"]
    assert status["agent"]["state"] == "Done" and own_runtimes.dockerd.pid != old_pid
    assert Path(status["goroutineDumpPath"]).read_text().startswith("goroutine")


def test_dry_run_agent_reports_failed_and_does_nothing(runtimes: Sandbox,
                                                       tmp_path: Path) -> None:
    store = MemoryStore(nr("a-1", "node-a"))
    pid = runtimes.dockerd.pid
    ex = RepairExecutor("node-a", None, settings_for(runtimes, tmp_path), dry_run=True,
                        guard=in_place,
                        store=store, triggers=sick())
    assert ex.poll_once() == ["a-1"]
    agent = store.objs["a-1"]["status"]["agent"]
    assert agent["state"] == "Failed" and "dry run" in agent["message"]
    assert runtimes.dockerd.pid == pid and not (tmp_path / "docker.request").exists()


def test_agent_restarted_mid_action_does_not_repeat(runtimes: Sandbox, tmp_path: Path) -> None:
    obj = nr("a-1", "node-a")
    obj["status"]["agent"] = {"rung": 0, "state": "Started"}
    store = MemoryStore(obj)
    ex = RepairExecutor("node-a", None, settings_for(runtimes, tmp_path), store=store,
                        guard=in_place,
                        triggers=sick())
    assert ex.poll_once() == ["a-1"]
    assert store.objs["a-1"]["status"]["agent"]["state"] == "Failed"


def test_reboot_reported_done_only_after_boot_id_changes(runtimes: Sandbox,
                                                         tmp_path: Path) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    store = MemoryStore(nr("a-1", "node-a", action="reboot"))
    s = settings_for(runtimes, tmp_path, boot_id_path=boot, reboot_command=("true",))
    ex = RepairExecutor("node-a", None, s, store=store,
                        triggers=sick(), guard=in_place)
    ex.poll_once()
    agent = store.objs["a-1"]["status"]["agent"]
    assert agent["state"] == "Done" and agent["bootID"] == "boot-1"
    # a reboot command that returns (the node did not go down) is still only "Done" by word;
    # the operator counts the rung by bootID. Started without a new bootID stays Started:
    store.objs["a-1"]["status"]["agent"] = {"rung": 0, "state": "Started", "bootID": "boot-1"}
    assert ex.poll_once() == []
    boot.write_text("boot-2\n")
    assert ex.poll_once() == ["a-1"]
    assert "boot-2" in store.objs["a-1"]["status"]["agent"]["message"]


def test_start_executor_from_agent_config_over_http(
    own_runtimes: Sandbox, tmp_path: Path, kube_cluster: KubeCluster, crds: Path,
    agent_on_node: AgentNode,
) -> None:
    """The agent's entry point: config tree -> running executor thread -> real restart, on the
    real API server with the chart's CRDs, as the chart's agent ServiceAccount."""
    import dataclasses

    from nodeprobe.config import Config
    from nodeprobe.config.tree import RestartCommands
    from nodeprobe.repair.actions import ActionSettings
    from nodeprobe.repair.executor import start_executor
    from tests.integration.repair.systemd_stub import command

    node = agent_on_node.name
    spool = tmp_path / "spool"
    spool.mkdir()
    stub = command(spool)
    cfg = Config()
    cfg = dataclasses.replace(
        cfg, node_name=node,
        docker=dataclasses.replace(cfg.docker, socket=str(own_runtimes.dockerd.socket)),
        containerd=dataclasses.replace(cfg.containerd,
                                       socket=str(own_runtimes.containerd.socket)),
        repair=dataclasses.replace(
            cfg.repair, enabled=True, dump_dir=str(tmp_path / "dumps"),
            ledger=str(tmp_path / "ledger.json"),
            restart_command=RestartCommands(docker=tuple(a.replace("{unit}", "docker")
                                                         for a in stub),
                                            containerd=("false",))))
    base = dataclasses.replace(settings_for(own_runtimes, spool), poll_interval_s=0.2)
    cfg = dataclasses.replace(cfg, repair=dataclasses.replace(
        cfg.repair, dockerd_pidfile=str(base.dockerd_pidfile),
        dockerd_exec_root=str(base.dockerd_exec_root)))
    name = f"{node}-1"
    path = f"{NODEREMEDIATIONS}/{name}"
    # The cluster admin plays the operator here: the chart's guard admits it for this test.
    with admitted(kube_cluster, operators=(ADMIN,)):
        created = create_nr(kube_cluster, name, node, action="restart-runtime",
                            runtime="dockerd")
        assert "status" not in created  # the status subresource: create drops it
        assert created["spec"]["rung"] == 0  # defaulted by the CRD's schema
        try:
            # What the operator does once the node is drained (the operator's field manager).
            operator_patch(kube_cluster, name, {
                "phase": "ActionRequested", "action": "restart-runtime", "runtime": "dockerd",
                "actionRequestedAt": rfc3339(time.time())})

            def agent_state() -> object:
                nr = kube_cluster.must("GET", path)
                return ((nr.get("status") or {}).get("agent") or {}).get("state")

            # The config tree decides paths and commands; only the poll interval is the test's.
            settings = dataclasses.replace(ActionSettings.from_config(cfg), poll_interval_s=0.2)
            assert settings.dockerd_socket == own_runtimes.dockerd.socket
            ex = start_executor(cfg, kubeconfig=str(agent_on_node.kubeconfig),
                                settings=settings, triggers=sick())
            try:
                with Servicer(own_runtimes, spool) as servicer:
                    wait_for(lambda: agent_state() == "Done", timeout_s=60,
                             what="the executor thread to report Done")
            finally:
                ex.stop()
            status = kube_cluster.must("GET", path)["status"]
            patches = [e for e in kube_cluster.audit(agent_on_node.username)
                       if e["verb"] == "patch" and e["objectRef"].get("name") == name]
            assert [(e["objectRef"]["subresource"], e["responseStatus"]["code"])
                    for e in patches][:2] == [("status", 200), ("status", 200)]  # Started, Done
        finally:
            kube_cluster.request("DELETE", path)
    assert servicer.restarts["docker"] == 1
    assert status["phase"] == "ActionRequested"  # the agent reports; the operator moves phases
    assert Path(status["goroutineDumpPath"]).parent == tmp_path / "dumps"  # kept off tmpfs


def create_nr(cluster: KubeCluster, name: str, node: str, *, action: str,
              runtime: str = "containerd") -> Any:
    """What the operator creates when an episode opens (its field manager, its plan)."""
    return cluster.must("POST", f"{NODEREMEDIATIONS}?fieldManager=nodeprobe-operator-t", {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
        "metadata": {"name": name, "labels": {REMEDIATION_NODE_LABEL: node}},
        "spec": {"nodeName": node, "policy": "p", "plan": {
            "triggers": [{"type": ConditionType.UNAVAILABLE.value}],
            "ladder": [{"action": action, "runtime": runtime}]}},
        "status": {"phase": "Pending"}})


def operator_patch(cluster: KubeCluster, name: str, status: dict[str, Any]) -> None:
    cluster.must("PATCH", f"{NODEREMEDIATIONS}/{name}/status?fieldManager=nodeprobe-operator-t",
                 {"status": status}, content_type="application/merge-patch+json")


def test_reopened_finished_remediation_is_refused_with_a_warning_event(
    runtimes: Sandbox, tmp_path: Path, kube_cluster: KubeCluster, crds: Path,
    agent_on_node: AgentNode,
) -> None:
    """issue 18: a finished NodeRemediation patched back to `{phase: ActionRequested, action:
    reboot, agent: null}` made the agent reboot. Now the API server refuses the reopening (the
    CRD keeps a final phase final), and a request that someone other than the operator moved
    to ActionRequested runs nothing and gets a Warning Event: on the real API server, as the
    chart's agent ServiceAccount."""
    from nodeprobe.publish.kubeclient import new_client

    node = agent_on_node.name
    done, forged = f"{node}-reopened", f"{node}-forged"
    marker = tmp_path / "rebooted"
    s = settings_for(runtimes, tmp_path, reboot_command=("touch", str(marker)))
    api = new_client(kubeconfig=str(agent_on_node.kubeconfig), in_cluster=False)
    guard = AdmissionGuard(kube_fetch(api), name=GUARD)
    ex = RepairExecutor(node, api, s, triggers=TriggerMemory(),  # the node is healthy
                        guard=guard.check)
    # The cluster admin plays the operator (and then the attacker): the guard admits it.
    with admitted(kube_cluster, operators=(ADMIN,)):
        try:
            create_nr(kube_cluster, done, node, action="reboot")
            operator_patch(kube_cluster, done, {
                "phase": "Succeeded", "action": "reboot",
                "actionRequestedAt": rfc3339(time.time() - 600),
                "finishedAt": rfc3339(time.time() - 60),
                "agent": {"rung": 0, "state": "Done", "message": "node rebooted"}})
            assert ex.poll_once() == []  # finished: remembered, nothing to do
            # The attack: someone with patch on noderemediations/status reopens it.
            code, body = kube_cluster.request(
                "PATCH", f"{NODEREMEDIATIONS}/{done}/status", {"status": {
                    "phase": "ActionRequested", "action": "reboot", "agent": None}},
                content_type="application/merge-patch+json")
            assert code == 422, (code, body)
            assert ex.poll_once() == []
            # A live one moved to ActionRequested by someone else than the operator.
            create_nr(kube_cluster, forged, node, action="reboot")
            kube_cluster.must("PATCH", f"{NODEREMEDIATIONS}/{forged}/status", {"status": {
                "phase": "ActionRequested", "action": "reboot",
                "actionRequestedAt": rfc3339(time.time())}},
                content_type="application/merge-patch+json")
            assert ex.poll_once() == []
            assert ex.poll_once() == []  # and it is told once, not on every poll
            events = kube_cluster.must(
                "GET", "/api/v1/namespaces/default/events?fieldSelector="
                       f"involvedObject.name%3D{forged}")["items"]
        finally:
            for name in (done, forged):
                kube_cluster.request("DELETE", f"{NODEREMEDIATIONS}/{name}")
            api.close()
    assert not marker.exists()
    assert [(e["type"], e["reason"], e["involvedObject"]["kind"]) for e in events] == [
        ("Warning", "RepairRefused", "NodeRemediation")]
    assert "not written by the operator" in events[0]["message"], events[0]["message"]


def test_forged_operator_request_on_a_healthy_node_is_refused(
    runtimes: Sandbox, tmp_path: Path,
) -> None:
    """Manager names are the client's choice: a reopened request that claims the operator's
    field manager and clears finishedAt still runs nothing while the agent's own probes say
    the node is healthy, and a request carried out once never runs twice."""
    marker = tmp_path / "rebooted"
    s = settings_for(runtimes, tmp_path, reboot_command=("touch", str(marker)))
    store = MemoryStore(nr("a-1", "node-a", action="reboot"))
    healthy = TriggerMemory()
    ex = RepairExecutor("node-a", None, s, store=store, triggers=healthy, guard=in_place)
    assert ex.poll_once() == []
    assert not marker.exists()
    assert [w[1] for w in store.warnings] == ["RepairRefused"]
    assert "trigger conditions" in store.warnings[0][2]
    # The node turns sick: the same request now runs, once.
    healthy.update({ConditionType.UNAVAILABLE: Condition(
        ConditionType.UNAVAILABLE, Status.TRUE, "DockerdHung", "hung", 0.0)}, now=time.time())
    assert ex.poll_once() == ["a-1"]
    assert marker.exists()
    marker.unlink()
    store.objs["a-1"]["status"]["agent"] = None  # reset by someone: still not twice
    assert ex.poll_once() == []
    assert not marker.exists()
    assert "already carried out once" in store.warnings[-1][2]


@contextlib.contextmanager
def guard_removed(cluster: KubeCluster) -> Iterator[None]:
    """The release's admission policy and binding deleted, as on a cluster that never had
    them (Kubernetes < 1.30); put back as they were afterwards."""
    kept = [(kind, cluster.must("GET", f"{ADMISSION}/{kind}/{GUARD}"))
            for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies")]
    for kind, _ in kept:
        cluster.must("DELETE", f"{ADMISSION}/{kind}/{GUARD}")
    # The API server drops a deleted policy from its admission cache a moment later.
    wait_for(lambda: admits_as_operator(cluster, ADMIN), timeout_s=30,
             what=f"the API server to stop enforcing {GUARD}")
    try:
        yield
    finally:
        for kind, obj in reversed(kept):
            meta = {k: obj["metadata"][k] for k in ("name", "labels", "annotations")
                    if k in obj["metadata"]}
            cluster.must("POST", f"{ADMISSION}/{kind}", {
                "apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta,
                "spec": obj["spec"]})
        wait_for(lambda: not admits_as_operator(cluster, ADMIN), timeout_s=30,
                 what=f"the API server to enforce {GUARD} again")


def test_without_the_admission_guard_an_operator_request_runs_nothing(
    runtimes: Sandbox, tmp_path: Path, kube_cluster: KubeCluster, crds: Path,
    agent_on_node: AgentNode,
) -> None:
    """issue 18 item 1: where the policy that keeps NodeRemediations to the operator is absent,
    a valid operator-written request on a sick node runs nothing and gets a Warning Event; the
    agent reads the guard with the chart's agent ServiceAccount, and acts again once it is
    back. It asks every pass, so its metric (`on_change`) tells before any request arrives."""
    from nodeprobe.publish.kubeclient import new_client

    node = agent_on_node.name
    name = f"{node}-unguarded"
    marker = tmp_path / "rebooted"
    s = settings_for(runtimes, tmp_path, reboot_command=("touch", str(marker)))
    api = new_client(kubeconfig=str(agent_on_node.kubeconfig), in_cluster=False)
    seen: list[bool] = []
    guard = AdmissionGuard(kube_fetch(api), name=GUARD, recheck_s=0.0, on_change=seen.append)
    ex = RepairExecutor(node, api, s, triggers=sick(), guard=guard.check)
    try:
        assert ex.poll_once() == [] and seen == [True]  # no request yet: the guard is known
        with guard_removed(kube_cluster):
            assert ex.poll_once() == [] and seen == [True, False]
            create_nr(kube_cluster, name, node, action="reboot")
            operator_patch(kube_cluster, name, {
                "phase": "ActionRequested", "action": "reboot",
                "actionRequestedAt": rfc3339(time.time())})
            assert ex.poll_once() == []
            assert ex.poll_once() == []  # told once, not on every poll
            events = kube_cluster.must(
                "GET", "/api/v1/namespaces/default/events?fieldSelector="
                       f"involvedObject.name%3D{name}")["items"]
            assert not marker.exists()
            assert seen == [True, False]
        # The guard is back: the same request, still valid, is carried out.
        assert ex.poll_once() == [name]
        assert marker.exists() and seen == [True, False, True]
    finally:
        kube_cluster.request("DELETE", f"{NODEREMEDIATIONS}/{name}")
        api.close()
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "RepairRefused")]
    assert f"ValidatingAdmissionPolicy {GUARD} is not there" in events[0]["message"]
