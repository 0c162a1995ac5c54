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
from tests.harness.observations import T0, process

D, C = Runtime.DOCKERD, Runtime.CONTAINERD
CHECKS = [
    (D, Check.DOCKER_PING),
    (D, Check.DOCKER_VERSION),
    (C, Check.CRI_VERSION),
    (C, Check.CRI_LIST_POD_SANDBOX),
]
UNHEALTHY, SLOW, LEAK = ConditionType.UNAVAILABLE, ConditionType.SLOW, ConditionType.MEMORY_LEAK


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
    assert cond.message == "starting: waiting for the first answer of 4 checks"
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
    # 7 of the last 10 failed: it clears once fewer than 3 of the last 10 did (8 good answers)
    for _ in range(7):
        assert round_(judge, clock) == []
    events = round_(judge, clock)
    assert [(e.type, e.reason) for e in events] == [(EventType.NORMAL, Reason.HEALTHY)]
    assert events[0].message == (
        "containerd and dockerd answer normally again after 26s (was DockerdHung)"
    )
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)


def test_short_hang_clears_after_m() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    round_(judge, clock, docker_ping=Outcome.HUNG)
    round_(judge, clock, docker_ping=Outcome.HUNG)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_HUNG)
    assert round_(judge, clock) == [] and round_(judge, clock) == []  # 2 of 3 good
    assert [e.reason for e in round_(judge, clock)] == [Reason.HEALTHY]


def test_alternating_ok_and_hung_raises_once_and_holds() -> None:
    """Half the calls hang, never two in a row: 3 failures of the last 10 raise, and the good
    answers in between never reach clearAfter in a row, so it holds instead of flapping."""
    judge, clock = make(), Clock()
    events: list[Event] = []
    for i in range(40):
        events += round_(judge, clock, docker_ping=Outcome.HUNG if i % 2 else Outcome.OK)
    assert [e.reason for e in events] == [Reason.DOCKERD_HUNG]
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_HUNG)


def test_alternating_slow_and_hung_raises() -> None:
    judge, clock = make(), Clock()
    events: list[Event] = []
    for i in range(10):
        events += round_(judge, clock, cri_list_pod_sandbox=Outcome.HUNG if i % 2 else Outcome.SLOW)
    assert Reason.CONTAINERD_HUNG in [e.reason for e in events]


def test_one_failure_in_five_does_not_raise() -> None:
    judge, clock = make(), Clock()
    for i in range(50):
        assert round_(judge, clock, docker_ping=Outcome.HUNG if i % 5 == 4 else Outcome.OK) == []


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
    overrides = {"judge.raiseAfter": 4, "judge.restart.downGrace": 0}
    judge, clock = make(load(None, overrides=overrides)), Clock()
    round_(judge, clock)
    for _ in range(3):
        round_(judge, clock, docker_ping=Outcome.DOWN)
    assert status(judge)[0] is Status.FALSE
    round_(judge, clock, docker_ping=Outcome.DOWN)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_DOWN)


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


# ---- slow is not hung: late answers --------------------------------------------------------


def ping(outcome: Outcome, at: float, *, latency: float = 3.0, late: bool = False) -> Observation:
    return Observation(D, Check.DOCKER_PING, outcome, latency, at, late=late)


def test_hang_that_turns_out_slow_becomes_slow_and_never_hung_after_the_late_answer() -> None:
    """A daemon answering every call in 8s behind a 3s deadline and a 30s horizon."""
    judge = make(checks=[(D, Check.DOCKER_PING)])
    now = T0
    judge.observe(ping(Outcome.OK, now, latency=0.01), now=now)
    events: list[Event] = []
    # the first kept call starts at T0+2: HUNG at +5, next call HUNG at +8, late answer at +10
    now += 5
    events += judge.observe(ping(Outcome.HUNG, now - 3), now=now)
    now += 3
    events += judge.observe(ping(Outcome.HUNG, now - 3), now=now)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_HUNG)  # today's time for a dead one
    now += 2
    events += judge.observe(ping(Outcome.SLOW, now - 8, latency=8.0, late=True), now=now)
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)
    hung_until = len(events)
    for _ in range(20):  # it stays that slow: every third observation is a late answer
        for late in (False, False, True):
            now += 3
            obs = (ping(Outcome.SLOW, now - 8, latency=8.0, late=True) if late
                   else ping(Outcome.HUNG, now - 3))
            events += judge.observe(obs, now=now)
            assert status(judge)[0] is Status.FALSE
    assert status(judge, SLOW) == (Status.TRUE, Reason.DOCKERD_API_SLOW)
    message = judge.conditions()[SLOW].message
    assert "answered in 8s (past its 3s deadline, not hung)" in message
    assert [e.reason for e in events[hung_until:]] == [Reason.DOCKERD_API_SLOW]


