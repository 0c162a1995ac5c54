"""The Grafana dashboard: committed JSON is a fresh render, it lints, the chart ships it when asked.

The queries themselves run against a live Prometheus in test_dashboard_live.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nodeprobe.operator.metrics import OperatorMetrics
from tools import dashboard as dash
from tools import helm as h

CHART_FILE = h.CHART / "files/dashboards/nodeprobe.json"
CI_VALUES = h.CHART / "ci/dashboard-values.yaml"


@pytest.mark.parametrize("path", dash.OUTPUTS, ids=lambda p: p.parent.name)
def test_committed_json_is_a_fresh_render(path: Path) -> None:
    assert path.read_text() == dash.render(), (
        f"{path} is stale: run `python -m tools.dashboard --write`")


def test_committed_dashboard_lints_clean() -> None:
    assert dash.lint(json.loads(dash.OUTPUTS[0].read_text())) == []


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in d["panels"] if p["type"] != "row"]


def test_lint_catches_each_mistake() -> None:
    good = dash.dashboard()

    def broken(change: Any) -> list[str]:
        d = copy.deepcopy(good)
        change(d)
        return dash.lint(d)

    def same_id(d: dict[str, Any]) -> None:
        d["panels"][2]["id"] = d["panels"][1]["id"]

    def fixed_datasource(d: dict[str, Any]) -> None:
        _panels(d)[0]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "prom-1"}

    def node_name(d: dict[str, Any]) -> None:
        t = _panels(d)[1]["targets"][0]
        t["expr"] = t["expr"].replace('node=~"$node"', 'node=~"ip-10-0-1-7"')

    def no_node_variable(d: dict[str, Any]) -> None:
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "node"]

    def typo_variable(d: dict[str, Any]) -> None:
        t = _panels(d)[1]["targets"][0]
        t["expr"] = t["expr"].replace("$cluster", "$clustr")

    assert any("used 2 times" in p for p in broken(same_id))
    assert any("datasource is not" in p for p in broken(fixed_datasource))
    assert any("hard-coded node" in p and "ip-10-0-1-7" in p for p in broken(node_name))
    assert any("no $node variable" in p for p in broken(no_node_variable))
    assert any("undefined variable $clustr" in p for p in broken(typo_variable))


def test_panels_cover_what_the_issue_asks() -> None:
    exprs = " ".join(t["expr"] for p in _panels(dash.dashboard()) for t in p["targets"])
    for metric in ("nodeprobe_condition_status", "nodeprobe_condition_last_transition_timestamp",
                   "nodeprobe_probe_duration_seconds_bucket", "nodeprobe_runtime_rss_anon_bytes",
                   "nodeprobe_runtime_goroutines", "nodeprobe_runtime_open_fds",
                   "nodeprobe_remediations_total", "nodeprobe_loop_last_iteration_timestamp",
                   "nodeprobe_publish_errors_total", "up{"):
        assert metric in exprs, metric
    names = {v["name"] for v in dash.dashboard()["templating"]["list"]}
    assert {"datasource", "cluster", "node"} <= names


def test_every_operator_metric_has_a_panel() -> None:
    """A metric the operator exports and no panel reads is a question nobody sees answered."""
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    exprs = " ".join(t["expr"] for p in _panels(dash.dashboard()) for t in p["targets"])
    names = {m.name for m in registry.collect()}
    assert len(names) == 7
    for name in names:  # counters without _total, histograms without _bucket: a prefix
        assert name in exprs, f"{name}: no panel"


def _dashboard_configmaps(values: Path | None) -> list[dict[str, Any]]:
    objects = h.objects(h.template([values] if values else []))
    return [o for o in objects if o["kind"] == "ConfigMap"
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboard"]


def test_chart_ships_no_dashboard_by_default() -> None:
    assert _dashboard_configmaps(None) == []


def test_chart_dashboard_configmap_for_the_grafana_sidecar() -> None:
    [cm] = _dashboard_configmaps(CI_VALUES)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "nodeprobe"}
    assert json.loads(cm["data"]["nodeprobe.json"]) == json.loads(CHART_FILE.read_text())


def _exprs(d: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in d["panels"] for t in p.get("targets", []) if "expr" in t]


def test_chart_dashboard_takes_a_cluster_label_and_a_job_selector() -> None:
    [cm] = _dashboard_configmaps(h.CHART / "ci" / "dashboard-mixin-values.yaml")
    d = json.loads(cm["data"]["nodeprobe.json"])
    assert dash.lint(d) == []
    exprs = _exprs(d)
    assert exprs and all('k8s_cluster="$cluster"' in e for e in exprs if "$cluster" in e)
    assert not any('cluster="$cluster"' in e.replace('k8s_cluster="$cluster"', "")
                   or "(cluster," in e for e in exprs)
    variables = {v["name"]: v["query"]["query"] for v in d["templating"]["list"]
                 if isinstance(v.get("query"), dict)}
    assert variables["cluster"] == "label_values(nodeprobe_build_info, k8s_cluster)"
    assert variables["job"] == ('label_values(nodeprobe_build_info{k8s_cluster="$cluster", '
                                'job=~"nodeprobe.*"}, job)')
    # every change is one of those: the rest of the dashboard is the committed file
    plain = json.loads(CHART_FILE.read_text())
    assert len(_exprs(plain)) == len(exprs)
    assert [p["title"] for p in plain["panels"]] == [p["title"] for p in d["panels"]]
