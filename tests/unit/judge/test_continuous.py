"""The agent's Judge, fed synthetic rounds of observations with an explicit clock."""

from __future__ import annotations

from nodeprobe.config import Config, load
from nodeprobe.judge.continuous import Judge
from nodeprobe.model import (
    Check,
    ConditionType,
    Event,
    EventType,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)

D, C = Runtime.DOCKERD, Runtime.CONTAINERD
CHECKS = [
    (D, Check.DOCKER_PING),
    (D, Check.DOCKER_VERSION),
    (C, Check.CRI_VERSION),
    (C, Check.CRI_LIST_POD_SANDBOX),
]
UNHEALTHY, SLOW, LEAK = ConditionType.UNAVAILABLE, ConditionType.SLOW, ConditionType.MEMORY_LEAK
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0


def make(config: Config | None = None, checks: list[tuple[Runtime, Check]] = CHECKS) -> Judge:
    return Judge(config or Config.defaults(), expected=checks, now=T0)


def round_(
    judge: Judge, clock: Clock, checks: list[tuple[Runtime, Check]] = CHECKS, **outcomes: Outcome
) -> list[Event]:
    """One probe round 2 s after the last; checks named by value get the given outcome."""
    clock.now += 2.0
    events = []
    for runtime, check in checks:
        outcome = outcomes.get(check.value, Outcome.OK)
        latency = {Outcome.HUNG: 3.0, Outcome.SLOW: 1.5}.get(outcome, 0.002)
        o = Observation(runtime, check, outcome, latency, clock.now)
        events += judge.observe(o, now=clock.now)
    return events


def status(judge: Judge, kind: ConditionType = UNHEALTHY) -> tuple[Status, str]:
    cond = judge.conditions()[kind]
    return cond.status, cond.reason


def test_unknown_until_every_check_answered_then_false_without_event() -> None:
    judge, clock = make(), Clock()
    assert {c.status for c in judge.conditions().values()} == {Status.UNKNOWN}
    first = judge.observe(Observation(D, Check.DOCKER_PING, Outcome.OK, 0.001, T0), now=T0 + 1)
    assert first == []
    cond = judge.conditions()[UNHEALTHY]
    assert (cond.status, cond.reason) == (Status.UNKNOWN, Reason.UNKNOWN)
    assert "dockerd GET /version" in cond.message and "GET /_ping" not in cond.message
    assert round_(judge, clock) == []
    conds = judge.conditions()
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)
    assert conds[UNHEALTHY].message == "containerd and dockerd answer normally"
    assert conds[UNHEALTHY].since == clock.now
    assert status(judge, SLOW) == (Status.FALSE, Reason.NOT_SLOW)
    assert status(judge, LEAK) == (Status.FALSE, Reason.NO_LEAK)


def test_dockerd_hang_raises_after_n_and_clears_after_m() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    assert round_(judge, clock, docker_ping=Outcome.HUNG) == []  # 1 of 2
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)
    events = round_(judge, clock, docker_ping=Outcome.HUNG)
    raised_at = clock.now
    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, Reason.DOCKERD_HUNG)]
    assert events[0].message == (
        "dockerd is hung: GET /_ping did not answer within 3s, "
        "2 checks in a row; containerd answers normally"
    )
    message = judge.conditions()[UNHEALTHY].message
    for _ in range(5):  # a long outage: no events, no message churn
        assert round_(judge, clock, docker_ping=Outcome.HUNG) == []
    cond = judge.conditions()[UNHEALTHY]
    assert (cond.message, cond.since) == (message, raised_at)
    assert round_(judge, clock) == [] and round_(judge, clock) == []  # 2 of 3 good
    events = round_(judge, clock)
    assert [(e.type, e.reason) for e in events] == [(EventType.NORMAL, Reason.HEALTHY)]
    assert events[0].message == (
        "containerd and dockerd answer normally again after 16s (was DockerdHung)"
    )
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)


def test_flapping_never_raises() -> None:
    judge, clock = make(), Clock()
    for i in range(40):
        events = round_(judge, clock, docker_ping=Outcome.HUNG if i % 2 else Outcome.OK)
        assert events == []
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)


def test_hung_from_the_start_never_shows_healthy() -> None:
    judge, clock = make(), Clock()
    assert round_(judge, clock, cri_list_pod_sandbox=Outcome.HUNG) == []
    cond = judge.conditions()[UNHEALTHY]
    assert cond.status is Status.UNKNOWN and "confirming failures of" in cond.message
    events = round_(judge, clock, cri_list_pod_sandbox=Outcome.HUNG)
    assert [e.reason for e in events] == [Reason.CONTAINERD_HUNG]
    assert status(judge) == (Status.TRUE, Reason.CONTAINERD_HUNG)


