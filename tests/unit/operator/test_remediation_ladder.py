"""The ladder state machine, walked phase by phase on synthetic nodes and a synthetic clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nodeprobe.operator.gates import NodeCondition, NodeView
from nodeprobe.operator.ladder import TABLE, Ev, Intent, Phase, Seen, Step, iso, step
from nodeprobe.operator.parse import parse_policy
from nodeprobe.operator.policy import Policy

T0 = 1_800_000_000.0
SPEC: dict[str, Any] = {
    "triggers": [{"type": "ContainerRuntimeUnavailable", "for": "1m"}],
    "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "5m"},
               {"action": "reboot", "timeout": "15m"}],
    "drain": {"timeout": "10m", "actionOnTimeout": False},
    "settleWindow": "2m",
}


def sick_node(*, cordoned: bool = False, boot: str = "b1", sick: bool = True,
              ready: bool = True) -> NodeView:
    return NodeView("n1", {}, cordoned, {
        "ContainerRuntimeUnavailable": NodeCondition("True" if sick else "False", T0 - 300),
        "Ready": NodeCondition("True" if ready else "False", T0 - 300)}, boot_id=boot)


def holds_cordon(status: dict[str, Any]) -> bool:
    return bool(status.get("cordonedByUs")) and status.get("phase") not in ("Succeeded", "Failed")


class Walk:
    """Applies steps to a status dict the way the reconciler does (merge patch)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.status: dict[str, Any] = {}
        self.rung = 0

    def go(self, node: NodeView | None, *, at: float, left: int | None = None,
           **seen: Any) -> Step:
        bad = node is not None and any(
            (c := node.conditions.get(t.type)) is not None and c.status == t.status
            for t in self.policy.triggers)
        seen.setdefault("cordon_ours", bool(self.status.get("cordonedByUs")))
        s = step(self.policy.plan, rung=self.rung, status=self.status,
                 seen=Seen(node=node, now=at, drain_left=left, triggered=bad, **seen))
        for k, v in s.patch.items():
            if v is None:
                self.status.pop(k, None)
            else:
                self.status[k] = v
        if "rung" in s.patch:
            self.rung = s.patch["rung"]
        return s

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", "Pending"))


def test_restart_runtime_happy_path() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = sick_node()
    s = w.go(n, at=T0)
    assert (w.phase, s.intents, w.status["cordonedByUs"]) == ("Cordoned", [Intent.CORDON], True)
    n = replace(n, unschedulable=True)
    w.go(n, at=T0 + 1)
    assert w.phase == "Draining"
    w.go(n, at=T0 + 2, left=2)
    assert w.phase == "Draining" and w.status["podsLeft"] == 2
    w.go(n, at=T0 + 3, left=0)
    assert w.phase == "ActionRequested"
    assert w.status["action"] == "restart-runtime" and w.status["runtime"] == "dockerd"
    assert w.status["bootIDBefore"] == "b1"
    assert not w.go(n, at=T0 + 4).changed  # waiting for the agent
    w.status["agent"] = {"rung": 0, "state": "Done", "message": "restarted dockerd"}
    w.go(n, at=T0 + 5)
    assert w.phase == "Verifying"
    assert not w.go(n, at=T0 + 6).changed  # condition still True
    healed = replace(n, conditions={**n.conditions, "ContainerRuntimeUnavailable":
                                    NodeCondition("False", T0 + 7)})
    assert not w.go(healed, at=T0 + 8).changed  # inside the settle window
    s = w.go(healed, at=T0 + 5 + 120)
    assert w.phase == "Succeeded" and s.intents == [Intent.UNCORDON]
    assert ("RemediationSucceeded" in [e[1] for e in s.events])
    assert not holds_cordon(w.status)


def test_never_uncordon_what_someone_else_cordoned() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = sick_node(cordoned=True)
    s = w.go(n, at=T0)
    assert w.status["cordonedByUs"] is False and Intent.CORDON not in s.intents
    w.go(n, at=T0 + 1)
    w.go(n, at=T0 + 2, left=0)
    w.status["agent"] = {"rung": 0, "state": "Done"}
    w.go(n, at=T0 + 3)
    healed = replace(n, conditions={"ContainerRuntimeUnavailable": NodeCondition("False", T0),
                                    "Ready": NodeCondition("True", T0)})
    s = w.go(healed, at=T0 + 3 + 120)
    assert w.phase == "Succeeded" and s.intents == []


def test_person_uncordons_mid_episode_left_alone() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = sick_node()
    w.go(n, at=T0)
    w.go(replace(n, unschedulable=True), at=T0 + 1)
    s = w.go(n, at=T0 + 2, left=3)  # someone ran kubectl uncordon
    assert w.phase == "Failed" and "uncordoned" in w.status["message"]
    assert s.intents == [Intent.UNMARK] and not holds_cordon(w.status)  # our mark goes too


