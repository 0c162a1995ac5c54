"""The chart against the real control plane (tests/harness/kubecluster.py): every render passes
server-side dry-run, `helm install` / `upgrade` / `uninstall` do what docs/install.md says, and
the own-node admission policy lets an agent's token write its own Node's status and no other.

kubectl and helm are the real binaries tools/go/build makes; they talk to the server with an
admin kubeconfig, except where a test is about what the agent's own token may do. Renders and
releases here use names of their own, beside the session's default install (`release`).
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import monitoring_crds
from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.integration.kube.chart import Release, install
from tools import helm as h

pytestmark = pytest.mark.timeout(600)

CI_VALUES = sorted((h.CHART / "ci").glob("*-values.yaml"))
SCENARIOS = [None, *CI_VALUES]
DRY = "np-dry"
"""Release and namespace of the dry-run renders."""
CRDS = ("remediationpolicies.nodeprobe.io", "noderemediations.nodeprobe.io")
DEADLINE_S = 60.0
"""Generous: the machine is shared, and a new admission policy takes a moment to be enforced."""


class Kubectl:
    """The real kubectl with one kubeconfig; every call has a timeout and returns its output."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.binary = str(tool("kubectl"))

    def run(self, *args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, "--kubeconfig", str(self.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, check=False,
                              timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} -> {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def json(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run(*args, "-o", "json").stdout)
        return out

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        ns = ["-n", namespace] if namespace else []
        proc = self.run("get", kind, name, *ns, "--ignore-not-found", "-o", "name", check=False)
        assert proc.returncode == 0, proc.stderr
        return bool(proc.stdout.strip())

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return h.helm(*args, "--kubeconfig", str(self.kubeconfig), check=check)


def _wait(predicate: Any, *, what: str, timeout_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


def token_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    claims: dict[str, Any] = json.loads(raw)
    return claims


@pytest.fixture(scope="module")
def kubectl(kube_cluster: KubeCluster) -> Kubectl:
    return Kubectl(kube_cluster.admin_kubeconfig)


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    """The chart's CRDs and prometheus-operator's, established (dry-run needs the kinds)."""
    files = [*sorted((h.CHART / "crds").glob("*.yaml")), *monitoring_crds.crd_files()]
    for f in files:
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(f))
    names = [*CRDS, *(f"{k}.monitoring.coreos.com" for k in monitoring_crds.KINDS)]
    kubectl.run("wait", "--for", "condition=Established", "--timeout", "120s",
                *[f"crd/{n}" for n in names])


@cache
def _render(values: Path | None) -> str:
    return h.template([values] if values else [], include_crds=False, release=DRY,
                      namespace=DRY)


def _ids(v: Path | None) -> str:
    return "defaults" if v is None else v.name


def _dry_run(kubectl: Kubectl, text: str) -> subprocess.CompletedProcess[str]:
    return kubectl.run("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=text,
                       check=False)


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_every_render_passes_server_side_dry_run(kubectl: Kubectl, crds: None,
                                                 values: Path | None) -> None:
    kubectl.run("create", "namespace", DRY, check=False)
    text = _render(values)
    proc = _dry_run(kubectl, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    objects = h.objects(text)
    assert proc.stdout.count("(server dry run)") == len(objects), proc.stdout


def test_server_side_dry_run_refuses_an_invalid_object(kubectl: Kubectl, crds: None) -> None:
    """Guard: the dry-run above would catch a field the API does not know or a bad value."""
    bad = ("apiVersion: v1\nkind: Service\nmetadata: {name: np-bad, namespace: default}\n"
           "spec:\n  ports: [{port: 80}]\n  bogusField: 1\n")
    proc = _dry_run(kubectl, bad)
    assert proc.returncode != 0 and "bogusField" in proc.stderr, proc.stdout + proc.stderr
    policy = h.objects(_render(None))
    (vap,) = [o for o in policy if o["kind"] == "ValidatingAdmissionPolicy"]
    vap["spec"]["validations"][0]["expression"] = "variables.noSuchVariable == 1"
    proc = _dry_run(kubectl, yaml.safe_dump(vap))
    assert proc.returncode != 0, "a policy whose CEL does not compile must be refused"


def test_manifests_build_with_kustomize_and_pass_dry_run(kubectl: Kubectl, crds: None) -> None:
    built = kubectl.run("kustomize", str(h.MANIFESTS)).stdout
    kinds = {o["kind"] for o in h.objects(built)}
    assert {"Namespace", "CustomResourceDefinition", "DaemonSet", "Deployment", "ClusterRole",
            "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "ConfigMap",
            "Service", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= kinds
    # A dry-run creates no Namespace, and the rest needs it: create that one for real.
    namespaces = [o for o in h.objects(built) if o["kind"] == "Namespace"]
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(namespaces))
    proc = _dry_run(kubectl, built)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# helm install / upgrade / uninstall

RELEASE = "np-life"


def _release_objects(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    manifest = kubectl.helm("get", "manifest", RELEASE, "-n", namespace).stdout
    return h.objects(manifest)


def _present(kubectl: Kubectl, obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    return kubectl.exists(f"{obj['kind']}.{obj['apiVersion'].split('/')[0]}"
                          if "/" in obj["apiVersion"] else obj["kind"],
                          meta["name"], meta.get("namespace"))


@pytest.fixture
def life_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A new namespace labelled as docs/install.md says; the release is removed whatever
    happens. (Its own name each run: a deleted namespace lingers while it is finalized.)"""
    ns = f"np-life-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", ns)
    kubectl.run("label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged")
    try:
        yield ns
    finally:
        kubectl.helm("uninstall", RELEASE, "-n", ns, "--wait", check=False)
        kubectl.run("delete", "remediationpolicy", "np-life-kept", "--ignore-not-found",
                    check=False)
        kubectl.run("delete", "namespace", ns, "--wait=false", check=False)


CRD_MARKER = "nodeprobe.io/test-chart-version"


def _chart_with_changed_crd(tmp_path: Path) -> Path:
    """A copy of the chart whose RemediationPolicy CRD differs (an annotation), as a new chart
    version's might."""
    chart = tmp_path / "nodeprobe"
    shutil.copytree(h.CHART, chart)
    path = chart / "crds" / "remediationpolicy.yaml"
    crd = yaml.safe_load(path.read_text())
    crd["metadata"].setdefault("annotations", {})[CRD_MARKER] = "newer"
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def test_helm_install_upgrade_uninstall(kubectl: Kubectl, life_namespace: str,
                                        tmp_path: Path) -> None:
    ns = life_namespace
    # install: CRDs established, every object accepted and there, NOTES say what to do next.
    installed = kubectl.helm("install", RELEASE, str(h.CHART), "-n", ns)
    for crd in CRDS:
        kubectl.run("wait", "--for", "condition=Established", "--timeout", "120s", f"crd/{crd}")
    objects = _release_objects(kubectl, ns)
    assert {o["kind"] for o in objects} >= {"DaemonSet", "Deployment", "ClusterRole", "Role",
                                            "ValidatingAdmissionPolicy"}
    for obj in objects:
        assert _present(kubectl, obj), f"{obj['kind']}/{obj['metadata']['name']} not created"
    notes = installed.stdout
    assert f"kubectl -n {ns} exec ds/{RELEASE}-nodeprobe-agent -- nodeprobe check" in notes
    assert "pod-security.kubernetes.io/enforce=privileged" in notes
    assert "helm upgrade does not change the CRDs" in notes

    # upgrade with changed values: the config rolls the pods, a toggle adds its object.
    ds = f"{RELEASE}-nodeprobe-agent"

    def checksum() -> str:
        got = kubectl.json("get", "ds", ds, "-n", ns)
        return str(got["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    before = checksum()
    kubectl.helm("upgrade", RELEASE, str(h.CHART), "-n", ns, "--reuse-values",
                 "--set", "agent.config.judge.raiseAfter=4",
                 "--set", "operator.podDisruptionBudget.enabled=true")
    assert checksum() != before, "a config change must roll the agent pods"
    cm = kubectl.json("get", "configmap", ds, "-n", ns)
    assert yaml.safe_load(cm["data"]["config.yaml"])["judge"]["raiseAfter"] == 4
    assert kubectl.exists("pdb", f"{RELEASE}-nodeprobe-operator", ns)
    history = json.loads(kubectl.helm("history", RELEASE, "-n", ns, "-o", "json").stdout)
    assert [r["status"] for r in history] == ["superseded", "deployed"]

    # A new chart version's CRDs: `helm upgrade` leaves them; the documented command applies them.
    def policy_crd_marker() -> str | None:
        crd = kubectl.json("get", "crd", CRDS[0])
        return (crd["metadata"].get("annotations") or {}).get(CRD_MARKER)

    newer = _chart_with_changed_crd(tmp_path)
    kubectl.helm("upgrade", RELEASE, str(newer), "-n", ns, "--reuse-values")
    assert policy_crd_marker() is None, "helm upgrade changed a CRD: docs/install.md is wrong"
    shown = kubectl.helm("show", "crds", str(newer)).stdout
    try:
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=shown)
        assert policy_crd_marker() == "newer"
    finally:  # the CRDs are shared with the other tests: back to the chart's own
        kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-",
                    stdin=kubectl.helm("show", "crds", str(h.CHART)).stdout)
    assert policy_crd_marker() is None

    # uninstall: every templated object goes; what docs/install.md says stays, stays.
    objects = _release_objects(kubectl, ns)
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "nodeprobe.io/v1alpha1", "kind": "RemediationPolicy",
        "metadata": {"name": "np-life-kept"},
        "spec": {"triggers": [{"type": "ContainerRuntimeUnavailable", "status": "True",
                               "for": "3m"}],
                 "ladder": [{"action": "escalate"}], "dryRun": True}}))
    kubectl.helm("uninstall", RELEASE, "-n", ns, "--wait")
    for obj in objects:
        _wait(lambda o=obj: not _present(kubectl, o),
              what=f"{obj['kind']}/{obj['metadata']['name']} to be deleted")
    for crd in CRDS:
        assert kubectl.exists("crd", crd), f"{crd} must survive helm uninstall"
    assert kubectl.exists("remediationpolicy", "np-life-kept"), "and so do the policies"
    assert kubectl.exists("namespace", ns)


# ---------------------------------------------------------------------------------------------
# agent.ownNodeOnly: an agent's token writes its own Node's status, and no other node's

OWN = "np-own"
"""Release and namespace of the install whose agent identity is tested."""
AGENT_POLICY = f"{OWN}-nodeprobe-agent-own-node"
NOT_OWN = "may write only its own node"


def _condition_patch() -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"conditions": [{
        "type": "ContainerRuntimeUnavailable", "status": "False", "reason": "NodeprobeTest",
        "message": "written by the agent's token", "lastHeartbeatTime": now,
        "lastTransitionTime": now}]}}


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


