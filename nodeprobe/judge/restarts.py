"""Restart loops: count a runtime's restarts, raise at `count` within `window`, hold until quiet.

Two witnesses, so one restart is counted once whichever sees it:

- DOWN spells: a check of the runtime finds nothing there (nothing listens, no process), until
  every check that did so gets an answer again. The end of a spell is one restart.
- The process check: a pid or start time (/proc/<pid>/stat field 22) other than the last sample's
  is a new incarnation. It counts only when no DOWN spell already did (systemd restarted the
  daemon between two API calls, or the API checks are off), so a restart seen both ways is one.

A spell shorter than `down_grace` is a restart, not an outage: the caller holds
ContainerRuntimeUnavailable still meanwhile, so a daemon systemd restarts every 30 s shows one
raise (the loop) instead of a raise and a clear per cycle. Pure: state in, state out, time
passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nodeprobe.config import RestartSettings
from nodeprobe.model import Check, Observation, Outcome, Value


@dataclass(frozen=True, slots=True)
class Restarts:
    """One runtime's restart history."""

    incarnation: tuple[float, float] | None = None
    """(pid, start ticks) of the last process sample."""
    down_since: float | None = None
    """Start of the current DOWN spell; None while something answers."""
    down_checks: frozenset[Check] = frozenset()
    """The checks that found nothing there and have not answered since; the spell ends when
    every one of them answers again."""
    counted_in_spell: bool = False
    """The process check already counted this spell's restart."""
    spell_ended_since_sample: bool = False
    """A DOWN spell ended (and was counted) since the last process sample."""
    times: tuple[float, ...] = ()
    """When restarts were counted, oldest first, within `window`."""
    last_at: float | None = None
    """When the last restart was counted (kept after `times` forgets it)."""
    raised_at: float | None = None
    """When the loop was raised; None while not raised."""
    pids: tuple[int, ...] = ()
    """The pids seen, newest last (for messages; a few)."""

    def down_for(self, now: float) -> float:
        return 0.0 if self.down_since is None else now - self.down_since

    @property
    def looping(self) -> bool:
        return self.raised_at is not None


def _count(state: Restarts, now: float, settings: RestartSettings) -> Restarts:
    times = tuple(t for t in (*state.times, now) if t >= now - settings.window)
    raised_at = state.raised_at
    if raised_at is None and len(times) >= settings.count:
        raised_at = now
    return replace(state, times=times, raised_at=raised_at, last_at=now)


def observe(
    state: Restarts, obs: Observation, *, now: float, settings: RestartSettings
) -> Restarts:
    """The history after one observation of this runtime."""
    if obs.outcome is Outcome.DOWN:
        if state.down_since is None:
            state = replace(state, down_since=now, counted_in_spell=False)
        state = replace(state, down_checks=state.down_checks | {obs.check})
    elif obs.check in state.down_checks:
        state = replace(state, down_checks=state.down_checks - {obs.check})
        if not state.down_checks and state.down_since is not None:
            counted = state.counted_in_spell
            state = replace(state, down_since=None, counted_in_spell=False,
                            spell_ended_since_sample=not counted)
            if not counted:
                state = _count(state, now, settings)
    if obs.check is Check.PROCESS and obs.outcome is not Outcome.DOWN:
        state = _sample(state, obs, now=now, settings=settings)
    return state


def _sample(
    state: Restarts, obs: Observation, *, now: float, settings: RestartSettings
) -> Restarts:
    pid = obs.values.get(Value.PID)
    ticks = obs.values.get(Value.PROCESS_START_TICKS)
    if pid is None:
        return state
    incarnation = (pid, ticks if ticks is not None else -1.0)
    pids = state.pids if state.pids and state.pids[-1] == int(pid) else (*state.pids, int(pid))
    new = state.incarnation is not None and incarnation != state.incarnation
    counted = state.counted_in_spell
    already = state.spell_ended_since_sample
    state = replace(state, incarnation=incarnation, pids=pids[-4:], spell_ended_since_sample=False)
    if new and not counted and not already:
        state = _count(state, now, settings)
        if state.down_since is not None:
            state = replace(state, counted_in_spell=True)
    return state


def settle(state: Restarts, *, now: float, settings: RestartSettings) -> Restarts:
    """Forget old restarts; clear a raised loop once `quiet` has passed without one."""
    times = tuple(t for t in state.times if t >= now - settings.window)
    raised_at = state.raised_at
    last = state.last_at
    if raised_at is not None and (last is None or now - last >= settings.quiet):
        raised_at = None
    if times == state.times and raised_at == state.raised_at:
        return state
    return replace(state, times=times, raised_at=raised_at)


def describe(state: Restarts, *, runtime: str, now: float, settings: RestartSettings) -> str:
    """'dockerd restarted 3 times in 61s (pids 101, 202, 303); held until 10 min pass quietly'."""
    times = state.times
    span = now - times[0] if times else 0.0
    pids = ", ".join(str(p) for p in state.pids)
    where = f" (pids {pids})" if len(state.pids) > 1 else ""
    text = (f"{runtime} restarted {len(times)} times in {span:.0f}s{where}, a restart loop; "
            f"this holds until {settings.quiet:.0f}s pass without a restart")
    if state.down_since is not None:
        text += f"; down now for {now - state.down_since:.0f}s"
    return text + f". Look at why it exits: journalctl -u {_unit(runtime)}"


def _unit(runtime: str) -> str:
    return "docker" if runtime == "dockerd" else runtime