def test_a_person_cordoning_mid_episode_keeps_the_node_cordoned_after_it() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = sick_node()
    w.go(n, at=T0)
    cordoned = replace(n, unschedulable=True)
    w.go(cordoned, at=T0 + 1)
    s = w.go(cordoned, at=T0 + 2, cordon_ours=False)  # kubectl uncordon + cordon meanwhile
    assert w.phase == "Draining" and s.intents == [Intent.UNMARK]
    assert w.status["cordonedByUs"] is False
    w.go(cordoned, at=T0 + 3, left=0, cordon_ours=False)
    w.status["agent"] = {"rung": 0, "state": "Done"}
    w.go(cordoned, at=T0 + 4, cordon_ours=False)
    assert w.phase == "Verifying"
    healed = replace(cordoned, conditions={
        "ContainerRuntimeUnavailable": NodeCondition("False", T0),
        "Ready": NodeCondition("True", T0)})
    s = w.go(healed, at=T0 + 200, cordon_ours=False)
    assert w.phase == "Succeeded" and Intent.UNCORDON not in s.intents


def test_drain_timeout_moves_to_next_rung_or_fails() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    w.go(n, at=T0 + 599, left=1)
    assert w.phase == "Draining"
    s = w.go(n, at=T0 + 601, left=1)
    assert w.rung == 1 and w.phase == "Draining" and s.patch["rung"] == 1
    assert "drain timed out" in w.status["message"]

    w = Walk(parse_policy("p", {**SPEC, "drain": {"timeout": "10m", "onTimeout": "fail",
                                                           "actionOnTimeout": False}}))
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    s = w.go(n, at=T0 + 601, left=1)
    assert w.phase == "Failed" and s.intents == [Intent.UNCORDON]


def test_reboot_counts_only_when_boot_id_changes() -> None:
    w = Walk(parse_policy("p", SPEC))
    w.rung = 1
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    w.go(n, at=T0, left=0)
    assert w.phase == "ActionRequested" and w.status["action"] == "reboot"
    w.status["agent"] = {"rung": 1, "state": "Done"}  # the agent's word is not enough
    w.go(n, at=T0 + 10)
    assert w.phase == "ActionRequested"
    rebooted = replace(n, boot_id="b2", conditions={
        "ContainerRuntimeUnavailable": NodeCondition("False", T0 + 20),
        "Ready": NodeCondition("True", T0 + 20)})
    w.go(rebooted, at=T0 + 30)
    assert w.phase == "Verifying" and w.status["bootIDAfter"] == "b2"
    w.go(replace(rebooted, conditions={**rebooted.conditions,
                                       "Ready": NodeCondition("False", T0 + 31)}), at=T0 + 200)
    assert w.phase == "Verifying"  # settled but NotReady: waits
    w.go(rebooted, at=T0 + 100)
    assert w.phase == "Verifying"  # inside the settle window
    s = w.go(rebooted, at=T0 + 30 + 121)
    assert w.phase == "Succeeded" and s.intents == [Intent.UNCORDON]


def test_reboot_without_boot_id_change_escalates_after_timeout() -> None:
    w = Walk(parse_policy("p", {**SPEC, "escalation": {"webhookURL": "http://127.0.0.1:9/x"}}))
    w.rung = 1
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "ActionRequested", "cordonedByUs": True, "bootIDBefore": "b1",
                "actionRequestedAt": iso(T0)}
    w.go(n, at=T0 + 899)
    assert w.phase == "ActionRequested"
    s = w.go(n, at=T0 + 901)
    assert w.phase == "Escalated"
    assert s.intents == [Intent.LABEL_ESCALATED, Intent.WEBHOOK]
    assert "Escalated" in [e[1] for e in s.events]
    assert holds_cordon(w.status)  # the node stays cordoned and counts against maxConcurrent


def test_agent_failure_moves_on() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "ActionRequested", "cordonedByUs": True, "bootIDBefore": "b1",
                "actionRequestedAt": iso(T0), "agent": {"rung": 0, "state": "Failed",
                                                        "message": "systemctl: exit 1"}}
    w.go(n, at=T0 + 1)
    assert w.rung == 1 and w.phase == "Draining" and "agent" not in w.status


def test_stale_agent_report_from_older_rung_ignored() -> None:
    w = Walk(parse_policy("p", SPEC))
    w.rung = 1
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "ActionRequested", "cordonedByUs": True, "bootIDBefore": "b1",
                "actionRequestedAt": iso(T0), "agent": {"rung": 0, "state": "Failed"}}
    assert not w.go(n, at=T0 + 1).changed


