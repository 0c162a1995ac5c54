"""The whole loop on the real control plane, as a default install runs it.

helm installs the chart (repair on, everything else default). The agent and the operator run as
local processes with the chart's own config, arguments and ServiceAccount tokens (bound to the
pods the real controllers made), so the chart's RBAC and admission policy are what is tested.
dockerd is the sandbox's, hung with SIGSTOP; the drain goes through the Eviction API with a real
PodDisruptionBudget that the real disruption controller computes; the agent's restart of dockerd
is real. At the end, the API server's audit log shows each component used exactly its role.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.agent_process import gauge, terminate, wait_for
from tests.harness.chart import Release, helm, install, kubectl
from tests.harness.kubecluster import KubeCluster, TestKubelet, free_port
from tests.harness.runtimes import Sandbox
from tests.integration.kube.rbac import Permission, granted, used
from tests.integration.operator.guard import admitted
from tests.integration.repair.systemd_stub import Servicer, command

NAMESPACE = "np-e2e"
APPS = "e2e-apps"
GROUP = "/apis/nodeprobe.io/v1alpha1"
# Calls that need a situation this run does not create; each is exercised by another test.
NOT_EXERCISED = {
    "operator": {
        # Retention deletes finished NodeRemediations days later (tests/unit/operator).
        Permission("nodeprobe.io", "noderemediations", "delete"),
        # The finalizer is added once per policy; this run creates the policy before the
        # operator starts, so it may land in the first pass or not at all before the end.
        Permission("nodeprobe.io", "remediationpolicies", "patch"),
    },
    "agent": {
        # PATCH bumps the count of a repeated Event (tests/integration/publish aggregation).
        Permission("", "events", "patch"),
    },
}


@pytest.fixture(scope="module")
def e2e_release(kube_cluster: KubeCluster) -> Iterator[Release]:
    release = install(kube_cluster, name="np-e2e", namespace=NAMESPACE,
                      values=["agent.repair.enabled=true"])
    try:
        # The session's install (if any) has a NodeRemediation guard of its own: one
        # nodeprobe per cluster, so its guard admits this second install only when told to.
        with admitted(kube_cluster, operators=(release.username("operator"),),
                      agents=(release.username("agent"),)):
            yield release
    finally:  # its guard would refuse every other install's operator
        helm(kube_cluster, "uninstall", release.name, "-n", release.namespace)


def _deployed(cluster: KubeCluster, kind: str, name: str) -> dict[str, Any]:
    group = "/apis/apps/v1"
    return dict(cluster.must("GET", f"{group}/namespaces/{NAMESPACE}/{kind}/{name}"))


def _container(workload: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    return dict(next(c for c in containers if name in (None, c["name"])))


def _pod_of(cluster: KubeCluster, component: str, node: str | None = None) -> str:
    selector = f"app.kubernetes.io/component%3D{component}"
    fields = f"&fieldSelector=spec.nodeName%3D{node}" if node else ""
    items = cluster.must("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}"
                                f"{fields}")["items"]
    running = [p for p in items if p.get("status", {}).get("phase") == "Running"]
    return str(running[0]["metadata"]["name"]) if running else ""


class Proc:
    """A nodeprobe command as its pod would run it, but on this machine."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("wb") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                         env={**os.environ, **env})

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        terminate(self.proc)


def _agent(cluster: KubeCluster, release: Release, sandbox: Sandbox, node: str,
           tmp: Path) -> tuple[Proc, Proc]:
    """The chart's agent config with this machine's paths in place of the pod's mounts; the
    agent and its privileged repair-executor container, each with the container's args."""
    cm = cluster.must("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/np-e2e-nodeprobe-agent")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["repair"]["enabled"] is True
    config["docker"]["socket"] = str(sandbox.dockerd.socket)
    config["containerd"]["socket"] = str(sandbox.containerd.socket)
    config["paths"] = {"procRoot": "/proc", "hostRoot": "/", "cgroupRoot": "/sys/fs/cgroup"}
    config["metrics"] = {"address": "127.0.0.1", "port": free_port()}
    config["repair"].update({
        "restartCommand": {"docker": [c.replace("{unit}", "docker") for c in command(tmp)]},
        "dumpDir": str(tmp / "dumps"),
        "ledger": str(tmp / "repair-ledger.json"),
        # a short path: unix socket paths end at 107 bytes
        "executorSocket": str(Path(tempfile.mkdtemp(prefix="np-rx-", dir="/tmp")) / "x.sock"),
        "dockerdPidfile": str(sandbox.base / "docker" / "dockerd.pid"),
        "dockerdExecRoot": str(sandbox.base / "docker" / "exec"),
    })
    (tmp / "dumps").mkdir()
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    pod = wait_for(lambda: release.agent_pod(node), timeout_s=60, what="the agent pod")
    kubeconfig = cluster.token_kubeconfig(tmp / "agent.kubeconfig", NAMESPACE,
                                          release.service_account("agent"), pod=pod)
    ds = _deployed(cluster, "daemonsets", "np-e2e-nodeprobe-agent")
    procs = []
    for name in ("repair-executor", "agent"):
        argv = [str(Path(sys.executable).with_name("nodeprobe")), *_container(ds, name)["args"]]
        argv = [*_replace(argv, "--config", str(path)),
                "--node-name", node, "--kubeconfig", str(kubeconfig)]
        procs.append(Proc(argv, tmp / f"{name}.log", {}))
    executor, agent = procs
    return agent, executor


