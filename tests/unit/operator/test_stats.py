"""The operator's metrics as pure numbers: why sick nodes wait (one `Wait` per decision point),
what a pass adds up to, the trigger-to-cordon delay, and the reconciler feeding its sink."""

from __future__ import annotations

from typing import Any

import pytest

from nodeprobe.model import RemediationPhase
from nodeprobe.operator.gates import (
    Blockers,
    Cluster,
    NodeCondition,
    NodeRecord,
    NodeView,
    PolicyDecision,
    Wait,
    decide_all,
)
from nodeprobe.operator.grammar import iso, parse_iso
from nodeprobe.operator.parse import parse_policy
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from nodeprobe.operator.stats import OPEN_PHASES, PassStats, cordon_delay, pass_stats
from tests.unit.operator.fake_kube import FakeKube
from tests.unit.operator.test_remediation_policy import NOW, node, rem, spec

CP = {"node-role.kubernetes.io/control-plane": "", "pool": "a"}


def reasons(over: dict[str, Any], nodes: list[NodeView], *, rems: Any = (), max_held: int = 100,
            records: dict[str, NodeRecord] | None = None, recent: int = 0,
            storm_ended_at: float | None = None,
            blockers: Blockers | None = None) -> dict[str, Wait]:
    p = parse_policy("p", spec(**over))
    cluster = Cluster(nodes={n.name: n for n in nodes}, remediations=list(rems),
                      records=records or {}, max_held=max_held, recent_starts=recent)
    d = decide_all([p], cluster, now=NOW, storms={"p": (None, storm_ended_at)},
                   blockers=blockers)["p"]
    assert not set(d.reasons) & {s.node for s in d.starts}, "a started node is not waiting"
    return d.reasons


SICK = [node("s1", sick_for=100), node("s2", sick_for=100)]
HEALTHY = [node(f"h{i}") for i in range(8)]


@pytest.mark.parametrize(("case", "expected"), [
    ({"over": {"paused": True}}, {"s1": Wait.PAUSED, "s2": Wait.PAUSED}),
    ({"over": {"maintenanceWindows": [{"days": ["Sat"], "start": "01:00", "end": "02:00",
                                       "timeZone": "UTC"}]}},
     {"s1": Wait.WINDOW, "s2": Wait.WINDOW}),
    ({"over": {"minHealthy": "90%"}}, {"s1": Wait.MIN_HEALTHY, "s2": Wait.MIN_HEALTHY}),
    ({"over": {"stormCoolDown": "10m"}, "storm_ended_at": NOW - 60},
     {"s1": Wait.STORM_COOL_DOWN, "s2": Wait.STORM_COOL_DOWN}),
    ({"over": {"rate": 2}, "recent": 2}, {"s1": Wait.RATE, "s2": Wait.RATE}),
    ({"over": {"rate": 1}}, {"s2": Wait.RATE}),
    ({"over": {"maxConcurrent": 1}}, {"s2": Wait.MAX_CONCURRENT}),
    ({"over": {"maxConcurrent": 1}, "rems": [rem("h0")]},
     {"s1": Wait.MAX_CONCURRENT, "s2": Wait.MAX_CONCURRENT}),
    ({"max_held": 1}, {"s2": Wait.BUDGET}),
    ({"max_held": 1, "rems": [rem("h0")]}, {"s1": Wait.BUDGET, "s2": Wait.BUDGET}),
    ({"blockers": Blockers(alerts={"p": "1 firing alert(s)"})},
     {"s1": Wait.ALERT, "s2": Wait.ALERT}),
    ({"blockers": Blockers(pods={"p": {"s1": "a pod"}})},
     {"s1": Wait.BLOCKER}),
    ({"records": {"s1": NodeRecord(holder="someone-else")}}, {"s1": Wait.LEASE}),
    ({"over": {"coolDown": "30m"},
      "rems": [rem("s1", "Succeeded", finished=NOW - 60, holds=False, name="old")]},
     {"s1": Wait.COOL_DOWN}),
    ({"rems": [rem("s1", "Failed", finished=NOW - 60, holds=False, name=f"s1-{int(NOW - 100)}")]},
     {"s1": Wait.EPISODE_ENDED}),
])
def test_every_waiting_sick_node_has_the_reason_its_gate_gave(case: dict[str, Any],
                                                               expected: dict[str, Wait]) -> None:
    got = reasons(case.get("over", {}), SICK + HEALTHY, rems=case.get("rems", ()),
                  max_held=case.get("max_held", 100), records=case.get("records"),
                  recent=case.get("recent", 0), storm_ended_at=case.get("storm_ended_at"),
                  blockers=case.get("blockers"))
    assert got == expected


def test_excluded_and_control_plane_nodes_wait_with_their_reason() -> None:
    excluded = NodeView("x", {"pool": "a", "nodeprobe.io/exclude": "true"}, False,
                        {"Ready": NodeCondition("True", NOW - 9999),
                         "ContainerRuntimeUnavailable": NodeCondition("True", NOW - 100)})
    cps = [NodeView(f"cp{i}", CP, False, excluded.conditions) for i in (1, 2)]
    got = reasons({"maxConcurrent": 5}, [excluded, *cps, *HEALTHY])
    assert got == {"x": Wait.EXCLUDED, "cp2": Wait.CONTROL_PLANE}


def test_a_healthy_cluster_waits_for_nothing() -> None:
    assert reasons({}, HEALTHY) == {}


