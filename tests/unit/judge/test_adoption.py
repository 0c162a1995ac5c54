"""A restarted agent adopts the Node's conditions: no Unknown blip, no transition, no Event."""

from __future__ import annotations

from nodeprobe.config import Config
from nodeprobe.judge.continuous import Judge
from nodeprobe.model import Condition, ConditionType, EventType, Outcome, Reason, Status
from tests.harness.observations import T0
from tests.unit.judge.test_continuous import CHECKS, UNHEALTHY, Clock, round_, status

HELD_SINCE = T0 - 3600.0
HUNG = Condition(UNHEALTHY, Status.TRUE, Reason.DOCKERD_HUNG,
                 "dockerd is hung: GET /_ping did not answer within 3s", HELD_SINCE)


def restarted(*adopted: Condition) -> Judge:
    return Judge(Config.defaults(), expected=CHECKS, now=T0,
                 adopted={c.type: c for c in adopted})


def test_adopted_true_stands_before_the_first_verdict() -> None:
    judge = restarted(HUNG)
    assert judge.conditions()[UNHEALTHY] == HUNG


def test_same_verdict_keeps_the_condition_whole_and_sends_nothing() -> None:
    judge, clock = restarted(HUNG), Clock()
    events = []
    for _ in range(6):
        events += round_(judge, clock, docker_ping=Outcome.HUNG)
        assert judge.conditions()[UNHEALTHY] == HUNG  # message and lastTransitionTime too
    assert events == []


def test_a_real_change_after_adoption_is_a_transition_with_its_event() -> None:
    judge, clock = restarted(HUNG), Clock()
    events = []
    for _ in range(4):
        events += round_(judge, clock)
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)
    assert [e.type for e in events] == [EventType.NORMAL]
    assert judge.conditions()[UNHEALTHY].since > HELD_SINCE


def test_adopted_false_stays_quiet_on_a_healthy_start() -> None:
    healthy = Condition(UNHEALTHY, Status.FALSE, Reason.HEALTHY,
                        "containerd and dockerd answer normally", HELD_SINCE)
    judge, clock = restarted(healthy), Clock()
    events = round_(judge, clock) + round_(judge, clock)
    assert events == []
    assert judge.conditions()[UNHEALTHY] == healthy


def test_without_adoption_the_start_is_unknown() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    assert judge.conditions()[ConditionType.UNAVAILABLE].status is Status.UNKNOWN


def test_start_up_message_does_not_change_with_each_first_answer() -> None:
    from nodeprobe.model import Observation

    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    before = judge.conditions()
    for runtime, check in CHECKS[:-1]:
        judge.observe(Observation(runtime, check, Outcome.OK, 0.002, T0 + 1), now=T0 + 1)
        assert judge.conditions() == before  # nothing new to write while still starting