def _operator(cluster: KubeCluster, release: Release, tmp: Path) -> Proc:
    """The Deployment's own arguments and environment, ports moved to free ones."""
    container = _container(_deployed(cluster, "deployments", "np-e2e-nodeprobe-operator"))
    args = [a.replace(":8080/", f":{free_port()}/") for a in container["args"]]
    args = _replace(args, "--metrics-port", str(free_port()))
    env = {}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == \
                "metadata.namespace":
            env[item["name"]] = NAMESPACE
    assert env.get("POD_NAMESPACE") == NAMESPACE, container.get("env")
    pod = wait_for(lambda: _pod_of(cluster, "operator"), timeout_s=60, what="an operator pod")
    kubeconfig = cluster.token_kubeconfig(tmp / "operator.kubeconfig", NAMESPACE,
                                          release.service_account("operator"), pod=pod)
    argv = [str(Path(sys.executable).with_name("nodeprobe")), *args,
            "--kubeconfig", str(kubeconfig)]
    return Proc(argv, tmp / "operator.log", env)


def _replace(argv: list[str], flag: str, value: str) -> list[str]:
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
        return out
    return [*out, flag, value]


def _web(cluster: KubeCluster, label: str) -> None:
    """Two replicas behind a PDB that allows one disruption at a time."""
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": APPS}})
    cluster.must("POST", f"/apis/apps/v1/namespaces/{APPS}/deployments", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                     "nodeSelector": {"e2e": label},
                     "containers": [{"name": "web", "image": "busybox"}]}}}})
    cluster.must("POST", f"/apis/policy/v1/namespaces/{APPS}/poddisruptionbudgets", {
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}})


def _web_pods(cluster: KubeCluster) -> list[dict[str, Any]]:
    items = cluster.must("GET", f"/api/v1/namespaces/{APPS}/pods?labelSelector=app%3Dweb")
    return list(items["items"])


def _ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions") or [])


