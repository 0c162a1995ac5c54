"""The plugin's pure parts: durations, columns, which conditions count, the budget arithmetic."""

from __future__ import annotations

from typing import Any

import pytest

from nodeprobe.kubectl import age, budget_rows, check_argv, parse, sick_conditions, table


def test_age_reads_like_kubectl() -> None:
    assert [age(s) for s in (-3, 0, 45, 60, 192, 3600, 18240, 86400, 183600)] == [
        "0s", "0s", "45s", "1m", "3m12s", "1h", "5h4m", "1d", "2d3h"]


def test_table_aligns_columns_and_leaves_the_last_one_free() -> None:
    assert table(("A", "BB", "MESSAGE"), [("xxx", "y", "long text  "), ("z", "", "m")]) == (
        "A     BB   MESSAGE\n"
        "xxx   y    long text\n"
        "z          m")


def test_only_nodeprobes_conditions_that_are_not_false_count() -> None:
    node = {"status": {"conditions": [
        {"type": "Ready", "status": "False"},
        {"type": "ContainerRuntimeUnavailable", "status": "True", "reason": "DockerdHung"},
        {"type": "ContainerRuntimeSlow", "status": "Unknown"},
        {"type": "ContainerRuntimeMemoryLeak", "status": "False"},
        {"type": "ContainerRuntimeUnhealthy", "status": "True"},  # NPD's, not ours
    ]}}
    assert [c["type"] for c in sick_conditions(node)] == [
        "ContainerRuntimeUnavailable", "ContainerRuntimeSlow"]
    assert sick_conditions({}) == []


def _nr(policy: str, phase: str, cordoned: bool = False) -> dict[str, Any]:
    return {"spec": {"policy": policy}, "status": {"phase": phase, "cordonedByUs": cordoned}}


def _spec(max_concurrent: object) -> dict[str, Any]:
    return {"triggers": [{"type": "ContainerRuntimeUnavailable", "for": "1m"}],
            "ladder": [{"action": "escalate"}], "maxConcurrent": max_concurrent}


def test_budget_counts_open_episodes_and_escalated_cordons_against_max_concurrent() -> None:
    policies = [
        {"metadata": {"name": "b"}, "spec": _spec("10%"),
         "status": {"matchedNodes": 40, "sickNodes": 3, "message": "waiting"}},
        {"metadata": {"name": "a"}, "spec": _spec(2), "status": {}},
        {"metadata": {"name": "bad"}, "spec": _spec(0), "status": {}},
    ]
    remediations = [
        _nr("b", "Draining", cordoned=True), _nr("b", "Escalated", cordoned=True),
        _nr("b", "Succeeded", cordoned=True), _nr("b", "Failed"), _nr("a", "Pending"),
    ]
    assert budget_rows(policies, remediations) == [
        ["a", "1/2", "0/0", ""],
        ["b", "2/4", "3/40", "waiting"],
        ["bad", "0/invalid", "0/0", ""],
    ]


def test_check_runs_nodeprobe_check_in_the_agent_container_with_the_users_credentials() -> None:
    expected = ["--kubeconfig", "/k", "--context", "prod", "exec", "-n", "nodeprobe",
                "nodeprobe-agent-x", "-c", "agent", "--", "nodeprobe", "check",
                "--config", "/etc/nodeprobe/config.yaml", "--json"]
    for argv in (["check", "node-a", "--kubeconfig", "/k", "--context", "prod", "--json"],
                 ["--kubeconfig", "/k", "--context", "prod", "check", "node-a", "--json"],
                 ["--kubeconfig=/k", "check", "node-a", "--context=prod", "--", "--json"]):
        args = parse(argv)
        assert args.node == "node-a"
        assert check_argv(args, "nodeprobe", "nodeprobe-agent-x")[1:] == expected, argv


def test_other_commands_refuse_unknown_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["status", "--json"])
    assert "unrecognized arguments: --json" in capsys.readouterr().err