def test_a_call_that_reaches_the_horizon_ends_the_benefit_of_the_doubt() -> None:
    judge = make(checks=[(D, Check.DOCKER_PING)])
    now = T0
    judge.observe(ping(Outcome.OK, now, latency=0.01), now=now)
    now += 10
    judge.observe(ping(Outcome.SLOW, now - 8, latency=8.0, late=True), now=now)
    now += 30  # the next kept call got no answer within the 30s horizon: SIGSTOP
    judge.observe(ping(Outcome.HUNG, now - 30, latency=30.0, late=True), now=now)
    for _ in range(2):
        now += 3
        judge.observe(ping(Outcome.HUNG, now - 3), now=now)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_HUNG)


def hung_ping(calls: int) -> tuple[Judge, float]:
    """A judge of /_ping alone that saw one OK, then `calls` HUNGs 3 s apart (raised)."""
    judge = make(checks=[(D, Check.DOCKER_PING)])
    now = T0
    judge.observe(ping(Outcome.OK, now, latency=0.01), now=now)
    for _ in range(calls):
        now += 3
        judge.observe(ping(Outcome.HUNG, now - 3), now=now)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_HUNG)
    return judge, now


def test_a_daemon_hung_again_after_answering_in_time_is_hung_at_once() -> None:
    """SIGCONT releases the held calls (late answers), the daemon answers in time, then hangs
    again within the horizon: the old late answers forgive nothing of the new hang."""
    judge, now = hung_ping(3)
    now += 1  # resumed: the kept call answers late
    judge.observe(ping(Outcome.SLOW, now - 10, latency=10.0, late=True), now=now)
    for _ in range(3):
        now += 2
        judge.observe(ping(Outcome.OK, now, latency=0.01), now=now)
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)
    for _ in range(2):  # hung again 7 s after the late answer, well within the 30 s horizon
        now += 3
        judge.observe(ping(Outcome.HUNG, now - 3), now=now)
    assert status(judge) == (Status.TRUE, Reason.DOCKERD_HUNG)


def test_a_resumed_daemon_raises_nothing_from_its_held_calls_late_answers() -> None:
    """SIGSTOP for 20 s, SIGCONT: the held call answers after 20 s, the next calls in time. The
    late answer ends the hang; it is no slowness (it raised DockerdAPISlow for 74 s)."""
    judge, now = hung_ping(6)
    assert judge.unsettled(now=now) == {(D, Check.DOCKER_PING)}
    events: list[Event] = []
    now += 2
    events += judge.observe(ping(Outcome.SLOW, now - 20, latency=20.0, late=True), now=now)
    for _ in range(10):
        now += 1
        events += judge.observe(ping(Outcome.OK, now, latency=0.01), now=now)
    assert status(judge, SLOW) == (Status.FALSE, Reason.NOT_SLOW)
    assert status(judge) == (Status.FALSE, Reason.HEALTHY)
    assert [e.type for e in events] == [EventType.NORMAL]
    assert judge.unsettled(now=now) == frozenset()


def test_a_call_sent_before_the_late_answer_came_is_part_of_the_hang_not_slowness() -> None:
    """After SIGCONT the daemon works through its backlog: a call sent while it was stopped can
    still pass its deadline after the held call answered late. That call says nothing about
    the resumed daemon (it raised ContainerdAPISlow on a loaded CI machine)."""
    judge, now = hung_ping(6)
    events: list[Event] = []
    now += 2
    events += judge.observe(ping(Outcome.SLOW, now - 20, latency=20.0, late=True), now=now)
    answered = now
    now += 1  # its deadline ran out 1 s after the late answer; it was sent 2 s before it
    events += judge.observe(ping(Outcome.HUNG, answered - 2), now=now)
    for _ in range(10):
        now += 1
        events += judge.observe(ping(Outcome.OK, now, latency=0.01), now=now)
    assert status(judge, SLOW) == (Status.FALSE, Reason.NOT_SLOW)
    assert [e.type for e in events] == [EventType.NORMAL]


