"""The chart against the real control plane (tests/harness/kubecluster.py): every render passes
server-side dry-run, and `helm install` / `upgrade` / `uninstall` do what docs/install.md says.
(The own-node admission policy: test_chart_own_node.py.)

kubectl and helm are the real binaries tools/go/build makes, with an admin kubeconfig. Renders
and releases here use names of their own, beside any other install in the session.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kubectl import CRDS, Kubectl, wait
from tests.deploy.umbrella import umbrella_chart
from tools import helm as h

pytestmark = pytest.mark.timeout(600)

CI_VALUES = sorted((h.CHART / "ci").glob("*-values.yaml"))
SCENARIOS = [None, *CI_VALUES]
DRY = "np-dry"
"""Release and namespace of the dry-run renders."""


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
    kubectl.run("create", "namespace", "medik8s-leases", check=False)  # lease-namespace
    text = _render(values)
    proc = _dry_run(kubectl, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    objects = h.objects(text)
    assert proc.stdout.count("(server dry run)") == len(objects), proc.stdout


def test_an_umbrella_charts_render_passes_server_side_dry_run(kubectl: Kubectl, crds: None,
                                                              tmp_path: Path) -> None:
    """nodeprobe as a dependency (`condition: nodeprobe.enabled`, `global` values)."""
    kubectl.run("create", "namespace", DRY, check=False)
    text = h.template(chart=umbrella_chart(tmp_path), include_crds=False, release=DRY,
                      namespace=DRY)
    proc = _dry_run(kubectl, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("(server dry run)") == len(h.objects(text)) > 0, proc.stdout


def test_server_side_dry_run_refuses_an_invalid_object(kubectl: Kubectl, crds: None) -> None:
    """Guard: the dry-run above would catch a field the API does not know or a bad value."""
    bad = ("apiVersion: v1\nkind: Service\nmetadata: {name: np-bad, namespace: default}\n"
           "spec:\n  ports: [{port: 80}]\n  bogusField: 1\n")
    proc = _dry_run(kubectl, bad)
    assert proc.returncode != 0 and "bogusField" in proc.stderr, proc.stdout + proc.stderr
    policy = h.objects(_render(None))
    vaps = [o for o in policy if o["kind"] == "ValidatingAdmissionPolicy"]
    components = {v["metadata"]["labels"]["app.kubernetes.io/component"] for v in vaps}
    assert components == {"agent", "guard"}, components  # own-node and NodeRemediation guards
    for vap in vaps:
        vap["spec"]["validations"][0]["expression"] = "variables.noSuchVariable == 1"
        proc = _dry_run(kubectl, yaml.safe_dump(vap))
        assert proc.returncode != 0, \
            f"{vap['metadata']['name']}: a policy whose CEL does not compile must be refused"


def test_manifests_build_with_kustomize_and_pass_dry_run(kubectl: Kubectl, crds: None) -> None:
    built = kubectl.run("kustomize", str(h.MANIFESTS)).stdout
    kinds = {o["kind"] for o in h.objects(built)}
    assert {"Namespace", "CustomResourceDefinition", "DaemonSet", "Deployment", "ClusterRole",
            "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount", "ConfigMap",
            "Service", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= kinds
    # The session's own release lives in `nodeprobe` (with repair on): a client-side apply over
    # its helm-made objects would merge the two. Check the manifests in a namespace of their own.
    built = re.sub(r"(?m)^(\s*namespace|  name): nodeprobe$", r"\1: np-kustomize", built)
    # A dry-run creates no Namespace, and the rest needs it: create that one for real.
    namespaces = [o for o in h.objects(built) if o["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == ["np-kustomize"]
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


def _newer_chart(tmp_path: Path) -> Path:
    """A copy of the chart whose RemediationPolicy CRD differs (an annotation) and with a new
    default (judge.clearAfter 3 -> 5), as a new chart version's might."""
    chart = tmp_path / "nodeprobe"
    shutil.copytree(h.CHART, chart)
    path = chart / "crds" / "remediationpolicy.yaml"
    crd = yaml.safe_load(path.read_text())
    crd["metadata"].setdefault("annotations", {})[CRD_MARKER] = "newer"
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    values = chart / "values.yaml"
    text, n = re.subn(r"(?m)^(      clearAfter:) 3$", r"\1 5", values.read_text())
    assert n == 1, "values.yaml: no agent.config.judge.clearAfter: 3"
    values.write_text(text)
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
    kubectl.helm("upgrade", RELEASE, str(h.CHART), "-n", ns, "--reset-then-reuse-values",
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

    newer = _newer_chart(tmp_path)
    kubectl.helm("upgrade", RELEASE, str(newer), "-n", ns, "--reset-then-reuse-values")
    assert policy_crd_marker() is None, "helm upgrade changed a CRD: docs/install.md is wrong"
    cm = kubectl.json("get", "configmap", ds, "-n", ns)
    # the user's own values survive, and the new chart's default arrives (--reuse-values would
    # keep the old one: why docs/install.md upgrades with --reset-then-reuse-values)
    judge = yaml.safe_load(cm["data"]["config.yaml"])["judge"]
    assert (judge["raiseAfter"], judge["clearAfter"]) == (4, 5), judge
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
        wait(lambda o=obj: not _present(kubectl, o),
              what=f"{obj['kind']}/{obj['metadata']['name']} to be deleted")
    for crd in CRDS:
        assert kubectl.exists("crd", crd), f"{crd} must survive helm uninstall"
    assert kubectl.exists("remediationpolicy", "np-life-kept"), "and so do the policies"
    assert kubectl.exists("namespace", ns)
