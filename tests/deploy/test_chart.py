"""The Helm chart, rendered by real helm (defaults and every ci/*-values.yaml), says what it must.

`helm lint --strict` and `helm template` run the helm binary tools/go/build makes; the API
server's own checks of each render (server-side dry-run, install, upgrade) are in
test_chart_server.py. manifests/ must equal a fresh default render.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.config import load
from nodeprobe.kubectl_check import AGENT_SELECTOR
from tests.deploy.umbrella import umbrella_chart
from tests.harness.gotools import tool, versions
from tools import helm as h

ROOT = Path(__file__).resolve().parents[2]
CI_VALUES = sorted((h.CHART / "ci").glob("*-values.yaml"))
SCENARIOS = [None, *CI_VALUES]
RULES_WITH_WHY = ("agent-rbac.yaml", "operator-rbac.yaml")


@cache
def _render(values: Path | None) -> list[dict[str, Any]]:
    return h.objects(h.template([values] if values else []))


def _ids(v: Path | None) -> str:
    return "defaults" if v is None else v.name


def _ci(name: str) -> Path:
    return h.CHART / "ci" / f"{name}-values.yaml"


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


def _agent_pod(values: Path | None) -> dict[str, Any]:
    pod: dict[str, Any] = _one(_render(values), "DaemonSet", "agent")["spec"]["template"]["spec"]
    return pod


def _agent_config(values: Path | None) -> dict[str, Any]:
    cfg: dict[str, Any] = yaml.safe_load(
        _one(_render(values), "ConfigMap", "agent")["data"]["config.yaml"])
    return cfg


def test_there_is_a_ci_values_file_per_toggle() -> None:
    names = {p.name for p in CI_VALUES}
    for toggle in ("repair", "operator-disabled", "pdb-disabled", "servicemonitor",
                   "prometheusrule", "extra-volumes", "sidecars", "topology-spread",
                   "image-registry", "servicemonitor-relabelings", "networkpolicy",
                   "prometheusrule-tuned", "lease-namespace",
                   "dashboard-mixin",
                   "rbac-disabled", "containerd-only", "explicit-sockets",
                   "own-node-only-disabled", "persistent-journal-disabled", "journal-only",
                   "token-expiration"):
        assert f"{toggle}-values.yaml" in names


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_helm_lint_strict_passes(values: Path | None) -> None:
    out = h.lint([values] if values else [])
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_helm_lint_strict_fails_on_a_broken_chart(tmp_path: Path) -> None:
    """Guard against a lint that passes everything."""
    chart = tmp_path / "nodeprobe"
    shutil.copytree(h.CHART, chart)
    (chart / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    with pytest.raises(h.HelmError, match="nil pointer"):
        h.lint(chart=chart)


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_every_object_carries_the_common_labels(values: Path | None) -> None:
    objects = _render(values)
    assert objects
    for obj in objects:
        if obj["kind"] == "CustomResourceDefinition":
            continue  # crds/ is installed as written, as helm does
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "nodeprobe"
        assert labels["app.kubernetes.io/instance"] == h.RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert "app.kubernetes.io/component" in labels


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_agent_config_is_accepted_by_nodeprobe(values: Path | None, tmp_path: Path) -> None:
    """The ConfigMap the chart writes loads through the agent's own strict loader."""
    cm = _one(_render(values), "ConfigMap", "agent")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    config = load(str(path))
    assert config.metrics.port == 9103
    assert config.repair.enabled == (values == _ci("repair"))
    # Every in-pod path is in the file: `nodeprobe check --config` in the pod needs no flags.
    assert (config.paths.host_root, config.paths.proc_root, config.paths.cgroup_root) == (
        "/host", "/host/proc", "/host/sys/fs/cgroup")


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_no_host_path_can_become_a_directory_where_a_socket_belongs(values: Path | None) -> None:
    """kubelet creates a directory for a missing hostPath of type "" or DirectoryOrCreate; at a
    runtime's socket path that keeps the runtime from starting. Socket/File types fail the pod
    on a node without that runtime. Only type Directory, on directories that are there."""
    pod = _agent_pod(values)
    for vol in pod["volumes"]:
        if "hostPath" not in vol:
            continue
        path, kind = vol["hostPath"]["path"], vol["hostPath"].get("type", "")
        if values == _ci("repair") and vol["name"] == "dumps":
            assert path == "/var/lib/nodeprobe/dumps" and kind == "DirectoryOrCreate"
            continue
        assert kind == "Directory", vol
        assert not path.endswith(".sock"), vol
        run_dir = path.replace("/var/run", "/run", 1)
        assert run_dir == "/run" or not run_dir.startswith("/run/"), (
            f"{vol}: a directory under /run belongs to a runtime; /run is mounted whole")


