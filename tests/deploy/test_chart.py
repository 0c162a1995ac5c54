"""The Helm chart renders (defaults and every ci/*-values.yaml), validates, and says what it must.

Rendering uses tools/render (Go text/template + sprig, the engine helm uses); validation uses the
Kubernetes OpenAPI schemas (kubernetes-validate, strict). manifests/ must equal a fresh render.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.config import load
from tools import render as r

ROOT = Path(__file__).resolve().parents[2]
CI_VALUES = sorted((r.CHART / "ci").glob("*-values.yaml"))
SCENARIOS = [None, *CI_VALUES]


@cache
def _render(values: Path | None) -> list[dict[str, Any]]:
    return r.render(r.CHART, [values] if values else []).objects


def _ids(v: Path | None) -> str:
    return "defaults" if v is None else v.name


def _one(objects: list[dict[str, Any]], kind: str, component: str | None = None
         ) -> dict[str, Any]:
    found = [
        o for o in objects
        if o["kind"] == kind and (component is None or o["metadata"].get("labels", {}).get(
            "app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, got {len(found)}"
    return found[0]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_there_is_a_ci_values_file_per_toggle() -> None:
    names = {p.name for p in CI_VALUES}
    for toggle in ("repair", "operator-disabled", "pdb", "servicemonitor", "prometheusrule",
                   "rbac-disabled"):
        assert f"{toggle}-values.yaml" in names


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_every_object_is_valid_kubernetes(values: Path | None) -> None:
    objects = _render(values)
    assert objects
    assert r.validate_objects(objects) == []


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_every_object_carries_the_common_labels(values: Path | None) -> None:
    for obj in _render(values):
        if obj["kind"] == "CustomResourceDefinition":
            continue  # crds/ is installed as written, as helm does
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "nodeprobe"
        assert labels["app.kubernetes.io/instance"] == r.RELEASE
        assert "app.kubernetes.io/component" in labels


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_agent_config_is_accepted_by_nodeprobe(values: Path | None, tmp_path: Path) -> None:
    """The ConfigMap the chart writes loads through the agent's own strict loader."""
    cm = _one(_render(values), "ConfigMap", "agent")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    config = load(str(path))
    assert config.metrics.port == 9103
    assert config.repair.enabled == (values is not None and values.name == "repair-values.yaml")


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_notes_render(values: Path | None) -> None:
    notes = r.render(r.CHART, [values] if values else [], notes=True).text
    assert "kubectl describe node" in notes
    assert "kubectl get nodes -o custom-columns=" in notes