def stats(decisions: dict[str, PolicyDecision], *, held: set[str] | None = None,
          opened: tuple[str, ...] = (), rems: Any = ()) -> PassStats:
    return pass_stats(list(rems), decisions, held=held or set(opened), opened=opened,
                      budget=3, now=NOW)


def test_pass_stats_has_every_phase_and_reason_even_when_idle() -> None:
    s = stats({})
    assert s.episodes == dict.fromkeys(OPEN_PHASES, 0)
    assert s.waiting == dict.fromkeys(Wait, 0)
    assert (s.held, s.budget, s.at) == (0, 3, NOW)


def test_pass_stats_counts_episodes_that_hold_their_node_by_phase() -> None:
    rems = [rem("a", "Draining"), rem("b", "Draining"), rem("c", "Verifying"),
            rem("d", "Escalated", finished=NOW - 5, holds=True),
            rem("e", "Escalated", finished=NOW - 5, holds=False),  # released by a person
            rem("f", "Succeeded", finished=NOW - 5, holds=False)]
    s = stats({}, rems=rems, opened=("g",), held={"a", "b", "c", "d", "g"})
    assert {p: n for p, n in s.episodes.items() if n} == {
        RemediationPhase.DRAINING: 2, RemediationPhase.VERIFYING: 1,
        RemediationPhase.ESCALATED: 1, RemediationPhase.PENDING: 1}
    assert s.held == 5


def test_a_node_counts_once_under_the_first_policy_and_not_when_another_started_it() -> None:
    a = PolicyDecision(reasons={"n1": Wait.WINDOW, "n2": Wait.WINDOW, "n3": Wait.PAUSED})
    b = PolicyDecision(reasons={"n1": Wait.BUDGET, "n4": Wait.BUDGET})
    s = stats({"b": b, "a": a}, opened=("n2",))
    assert {w: n for w, n in s.waiting.items() if n} == {Wait.WINDOW: 1, Wait.PAUSED: 1,
                                                         Wait.BUDGET: 1}


def test_cordon_delay_counts_from_the_episode_start() -> None:
    assert cordon_delay(NOW - 75, now=NOW) == 75
    assert cordon_delay(None, now=NOW) is None
    assert cordon_delay(NOW + 5, now=NOW) == 0  # clock skew: never < 0


class Recorder:
    def __init__(self) -> None:
        self.passes: list[PassStats] = []
        self.outcomes: list[RemediationPhase] = []
        self.cordons: list[float] = []

    def passed(self, stats: PassStats) -> None:
        self.passes.append(stats)

    def finished(self, outcome: RemediationPhase) -> None:
        self.outcomes.append(outcome)

    def cordoned(self, after_s: float) -> None:
        self.cordons.append(after_s)


T0 = parse_iso("2027-01-15T08:00:00Z") or 0.0


def test_the_reconciler_reports_each_pass_cordons_and_outcomes_to_its_sink() -> None:
    kube = FakeKube()
    t = [T0]
    kube.stamp = lambda: iso(t[0])
    sink = Recorder()
    rec = Reconciler(kube, clock=lambda: t[0], sink=sink, alerts=lambda u, q: None,
                     settings=OperatorSettings(max_held=1, event_namespace="nodeprobe"))
    kube.policies["p"] = {"metadata": {"name": "p", "uid": "uid-p", "resourceVersion": "1"},
                          "spec": {"triggers": [{"type": "ContainerRuntimeUnavailable",
                                                 "status": "True", "for": "1m"}],
                                   "ladder": [{"action": "escalate"}], "maxConcurrent": 2,
                                   "minHealthy": "0%", "coolDown": "0s"}}
    kube.add_node("a", sick_since=iso(T0 - 600))
    kube.add_node("b", sick_since=iso(T0 - 300))
    kube.add_node("c")
    for _ in range(6):
        kube.heartbeat(iso(t[0]))
        rec.reconcile()
        t[0] += 2
    first = sink.passes[0]
    assert first.episodes[RemediationPhase.PENDING] == 1 and first.held == 1
    assert first.budget == 1 and first.at == T0
    assert {w: n for w, n in first.waiting.items() if n} == {Wait.BUDGET: 1}
    assert sink.cordons == [602.0]  # a, cordoned in the second pass, sick since T0 - 600
    assert sink.outcomes == [RemediationPhase.ESCALATED]
    last = sink.passes[-1]
    assert last.episodes[RemediationPhase.ESCALATED] == 1 and last.held == 1
    assert {w: n for w, n in last.waiting.items() if n} == {Wait.BUDGET: 1}
    assert [p.at for p in sink.passes] == [T0 + 2 * i for i in range(6)]


def test_a_dry_run_policy_reports_its_sick_nodes_as_waiting_on_dry_run() -> None:
    kube = FakeKube()
    sink = Recorder()
    rec = Reconciler(kube, clock=lambda: T0, sink=sink, alerts=lambda u, q: None)
    kube.policies["p"] = {"metadata": {"name": "p", "uid": "uid-p", "resourceVersion": "1"},
                          "spec": {"triggers": [{"type": "ContainerRuntimeUnavailable",
                                                 "status": "True", "for": "1m"}],
                                   "ladder": [{"action": "escalate"}], "dryRun": True,
                                   "minHealthy": "0%"}}
    kube.add_node("a", sick_since=iso(T0 - 600))
    rec.reconcile()
    assert sink.passes[0].waiting[Wait.DRY_RUN] == 1 and sink.passes[0].held == 0
    assert kube.nrs == {}
