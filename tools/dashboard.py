"""The Grafana dashboard, generated: `python -m tools.dashboard --write` rewrites both copies.

Why generated, not hand-written JSON: node-exporter's mixin keeps its dashboards as code (jsonnet)
for the same reasons that hold here. Grid positions, ids, the templated datasource and the
`cluster`/`node` selectors are computed once instead of being repeated by hand in ~20 places, and
the panel list below reads as the spec (title, what it answers, queries). A test checks that the
committed JSON equals a fresh render, another lints it, and a live test runs every query against
a real Prometheus. Each panel's `description` is the sentence docs/dashboard.md repeats.

Outputs: deploy/grafana/nodeprobe.json (import by hand) and
charts/nodeprobe/files/dashboards/nodeprobe.json (the chart's ConfigMap reads it with .Files.Get).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = (ROOT / "deploy/grafana/nodeprobe.json",
           ROOT / "charts/nodeprobe/files/dashboards/nodeprobe.json")
UID = "nodeprobe-fleet"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Selectors every query uses: the agent series carry `node` (the ServiceMonitor relabels it from
# the pod's node), `cluster` is empty unless Prometheus adds it (then a multi-cluster pick).
AGENT = 'cluster="$cluster", job=~"$job", node=~"$node"'
OPERATOR = 'cluster="$cluster"'
WIDTH = 24
ALL = {"text": "All", "value": "$__all"}


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    unit: str = "short"
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    transformations: tuple[dict[str, Any], ...] = ()
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _q(expr: str, legend: str = "", **kw: bool) -> Query:
    return Query(" ".join(expr.split()), legend, **kw)


def _top(metric: str) -> str:
    return f"topk($topn, max by (node, runtime) ({metric}{{{AGENT}}}))"


def _percentile(p: str) -> Query:
    return _q(f"""histogram_quantile({p}, sum by (le, runtime, check) (
        rate(nodeprobe_probe_duration_seconds_bucket{{{AGENT}}}[$__rate_interval])))""",
              f"p{p[2:]} {{{{runtime}}}} {{{{check}}}}")


SICK_FOR = f"""(time() - max by (cluster, node, condition) (
    nodeprobe_condition_last_transition_timestamp_seconds{{{AGENT}}}))
  * on (cluster, node, condition) group_left (reason)
  max by (cluster, node, condition, reason) (nodeprobe_condition_status{{{AGENT}}} == 1)"""

ROWS = (
    Row("Fleet", (
        Panel("Sick nodes",
              "How many nodes have a nodeprobe condition True right now.",
              (_q(f"count(max by (cluster, node) (nodeprobe_condition_status{{{AGENT}}}) == 1)"
                  " or vector(0)", instant=True),),
              kind="stat", width=4, thresholds=((None, "green"), (1, "red"))),
        Panel("Nodes per condition and reason",
              "Which problems the fleet has had over time, and on how many nodes at once.",
              (_q(f"""sum by (condition, reason) (
                    nodeprobe_condition_status{{{AGENT}}} == 1)""", "{{condition}} {{reason}}"),),
              width=20, custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}),
        Panel("Sick nodes: reason and duration",
              "Which nodes are sick now, with which reason, and for how long (lastTransitionTime)."
              " `kubectl nodeprobe describe NODE` has the message and the remediation history.",
              (_q(SICK_FOR, instant=True, table=True),),
              kind="table", width=24, height=8, unit="s",
              transformations=(
                  {"id": "organize", "options": {
                      "excludeByName": {"Time": True, "cluster": True},
                      "indexByName": {"node": 0, "condition": 1, "reason": 2, "Value": 3},
                      "renameByName": {"Value": "sick for"}}},
                  {"id": "sortBy", "options": {"sort": [{"field": "sick for", "desc": True}]}},
              )),
    )),
    Row("Probes", (
        Panel("Probe latency percentiles",
              "p50/p90/p99 wall time of each check per runtime; a hung call counts its deadline.",
              (_percentile("0.50"), _percentile("0.90"), _percentile("0.99")), unit="s"),
        Panel("Failed probe calls",
              "Calls per second that did not answer OK, by runtime, check and outcome.",
              (_q(f"""sum by (runtime, check, outcome) (rate(
                    nodeprobe_probe_outcomes_total{{{AGENT}, outcome!="OK"}}[$__rate_interval]))""",
                  "{{runtime}} {{check}} {{outcome}}"),),
              unit="reqps"),
    )),
    Row("Runtime resources (top $topn nodes)", (
        Panel("Runtime memory (RssAnon)",
              "Anonymous resident memory of dockerd and containerd: heap growth without file"
              " pages. The nodes with the most.",
              (_q(_top("nodeprobe_runtime_rss_anon_bytes"), "{{node}} {{runtime}}"),),
              width=8, unit="bytes"),
        Panel("Runtime goroutines",
              "Goroutines dockerd reports (/info NGoroutines): a leak grows without bound.",
              (_q(_top("nodeprobe_runtime_goroutines"), "{{node}} {{runtime}}"),), width=8),
        Panel("Runtime open fds",
              "Open file descriptors of the runtime processes: leaked streams and sockets.",
              (_q(_top("nodeprobe_runtime_open_fds"), "{{node}} {{runtime}}"),), width=8),
    )),
    Row("Remediation (operator)", (
        Panel("Episode outcomes",
              "NodeRemediations that finished in the interval: Succeeded, Failed, Escalated."
              " Failed and Escalated need a person.",
              (_q(f"""sum by (outcome) (increase(
                    nodeprobe_remediations_total{{{OPERATOR}}}[$__rate_interval]))""",
                  "{{outcome}}"),),
              width=12, custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}),
        Panel("Episode outcomes in range",
              "How the episodes of the dashboard's time range ended.",
              (_q(f"""sum by (outcome) (increase(
                    nodeprobe_remediations_total{{{OPERATOR}}}[$__range]))""",
                  "{{outcome}}", instant=True),),
              kind="bargauge", width=12,
              options={"displayMode": "basic", "orientation": "horizontal"}),
        Panel("Open episodes by phase",
              "NodeRemediations that hold their node, by phase. Escalated stays until a person"
              " releases the node (uncordon, or remove the escalation label).",
              (_q(f"max by (phase) (nodeprobe_operator_episodes{{{OPERATOR}}})", "{{phase}}"),),
              width=8, custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}),
        Panel("Nodes held against the budget",
              "Nodes held (our episodes, other remediators' Leases) against the cluster budget"
              " (--max-concurrent). Held at the budget while nodes wait: see the next panel.",
              (_q(f"max(nodeprobe_operator_nodes_held{{{OPERATOR}}})", "held"),
               _q(f"max(nodeprobe_operator_budget_nodes{{{OPERATOR}}})", "budget")),
              width=8),
        Panel("Why sick nodes wait",
              "Sick nodes without a NodeRemediation, by reason (budget, maxConcurrent, window,"
              " minHealthy, paused, ...). The policy's status says the rest:"
              " `kubectl nodeprobe status`.",
              (_q(f"max by (reason) (nodeprobe_operator_waiting_nodes{{{OPERATOR}}})",
                  "{{reason}}"),),
              width=8, custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}),
        Panel("Trigger to cordon in range",
              "Seconds from the trigger condition's lastTransitionTime to the operator's cordon,"
              " over the episodes of the dashboard's time range: the trigger's `for` plus any"
              " wait.",
              tuple(_q(f"""histogram_quantile({pct}, sum by (le) (increase(
                    nodeprobe_operator_trigger_to_cordon_seconds_bucket{{{OPERATOR}}}[$__range])))""",
                       f"p{pct[2:]}", instant=True) for pct in ("0.50", "0.90", "0.99")),
              kind="bargauge", width=12, unit="s",
              options={"displayMode": "basic", "orientation": "horizontal"}),
        Panel("Operator pass age",
              "Seconds since the operator last finished a reconcile pass (every few seconds);"
              " above 300 s it is stuck (alert NodeprobeOperatorStuck).",
              (_q(f"""time() - max(
                    nodeprobe_operator_last_pass_timestamp_seconds{{{OPERATOR}}})""", "age"),),
              width=12, unit="s", thresholds=((None, "green"), (300, "red"))),
        Panel("Admission guard",
              "1: the admission policy that keeps NodeRemediations to the operator is in place;"
              " 0: it is missing and the operator acts on nothing (its log says why).",
              (_q(f"min(nodeprobe_operator_admission_guard{{{OPERATOR}}})", "guard"),),
              width=12, thresholds=((None, "red"), (1, "green"))),
    )),
    Row("Agent health", (
        Panel("Agents up",
              "Agents Prometheus scrapes successfully, out of the agents it knows.",
              (_q(f"sum(up{{{AGENT}}})", "up"), _q(f"count(up{{{AGENT}}})", "known")),
              width=8),
        Panel("Loop tick age",
              "Seconds since each agent's loop last finished an iteration; above 120 s the"
              " agent is wedged (alert NodeprobeAgentNotReporting). The oldest nodes.",
              (_q(f"""topk($topn, time() - max by (node) (
                    nodeprobe_loop_last_iteration_timestamp_seconds{{{AGENT}}}))""",
                  "{{node}}"),),
              width=8, unit="s", thresholds=((None, "green"), (120, "red"))),
        Panel("Publish errors",
              "Failed writes to the Kubernetes API (node status, Events): RBAC or API trouble.",
              (_q(f"""sum by (target) (increase(
                    nodeprobe_publish_errors_total{{{AGENT}}}[$__rate_interval]))""",
                  "{{target}}"),),
              width=8),
    )),
)


def _variables() -> list[dict[str, Any]]:
    def query(name: str, label: str, expr: str, **extra: Any) -> dict[str, Any]:
        base = {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
                "query": {"query": expr, "refId": f"{name}-variable"}, "definition": expr,
                "refresh": 2, "sort": 1, "hide": 0, "current": {}, "options": []}
        return {**base, **extra}

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "regex": "", "hide": 0, "current": {}, "options": []},
        query("cluster", "Cluster", "label_values(nodeprobe_build_info, cluster)"),
        query("job", "Agent job", 'label_values(nodeprobe_build_info{cluster="$cluster"}, job)',
              hide=2, includeAll=True, multi=True, current=ALL),
        query("node", "Node",
              'label_values(nodeprobe_build_info{cluster="$cluster", job=~"$job"}, node)',
              includeAll=True, allValue=".*", multi=True, current=ALL),
        {"name": "topn", "label": "Top N", "type": "custom", "query": "5,10,20,50", "hide": 0,
         "current": {"text": "10", "value": "10"},
         "options": [{"text": v, "value": v, "selected": v == "10"}
                     for v in ("5", "10", "20", "50")]},
    ]


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, q in enumerate(p.queries):
        t: dict[str, Any] = {"datasource": DATASOURCE, "refId": chr(ord("A") + i),
                             "expr": q.expr, "legendFormat": q.legend or "__auto",
                             "instant": q.instant, "range": not q.instant}
        if q.table:
            t["format"] = "table"
        targets.append(t)
    steps = [{"color": c, "value": v} for v, c in p.thresholds]
    defaults: dict[str, Any] = {"unit": p.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10, "showPoints": "never",
                              **p.custom}
    options = dict(p.options)
    if p.kind == "timeseries":
        options.setdefault("legend", {"displayMode": "table", "placement": "right",
                                      "calcs": ["lastNotNull", "max"]})
        options.setdefault("tooltip", {"mode": "multi", "sort": "desc"})
    return {"id": pid, "type": p.kind, "title": p.title, "description": p.description,
            "datasource": DATASOURCE, "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options, "transformations": list(p.transformations)}


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row in ROWS:
        panels.append({"id": pid, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}, "panels": []})
        pid, y, x, line = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.width > WIDTH:
                x, y, line = 0, y + line, 0
            panels.append(_panel(p, pid, x, y))
            pid, x, line = pid + 1, x + p.width, max(line, p.height)
        y += line
    return {
        "uid": UID, "title": "nodeprobe / Fleet", "description":
        "Which nodes are sick, since when, what nodeprobe does about it, and whether it keeps up.",
        "tags": ["nodeprobe", "kubernetes", "container-runtime"], "editable": True,
        "schemaVersion": 39, "version": 1, "graphTooltip": 1, "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": _variables()}, "annotations": {"list": []},
        "links": [], "panels": panels,
    }


BUILTINS = frozenset({"__rate_interval", "__range", "__interval"})
"""Grafana's own variables the queries may use."""