def test_agent_daemonset_defaults() -> None:
    ds = _one(_render(None), "DaemonSet", "agent")
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": 1}}
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert "checksum/config" in spec["template"]["metadata"]["annotations"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] == 0
    assert "hostPID" not in pod
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    assert not sc.get("privileged")
    assert container["args"][:3] == ["agent", "--config", "/etc/nodeprobe/config.yaml"]
    assert "--proc-root" in container["args"] and "--cgroup-root" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "resources" in container
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["docker-sock"]["hostPath"] == {"path": "/var/run/docker.sock",
                                                  "type": "Socket"}
    # containerd recreates its socket on start: a mounted socket file would go stale.
    assert volumes["containerd-dir"]["hostPath"] == {"path": "/run/containerd",
                                                     "type": "Directory"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/run/docker.sock"]["name"] == "docker-sock"
    assert mounts["/host/run/containerd"]["readOnly"] is True
    assert mounts["/host/proc"]["readOnly"] is True
    assert mounts["/host/sys/fs/cgroup"]["readOnly"] is True
    assert not any(m.startswith(("/run", "/var/run/secrets")) and m != "/var/run/docker.sock"
                   for m in mounts), "never mount over the pod's /run (service account token)"
    config = yaml.safe_load(_one(_render(None), "ConfigMap", "agent")["data"]["config.yaml"])
    assert config["docker"]["socket"] == "/var/run/docker.sock"
    assert config["containerd"]["socket"] == "/host/run/containerd/containerd.sock"


def test_repair_mode_adds_host_pid_and_privileged_only_then() -> None:
    ds = _one(_render(r.CHART / "ci" / "repair-values.yaml"), "DaemonSet", "agent")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod["containers"][0]["securityContext"]["privileged"] is True
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert volumes["host-run"] == {"path": "/run", "type": "Directory"}
    assert "docker-sock" not in volumes and "containerd-dir" not in volumes
    config = yaml.safe_load(_one(_render(r.CHART / "ci" / "repair-values.yaml"), "ConfigMap",
                                 "agent")["data"]["config.yaml"])
    assert config["docker"]["socket"] == "/host/run/docker.sock"
    assert config["containerd"]["socket"] == "/host/run/containerd/containerd.sock"
    for values in SCENARIOS:
        if values is not None and values.name == "repair-values.yaml":
            continue
        pod = _one(_render(values), "DaemonSet", "agent")["spec"]["template"]["spec"]
        assert "hostPID" not in pod
        assert not pod["containers"][0]["securityContext"].get("privileged")


def test_config_change_changes_the_checksum(tmp_path: Path) -> None:
    extra = tmp_path / "v.yaml"
    extra.write_text("agent:\n  config:\n    judge:\n      raiseAfter: 4\n")

    def checksum(values: list[Path]) -> str:
        ds = _one(r.render(r.CHART, values).objects, "DaemonSet", "agent")
        return str(ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum([]) != checksum([extra])


def test_operator_deployment() -> None:
    objects = _render(None)
    dep = _one(objects, "Deployment", "operator")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"][0] == "operator"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9104, "liveness": 8080}
    assert _by_kind(objects, "PodDisruptionBudget") == []
    pdb = _one(_render(r.CHART / "ci" / "pdb-values.yaml"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_operator_disabled_leaves_only_the_agent() -> None:
    objects = _render(r.CHART / "ci" / "operator-disabled-values.yaml")
    components = {o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                  for o in objects if o["kind"] != "CustomResourceDefinition"}
    assert components == {"agent"}


def _rules(objects: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    role = _one(objects, "ClusterRole", component)
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def _grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, res, v) for rule in rules for g in rule["apiGroups"]
            for res in rule["resources"] for v in rule["verbs"]}


def test_agent_rbac_is_least_privilege() -> None:
    grants = _grants(_rules(_render(None), "agent"))
    assert grants == {
        ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
        ("", "nodes/status", "patch"),
        ("", "events", "create"), ("", "events", "patch"),
        ("nodeprobe.io", "noderemediations", "get"), ("nodeprobe.io", "noderemediations", "list"),
        ("nodeprobe.io", "noderemediations", "watch"),
        ("nodeprobe.io", "noderemediations/status", "patch"),
    }


def test_operator_rbac_has_what_the_operator_needs_and_no_secrets() -> None:
    grants = _grants(_rules(_render(None), "operator"))
    for need in [("", "nodes", "patch"), ("", "pods", "list"), ("", "pods/eviction", "create"),
                 ("nodeprobe.io", "noderemediations", "create"),
                 ("nodeprobe.io", "noderemediations", "delete"),
                 ("nodeprobe.io", "noderemediations/status", "patch"),
                 ("nodeprobe.io", "remediationpolicies", "patch"),
                 ("nodeprobe.io", "remediationpolicies/status", "patch"),
                 ("", "events", "create"), ("", "namespaces", "list")]:
        assert need in grants, need
    assert not any(v == "*" or res == "*" or g == "*" for g, res, v in grants)
    for values in SCENARIOS:
        for obj in _by_kind(_render(values), "ClusterRole"):
            for rule in obj["rules"]:
                assert "secrets" not in rule["resources"]


@pytest.mark.parametrize("template", ["agent-rbac.yaml", "operator-rbac.yaml"])
def test_every_rbac_rule_says_why(template: str) -> None:
    lines = (r.CHART / "templates" / template).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), f"{template}:{i + 1}: rule without a why"


def test_no_rbac_when_disabled_but_named_service_accounts() -> None:
    objects = _render(r.CHART / "ci" / "rbac-disabled-values.yaml")
    assert _by_kind(objects, "ClusterRole") == []
    assert _by_kind(objects, "ServiceAccount") == []
    ds = _one(objects, "DaemonSet", "agent")
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "nodeprobe-agent-external"


def test_monitoring_objects_only_when_enabled() -> None:
    assert _by_kind(_render(None), "ServiceMonitor") == []
    assert _by_kind(_render(None), "PrometheusRule") == []
    monitors = _by_kind(_render(r.CHART / "ci" / "servicemonitor-values.yaml"), "ServiceMonitor")
    assert len(monitors) == 2
    for sm in monitors:
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"


def test_prometheus_rule_holds_exactly_the_rules_file() -> None:
    rule = _one(_render(r.CHART / "ci" / "prometheusrule-values.yaml"), "PrometheusRule")
    on_disk = yaml.safe_load((r.CHART / "files" / "nodeprobe.rules.yaml").read_text())
    assert rule["spec"]["groups"] == on_disk["groups"]


def test_chart_crds_are_the_operators_crds() -> None:
    source = ROOT / "nodeprobe" / "operator" / "crds"
    theirs = {p.name: p.read_bytes() for p in source.glob("*.yaml")}
    ours = {p.name: p.read_bytes() for p in (r.CHART / "crds").glob("*.yaml")}
    assert theirs, f"{source} has no CRDs yet"
    assert ours == theirs, ("charts/nodeprobe/crds/ differs from nodeprobe/operator/crds/: "
                            "run `python -m tools.render --write-manifests`")
    names = {yaml.safe_load(b)["metadata"]["name"] for b in ours.values()}
    assert names == {"remediationpolicies.nodeprobe.io", "noderemediations.nodeprobe.io"}


def test_unknown_values_key_is_rejected_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  repiar:\n    enabled: true\n")
    with pytest.raises(r.RenderError, match=r"agent: Additional properties .*'repiar'"):
        r.render(r.CHART, [bad])


def test_required_service_account_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  serviceAccount:\n    create: false\n")
    with pytest.raises(r.RenderError, match=r"agent\.serviceAccount\.name is required"):
        r.render(r.CHART, [bad])


def test_missing_values_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(r.RenderError, match="does not exist"):
        r.render(r.CHART, [tmp_path / "nope.yaml"])


def test_validation_catches_an_invalid_object(tmp_path: Path) -> None:
    """Guard against a validator that passes everything."""
    chart = tmp_path / "chart"
    shutil.copytree(r.CHART, chart)
    (chart / "templates" / "broken.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n  labels: {a: b}\n"
        "spec:\n  ports:\n    - port: not-a-number\n  bogusField: 1\n")
    problems = r.validate_objects(r.render(chart).objects)
    assert any("Service/x" in p for p in problems)


def test_manifests_equal_a_fresh_default_render() -> None:
    stale = r.stale_manifests()
    assert stale == [], (f"manifests/ is out of date ({', '.join(stale)}): run "
                         "`python -m tools.render --write-manifests`")


def test_kubectl_kustomize_builds_manifests() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found: apt-get install kubernetes-client (make deps does)"
    proc = subprocess.run([kubectl, "kustomize", str(r.MANIFESTS)], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "CustomResourceDefinition", "DaemonSet", "Deployment", "ClusterRole",
            "ClusterRoleBinding", "ServiceAccount", "ConfigMap", "Service"} <= kinds
    assert r.validate_objects(objects) == []