def test_a_failing_check_is_unsettled_until_it_clears() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    assert judge.unsettled(now=clock.now) == frozenset()
    round_(judge, clock, cri_list_pod_sandbox=Outcome.HUNG)
    # pending: not raised yet
    assert judge.unsettled(now=clock.now) == {(C, Check.CRI_LIST_POD_SANDBOX)}
    for _ in range(3):
        round_(judge, clock, cri_list_pod_sandbox=Outcome.HUNG)
    cleared_after = 0
    while status(judge)[0] is Status.TRUE:
        assert judge.unsettled(now=clock.now) == {(C, Check.CRI_LIST_POD_SANDBOX)}
        round_(judge, clock)
        cleared_after += 1
    assert judge.unsettled(now=clock.now) == frozenset()
    assert cleared_after > 3  # the k-of-n window holds it: the scheduler must ask the judge


def test_a_never_answering_daemon_is_hung_as_fast_as_without_a_horizon() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    round_(judge, clock, docker_ping=Outcome.HUNG)
    events = round_(judge, clock, docker_ping=Outcome.HUNG)
    assert [e.reason for e in events] == [Reason.DOCKERD_HUNG]


# ---- ImageFsInfo staleness from the refresh period seen ------------------------------------


def image_fs(at: float, stamp: float) -> Observation:
    return Observation(C, Check.CRI_IMAGE_FS_INFO, Outcome.OK, 0.01, at,
                       values={Value.IMAGE_FS_TIMESTAMP_SECONDS: stamp})


def feed_image_fs(judge: Judge, *, period: float, until: float, stuck_after: float = 1e12
                  ) -> list[Event]:
    """Polled every 30s; containerd refreshes the stamp every `period` s until `stuck_after`."""
    events: list[Event] = []
    at = T0
    while at < T0 + until:
        at += 30
        refreshed = min(at, T0 + stuck_after)
        stamp = T0 + (refreshed - T0) // period * period
        events += judge.observe(image_fs(at, stamp), now=at)
    return events


def test_raised_stats_collect_period_is_not_a_stuck_syncer() -> None:
    judge = make(checks=[(C, Check.CRI_IMAGE_FS_INFO)])
    assert feed_image_fs(judge, period=300, until=3 * 3600) == []
    assert status(judge)[0] is Status.FALSE


def test_stuck_syncer_is_stale_after_a_few_periods() -> None:
    judge = make(checks=[(C, Check.CRI_IMAGE_FS_INFO)])
    events = feed_image_fs(judge, period=10, until=1800, stuck_after=600)
    assert [e.reason for e in events] == [Reason.IMAGE_FS_STATS_STALE]
    assert "stale after 120s" in events[0].message


def test_stuck_syncer_with_a_long_period_is_stale_after_three_periods() -> None:
    judge = make(checks=[(C, Check.CRI_IMAGE_FS_INFO)])
    events = feed_image_fs(judge, period=300, until=4 * 3600, stuck_after=3600)
    assert [e.reason for e in events] == [Reason.IMAGE_FS_STATS_STALE]
    assert "stale after 900s, 3 x the refresh period seen, 300s" in events[0].message


# ---- slow leaks over the long window; ceilings from the node's memory ----------------------


def leak_run(
    judge: Judge, *, start: float, per_hour: float, hours: float, every: float = 60.0
) -> list[Event]:
    """Process samples every `every` s; a final pseudo-event says when the first Event came."""
    events: list[Event] = []
    for i in range(int(hours * 3600 / every)):
        at = T0 + every * i
        events += judge.observe(process(D, at, start + per_hour * every * i / 3600), now=at)
        if events:
            return [*events, Event(EventType.NORMAL, "at", str(at - T0), at)]
    return events


def test_70_mib_per_hour_is_a_leak_within_3_hours() -> None:
    judge = Judge(Config.defaults(), expected=[(D, Check.PROCESS)], now=T0,
                  node_memory_bytes=64 * 2**30)
    events = leak_run(judge, start=800e6, per_hour=70 * 2**20, hours=6)
    assert events and events[0].reason == Reason.DOCKERD_MEMORY_GROWTH
    raised_after = float(events[-1].message)
    assert raised_after <= 3 * 3600, raised_after
    assert "+70.0 MiB/h" in events[0].message


