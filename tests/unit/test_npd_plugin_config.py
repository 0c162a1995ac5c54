"""The shipped node-problem-detector plugin config must match nodeprobe's CLI and deadlines."""

from __future__ import annotations

import json
from pathlib import Path

from nodeprobe.cli import build_parser
from nodeprobe.config import Config, parse_duration
from nodeprobe.model import Check

CONFIG = Path(__file__).parents[2] / "deploy/npd/nodeprobe-plugin-monitor.json"


def _load() -> dict:
    return json.loads(CONFIG.read_text())


def test_every_rule_is_a_valid_check_command_with_summary_output():
    for rule in _load()["rules"]:
        args = build_parser().parse_args(rule["args"])
        assert args.command == "check"
        assert args.summary, "NPD uses stdout as the message: only the one-line summary"
        assert rule["path"].endswith("/nodeprobe")


def test_one_condition_per_permanent_rule_so_rules_do_not_overwrite_each_other():
    body = _load()
    conditions = [rule["condition"] for rule in body["rules"] if rule["type"] == "permanent"]
    assert len(conditions) == len(set(conditions))
    assert set(conditions) == {c["type"] for c in body["conditions"]}


def test_plugin_timeout_leaves_room_for_the_slowest_call():
    body = _load()
    defaults = Config.defaults().checks
    slowest = max(defaults.for_check(c).deadline for c in Check if c is not Check.CANARY)
    for rule in body["rules"]:
        assert parse_duration(rule["timeout"]) >= slowest + 2
    assert parse_duration(body["pluginConfig"]["timeout"]) >= slowest + 2
    assert body["pluginConfig"]["max_output_length"] >= 200