def lint(d: dict[str, Any]) -> list[str]:
    """What a dashboard must be: unique ids, the templated datasource everywhere, no node,
    cluster or job spelled out in a query, only defined variables, panels inside the grid."""
    problems: list[str] = []
    defined = {v["name"] for v in d["templating"]["list"]}
    for need in ("datasource", "cluster", "node"):
        if need not in defined:
            problems.append(f"templating: no ${need} variable")
    for v in d["templating"]["list"]:
        if v["type"] == "query" and v.get("datasource") != DATASOURCE:
            problems.append(f"variable {v['name']}: datasource is not ${{datasource}}")
    ids = [p["id"] for p in d["panels"]]
    problems += [f"panel id {i} used {ids.count(i)} times" for i in sorted(set(ids))
                 if ids.count(i) > 1]
    for p in d["panels"]:
        where = f"panel {p['id']} ({p['title']})"
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > WIDTH:
            problems.append(f"{where}: outside the {WIDTH}-column grid")
        if p["type"] == "row":
            continue
        if p.get("datasource") != DATASOURCE:
            problems.append(f"{where}: datasource is not ${{datasource}}")
        if not p.get("description"):
            problems.append(f"{where}: no description")
        if not p.get("targets"):
            problems.append(f"{where}: no query")
        for t in p.get("targets", []):
            problems += [f"{where} {t.get('refId')}: {e}" for e in _lint_target(t, defined)]
    return problems


def _lint_target(t: dict[str, Any], defined: set[str]) -> list[str]:
    out = []
    if t.get("datasource") != DATASOURCE:
        out.append("datasource is not ${datasource}")
    expr = t.get("expr", "")
    for label in ("node", "cluster", "job", "instance"):
        for m in re.finditer(rf'\b{label}\s*(=~|!~|!=|=)\s*"([^"]*)"', expr):
            if m.group(2) != f"${label}":
                out.append(f"hard-coded {label}{m.group(1)}{m.group(2)!r}")
    for name in re.findall(r"\$\{?(\w+)", expr):
        if name not in defined and name not in BUILTINS:
            out.append(f"undefined variable ${name}")
    return out


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.dashboard", description=__doc__)
    ap.add_argument("--write", action="store_true", help="rewrite the JSON files")
    args = ap.parse_args(argv)
    problems = lint(dashboard())
    if problems:
        print("dashboard lint:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    text = render()
    if not args.write:
        sys.stdout.write(text)
        return 0
    for path in OUTPUTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
