"""Each rule of repair/verify.py refuses the forged or replayed request it is there for."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from nodeprobe.model import Condition, ConditionType, Status
from nodeprobe.publish.kubeclient import parse_rfc3339
from nodeprobe.repair.channel import sick_by_node
from nodeprobe.repair.verify import Ledger, TriggerMemory, parse, refusal

OPERATOR = {"manager": "nodeprobe-operator-a", "operation": "Update", "subresource": "status",
            "fieldsV1": {"f:status": {"f:phase": {}, "f:action": {}}}}


def obj(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "n1-1", "uid": "u1", "managedFields": [OPERATOR]},
            "spec": {"nodeName": "n1", "rung": 0, "plan": {
                "triggers": [{"type": "ContainerRuntimeUnavailable"}], "settleWindow": "2m",
                "ladder": [{"action": "restart-runtime", "runtime": "docker"},
                           {"action": "reboot"}]}},
            "status": {"phase": "ActionRequested", "action": "restart-runtime",
                       "runtime": "dockerd", "actionRequestedAt": "2026-01-01T00:10:00Z",
                       **status}}


def why(o: dict[str, Any], *, sick: bool = True, done: set[tuple[str, int]] | None = None,
        terminal: set[str] | None = None, unguarded: str | None = None) -> str | None:
    return refusal(parse(o), unguarded=unguarded, sick=sick, done=done or set(),
                   seen_terminal=terminal or set())


def test_the_operators_request_on_a_sick_node_is_carried_out() -> None:
    assert why(obj()) is None
    assert why(obj(rung=1, action="reboot")) is None  # the rung moved on (status.rung)


def test_without_the_admission_guard_even_the_operators_request_is_refused() -> None:
    """issue 18 item 1: where the guard is absent, a NodeRemediation proves nothing about
    who asked, so the agent carries out nothing and says why."""
    reason = why(obj(), unguarded="ValidatingAdmissionPolicy np-noderemediations is not there")
    assert reason is not None
    assert "admission guard on NodeRemediations is not in place" in reason
    assert "np-noderemediations is not there" in reason


def test_a_request_someone_else_wrote_is_refused() -> None:
    o = obj()
    o["metadata"]["managedFields"] = [OPERATOR, {
        "manager": "kubectl-patch", "operation": "Update", "subresource": "status",
        "fieldsV1": {"f:status": {"f:phase": {}}}}]
    assert "not written by the operator (status.phase/action set by kubectl-patch)" in str(why(o))
    o["metadata"]["managedFields"] = []
    assert "no recorded manager" in str(why(o))


@pytest.mark.parametrize(("status", "expected"), [
    ({"action": "reboot"}, "is not rung 0 of the episode's plan ('restart-runtime')"),
    ({"runtime": "containerd"}, "not the plan's 'dockerd'"),
    ({"rung": 5}, "no ladder rung 5"),
    ({"action": "rm -rf"}, "not an action an agent carries out"),
])
def test_an_action_the_plan_does_not_have_is_refused(status: dict[str, Any],
                                                     expected: str) -> None:
    assert expected in str(why(obj(**status)))


def test_a_finished_remediation_never_acts_again() -> None:
    reopened = obj(finishedAt="2026-01-01T00:20:00Z")
    assert "not newer than the NodeRemediation's finishedAt" in str(why(reopened))
    assert "not newer" in str(why(obj(releasedAt="2026-01-01T00:20:00Z")))
    # finishedAt cleared by the forger: the agent saw it finished
    assert "already finished" in str(why(obj(), terminal={"u1"}))


def test_a_request_on_a_node_the_agent_finds_healthy_is_refused() -> None:
    assert "none of the plan's trigger conditions (ContainerRuntimeUnavailable) is bad" in str(
        why(obj(), sick=False))


def test_a_rung_runs_at_most_once() -> None:
    assert "already carried out once" in str(why(obj(), done={("u1", 0)}))
    assert why(obj(rung=1, action="reboot"), done={("u1", 0)}) is None


def test_missing_plan_is_refused() -> None:
    o = obj()
    del o["spec"]["plan"]
    assert "spec.plan has no ladder rung 0" in str(why(o))


def bad(kind: ConditionType, status: Status) -> dict[ConditionType, Condition]:
    return {kind: Condition(kind, status, "R", "m", 0.0)}


def test_trigger_memory_holds_a_cleared_condition_for_the_settle_window() -> None:
    m = TriggerMemory()
    types = [ConditionType.UNAVAILABLE.value]
    assert not m.sick(types, within_s=120, now=1000)
    m.update(bad(ConditionType.UNAVAILABLE, Status.TRUE), now=1000)
    assert m.sick(types, within_s=120, now=5000)  # bad now, however long
    m.update(bad(ConditionType.UNAVAILABLE, Status.FALSE), now=6000)
    assert m.sick(types, within_s=120, now=6120)
    assert not m.sick(types, within_s=120, now=6121)
    m.update(bad(ConditionType.SLOW, Status.TRUE), now=6200)
    assert not m.sick(types, within_s=120, now=6200)  # not a trigger of this plan


def test_the_executor_reads_the_settle_window_from_the_nodes_condition() -> None:
    """Rule 4 as the privileged executor checks it, from the Node: bad now, or turned good
    within the plan's settle window (2m here), and only for the plan's trigger types."""
    req = parse(obj())
    cleared = parse_rfc3339("2026-01-01T00:10:00Z")

    def cond(kind: str, status: str) -> list[dict[str, Any]]:
        return [{"type": kind, "status": status, "lastTransitionTime": "2026-01-01T00:10:00Z"}]

    unavailable = ConditionType.UNAVAILABLE.value
    assert sick_by_node(cond(unavailable, "True"), req, now=cleared + 86400)
    assert sick_by_node(cond(unavailable, "False"), req, now=cleared + 120)
    assert not sick_by_node(cond(unavailable, "False"), req, now=cleared + 121)
    assert not sick_by_node(cond(ConditionType.SLOW.value, "True"), req, now=cleared)
    assert not sick_by_node([], req, now=cleared)


def test_ledger_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.json"
    first = Ledger(path)
    first.mark_done(("u1", 0))
    first.mark_terminal("u2")
    again = Ledger(path)
    assert again.done == {("u1", 0)} and again.terminal == {"u2"}
    path.write_text("{not json")
    assert Ledger(path).done == set()  # unreadable: warned, empty (rule 4 still holds)


def test_parse_survives_junk() -> None:
    o = copy.deepcopy(obj())
    o["spec"]["plan"] = "nonsense"
    o["metadata"]["managedFields"] = "x"
    o["status"]["rung"] = "one"
    req = parse(o)
    assert req.rung == -1 and req.planned_action is None and req.writers == frozenset()