def test_agent_daemonset_defaults() -> None:
    ds = _one(_render(None), "DaemonSet", "agent")
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate",
                                      "rollingUpdate": {"maxUnavailable": 1}}
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["automountServiceAccountToken"] is True
    assert "checksum/config" in spec["template"]["metadata"]["annotations"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] == 0
    assert "hostPID" not in pod
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["allowPrivilegeEscalation"] is False
    assert not sc.get("privileged")
    assert container["args"] == ["agent", "--config", "/etc/nodeprobe/config.yaml"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "resources" in container
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["host-run"]["hostPath"] == {"path": "/run", "type": "Directory"}
    assert {n for n, v in volumes.items() if "hostPath" in v} == {
        "host-run", "host-proc", "host-cgroup", "host-journal"}
    assert volumes["host-journal"]["hostPath"] == {"path": "/var/log", "type": "Directory"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/host/run"] == {"name": "host-run", "mountPath": "/host/run",
                                   "readOnly": True, "mountPropagation": "HostToContainer"}
    assert mounts["/host/proc"]["readOnly"] is True
    assert mounts["/host/sys/fs/cgroup"]["readOnly"] is True
    assert mounts["/host/var/log"]["readOnly"] is True
    assert not any(m.startswith(("/run", "/var/run")) for m in mounts), (
        "never mount over the pod's /run (the service account token is under /var/run/secrets)")
    config = _agent_config(None)
    assert config["docker"] == {"enabled": True, "socket": "auto"}
    assert config["containerd"] == {"enabled": True, "socket": "auto"}


def test_explicit_sockets_are_reached_through_run_or_their_own_directory() -> None:
    values = _ci("explicit-sockets")
    config = _agent_config(values)
    assert config["docker"]["socket"] == "/host/run/docker.sock"
    assert config["containerd"]["socket"] == (
        "/host/var/snap/microk8s/common/run/containerd.sock")
    pod = _agent_pod(values)
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert volumes["containerd-dir"] == {"path": "/var/snap/microk8s/common/run",
                                         "type": "Directory"}
    assert "docker-dir" not in volumes
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["containerd-dir"]["mountPath"] == "/host/var/snap/microk8s/common/run"
    assert mounts["containerd-dir"]["readOnly"] is True


def test_containerd_only_turns_dockerd_off() -> None:
    config = _agent_config(_ci("containerd-only"))
    assert config["docker"]["enabled"] is False
    assert config["containerd"] == {"enabled": True, "socket": "auto",
                                    "requireNetworkReady": False}


def test_a_token_life_mounts_the_agents_token_itself_with_that_life() -> None:
    default, pod = _agent_pod(None), _agent_pod(_ci("token-expiration"))
    assert default["automountServiceAccountToken"] is True
    assert not any(v["name"] == "kube-api-access-nodeprobe" for v in default["volumes"])
    assert pod["automountServiceAccountToken"] is False
    (volume,) = [v for v in pod["volumes"] if v["name"] == "kube-api-access-nodeprobe"]
    sources = volume["projected"]["sources"]
    assert sources[0]["serviceAccountToken"] == {"path": "token", "expirationSeconds": 600}
    assert {"configMap", "downwardAPI"} == {k for src in sources[1:] for k in src}
    (agent,) = [c for c in pod["containers"] if c["name"] == "agent"]
    assert {"name": "kube-api-access-nodeprobe", "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in agent["volumeMounts"]


def test_a_token_life_under_the_api_servers_minimum_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump({"agent": {"serviceAccount": {"tokenExpirationSeconds": 300}}}))
    with pytest.raises(h.HelmError, match="tokenExpirationSeconds"):
        h.template([bad])


AGENT_SECURITY = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                  "capabilities": {"drop": ["ALL"]}}