class TokenClient:
    """PATCH requests with only a bearer token, as the agent sends them (kubectl patch would
    GET the object first, which the agent's role does not allow and the agent never does)."""

    def __init__(self, cluster: KubeCluster, token: str) -> None:
        self.server = cluster.server
        self.token = token
        self.ssl = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))

    def patch(self, path: str, body: dict[str, Any], content_type: str) -> Reply:
        req = urllib.request.Request(
            self.server + path, data=json.dumps(body).encode(), method="PATCH",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=30) as resp:
                return Reply(resp.status, resp.read().decode())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read().decode())

    def node_status(self, node: str) -> Reply:
        return self.patch(f"/api/v1/nodes/{node}/status", _condition_patch(),
                          "application/strategic-merge-patch+json")

    def remediation_status(self, name: str) -> Reply:
        return self.patch(f"/apis/nodeprobe.io/v1alpha1/noderemediations/{name}/status",
                          {"status": {"agent": {"note": "from the agent"}}},
                          "application/merge-patch+json")


def _denied_by_policy(reply: Reply) -> bool:
    return reply.status == 403 and AGENT_POLICY in reply.body


@dataclass(frozen=True)
class Nodes:
    mine: str
    """Where the agent pod whose token is used runs."""
    other: str
    canary: str
    """A node the agent's token writes to until the policy denies it, so writes that land before
    the policy is enforced never land on `other`."""
    bound: TokenClient
    """The agent's token bound to the DaemonSet's pod on `mine` (so it names `mine`)."""
    unbound: TokenClient
    """The agent's token bound to nothing."""


