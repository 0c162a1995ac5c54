"""The alert rules pass `promtool check rules` and their unit tests (fire and don't-fire cases).

The rules file is the one the chart's PrometheusRule embeds; the rendered PrometheusRule's groups
are checked by promtool too, so what is deployed is what is tested.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.model import REASONS, ConditionType
from tools import helm as h

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
RULES = h.CHART / "files" / "nodeprobe.rules.yaml"
TUNED = h.CHART / "ci" / "prometheusrule-tuned-values.yaml"
ALERTS = ("NodeprobeRuntimeHung", "NodeprobeRuntimeDown", "NodeprobeRuntimeLeaking",
          "NodeprobeAgentNotReporting", "NodeprobeAgentAbsent", "NodeprobeRemediationFailed",
          "NodeprobeRemediationEscalated", "NodeprobeOperatorStuck",
          "NodeprobeNodesWaitingOnBudget")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (make deps does)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False,
                          timeout=120)


def test_rules_file_passes_promtool_check() -> None:
    proc = _promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_unit_tests_pass() -> None:
    proc = _promtool("test", "rules", str(HERE / "alerts.test.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rendered_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    objects = h.objects(h.template([h.CHART / "ci" / "prometheusrule-values.yaml"]))
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    path = tmp_path / "rendered.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = _promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_promised_alert_exists_and_is_unit_tested() -> None:
    rules = yaml.safe_load(RULES.read_text())
    names = {rule["alert"] for g in rules["groups"] for rule in g["rules"]}
    assert set(ALERTS) <= names
    tests = (HERE / "alerts.test.yaml").read_text()
    for name in names:
        assert f"alertname: {name}" in tests, f"{name} has no promtool unit test"


def test_alert_reasons_are_real_reasons() -> None:
    """A renamed reason in model.py must not silently stop an alert from matching."""
    known = {str(reason) for reasons in REASONS.values() for reason in reasons}
    text = RULES.read_text()
    for word in ("DockerdHung", "ContainerdHung", "DockerdDown", "ContainerdDown",
                 "CRIRuntimeNotReady"):
        assert word in text and word in known
    for ctype in ConditionType:
        assert f'condition="{ctype}"' in text


CLUSTER = ("k8s_cluster", "eu-1")
"""A cluster label by another name than `cluster`, as a Thanos or Mimir setup may have."""


def _with_cluster(series: str) -> str:
    name, value = CLUSTER
    if "{" in series:
        return series.replace("{", f'{{{name}="{value}",', 1)
    return f'{series}{{{name}="{value}"}}'


def test_every_alert_keeps_the_cluster_label_of_its_series(tmp_path: Path) -> None:
    """The rules take no cluster label setting because none aggregates a label away: whatever
    label tells clusters apart reaches each alert (docs/dashboard.md). The unit tests again, with
    that label on every input series and expected on every alert but absent()'s, which has no
    series to take it from."""
    suite = yaml.safe_load((HERE / "alerts.test.yaml").read_text())
    suite["rule_files"] = [str(RULES)]
    for test in suite["tests"]:
        for series in test["input_series"]:
            series["series"] = _with_cluster(series["series"])
        for case in test["alert_rule_test"]:
            if case["alertname"] == "NodeprobeAgentAbsent":
                continue
            for alert in case.get("exp_alerts") or []:
                alert["exp_labels"][CLUSTER[0]] = CLUSTER[1]
    path = tmp_path / "cluster.test.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = _promtool("test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return found


def test_there_is_a_runbook_per_condition_type() -> None:
    for ctype in ConditionType:
        runbook = DOCS / "runbooks" / f"{ctype}.md"
        assert runbook.is_file(), f"{runbook} is missing"
        text = runbook.read_text()
        for section in ("## What it means", "## Confirm on the node", "## What to do"):
            assert section in text, f"{runbook.name}: no '{section}'"


def test_every_alert_links_to_an_existing_runbook_section() -> None:
    rules = yaml.safe_load(RULES.read_text())
    prefix = "https://github.com/nodeprobe/nodeprobe/blob/main/docs/"
    for group in rules["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url.startswith(prefix), url
            rel, _, anchor = url[len(prefix):].partition("#")
            doc = DOCS / rel
            assert doc.is_file(), f"{rule['alert']}: {doc} does not exist"
            if anchor:
                assert anchor in _anchors(doc.read_text()), f"{rule['alert']}: no #{anchor}"


def _rendered_rules(*values: Path | str,
                    set_values: tuple[str, ...] = ()) -> dict[str, Any]:
    objects = h.objects(h.template(list(values), set_values=set_values))
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {"groups": rule["spec"]["groups"]}


def _alerts(groups: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups["groups"] for r in g["rules"]}


def test_runbook_links_point_at_the_charts_own_version_by_default(tmp_path: Path) -> None:
    chart = yaml.safe_load((h.CHART / "Chart.yaml").read_text())
    for rule in _alerts(_rendered_rules(TUNED.parent / "prometheusrule-values.yaml")
                        ).values():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://github.com/nodeprobe/nodeprobe/blob/v"
                              f"{chart['appVersion']}/docs/runbooks/"), url


def test_alerts_can_be_turned_off_retuned_relinked_narrowed_and_added(tmp_path: Path) -> None:
    groups = _rendered_rules(TUNED)
    path = tmp_path / "tuned.rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    proc = _promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = _alerts(groups)
    assert "NodeprobeRuntimeLeaking" not in alerts
    hung = alerts["NodeprobeRuntimeHung"]
    assert (hung["for"], hung["labels"]) == ("5m", {"severity": "warning", "pager": "false",
                                                    "team": "platform"})
    assert alerts["NodeprobeRuntimeDown"]["labels"] == {"severity": "critical", "team": "platform"}
    assert hung["annotations"]["runbook_url"] == (
        "https://wiki.example.com/runbooks/nodeprobe/ContainerRuntimeUnavailable.md")
    assert alerts["NodeprobeAgentAbsent"]["expr"] == (
        'absent(nodeprobe_loop_last_iteration_timestamp_seconds{job=~"nodeprobe-.*"})')
    assert "NodeprobeAgentsFew" in alerts
    assert alerts["NodeprobeAgentAbsent"]["annotations"]["summary"] == \
        "No nodeprobe agent is reporting"  # absent() has no series to name a cluster from

    # promtool on the rendered rules: the job selector keeps another job's series out, and the
    # summary names the cluster.
    (tmp_path / "tuned.test.yaml").write_text(yaml.safe_dump({
        "rule_files": [str(path)], "evaluation_interval": "30s",
        "tests": [{"interval": "30s", "input_series": [
            {"series": 'nodeprobe_condition_status{condition="ContainerRuntimeUnavailable",'
                       'reason="DockerdHung",node="a",job="nodeprobe-agent",k8s_cluster="eu-1"}',
             "values": "1x20"},
            {"series": 'nodeprobe_condition_status{condition="ContainerRuntimeUnavailable",'
                       'reason="DockerdHung",node="b",job="someone-else"}',
             "values": "1x20"}],
            "alert_rule_test": [
                {"eval_time": "4m", "alertname": "NodeprobeRuntimeHung", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "NodeprobeRuntimeHung", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "pager": "false", "team": "platform",
                                    "condition": "ContainerRuntimeUnavailable",
                                    "reason": "DockerdHung", "node": "a",
                                    "job": "nodeprobe-agent", "k8s_cluster": "eu-1"},
                     "exp_annotations": {
                         "summary": "DockerdHung on node a for more than 5m in cluster eu-1",
                         "description": hung["annotations"]["description"].replace(
                             "{{ $labels.node }}", "a").replace("{{ $labels.instance }}", "")
                         .replace("{{ $labels.reason }}", "DockerdHung").strip(),
                         "runbook_url": hung["annotations"]["runbook_url"]}}]}]}]}))
    proc = _promtool("test", "rules", str(tmp_path / "tuned.test.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_unknown_alert_name_fails_the_render_naming_it(tmp_path: Path) -> None:
    with pytest.raises(h.HelmError, match=re.escape(
            "prometheusRule.alerts.NodeprobeTypo: no such alert")):
        h.template(set_values=("prometheusRule.enabled=true",
                               "prometheusRule.alerts.NodeprobeTypo.enabled=false"))