def test_deleted_node_fails_the_remediation() -> None:
    w = Walk(parse_policy("p", SPEC))
    w.status = {"phase": "Draining", "cordonedByUs": True}
    w.go(None, at=T0)
    assert w.phase == "Failed"


def test_terminal_phases_do_nothing() -> None:
    for phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.ESCALATED):
        w = Walk(parse_policy("p", SPEC))
        w.status = {"phase": phase.value}
        assert not w.go(sick_node(), at=T0).changed


def test_escalate_rung_first_escalates_after_cordon() -> None:
    w = Walk(parse_policy("p", {**SPEC, "ladder": [{"action": "escalate"}]}))
    n = sick_node()
    w.go(n, at=T0)
    w.go(replace(n, unschedulable=True), at=T0 + 1)
    w.go(replace(n, unschedulable=True), at=T0 + 2)
    assert w.phase == "Escalated"


def test_messages_are_capped() -> None:
    w = Walk(parse_policy("p", SPEC))
    w.status = {"messages": [f"m{i}" for i in range(50)]}
    w.go(sick_node(), at=T0)
    assert len(w.status["messages"]) == 20 and "cordoned" in w.status["messages"][-1]


def test_drain_timeout_on_a_hung_runtime_goes_on_to_the_action() -> None:
    spec = {**SPEC, "drain": {"timeout": "10m"}}  # actionOnTimeout: default on for restart
    w = Walk(parse_policy("p", spec))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    assert w.go(n, at=T0 + 599, left=3).intents == [Intent.EVICT]  # still draining
    w.go(n, at=T0 + 601, left=3)
    assert w.phase == "ActionRequested" and w.rung == 0
    assert "the repair is what frees them" in w.status["message"]
    # a reboot rung does not force by default: next rung (here none left: escalate)
    w = Walk(parse_policy("p", spec))
    w.rung = 1
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    w.go(n, at=T0 + 601, left=3)
    assert w.phase == "Escalated"


def test_agent_silent_goes_to_the_next_rung_with_a_reason() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    s = w.go(n, at=T0 + 5, left=0, agent_alive=False)
    assert w.rung == 1 and w.phase == "Draining"
    assert "agent has not reported" in w.status["message"]
    assert s.events[0][1] == "RemediationRungFailed"


def test_frozen_episode_writes_nothing_to_the_node() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    s = w.go(n, at=T0 + 1, left=2, frozen="policy p is in dry run")
    assert s.intents == [] and w.status["frozen"] == "policy p is in dry run"
    assert not w.go(n, at=T0 + 2, frozen="policy p is in dry run").changed
    healed = replace(n, conditions={"ContainerRuntimeUnavailable": NodeCondition("False", T0)})
    s = w.go(healed, at=T0 + 3, frozen="policy p is in dry run")
    assert w.phase == "Succeeded" and s.intents == [Intent.UNCORDON]  # giving back is allowed


def test_abort_before_the_action_gives_the_cordon_back() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    s = w.go(n, at=T0 + 1, abort="policy p is being deleted")
    assert w.phase == "Failed" and s.intents == [Intent.UNCORDON]
    w.status = {"phase": "ActionRequested", "cordonedByUs": True, "actionRequestedAt": iso(T0)}
    assert w.go(n, at=T0 + 1, abort="policy p is being deleted").intents == []  # finishes


def test_flap_limit_escalates_at_once() -> None:
    w = Walk(parse_policy("p", SPEC))
    s = w.go(sick_node(), at=T0, flapping=3)
    assert w.phase == "Escalated" and w.status["attemptsInWindow"] == 3
    assert s.intents == [Intent.CORDON, Intent.LABEL_ESCALATED]
    assert "flap limit: 3 episodes" in w.status["message"]


def test_the_transition_table_is_the_one_in_the_docs() -> None:
    """docs/remediation.md lists every (phase, event) -> next phase row of `TABLE`."""
    from pathlib import Path
    doc = (Path(__file__).parents[3] / "docs" / "remediation.md").read_text()
    rows = set()
    for line in doc.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in {p.value for p in Phase} \
                and cells[1] in {e.value for e in Ev}:
            rows.add((cells[0], cells[1], cells[2]))
    table = {(p.value, e.value, nxt) for (p, e), (nxt, _) in TABLE.items()}
    assert rows == table


def test_the_drain_is_an_intent_of_the_ladder_and_a_silent_agent_gets_none() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Cordoned", "cordonedByUs": True}
    assert w.go(n, at=T0).intents == [Intent.EVICT] and w.phase == "Draining"
    assert w.go(n, at=T0 + 1, left=2).intents == [Intent.EVICT]  # what is left, read
    s = w.go(n, at=T0 + 2, left=2, agent_alive=False)
    assert Intent.EVICT not in s.intents and "agent has not reported" in w.status["message"]
