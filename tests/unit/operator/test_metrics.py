"""The operator's Prometheus series: on the registry passed in, every labelled series there from
the start, the values a pass sets, and names `promtool check metrics` accepts."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import CollectorRegistry, generate_latest

from nodeprobe.model import RemediationPhase
from nodeprobe.operator.gates import TERMINAL, Wait
from nodeprobe.operator.metrics import OperatorMetrics
from nodeprobe.operator.stats import OPEN_PHASES, PassStats


def test_every_series_exists_at_zero_before_the_first_pass() -> None:
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    value = registry.get_sample_value
    for outcome in TERMINAL:
        assert value("nodeprobe_remediations_total", {"outcome": outcome.value}) == 0
    for phase in OPEN_PHASES:
        assert value("nodeprobe_operator_episodes", {"phase": phase.value}) == 0
    for reason in Wait:
        assert value("nodeprobe_operator_waiting_nodes", {"reason": reason.value}) == 0
    for name in ("nodeprobe_operator_nodes_held", "nodeprobe_operator_budget_nodes",
                 "nodeprobe_operator_last_pass_timestamp_seconds",
                 "nodeprobe_operator_trigger_to_cordon_seconds_count"):
        assert value(name) == 0, name


def test_two_operators_in_one_process_do_not_collide() -> None:
    OperatorMetrics(CollectorRegistry())
    OperatorMetrics(CollectorRegistry())  # nothing on the global registry


def test_a_pass_sets_every_gauge_and_events_count() -> None:
    registry = CollectorRegistry()
    m = OperatorMetrics(registry)
    episodes = dict.fromkeys(OPEN_PHASES, 0) | {RemediationPhase.DRAINING: 2}
    waiting = dict.fromkeys(Wait, 0) | {Wait.BUDGET: 3}
    m.passed(PassStats(at=1_800_000_000.0, episodes=episodes, held=2, budget=2,
                       waiting=waiting))
    m.finished(RemediationPhase.ESCALATED)
    m.cordoned(75.0)
    value = registry.get_sample_value
    assert value("nodeprobe_operator_episodes", {"phase": "Draining"}) == 2
    assert value("nodeprobe_operator_episodes", {"phase": "Pending"}) == 0
    assert value("nodeprobe_operator_waiting_nodes", {"reason": "budget"}) == 3
    assert value("nodeprobe_operator_nodes_held") == 2
    assert value("nodeprobe_operator_budget_nodes") == 2
    assert value("nodeprobe_operator_last_pass_timestamp_seconds") == 1_800_000_000.0
    assert value("nodeprobe_remediations_total", {"outcome": "Escalated"}) == 1
    assert value("nodeprobe_operator_trigger_to_cordon_seconds_bucket", {"le": "60.0"}) == 0
    assert value("nodeprobe_operator_trigger_to_cordon_seconds_bucket", {"le": "120.0"}) == 1
    assert value("nodeprobe_operator_trigger_to_cordon_seconds_sum") == 75.0


def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (make deps does)"
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    proc = subprocess.run([promtool, "check", "metrics"], input=generate_latest(registry),
                          capture_output=True, check=False, timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