def test_reason_change_while_true_is_a_warning() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    round_(judge, clock, docker_version=Outcome.HUNG)
    assert [e.reason for e in round_(judge, clock, docker_version=Outcome.HUNG)] == [
        Reason.DOCKERD_HUNG
    ]
    round_(judge, clock, docker_version=Outcome.HUNG, cri_list_pod_sandbox=Outcome.HUNG)
    events = round_(judge, clock, docker_version=Outcome.HUNG, cri_list_pod_sandbox=Outcome.HUNG)
    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, Reason.CONTAINERD_HUNG)]
    assert "dockerd fails because of it (GET /version)" in events[0].message


def test_slow_answers_raise_slow_condition() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    for _ in range(4):
        assert round_(judge, clock, docker_ping=Outcome.SLOW) == []
    events = round_(judge, clock, docker_ping=Outcome.SLOW)
    assert [(e.type, e.reason) for e in events] == [(EventType.WARNING, Reason.DOCKERD_API_SLOW)]
    assert events[0].message == (
        "dockerd GET /_ping answered in 1.5s, above its 1s objective (5+ checks in a row)"
    )
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)  # slow is not unhealthy


def test_raise_after_from_config() -> None:
    judge, clock = make(load(None, overrides={"judge.raiseAfter": 4})), Clock()
    round_(judge, clock)
    for _ in range(3):
        round_(judge, clock, docker_ping=Outcome.DOWN)
    assert status(judge)[0] is Status.FALSE
    round_(judge, clock, docker_ping=Outcome.DOWN)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_DOWN)


def process(runtime: Runtime, at: float, rss: float) -> Observation:
    return Observation(
        runtime,
        Check.PROCESS,
        Outcome.OK,
        0.01,
        at,
        values={Value.RSS_ANON_BYTES: rss, Value.FDS: 40.0},
    )


def test_memory_growth_raises_leak_and_clears_when_it_stops() -> None:
    checks = [(D, Check.PROCESS)]
    judge, at = make(checks=checks), T0
    events: list[Event] = []
    for i in range(80):  # 20 minutes, +1 GiB/h from 200 MiB
        at = T0 + 15 * i
        events += judge.observe(process(D, at, 200 * 2**20 + 2**30 * 15 * i / 3600), now=at)
    assert [(e.type, e.reason) for e in events] == [
        (EventType.WARNING, Reason.DOCKERD_MEMORY_GROWTH)
    ]
    assert events[0].message.startswith("dockerd RssAnon grew from 200.0 MiB to ")
    assert status(judge, LEAK) == (Status.TRUE, Reason.DOCKERD_MEMORY_GROWTH)
    top = 200 * 2**20 + 2**30 * 15 * 79 / 3600
    cleared: list[Event] = []
    for i in range(1, 400):  # flat for 100 minutes: the growth leaves the window
        cleared += judge.observe(process(D, at + 15 * i, top), now=at + 15 * i)
    assert [(e.type, e.reason) for e in cleared] == [(EventType.NORMAL, Reason.NO_LEAK)]


def test_event_listeners_growing_raise_their_own_leak_reason() -> None:
    judge, at = make(checks=[(D, Check.DOCKER_INFO)]), T0
    events: list[Event] = []
    for i in range(40):  # 20 minutes at one /info every 30 s, +1 listener a minute from 3
        at = T0 + 30 * i
        o = Observation(D, Check.DOCKER_INFO, Outcome.OK, 0.01, at,
                        values={Value.EVENT_LISTENERS: 3.0 + i / 2, Value.GOROUTINES: 120.0})
        events += judge.observe(o, now=at)
    assert [e.reason for e in events] == [Reason.DOCKERD_EVENT_LISTENER_LEAK]
    assert events[0].message.startswith("dockerd event listeners grew from 3 to ")


def test_memory_ceiling_raises_at_once() -> None:
    judge = Judge(
        Config.defaults(), expected=[(C, Check.PROCESS)], now=T0, node_memory_bytes=4 * 2**30
    )
    assert judge.observe(process(C, T0, 100 * 2**20), now=T0) == []
    events = judge.observe(process(C, T0 + 15, 1.5 * 2**30), now=T0 + 15)
    assert [e.reason for e in events] == [Reason.CONTAINERD_MEMORY_CEILING]
    assert "(25 % of node memory 4.0 GiB)" in events[0].message


def test_slow_clears_after_m_fast_answers() -> None:
    judge, clock = make(), Clock()
    for _ in range(6):
        round_(judge, clock, cri_version=Outcome.SLOW)
    assert status(judge, SLOW) == (Status.TRUE, Reason.CONTAINERD_API_SLOW)
    assert round_(judge, clock) == [] and round_(judge, clock) == []
    events = round_(judge, clock)
    assert [(e.type, e.reason) for e in events] == [(EventType.NORMAL, Reason.NOT_SLOW)]