class Watcher(threading.Thread):
    """Samples what must hold at every instant: ready web pods, and who cordoned the node."""

    def __init__(self, cluster: KubeCluster, node: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.node = cluster, node
        self.min_ready = 99
        self.cordoned = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            pods = _web_pods(self.cluster)
            if pods:
                self.min_ready = min(self.min_ready, sum(_ready(p) for p in pods))
            node = self.cluster.must("GET", f"/api/v1/nodes/{self.node}")
            self.cordoned |= bool(node["spec"].get("unschedulable"))


def test_hung_dockerd_is_remediated_by_a_default_install(
    kube_cluster: KubeCluster, test_kubelet: TestKubelet, e2e_release: Release,
    own_runtimes: Sandbox, tmp_path: Path,
) -> None:
    label = uuid.uuid4().hex[:6]
    sick = f"e2e-{label}-0"
    # The workload lands on the node that will be sick (the only one at first).
    test_kubelet.register(sick, labels={"e2e": label})
    _web(kube_cluster, label)
    wait_for(lambda: sum(_ready(p) for p in _web_pods(kube_cluster)) == 2, timeout_s=60,
             what="two web pods running on the first node")
    for i in range(1, 5):  # minHealthy 80 %: five matched nodes, one sick
        test_kubelet.register(f"e2e-{label}-{i}", labels={"e2e": label})
    kube_cluster.must("POST", f"{GROUP}/remediationpolicies", {
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "RemediationPolicy",
        "metadata": {"name": f"e2e-{label}"},
        "spec": {"nodeSelector": {"matchLabels": {"e2e": label}},
                 "triggers": [{"type": "ContainerRuntimeUnavailable", "status": "True",
                               "for": "5s"}],
                 "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "2m"},
                            {"action": "escalate"}],
                 "settleWindow": "5s",
                 "drain": {"timeout": "90s", "gracePeriodSeconds": 5}}})
    watcher = Watcher(kube_cluster, sick)
    agent, executor = _agent(kube_cluster, e2e_release, own_runtimes, sick, tmp_path)
    operator = _operator(kube_cluster, e2e_release, tmp_path)
    try:
        with Servicer(own_runtimes, tmp_path) as servicer:
            wait_for(lambda: _condition(kube_cluster, sick)[0] == "False", timeout_s=60,
                     what=lambda: f"a healthy node first\n{agent.text()}")
            # Before any request: the agent knows the default install's guard is in place.
            port = yaml.safe_load((tmp_path / "agent.yaml").read_text())["metrics"]["port"]
            wait_for(lambda: gauge(port, "nodeprobe_repair_admission_guard") == 1, timeout_s=30,
                     what=lambda: f"the agent to see the admission guard\n{agent.text()}")
            watcher.start()
            own_runtimes.dockerd.hang()
            nr = wait_for(lambda: _remediation(kube_cluster, sick, "Succeeded"), timeout_s=240,
                          what=lambda: f"Succeeded\nagent:\n{agent.text()}\nexecutor:\n"
                               f"{executor.text()}\noperator:\n{operator.text()}")
            watcher.done.set()
            watcher.join(10)
            assert servicer.restarts["docker"] == 1
        assert watcher.cordoned, "the node was never cordoned"
        assert watcher.min_ready >= 1, "the PodDisruptionBudget was broken"
        node = kube_cluster.must("GET", f"/api/v1/nodes/{sick}")
        assert not node["spec"].get("unschedulable"), "left cordoned"
        assert all(p["spec"]["nodeName"] != sick for p in _web_pods(kube_cluster)
                   if not p["metadata"].get("deletionTimestamp")), "web pods still on the node"
        assert nr["status"]["agent"]["state"] == "Done"
        wait_for(lambda: _condition(kube_cluster, sick)[0] == "False", timeout_s=60,
                 what="the condition cleared after the restart")
        described = kubectl(kube_cluster, "describe", "node", sick)
        assert "ContainerRuntimeUnavailable" in described.stdout, described.stderr
        listed = kubectl(kube_cluster, "get", "noderemediations")
        assert listed.returncode == 0, listed.stderr
        header = listed.stdout.splitlines()[0].split()
        assert {"NODE", "PHASE"} <= set(header), listed.stdout
        assert any(sick in line and "Succeeded" in line for line in listed.stdout.splitlines())
    finally:
        agent.stop()
        executor.stop()
        operator.stop()
        own_runtimes.dockerd.resume()
    for component in ("agent", "operator"):
        _assert_rbac_exact(kube_cluster, e2e_release, component)


def _condition(cluster: KubeCluster, node: str) -> tuple[str, str]:
    obj = cluster.must("GET", f"/api/v1/nodes/{node}")
    for c in obj.get("status", {}).get("conditions") or []:
        if c["type"] == "ContainerRuntimeUnavailable":
            return str(c["status"]), str(c["reason"])
    return "", ""


def _remediation(cluster: KubeCluster, node: str, phase: str) -> dict[str, Any] | None:
    items = cluster.must("GET", f"{GROUP}/noderemediations")["items"]
    for nr in items:
        if nr["metadata"].get("labels", {}).get("nodeprobe.io/node") == node and \
                (nr.get("status") or {}).get("phase") == phase:
            return dict(nr)
    return None


def _assert_rbac_exact(cluster: KubeCluster, release: Release, component: str) -> None:
    """Nothing missing (no 403, every call granted) and nothing unused."""
    sa = release.service_account(component)
    did, forbidden = used(cluster, f"system:serviceaccount:{NAMESPACE}:{sa}")
    may = granted(cluster, NAMESPACE, sa)
    # The operator's probe of its admission guard is refused by design (a dry-run create).
    forbidden = [f for f in forbidden if not (
        component == "operator" and "noderemediations?dryRun=All" in f)]
    assert forbidden == [], f"{component} was refused: {forbidden}"
    assert did - may == set(), f"{component} called what its role does not grant"
    unused = may - did - NOT_EXERCISED[component]
    assert unused == set(), f"{component}'s role grants what it never called: " + json.dumps(
        sorted(unused))