def test_repair_mode_puts_the_privilege_in_a_separate_small_container() -> None:
    """issue 18: repair mode made the whole agent privileged, its HTTP server and API parsing
    included. Now the agent keeps every capability dropped and only repair-executor, which
    serves nothing but its socket, is privileged."""
    pod = _agent_pod(_ci("repair"))
    assert pod["hostPID"] is True
    agent, executor = pod["containers"]
    assert agent["name"] == "agent" and agent["securityContext"] == AGENT_SECURITY
    assert executor["name"] == "repair-executor"
    assert executor["securityContext"] == {"privileged": True, "readOnlyRootFilesystem": True}
    assert executor["args"] == ["repair-executor", "--config", "/etc/nodeprobe/config.yaml"]
    assert "ports" not in executor and "livenessProbe" not in executor
    assert executor["resources"]["limits"]["memory"] == "96Mi"
    mounts = {m["name"]: m["mountPath"] for m in executor["volumeMounts"]}
    assert mounts["repair-socket"] == "/run/nodeprobe-repair"
    assert {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}["repair-socket"] == \
        "/run/nodeprobe-repair"
    assert "dumps" not in {m["name"] for m in agent["volumeMounts"]}
    socket_volume = next(v for v in pod["volumes"] if v["name"] == "repair-socket")
    assert socket_volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    assert volumes["host-run"] == {"path": "/run", "type": "Directory"}
    config = _agent_config(_ci("repair"))
    assert config["repair"]["dockerdPidfile"] == "/host/run/docker.pid"
    assert config["repair"]["executorSocket"] == "/run/nodeprobe-repair/executor.sock"
    assert config["repair"]["ledger"] == "/var/lib/nodeprobe/dumps/repair-ledger.json"
    for values in SCENARIOS:
        if values == _ci("repair"):
            continue
        pod = _agent_pod(values)
        assert "hostPID" not in pod
        assert "repair-executor" not in [c["name"] for c in pod["containers"]]
        assert not pod["containers"][0]["securityContext"].get("privileged")


def test_config_change_changes_the_checksum(tmp_path: Path) -> None:
    extra = tmp_path / "v.yaml"
    extra.write_text("agent:\n  config:\n    judge:\n      raiseAfter: 4\n")

    def checksum(values: list[Path]) -> str:
        ds = _one(h.objects(h.template(values)), "DaemonSet", "agent")
        return str(ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum([]) != checksum([extra])


def test_operator_deployment() -> None:
    objects = _render(None)
    dep = _one(objects, "Deployment", "operator")
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"][0] == "operator"
    assert not any("peering" in a for a in container["args"]), "leader election needs no flag"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9104, "liveness": 8080}
    # one node drain cannot take both replicas: spread by default, and a PDB keeps one
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == dep["spec"]["selector"][
        "matchLabels"]
    pdb = _one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]
    assert _by_kind(_render(_ci("pdb-disabled")), "PodDisruptionBudget") == []
    one = h.objects(h.template(set_values=["operator.replicas=1"]))
    assert _by_kind(one, "PodDisruptionBudget") == [], "one replica: a PDB would block drains"


def test_operator_disabled_leaves_only_the_agent() -> None:
    objects = _render(_ci("operator-disabled"))
    components = {o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                  for o in objects if o["kind"] != "CustomResourceDefinition"}
    assert components == {"agent", "guard"}  # the NodeRemediation guard stays (issue 18)


Grant = tuple[str, str, str, str]
"""(namespace or "*" for cluster-wide, apiGroup, resource, verb)."""