@pytest.fixture(scope="module")
def release(kube_cluster: KubeCluster, kubectl: Kubectl) -> Iterator[Release]:
    """`helm install` under names of its own, in repair mode: the own-node policy is the same
    as by default, and only there may the agent write NodeRemediations (their status) too."""
    installed = install(kube_cluster, name=OWN, namespace=OWN,
                        values=["agent.repair.enabled=true"])
    try:
        yield installed
    finally:
        kubectl.helm("uninstall", OWN, "-n", OWN, "--wait", check=False)


@pytest.fixture
def agent_nodes(kube_cluster: KubeCluster, test_kubelet: TestKubelet, release: Release
                ) -> Iterator[Nodes]:
    """Three Nodes, the install's agent pod on the first (made by the DaemonSet controller),
    that pod's token, and a NodeRemediation for each of the first two."""
    tag = uuid.uuid4().hex[:6]
    mine, other, canary = (f"own-{tag}-{n}" for n in ("mine", "other", "canary"))
    for node in (mine, other, canary):
        test_kubelet.register(node)
    sa = release.service_account("agent")
    try:
        pod = _wait(lambda: release.agent_pod(mine), what=f"the agent pod on {mine}")
        for node in (mine, other):
            kube_cluster.must("POST", "/apis/nodeprobe.io/v1alpha1/noderemediations", {
                "apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
                "metadata": {"name": node, "labels": {"nodeprobe.io/node": node}},
                "spec": {"nodeName": node, "policy": "test"}})
        yield Nodes(
            mine=mine, other=other, canary=canary,
            bound=TokenClient(kube_cluster, kube_cluster.token(release.namespace, sa, pod=pod)),
            unbound=TokenClient(kube_cluster, kube_cluster.token(release.namespace, sa)))
    finally:
        for node in (mine, other):
            kube_cluster.request("DELETE", f"/apis/nodeprobe.io/v1alpha1/noderemediations/{node}")
        for node in (mine, other, canary):
            kube_cluster.request("DELETE", f"/api/v1/nodes/{node}")


