"""Policy parsing, validation and the gates, on synthetic nodes and remediations."""

from __future__ import annotations

from typing import Any

import pytest

from nodeprobe.operator.gates import (
    Cluster,
    NodeCondition,
    NodeView,
    PolicyDecision,
    RemediationView,
    Wait,
    decide_all,
    remediation_name,
)
from nodeprobe.operator.grammar import PolicyError, parse_duration
from nodeprobe.operator.parse import parse_policy, validate_policy
from nodeprobe.operator.policy import Action, OnTimeout, Policy

NOW = 1_800_000_000.0


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "nodeSelector": {"matchLabels": {"pool": "a"}},
        "triggers": [{"type": "ContainerRuntimeUnavailable", "status": "True", "for": "60s"}],
        "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "5m"},
                   {"action": "reboot", "timeout": "15m"}, {"action": "escalate"}],
        "maxConcurrent": 2,
        "minHealthy": "0%",
    }
    base.update(over)
    return base


def decide(p: Policy, nodes: list[NodeView], rems: list[RemediationView], *, now: float,
           cluster_recent_starts: int = 0, storm_ended_at: float | None = None,
           max_held: int = 100) -> PolicyDecision:
    """One policy's decision against a roomy cluster budget."""
    cluster = Cluster(nodes={n.name: n for n in nodes}, remediations=rems, records={},
                      max_held=max_held, recent_starts=cluster_recent_starts)
    return decide_all([p], cluster, now=now, storms={p.name: (None, storm_ended_at)})[p.name]


def node(name: str, *, sick_for: float | None = None, pool: str = "a",
         cordoned: bool = False) -> NodeView:
    conds = {"Ready": NodeCondition("True", NOW - 9999)}
    if sick_for is not None:
        conds["ContainerRuntimeUnavailable"] = NodeCondition("True", NOW - sick_for)
    else:
        conds["ContainerRuntimeUnavailable"] = NodeCondition("False", NOW - 9999)
    return NodeView(name, {"pool": pool}, cordoned, conds)


def rem(node_name: str, phase: str = "Draining", *, finished: float | None = None,
        holds: bool = True, name: str | None = None) -> RemediationView:
    return RemediationView(name or f"{node_name}-x", node_name, "p", phase, NOW - 100,
                           finished, holds)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), (30, 30), ("0s", 0)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, where="x") == seconds


@pytest.mark.parametrize("bad", ["-5m", "5 minutes", "", "5x", True, None, -3])
def test_bad_durations_say_where(bad: object) -> None:
    with pytest.raises(PolicyError, match=r"^spec\.coolDown: "):
        parse_duration(bad, where="spec.coolDown")


def test_valid_policy_parses_with_defaults() -> None:
    p = parse_policy("p", spec())
    assert validate_policy(spec()) == []
    assert [r.action for r in p.ladder] == [Action.RESTART_RUNTIME, Action.REBOOT,
                                             Action.ESCALATE]
    assert p.ladder[0].timeout_s == 300
    assert p.plan.drain.on_timeout is OnTimeout.NEXT
    assert p.triggers[0].for_s == 60


