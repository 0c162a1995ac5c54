"""Restart loops, from DOWN spells and the process check's incarnations, through the Judge."""

from __future__ import annotations

from nodeprobe.config import Config, load
from nodeprobe.judge.continuous import Judge
from nodeprobe.judge.restarts import Restarts, observe
from nodeprobe.model import (
    Check,
    ConditionType,
    Event,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)

D = Runtime.DOCKERD
T0 = 1_700_000_000.0
SETTINGS = Config.defaults().judge.restart
CHECKS = [(D, Check.DOCKER_PING), (D, Check.PROCESS)]


def ping(outcome: Outcome, at: float) -> Observation:
    return Observation(D, Check.DOCKER_PING, outcome, 0.01, at)


def proc(pid: int, ticks: int, at: float) -> Observation:
    return Observation(D, Check.PROCESS, Outcome.OK, 0.01, at,
                       values={Value.PID: pid, Value.PROCESS_START_TICKS: ticks})


def crash_loop(judge: Judge, *, cycles: int, period: float, down_s: float = 3.0,
               start: float = T0) -> tuple[list[Event], float]:
    """dockerd killed every `period` s, back after `down_s`; ping every 2s, process every 15s."""
    events: list[Event] = []
    t, pid = start, 100
    end = start + cycles * period
    crash_at = start + period
    while t < end:
        t += 1.0
        if t >= crash_at + down_s:
            crash_at += period
            pid += 1
        down = crash_at <= t < crash_at + down_s
        if int(t) % 2 == 0:
            events += judge.observe(ping(Outcome.DOWN if down else Outcome.OK, t), now=t)
        if int(t) % 15 == 0:
            obs = (Observation(D, Check.PROCESS, Outcome.DOWN, 0.01, t) if down
                   else proc(pid, pid * 7, t))
            events += judge.observe(obs, now=t)
    return events, t


def unavailable(judge: Judge) -> tuple[Status, str]:
    cond = judge.conditions()[ConditionType.UNAVAILABLE]
    return cond.status, cond.reason


def test_restart_every_30s_raises_the_loop_once_and_holds_then_clears_after_quiet() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    judge.observe(ping(Outcome.OK, T0), now=T0)
    judge.observe(proc(100, 700, T0), now=T0)
    events, t = crash_loop(judge, cycles=10, period=30.0)
    assert [(e.type, e.reason) for e in events] == [("Warning", Reason.DOCKERD_RESTART_LOOP)]
    assert events[0].message.startswith("dockerd restarted 3 times in ")
    assert "journalctl -u docker" in events[0].message
    assert unavailable(judge) == (Status.TRUE, Reason.DOCKERD_RESTART_LOOP)
    quiet: list[Event] = []
    while t < T0 + 300 + SETTINGS.quiet + 30:
        t += 2
        quiet += judge.observe(ping(Outcome.OK, t), now=t)
    assert [(e.type, e.reason) for e in quiet] == [("Normal", Reason.HEALTHY)]


def test_a_single_quick_restart_changes_no_condition() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    judge.observe(ping(Outcome.OK, T0), now=T0)
    judge.observe(proc(100, 700, T0), now=T0)
    events, _ = crash_loop(judge, cycles=1, period=40.0)
    assert events == []
    assert unavailable(judge) == (Status.FALSE, Reason.HEALTHY)


def test_down_longer_than_the_grace_is_down() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    judge.observe(ping(Outcome.OK, T0), now=T0)
    judge.observe(proc(100, 700, T0), now=T0)
    events: list[Event] = []
    for i in range(1, 9):
        events += judge.observe(ping(Outcome.DOWN, T0 + 2 * i), now=T0 + 2 * i)
    assert [e.reason for e in events] == [Reason.DOCKERD_DOWN]
    assert T0 + 2 + SETTINGS.down_grace <= T0 + 12  # raised once the grace had passed


def test_restarts_seen_only_by_the_process_check_count() -> None:
    """systemd restarted dockerd between two API calls: only the pid/start time shows it."""
    state = Restarts()
    for i, at in enumerate((T0, T0 + 15, T0 + 30, T0 + 45)):
        state = observe(state, proc(100 + i, 1000 + i, at), now=at, settings=SETTINGS)
    assert len(state.times) == 3 and state.looping


def test_a_restart_seen_both_ways_counts_once() -> None:
    state = observe(Restarts(), proc(100, 1000, T0), now=T0, settings=SETTINGS)
    state = observe(state, ping(Outcome.DOWN, T0 + 2), now=T0 + 2, settings=SETTINGS)
    state = observe(state, ping(Outcome.OK, T0 + 4), now=T0 + 4, settings=SETTINGS)
    state = observe(state, proc(101, 1200, T0 + 15), now=T0 + 15, settings=SETTINGS)
    assert len(state.times) == 1
    # and the other order: the process check sees the new pid while the API is still down
    state = observe(state, ping(Outcome.DOWN, T0 + 20), now=T0 + 20, settings=SETTINGS)
    state = observe(state, proc(102, 1400, T0 + 30), now=T0 + 30, settings=SETTINGS)
    state = observe(state, ping(Outcome.OK, T0 + 32), now=T0 + 32, settings=SETTINGS)
    assert len(state.times) == 2


def test_same_pid_new_start_time_is_a_restart() -> None:
    state = observe(Restarts(), proc(100, 1000, T0), now=T0, settings=SETTINGS)
    state = observe(state, proc(100, 1000, T0 + 15), now=T0 + 15, settings=SETTINGS)
    assert state.times == ()
    state = observe(state, proc(100, 5000, T0 + 30), now=T0 + 30, settings=SETTINGS)
    assert state.times == (T0 + 30,)


def test_loop_settings_from_config() -> None:
    config = load(None, overrides={"judge.restart.count": 5, "judge.restart.quiet": "2m"})
    judge = Judge(config, expected=CHECKS, now=T0)
    judge.observe(ping(Outcome.OK, T0), now=T0)
    judge.observe(proc(100, 700, T0), now=T0)
    events, _ = crash_loop(judge, cycles=4, period=30.0)  # 3 restarts: below 5
    assert events == []
    events, _ = crash_loop(judge, cycles=4, period=30.0, start=T0 + 120)
    assert [e.reason for e in events] == [Reason.DOCKERD_RESTART_LOOP]
