"""The ladder state machine, walked phase by phase on synthetic nodes and a synthetic clock."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nodeprobe.operator.gates import NodeCondition, NodeView
from nodeprobe.operator.ladder import Intent, Phase, Step, holds_cordon, iso, step
from nodeprobe.operator.policy import Policy, parse_policy

T0 = 1_800_000_000.0
SPEC: dict[str, Any] = {
    "triggers": [{"type": "ContainerRuntimeUnavailable", "for": "1m"}],
    "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "5m"},
               {"action": "reboot", "timeout": "15m"}],
    "drain": {"timeout": "10m"},
    "settleWindow": "2m",
}


def sick_node(*, cordoned: bool = False, boot: str = "b1", sick: bool = True,
              ready: bool = True) -> NodeView:
    return NodeView("n1", {}, cordoned, {
        "ContainerRuntimeUnavailable": NodeCondition("True" if sick else "False", T0 - 300),
        "Ready": NodeCondition("True" if ready else "False", T0 - 300)}, boot_id=boot)


class Walk:
    """Applies steps to a status dict the way the reconciler does (merge patch)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.status: dict[str, Any] = {}
        self.rung = 0

    def go(self, node: NodeView | None, *, at: float, left: int | None = None) -> Step:
        s = step(self.policy, rung=self.rung, status=self.status, node=node, drain_left=left,
                 now=at)
        for k, v in s.patch.items():
            if v is None:
                self.status.pop(k, None)
            else:
                self.status[k] = v
        if s.rung is not None:
            self.rung = s.rung
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
    s = w.go(replace(n, conditions={**n.conditions, "ContainerRuntimeUnavailable":
                                    NodeCondition("False", T0 + 7)}), at=T0 + 8)
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
    healed = replace(n, conditions={"ContainerRuntimeUnavailable": NodeCondition("False", T0)})
    s = w.go(healed, at=T0 + 4)
    assert w.phase == "Succeeded" and s.intents == []


def test_person_uncordons_mid_episode_left_alone() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = sick_node()
    w.go(n, at=T0)
    w.go(replace(n, unschedulable=True), at=T0 + 1)
    s = w.go(n, at=T0 + 2, left=3)  # someone ran kubectl uncordon
    assert w.phase == "Failed" and "uncordoned" in w.status["message"]
    assert s.intents == [] and not holds_cordon(w.status)


def test_drain_timeout_moves_to_next_rung_or_fails() -> None:
    w = Walk(parse_policy("p", SPEC))
    n = replace(sick_node(), unschedulable=True)
    w.status = {"phase": "Draining", "cordonedByUs": True, "drainStartedAt": iso(T0)}
    w.go(n, at=T0 + 599, left=1)
    assert w.phase == "Draining"
    s = w.go(n, at=T0 + 601, left=1)
    assert w.rung == 1 and w.phase == "Draining" and s.rung == 1
    assert "drain timed out" in w.status["message"]

    w = Walk(parse_policy("p", {**SPEC, "drain": {"timeout": "10m", "onTimeout": "fail"}}))
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
    w.go(rebooted, at=T0 + 31)
    assert w.status.get("readySince")
    w.go(rebooted, at=T0 + 100)
    assert w.phase == "Verifying"  # inside the settle window
    s = w.go(rebooted, at=T0 + 31 + 121)
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
