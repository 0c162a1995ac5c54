"""The executor carries out a NodeRemediation on the real sandbox dockerd and reports back."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodeprobe.model import REMEDIATION_NODE_LABEL, Runtime
from nodeprobe.repair import actions
from nodeprobe.repair.executor import RepairExecutor
from tests.harness.kubecluster import KubeCluster
from tests.harness.runtimes import Sandbox
from tests.integration.agent.agent_process import wait_for
from tests.integration.kube.nodes import AgentNode
from tests.integration.operator.guard import ADMIN, admitted
from tests.integration.repair.systemd_stub import Servicer
from tests.integration.repair.test_repair_actions import settings_for

NODEREMEDIATIONS = "/apis/nodeprobe.io/v1alpha1/noderemediations"


class MemoryStore:
    """NodeRemediations in a dict: the executor's own decisions, without an API server.

    What goes over the wire (CRD schema, status subresource, RBAC) is tested on the real API
    server in test_start_executor_from_agent_config_over_http."""

    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def for_node(self, node: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self.objs.values() if o["spec"]["nodeName"] == node]

    def patch_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.patches.append((name, copy.deepcopy(dict(status))))
        self.objs[name].setdefault("status", {}).update(copy.deepcopy(dict(status)))


def nr(name: str, node: str, *, action: str = "restart-runtime", runtime: str = "dockerd",
       rung: int = 0, phase: str = "ActionRequested") -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"nodeName": node, "rung": rung},
            "status": {"phase": phase, "action": action, "runtime": runtime}}


def test_restart_hung_dockerd_and_report(own_runtimes: Sandbox, tmp_path: Path) -> None:
    store = MemoryStore(nr("a-1", "node-a"), nr("b-1", "node-b"),
                        nr("a-0", "node-a", phase="Draining"))
    s = settings_for(own_runtimes, tmp_path, dump_wait_s=2.0)
    ex = RepairExecutor("node-a", None, s, store=store)
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
    ex = RepairExecutor("node-a", None, settings_for(own_runtimes, tmp_path), store=store)
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
                        store=store)
    assert ex.poll_once() == ["a-1"]
    agent = store.objs["a-1"]["status"]["agent"]
    assert agent["state"] == "Failed" and "dry run" in agent["message"]
    assert runtimes.dockerd.pid == pid and not (tmp_path / "docker.request").exists()


def test_agent_restarted_mid_action_does_not_repeat(runtimes: Sandbox, tmp_path: Path) -> None:
    obj = nr("a-1", "node-a")
    obj["status"]["agent"] = {"rung": 0, "state": "Started"}
    store = MemoryStore(obj)
    ex = RepairExecutor("node-a", None, settings_for(runtimes, tmp_path), store=store)
    assert ex.poll_once() == ["a-1"]
    assert store.objs["a-1"]["status"]["agent"]["state"] == "Failed"


def test_reboot_reported_done_only_after_boot_id_changes(runtimes: Sandbox,
                                                         tmp_path: Path) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    store = MemoryStore(nr("a-1", "node-a", action="reboot"))
    s = settings_for(runtimes, tmp_path, boot_id_path=boot, reboot_command=("true",))
    ex = RepairExecutor("node-a", None, s, store=store)
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
        created = kube_cluster.must("POST", NODEREMEDIATIONS, {
            "apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
            "metadata": {"name": name, "labels": {REMEDIATION_NODE_LABEL: node}},
            "spec": {"nodeName": node, "policy": "p"},
            "status": {"phase": "Pending"}})
        assert "status" not in created  # the status subresource: create drops it
        assert created["spec"]["rung"] == 0  # defaulted by the CRD's schema
        try:
            # What the operator does once the node is drained (cluster-admin here).
            kube_cluster.must("PATCH", f"{path}/status", {"status": {
                "phase": "ActionRequested", "action": "restart-runtime", "runtime": "dockerd"}},
                content_type="application/merge-patch+json")

            def agent_state() -> object:
                nr = kube_cluster.must("GET", path)
                return ((nr.get("status") or {}).get("agent") or {}).get("state")

            # The config tree decides paths and commands; only the poll interval is the test's.
            settings = dataclasses.replace(ActionSettings.from_config(cfg), poll_interval_s=0.2)
            assert settings.dockerd_socket == own_runtimes.dockerd.socket
            ex = start_executor(cfg, kubeconfig=str(agent_on_node.kubeconfig), settings=settings)
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