def _grants(objects: list[dict[str, Any]], component: str) -> set[Grant]:
    out: set[Grant] = set()
    for role in objects:
        if role["kind"] not in ("ClusterRole", "Role") or role["metadata"]["labels"][
                "app.kubernetes.io/component"] != component:
            continue
        ns = role["metadata"].get("namespace", "*") if role["kind"] == "Role" else "*"
        out |= {(ns, g, res, v) for rule in role["rules"] for g in rule["apiGroups"]
                for res in rule["resources"] for v in rule["verbs"]}
    return out


def _bound(objects: list[dict[str, Any]], component: str) -> set[tuple[str, str, str]]:
    """(binding kind, role name, subject) of each binding of `component`."""
    return {(b["kind"], b["roleRef"]["name"], f"{s['namespace']}/{s['name']}")
            for b in objects if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
            and b["metadata"]["labels"]["app.kubernetes.io/component"] == component
            for s in b["subjects"]}


def test_agent_rbac_is_exactly_what_the_agent_calls() -> None:
    objects = _render(None)
    base = {
        ("*", "", "nodes", "get"),
        ("*", "", "nodes/status", "patch"),
        # Events about Nodes live in `default`, as kubelet's do; nowhere else.
        ("default", "", "events", "create"), ("default", "", "events", "patch"),
    }
    assert _grants(objects, "agent") == base
    # The repair executor, and so its NodeRemediation calls, runs in repair mode only.
    repair = _render(_ci("repair"))
    assert _grants(repair, "agent") == base | {
        ("*", "nodeprobe.io", "noderemediations", "list"),
        ("*", "nodeprobe.io", "noderemediations", "get"),  # repair-executor verifies again
        ("*", "nodeprobe.io", "noderemediations/status", "patch"),
        # Is the admission guard in place? Only its own two objects, by name.
        ("*", "admissionregistration.k8s.io", "validatingadmissionpolicies", "get"),
        ("*", "admissionregistration.k8s.io", "validatingadmissionpolicybindings", "get"),
    }
    named = [rule.get("resourceNames") for role in repair if role["kind"] == "ClusterRole"
             and role["metadata"]["labels"]["app.kubernetes.io/component"] == "agent"
             for rule in role["rules"] if rule["apiGroups"] == ["admissionregistration.k8s.io"]]
    assert named == [["nodeprobe-noderemediations"]]
    config = next(yaml.safe_load(o["data"]["config.yaml"]) for o in repair
                  if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nodeprobe-agent")
    assert config["repair"]["admissionGuard"] == "nodeprobe-noderemediations"
    assert _bound(objects, "agent") == {
        ("ClusterRoleBinding", "nodeprobe-agent", "nodeprobe/nodeprobe-agent"),
        ("RoleBinding", "nodeprobe-agent-events", "nodeprobe/nodeprobe-agent"),
    }


def test_operator_rbac_is_exactly_what_the_operator_and_kopf_call() -> None:
    objects = _render(None)
    assert _grants(objects, "operator") == {
        ("*", "", "nodes", "list"), ("*", "", "nodes", "watch"), ("*", "", "nodes", "patch"),
        ("*", "", "pods", "list"), ("*", "", "pods/eviction", "create"),
        ("*", "nodeprobe.io", "noderemediations", "list"),
        ("*", "nodeprobe.io", "noderemediations", "create"),
        # Finished episodes past their retention.
        ("*", "nodeprobe.io", "noderemediations", "delete"),
        ("*", "nodeprobe.io", "noderemediations/status", "patch"),
        ("*", "nodeprobe.io", "remediationpolicies", "list"),
        # kopf watches policies (their lifecycle handlers and the pass timer).
        ("*", "nodeprobe.io", "remediationpolicies", "watch"),
        # kopf's finalizer that holds a policy's deletion while its episodes run, and its
        # kopf.nodeprobe.io/* annotations.
        ("*", "nodeprobe.io", "remediationpolicies", "patch"),
        ("*", "nodeprobe.io", "remediationpolicies/status", "patch"),
        ("*", "apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("*", "apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        # Leader election and the per-node locks: Leases in the release namespace only.
        ("nodeprobe", "coordination.k8s.io", "leases", "get"),
        ("nodeprobe", "coordination.k8s.io", "leases", "list"),
        ("nodeprobe", "coordination.k8s.io", "leases", "create"),
        ("nodeprobe", "coordination.k8s.io", "leases", "update"),
        ("nodeprobe", "coordination.k8s.io", "leases", "patch"),
        ("default", "", "events", "create"),
    }
    assert _bound(objects, "operator") == {
        ("ClusterRoleBinding", "nodeprobe-operator", "nodeprobe/nodeprobe-operator"),
        ("RoleBinding", "nodeprobe-operator", "nodeprobe/nodeprobe-operator"),
        ("RoleBinding", "nodeprobe-operator-events", "nodeprobe/nodeprobe-operator"),
    }


@pytest.mark.parametrize("values", SCENARIOS, ids=_ids)
def test_no_role_reads_secrets_or_uses_wildcards(values: Path | None) -> None:
    for role in _by_kind(_render(values), "ClusterRole") + _by_kind(_render(values), "Role"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
            assert "*" not in rule["resources"] + rule["verbs"] + rule["apiGroups"], rule


@pytest.mark.parametrize("template", RULES_WITH_WHY)
def test_every_rbac_rule_says_why(template: str) -> None:
    lines = (h.CHART / "templates" / template).read_text().splitlines()
    rules = 0
    for i, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            rules += 1
            assert lines[i - 1].strip().startswith("#"), f"{template}:{i + 1}: rule without a why"
    assert rules >= 5


def test_no_rbac_when_disabled_but_named_service_accounts() -> None:
    objects = _render(_ci("rbac-disabled"))
    for kind in ("ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding", "ServiceAccount"):
        assert _by_kind(objects, kind) == []
    ds = _one(objects, "DaemonSet", "agent")
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "nodeprobe-agent-external"
    # The admission policy still guards the externally managed account.
    policy = _one(objects, "ValidatingAdmissionPolicy", "agent")
    assert "system:serviceaccount:nodeprobe:nodeprobe-agent-external" in str(
        policy["spec"]["matchConditions"])


def _bound_policy(component: str) -> dict[str, Any]:
    """The component's ValidatingAdmissionPolicy of a default render, checked bound to Deny."""
    objects = _render(None)
    policy = _one(objects, "ValidatingAdmissionPolicy", component)
    binding = _one(objects, "ValidatingAdmissionPolicyBinding", component)
    assert binding["spec"] == {"policyName": policy["metadata"]["name"],
                               "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    return policy


def test_own_node_policy_is_on_by_default_and_bound() -> None:
    spec = _bound_policy("agent")["spec"]
    assert {r["resources"][0] for r in spec["matchConstraints"]["resourceRules"]} == {
        "nodes/status", "noderemediations/status"}
    (cond,) = spec["matchConditions"]
    assert cond["expression"] == (
        'request.userInfo.username == "system:serviceaccount:nodeprobe:nodeprobe-agent"')
    (validation,) = spec["validations"]
    assert validation["reason"] == "Forbidden"  # 403, not 422
    assert "authentication.kubernetes.io/node-name" in str(spec["variables"])


def _agent_policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in _by_kind(objects, "ValidatingAdmissionPolicy")
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == "agent"]


def test_own_node_policy_is_left_out_when_off_or_unsupported() -> None:
    assert _agent_policies(_render(_ci("own-node-only-disabled"))) == []
    old = h.objects(h.template(kube="1.29.0"))
    assert _by_kind(old, "ValidatingAdmissionPolicy") == []
    assert _by_kind(old, "DaemonSet"), "the rest still renders on 1.29"


def test_monitoring_objects_only_when_enabled() -> None:
    assert _by_kind(_render(None), "ServiceMonitor") == []
    assert _by_kind(_render(None), "PrometheusRule") == []
    monitors = _by_kind(_render(_ci("servicemonitor")), "ServiceMonitor")
    assert len(monitors) == 2
    for sm in monitors:
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["endpoints"][0]["port"] == "metrics"


def test_prometheus_rule_holds_exactly_the_rules_file() -> None:
    rule = _one(_render(_ci("prometheusrule")), "PrometheusRule")
    text = (h.CHART / "files" / "nodeprobe.rules.yaml").read_text()
    version = yaml.safe_load((h.CHART / "Chart.yaml").read_text())["appVersion"]
    # by default only the runbook links move, to the runbooks of the version deployed
    on_disk = yaml.safe_load(text.replace("/nodeprobe/blob/main/docs/runbooks/",
                                          f"/nodeprobe/blob/v{version}/docs/runbooks/"))
    assert rule["spec"]["groups"] == on_disk["groups"]


def test_chart_crds_are_the_operators_crds() -> None:
    theirs = {p.name: p.read_bytes() for p in h.OPERATOR_CRDS.glob("*.yaml")}
    ours = {p.name: p.read_bytes() for p in (h.CHART / "crds").glob("*.yaml")}
    assert theirs, f"{h.OPERATOR_CRDS} has no CRDs yet"
    assert ours == theirs, ("charts/nodeprobe/crds/ differs from nodeprobe/operator/crds/: "
                            "run `make manifests`")
    names = {yaml.safe_load(b)["metadata"]["name"] for b in ours.values()}
    assert names == {"remediationpolicies.nodeprobe.io", "noderemediations.nodeprobe.io"}


def test_unknown_values_key_is_rejected_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  repiar:\n    enabled: true\n")
    with pytest.raises(h.HelmError, match=r"/agent.*additional properties 'repiar'"):
        h.template([bad])


def test_a_socket_must_be_auto_or_absolute(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  docker:\n    socket: run/docker.sock\n")
    with pytest.raises(h.HelmError, match=r"/agent/docker/socket"):
        h.template([bad])


def test_required_service_account_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("agent:\n  serviceAccount:\n    create: false\n")
    with pytest.raises(h.HelmError, match=r"agent\.serviceAccount\.name is required"):
        h.template([bad])


def test_missing_values_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(h.HelmError, match="does not exist"):
        h.template([tmp_path / "nope.yaml"])


def test_manifests_equal_a_fresh_default_render() -> None:
    stale = h.stale_manifests()
    assert stale == [], f"manifests/ is out of date ({', '.join(stale)}): run `make manifests`"


def test_manifests_namespace_admits_the_agent() -> None:
    """The agent mounts host paths: Pod Security admits it only at the privileged level."""
    ns = yaml.safe_load((h.MANIFESTS / "namespace.yaml").read_text())
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def _pod_of(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    kind = "DaemonSet" if component == "agent" else "Deployment"
    pod: dict[str, Any] = _one(objects, kind, component)["spec"]["template"]["spec"]
    return pod


def _pod(values: str, component: str) -> dict[str, Any]:
    return _pod_of(_render(_ci(values)), component)


def test_extra_volumes_and_mounts_reach_both_pods() -> None:
    for component, volume, mount in (("agent", "ca-bundle", "/etc/ssl/corp"),
                                     ("operator", "scratch", "/scratch")):
        pod = _pod("extra-volumes", component)
        assert volume in [v["name"] for v in pod["volumes"]]
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[volume] == mount
        assert "tmp" in mounts, "the chart's own mounts stay"


def test_init_and_sidecar_containers_come_after_the_charts_own() -> None:
    assert [c["name"] for c in _pod("sidecars", "agent")["containers"]] == ["agent", "log-shipper"]
    assert [c["name"] for c in _pod("sidecars", "agent")["initContainers"]] == [
        "wait-for-runtime"]
    assert [c["name"] for c in _pod("sidecars", "operator")["containers"]] == ["operator", "proxy"]
    assert "initContainers" not in _one(_render(None), "DaemonSet")["spec"]["template"]["spec"]


def test_topology_spread_constraints_for_the_operator() -> None:
    [constraint] = _pod("topology-spread", "operator")["topologySpreadConstraints"]
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"


def _image(*set_values: str) -> str:
    dep = _one(h.objects(h.template(set_values=set_values)), "Deployment", "operator")
    ds = _one(h.objects(h.template(set_values=set_values)), "DaemonSet", "agent")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] == dep["spec"]["template"][
        "spec"]["containers"][0]["image"]
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_registry_replaces_the_repositorys_registry_host_and_global_wins() -> None:
    assert _image() == "ghcr.io/nodeprobe/nodeprobe:0.1.0"
    assert _image("image.registry=registry.example.com") == (
        "registry.example.com/nodeprobe/nodeprobe:0.1.0")
    assert _image("image.registry=r.example.com:5000/proxy", "image.repository=nodeprobe-test",
                  "image.tag=dev") == "r.example.com:5000/proxy/nodeprobe-test:dev"
    assert _image("image.repository=localhost:5000/np", "global.imageRegistry=m.example.com",
                  "image.registry=ignored.example.com") == "m.example.com/np:0.1.0"
    assert _image("image.repository=nodeprobe-test", "image.tag=dev") == "nodeprobe-test:dev"
    ds = _pod("image-registry", "agent")
    assert ds["containers"][0]["image"] == "mirror.example.com/nodeprobe/nodeprobe:0.1.0"


def test_servicemonitor_relabelings_follow_the_charts_own() -> None:
    monitors = {m["metadata"]["labels"]["app.kubernetes.io/component"]: m["spec"]["endpoints"][0]
                for m in _by_kind(_render(_ci("servicemonitor-relabelings")), "ServiceMonitor")}
    assert [r.get("targetLabel") for r in monitors["agent"]["relabelings"]] == ["node", "cluster"]
    assert [r.get("targetLabel") for r in monitors["operator"]["relabelings"]] == ["cluster"]
    for endpoint in monitors.values():
        assert endpoint["metricRelabelings"][0]["action"] == "drop"


@pytest.mark.parametrize(("values", "message"), [
    ({"agent": {"extraVolumes": [{"emptyDir": {}}]}}, "name"),
    ({"agent": {"extraVolumeMounts": [{"name": "x"}]}}, "mountPath"),
    ({"agent": {"initContainers": [{"name": "x"}]}}, "image"),
    ({"serviceMonitor": {"metricRelabelings": {"action": "drop"}}}, "metricRelabelings"),
    ({"global": {"imageRegistry": 5}}, "imageRegistry"),
    ({"operator": {"extraContainers": [{"name": "x"}]}}, "image"),
    ({"operator": {"topologySpreadConstraints": [{"maxSkew": 1}]}}, "topologyKey"),
    ({"serviceMonitor": {"relabelings": {"targetLabel": "x"}}}, "relabelings"),
    ({"image": {"registry": "a b"}}, "registry"),
    ({"enabled": "yes"}, "enabled"),
    ({"prometheusRule": {"clusterLabel": "k8s cluster"}}, "clusterLabel"),
])
def test_the_schema_checks_the_escape_hatches(tmp_path: Path, values: dict[str, Any],
                                              message: str) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(values))
    with pytest.raises(h.HelmError, match=message):
        h.template([bad])


def test_an_umbrella_chart_renders_and_lints_with_global_and_a_condition(
        tmp_path: Path) -> None:
    umbrella = umbrella_chart(tmp_path)
    h.lint(chart=umbrella)
    objects = h.objects(h.template(chart=umbrella))
    ds = _one(objects, "DaemonSet", "agent")
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
        "mirror.example.com/nodeprobe/nodeprobe:")
    off = h.objects(h.template(chart=umbrella, set_values=["nodeprobe.enabled=false"]))
    assert off == []


def test_helm_template_exactly_as_docs_install_md_writes_it() -> None:
    """No --kube-version: the suite's helm carries the release build's ldflags (tools/go/build),
    so it assumes the Kubernetes a user's helm assumes, not v1.20, which fails kubeVersion."""
    assert h.helm("version", "--template", "{{.Version}}").stdout == versions()["HELM"]
    [line] = [ln.strip() for ln in (ROOT / "docs" / "install.md").read_text().splitlines()
              if ln.startswith("helm template ")]
    argv = shlex.split(line)
    assert "--kube-version" not in line
    done = subprocess.run([str(tool("helm")), *argv[1:]], capture_output=True, text=True,
                          timeout=120, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    kinds = {o["kind"] for o in h.objects(done.stdout)}
    assert {"DaemonSet", "Deployment", "ValidatingAdmissionPolicy"} <= kinds, kinds


def test_network_policies_admit_scrapes_and_probes_and_let_out_dns_and_the_api_server() -> None:
    assert _by_kind(_render(None), "NetworkPolicy") == []
    policies = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]
                for p in _by_kind(_render(_ci("networkpolicy")), "NetworkPolicy")}
    assert set(policies) == {"agent", "operator"}
    for component, ports in (("agent", {9103}), ("operator", {9104, 8080})):
        spec = policies[component]
        kind = "DaemonSet" if component == "agent" else "Deployment"
        pod_labels = _one(_render(_ci("networkpolicy")), kind, component)["spec"]["template"][
            "metadata"]["labels"]
        assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
        [ingress] = spec["ingress"]
        assert {p["port"] for p in ingress["ports"]} == ports
        assert ingress["from"][0]["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "monitoring"}
        egress_ports = [{p["port"] for p in rule["ports"]} for rule in spec["egress"]]
        assert egress_ports == [{53}, {443, 6443}, {9090}]
    off = h.objects(h.template([_ci("networkpolicy")], set_values=["operator.enabled=false"]))
    assert [p["metadata"]["labels"]["app.kubernetes.io/component"]
            for p in _by_kind(off, "NetworkPolicy")] == ["agent"]


def test_a_lease_namespace_reaches_the_operator_with_a_role_there() -> None:
    objects = _render(_ci("lease-namespace"))
    [container] = _pod("lease-namespace", "operator")["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NODEPROBE_LEASE_NAMESPACE"] == "medik8s-leases"
    roles = [o for o in _by_kind(objects, "Role") if o["metadata"]["namespace"] == "medik8s-leases"]
    [role] = roles
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["list", "create", "update", "patch"]}]
    [binding] = [o for o in _by_kind(objects, "RoleBinding")
                 if o["metadata"]["namespace"] == "medik8s-leases"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    default = _render(None)
    assert not any(o["metadata"].get("namespace") == "medik8s-leases" for o in default)
    [op] = _pod_of(default, "operator")["containers"]
    assert "NODEPROBE_LEASE_NAMESPACE" not in {e["name"] for e in op["env"]}


@pytest.mark.parametrize("override", ["", "np", "fleet-health"])
def test_kubectl_nodeprobe_finds_the_agent_whatever_the_name_override(override: str) -> None:
    objects = h.objects(h.template(set_values=[f"nameOverride={override}"] if override else []))
    labels = _one(objects, "DaemonSet", "agent")["spec"]["template"]["metadata"]["labels"]
    wanted = dict(term.split("=") for term in AGENT_SELECTOR.split(","))
    assert wanted.items() <= labels.items(), labels
    operator = _one(objects, "Deployment", "operator")["spec"]["template"]["metadata"]["labels"]
    assert not wanted.items() <= operator.items(), "the selector must not match the operator"


def test_noderemediation_guard_is_on_by_default_and_bound() -> None:
    """Only the operator opens NodeRemediations (issue 18): shipped in the default install."""
    policy = _bound_policy("guard")
    text = str(policy["spec"]["variables"])
    assert "system:serviceaccount:nodeprobe:nodeprobe-operator" in text
    assert "nodeprobe-admission-check" in str(policy["spec"]["validations"])