def _enforced(nodes: Nodes) -> None:
    """A new policy is enforced once the API server has compiled it: wait for a denial."""
    _wait(lambda: _denied_by_policy(nodes.bound.node_status(nodes.canary)),
          what="the own-node policy to be enforced")


def test_agent_token_patches_its_own_node_status_and_gets_403_on_another(
    kube_cluster: KubeCluster, kubectl: Kubectl, release: Release, agent_nodes: Nodes
) -> None:
    nodes = agent_nodes
    claims = token_claims(nodes.bound.token)
    assert claims["kubernetes.io"]["node"]["name"] == nodes.mine, claims
    # RBAC alone lets the agent write every node's status: the 403 below is the policy's.
    can = kubectl.run("auth", "can-i", "patch", "nodes", "--subresource=status", "--as",
                      release.username("agent"), check=False)
    assert can.stdout.strip() == "yes", can.stdout + can.stderr
    _enforced(nodes)

    denied = nodes.bound.node_status(nodes.other)
    assert _denied_by_policy(denied), denied.body
    assert f"nodeprobe agent on node {nodes.mine} {NOT_OWN}, not {nodes.other}" in denied.body
    own = nodes.bound.node_status(nodes.mine)
    assert own.status == 200, own.body

    def unavailable(node: str) -> list[dict[str, Any]]:
        obj = kube_cluster.must("GET", f"/api/v1/nodes/{node}")
        return [c for c in obj["status"].get("conditions") or []
                if c["type"] == "ContainerRuntimeUnavailable"]

    assert [c["reason"] for c in unavailable(nodes.mine)] == ["NodeprobeTest"]
    assert unavailable(nodes.other) == []

    # The same for the NodeRemediations the agent reports on.
    mine = nodes.bound.remediation_status(nodes.mine)
    assert mine.status == 200, mine.body
    theirs = nodes.bound.remediation_status(nodes.other)
    assert _denied_by_policy(theirs), theirs.body

    # A token bound to no pod names no node: it writes none.
    unbound = nodes.unbound.node_status(nodes.mine)
    assert _denied_by_policy(unbound), unbound.body
    assert "not bound to a pod on a node" in unbound.body


def test_other_identities_are_not_held_by_the_policy(
    kube_cluster: KubeCluster, agent_nodes: Nodes
) -> None:
    """The policy matches the agent's ServiceAccount only: the admin still writes any node."""
    _enforced(agent_nodes)
    kube_cluster.must("PATCH", f"/api/v1/nodes/{agent_nodes.other}/status", _condition_patch(),
                      content_type="application/strategic-merge-patch+json")
    obj = kube_cluster.must("GET", f"/api/v1/nodes/{agent_nodes.other}")
    assert "NodeprobeTest" in json.dumps(obj["status"])
