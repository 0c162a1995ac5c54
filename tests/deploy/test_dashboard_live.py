"""Every dashboard query against a real Prometheus scraping a live agent and a live operator.

A real `prometheus` scrapes `nodeprobe agent` (watching the sandbox's dockerd and containerd,
publishing to the real API server with the chart's agent identity on a Node of its own) and
`nodeprobe operator` (its /metrics, reconciling as the chart's operator identity). dockerd is
hung with SIGSTOP; then every panel's query is evaluated through the Prometheus HTTP API as
Grafana would (range queries over the test's window, instant queries for tables and stats) and
must return data; the sick-nodes table must show the hung node.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.agent_process import AgentProcess, free_port
from tests.harness.chart import Release
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.harness.prometheus import Prometheus
from tests.integration.kube.nodes import AgentNode
from tests.integration.operator.cluster import Fleet, Operator
from tools import dashboard as dash

SCRAPE_S = 1.0
AGENT_JOB = "nodeprobe-agent"
OPERATOR_JOB = "nodeprobe-operator"
UNAVAILABLE = "ContainerRuntimeUnavailable"
SICK_TABLE = "Sick nodes: reason and duration"


def panels() -> list[dict[str, Any]]:
    d = json.loads(dash.OUTPUTS[0].read_text())  # what ships, not the generator's memory
    return [p for p in d["panels"] if p["type"] != "row"]


def substitute(expr: str, *, window_s: float) -> str:
    """Grafana's interpolation with the defaults a fresh dashboard opens with: cluster empty
    (no cluster label here), all agent jobs, all nodes, top 10."""
    values = {"cluster": "", "job": AGENT_JOB, "node": ".*", "topn": "10",
              "__rate_interval": f"{int(4 * SCRAPE_S)}s", "__range": f"{math.ceil(window_s)}s"}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"uninterpolated variable in {expr}"
    return expr


def has_values(result: list[dict[str, Any]]) -> bool:
    """Some series with a finite sample (histogram_quantile of nothing is NaN, not data)."""
    for series in result:
        samples = series.get("values") or [series.get("value")]
        if any(s is not None and math.isfinite(float(s[1])) for s in samples):
            return True
    return False


@pytest.fixture
def stack(runtimes: Any, kube_cluster: KubeCluster, test_kubelet: TestKubelet,
          release: Release, agent_on_node: AgentNode, tmp_path: Path
          ) -> Iterator[tuple[str, AgentProcess, Prometheus]]:
    fleet = Fleet(kube_cluster, test_kubelet, release, tmp_path)
    node = fleet.adopt("a", agent_on_node.name)
    # One rung, escalate: an episode that ends without the agent repairing anything.
    fleet.add_policy(ladder=[{"action": "escalate"}])
    operator = Operator(fleet, metrics_port=free_port())
    agent = AgentProcess(runtimes, tmp_path, kubeconfig=agent_on_node.kubeconfig, node=node)
    prom = Prometheus(tmp_path, scrape_interval_s=SCRAPE_S, jobs={
        AGENT_JOB: [(f"127.0.0.1:{agent.port}", {"node": node})],
        OPERATOR_JOB: [(f"127.0.0.1:{operator.port}", {})],
    })
    try:
        prom.start()
        yield node, agent, prom
    finally:
        prom.stop()
        agent.stop()
        operator.stop()
        fleet.delete()


def test_every_panel_returns_data_and_the_sick_table_shows_the_hung_node(
        runtimes: Any, stack: tuple[str, AgentProcess, Prometheus]) -> None:
    node, agent, prom = stack
    t0 = time.time()
    prom.wait_up(timeout_s=60)
    table = next(p for p in panels() if p["title"] == SICK_TABLE)
    table_expr = table["targets"][0]["expr"]
    # The agent has judged every check once: the fleet is healthy and the table is empty.
    prom.wait_for(f'nodeprobe_condition_last_transition_timestamp_seconds{{node="{node}"}}',
                  timeout_s=60, what="the agent's first judgement scraped")
    prom.wait_for("count(rate(nodeprobe_probe_duration_seconds_count{job=~\"nodeprobe-agent\"}"
                  "[4s]) > 0) >= 5", timeout_s=60, what="probe rates")
    assert prom.query(substitute(table_expr, window_s=time.time() - t0)) == []

    with runtimes.dockerd.hung():
        prom.wait_for(f'nodeprobe_condition_status{{node="{node}", condition="{UNAVAILABLE}",'
                      ' reason="DockerdHung"} == 1', timeout_s=60, what="DockerdHung scraped")
        prom.wait_for('nodeprobe_remediations_total{outcome="Escalated"} > 0', timeout_s=90,
                      what="the operator's escalated episode scraped")
        prom.wait_for(f'nodeprobe_probe_outcomes_total{{node="{node}", outcome="HUNG"}} > 0',
                      timeout_s=30, what="HUNG probe calls scraped")
        now = time.time()
        empty = []
        for panel in panels():
            for target in panel["targets"]:
                expr = substitute(target["expr"], window_s=now - t0)
                if target["instant"]:
                    result = prom.query(expr, at=now)
                else:
                    result = prom.query_range(expr, start=t0, end=now, step_s=SCRAPE_S)
                if not has_values(result):
                    empty.append(f"{panel['title']} / {target['refId']}: {expr}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        rows = prom.query(substitute(table_expr, window_s=time.time() - t0))
        assert [(r["metric"]["node"], r["metric"]["condition"], r["metric"]["reason"])
                for r in rows] == [(node, UNAVAILABLE, "DockerdHung")]
        sick_for = float(rows[0]["value"][1])
        assert 0 <= sick_for < time.time() - t0, sick_for

    prom.wait_for(f'absent(nodeprobe_condition_status{{node="{node}"}} == 1)', timeout_s=60,
                  what="the condition clearing after SIGCONT")
    assert prom.query(substitute(table_expr, window_s=time.time() - t0)) == []
    assert agent.proc.poll() is None