def test_flat_3_gib_on_a_64_gib_node_raises_nothing() -> None:
    judge = Judge(Config.defaults(), expected=[(D, Check.PROCESS)], now=T0,
                  node_memory_bytes=64 * 2**30)
    assert leak_run(judge, start=3 * 2**30, per_hour=0.0, hours=26, every=300) == []
    assert status(judge, LEAK) == (Status.FALSE, Reason.NO_LEAK)


def test_a_late_answers_older_reading_does_not_cut_the_leak_window() -> None:
    judge = make(checks=[(D, Check.PROCESS)])
    for i in range(20):
        judge.observe(process(D, T0 + 15 * i, 1e8), now=T0 + 15 * i)
    late = Observation(D, Check.PROCESS, Outcome.OK, 9.0, T0 + 15 * 18.5, late=True,
                       values={Value.RSS_ANON_BYTES: 1e8})
    judge.observe(late, now=T0 + 15 * 19.1)
    window = judge.leaks.series[(D, Check.PROCESS, Value.RSS_ANON_BYTES)].short
    assert [s.at for s in window] == [T0 + 15 * i for i in range(20)]  # newest kept, in order


def test_cri_version_is_said_to_answer_only_from_an_answer_during_the_hang() -> None:
    """CRI Version runs every 10 s: its last OK from before the hang says nothing about it."""
    stale, fresh = make(), make()
    for judge in (stale, fresh):
        clock = Clock()
        round_(judge, clock)
        for _ in range(2):
            clock.now += 4
            if judge is fresh:
                judge.observe(Observation(C, Check.CRI_VERSION, Outcome.OK, 0.002, clock.now),
                              now=clock.now)
            hung = Observation(C, Check.CRI_LIST_POD_SANDBOX, Outcome.HUNG, 3.0, clock.now - 3)
            judge.observe(hung, now=clock.now)
    for judge in (stale, fresh):
        assert status(judge) == (Status.TRUE, Reason.CONTAINERD_HUNG)
    assert "CRI Version answers" not in stale.conditions()[UNHEALTHY].message
    assert "CRI Version answers" in fresh.conditions()[UNHEALTHY].message


def test_a_runtime_down_for_long_is_not_rechecked_until_it_answers_again() -> None:
    judge, clock = make(), Clock()
    round_(judge, clock)
    for _ in range(3):
        round_(judge, clock, docker_ping=Outcome.DOWN, docker_version=Outcome.DOWN)
    docker = {(D, Check.DOCKER_PING), (D, Check.DOCKER_VERSION)}
    assert judge.unsettled(now=clock.now) == docker
    later = clock.now + Config.defaults().judge.recheck_for
    assert judge.unsettled(now=later) == frozenset()  # down for 5 min: back to its interval
    clock.now = later
    judge.observe(Observation(D, Check.DOCKER_PING, Outcome.OK, 0.002, clock.now), now=clock.now)
    assert judge.unsettled(now=clock.now) >= {(D, Check.DOCKER_VERSION)}  # dockerd answers again


def test_dockerds_calls_into_a_resumed_containerd_failing_a_moment_longer_raise_nothing_new(
) -> None:
    """Seen in 1 of 10 containerd hangs: after SIGCONT the CRI checks answered, dockerd's GET
    /version a few seconds later: that moment was DockerdHung, a new Warning from a recovery."""
    judge, clock = make(), Clock()
    round_(judge, clock)
    cri = {"cri_list_pod_sandbox": Outcome.HUNG, "cri_version": Outcome.HUNG}
    events = round_(judge, clock, **cri)  # dockerd's /version hangs from the next call on
    for _ in range(2):
        events += round_(judge, clock, **cri, docker_version=Outcome.HUNG)
    assert [e.reason for e in events] == [Reason.CONTAINERD_HUNG]
    for _ in range(9):  # containerd answers (its checks clear); dockerd's calls into it hang
        events += round_(judge, clock, docker_version=Outcome.HUNG)
        assert status(judge) == (Status.TRUE, Reason.CONTAINERD_HUNG)
    assert "containerd answers again" in judge.conditions()[UNHEALTHY].message
    while status(judge)[0] is Status.TRUE:
        events += round_(judge, clock)
    assert [e.type for e in events] == [EventType.WARNING, EventType.NORMAL]
    for _ in range(10):  # the horizon has passed: a dockerd path failing now is dockerd's
        round_(judge, clock)
    events = round_(judge, clock, docker_version=Outcome.HUNG)
    events += round_(judge, clock, docker_version=Outcome.HUNG)
    assert [e.reason for e in events] == [Reason.DOCKERD_HUNG]