@pytest.mark.parametrize(("over", "needle"), [
    ({"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
     "spec.nodeSelector.matchExpressions[0]: operator 'Near'"),
    ({"nodeSelector": {"matchLabelz": {}}}, "spec.nodeSelector: unknown field"),
    ({"ladder": [{"action": "reimage"}]}, "spec.ladder[0].action: unknown action 'reimage'"),
    ({"ladder": [{"action": "reboot", "timeout": "-1m"}]},
     "spec.ladder[0].timeout: duration must not be negative"),
    ({"coolDown": "-10m"}, "spec.coolDown: duration must not be negative"),
    ({"drain": {"timeout": "-1s"}}, "spec.drain.timeout: duration must not be negative"),
    ({"maxConcurrent": 0}, "spec.maxConcurrent"),
    ({"maxConcurrent": "150%"}, "spec.maxConcurrent: percentage must be between"),
    ({"minHealthy": "abc"}, "spec.minHealthy: expected a percentage"),
    ({"triggers": []}, "spec.triggers: at least one"),
    ({"triggers": [{"type": "DiskPressur"}]}, "spec.triggers[0].type: unknown condition"),
    ({"ladder": [{"action": "restart-runtime", "runtime": "crio"}]}, "unknown runtime 'crio'"),
    ({"drain": {"onTimeout": "retry"}}, "spec.drain.onTimeout"),
    ({"dryrun": True}, "spec.dryrun: unknown field"),
    ({"drain": {"timout": "1m"}}, "spec.drain: unknown field(s) ['timout']"),
    ({"ladder": [{"action": "reboot", "timeOut": "1m"}]}, "spec.ladder[0]: unknown field"),
    ({"triggers": [{"type": "Ready", "For": "1m"}]}, "spec.triggers[0]: unknown field"),
    ({"retention": {"kepp": 3}}, "spec.retention: unknown field"),
    ({"maintenanceWindows": [{"days": [], "start": "22:00", "end": "06:00"}]},
     "spec.maintenanceWindows[0].days: expected a non-empty list"),
])
def test_invalid_policies_rejected_with_clear_message(over: dict[str, Any], needle: str) -> None:
    problems = validate_policy(spec(**over))
    assert problems, over
    assert any(needle in p for p in problems), problems


def test_validate_reports_every_bad_rung() -> None:
    problems = validate_policy(spec(ladder=[{"action": "zap"}, {"action": "reboot",
                                                                "timeout": "-1s"}]))
    assert any("ladder[0]" in p for p in problems)
    assert any("ladder[1]" in p for p in problems)


def test_trigger_must_hold_for_its_duration() -> None:
    p = parse_policy("p", spec())
    d = decide(p, [node("n1", sick_for=30), node("n2", sick_for=61)], [], now=NOW)
    assert [s.node for s in d.starts] == ["n2"]
    assert d.matched == 2 and d.sick == 1


def test_selector_limits_matched_nodes() -> None:
    p = parse_policy("p", spec())
    d = decide(p, [node("n1", sick_for=100, pool="b")], [], now=NOW)
    assert d.matched == 0 and not d.starts


def test_max_concurrent_counts_cordons_we_hold() -> None:
    p = parse_policy("p", spec(maxConcurrent=2))
    nodes = [node(f"n{i}", sick_for=100) for i in range(10)]
    nodes += [node(f"h{i}") for i in range(30)]
    escalated = rem("n0", "Escalated", finished=NOW - 10, holds=True)
    d = decide(p, nodes, [escalated], now=NOW)
    assert len(d.starts) == 1
    d = decide(p, nodes, [escalated, rem("n1")], now=NOW)
    assert d.starts == [] and "maxConcurrent 2 reached" in d.blocked[0]


def test_max_concurrent_percentage_rounds_down_min_one() -> None:
    p = parse_policy("p", spec(maxConcurrent="10%"))
    nodes = [node(f"n{i}", sick_for=100) for i in range(5)] + [node(f"h{i}") for i in range(20)]
    assert len(decide(p, nodes, [], now=NOW).starts) == 2
    p = parse_policy("p", spec(maxConcurrent="1%"))
    assert len(decide(p, nodes, [], now=NOW).starts) == 1


def test_min_healthy_blocks_with_reason() -> None:
    p = parse_policy("p", spec(minHealthy="60%", maxConcurrent=10))
    nodes = [node(f"s{i}", sick_for=100) for i in range(5)] + [node(f"h{i}") for i in range(5)]
    d = decide(p, nodes, [], now=NOW)
    assert d.starts == []
    assert "50% of 10 matched nodes are healthy, below minHealthy 60%" in d.blocked[0]


def test_paused_says_so() -> None:
    p = parse_policy("p", spec(paused=True))
    d = decide(p, [node("n1", sick_for=100)], [], now=NOW)
    assert d.starts == [] and "paused" in d.blocked[0]


def test_cool_down_per_node() -> None:
    p = parse_policy("p", spec(coolDown="30m"))
    done = rem("n1", "Succeeded", finished=NOW - 600, holds=False, name="old")
    d = decide(p, [node("n1", sick_for=100)], [done], now=NOW)
    assert d.starts == [] and "cool-down" in d.waiting["n1"]
    done = rem("n1", "Succeeded", finished=NOW - 1900, holds=False, name="old")
    assert len(decide(p, [node("n1", sick_for=100)], [done], now=NOW).starts) == 1


def test_cluster_wide_rate() -> None:
    p = parse_policy("p", spec(rate=3, maxConcurrent=10))
    nodes = [node(f"n{i}", sick_for=100) for i in range(5)] + [node(f"h{i}") for i in range(20)]
    assert len(decide(p, nodes, [], now=NOW, cluster_recent_starts=1).starts) == 2
    d = decide(p, nodes, [], now=NOW, cluster_recent_starts=3)
    assert d.starts == [] and "rate limit" in d.blocked[0]


def test_one_remediation_per_node_per_episode() -> None:
    p = parse_policy("p", spec(coolDown="0s"))
    n = node("n1", sick_for=100)
    name = remediation_name("n1", NOW - 100)
    d = decide(p, [n], [], now=NOW)
    assert d.starts[0].name == name
    # the same episode is never opened twice, even after it ended
    ended = rem("n1", "Failed", finished=NOW - 5, holds=False, name=name)
    d = decide(p, [n], [ended], now=NOW)
    assert d.starts == [] and "already ended" in d.waiting["n1"]
    # an active one for the node: nothing new
    assert decide(p, [n], [rem("n1")], now=NOW).starts == []


def test_storm_cool_down_after_min_healthy_recovers() -> None:
    p = parse_policy("p", spec(minHealthy="60%", maxConcurrent=10, stormCoolDown="5m"))
    nodes = [node("s0", sick_for=100)] + [node(f"h{i}") for i in range(9)]
    d = decide(p, nodes, [], now=NOW, storm_ended_at=NOW - 60)
    assert d.starts == [] and not d.storm
    assert "storm cool-down until" in d.blocked[0]
    assert len(decide(p, nodes, [], now=NOW, storm_ended_at=NOW - 301).starts) == 1
    many = [node(f"s{i}", sick_for=100) for i in range(5)] + [node(f"h{i}") for i in range(5)]
    assert decide(p, many, [], now=NOW).storm


def test_every_problem_is_listed_at_once() -> None:
    problems = validate_policy(spec(maintenanceWindows=[
        {"days": ["Funday"], "start": "22:00", "end": "06:00", "timeZone": "Mars/Olympus"}]))
    assert any("unknown day 'Funday'" in p for p in problems), problems
    assert any("unknown time zone 'Mars/Olympus'" in p for p in problems), problems


def test_a_persons_release_holds_until_the_condition_clears() -> None:
    p = parse_policy("p", spec(coolDown="0s", flapLimit={"attempts": 1}))
    sick = node("n1", sick_for=1000)
    released = RemediationView("n1-old", "n1", "p", "Escalated", NOW - 900, NOW - 800, False,
                               released=NOW - 10)
    d = decide(p, [sick], [released], now=NOW)
    assert d.starts == [] and d.reasons["n1"] is Wait.RELEASED
    assert "released escalated episode n1-old" in d.waiting["n1"]
    again = node("n1", sick_for=5)  # cleared after the release, then bad again
    p2 = parse_policy("p", spec(coolDown="0s", triggers=[
        {"type": "ContainerRuntimeUnavailable", "status": "True", "for": "1s"}]))
    assert [s.node for s in decide(p2, [again], [released], now=NOW).starts] == ["n1"]


def test_every_waiting_or_escalated_node_is_named_with_its_reason() -> None:
    p = parse_policy("p", spec(paused=True))
    d = decide(p, [node("n1", sick_for=100), node("n2", sick_for=100, cordoned=True)],
               [rem("n2", "Escalated")], now=NOW)
    assert d.waiting["n1"].startswith("policy is paused")
    assert d.waiting["n2"].startswith("escalated (n2-x)")


def test_a_silent_agent_is_a_start_gate() -> None:
    p = parse_policy("p", spec(agentSilence="5m"))
    quiet = node("n1", sick_for=1000)  # its last condition write was 1000 s ago
    d = decide(p, [quiet], [], now=NOW)
    assert d.starts == [] and d.reasons["n1"] is Wait.AGENT_SILENT
