"""RemediationPolicy as typed settings: what a policy says, with the defaults and why.

Purely data: no I/O, no parsing (`parse` turns a spec into these and says what is wrong).
A policy has two halves. `Plan` is what an episode runs by (triggers, ladder, drain, settle
window, escalation): a NodeRemediation stores a snapshot of it when it opens, so edits to the
policy apply to new episodes only. The rest (selector, budget, windows, blockers, flap limit,
retention, paused, dryRun) is read live on every pass.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from nodeprobe.model import ConditionType, RemediationAction, Runtime
from nodeprobe.operator.grammar import Selector, Window

DEFAULT_DRAIN_TIMEOUT_S = 600.0
"""10 min: long enough for ordinary graceful shutdowns, short enough that a PDB cannot hold
a sick node forever (kured #82)."""
DEFAULT_RUNG_TIMEOUT_S = 600.0
DEFAULT_SETTLE_S = 120.0
"""Conditions flap while a node comes back from any action (NHC PR #274): wait this long."""
DEFAULT_STORM_COOL_DOWN_S = 300.0
"""After a minHealthy storm, nodes still flap; wait before starting again (NHC PR #378)."""
DEFAULT_COOL_DOWN_S = 1800.0
DEFAULT_TRIGGER_FOR_S = 120.0
DEFAULT_MIN_HEALTHY_PCT = 80.0
"""Conservative: with one node in five unhealthy, something bigger than a node is wrong."""
DEFAULT_TERMINATING_SKIP_S = 300.0
"""A pod Terminating this long is stuck (a hung runtime cannot stop it): it stops blocking."""
DEFAULT_FLAP_ATTEMPTS = 3
DEFAULT_FLAP_WINDOW_S = 86400.0
"""3 episodes per node per day; the 4th escalates to people instead (a crash-looping runtime
once got 47 episodes in a day)."""
DEFAULT_KEEP = 5
DEFAULT_KEEP_FOR_S = 3 * 86400.0
"""Finished NodeRemediations are the audit trail: kept 3 days and at most 5 per node."""
DEFAULT_AGENT_SILENCE_S = 660.0
"""The agent rewrites its conditions every 300 s; two missed heartbeats and a minute mean it is
gone (then no one would carry out the action)."""
DEFAULT_ALERT_QUERY = 'ALERTS{alertstate="firing"}'


Action = RemediationAction


class OnTimeout(enum.StrEnum):
    NEXT = "next"
    FAIL = "fail"


RUNTIME_TRIGGERS = frozenset({ConditionType.UNAVAILABLE.value})
"""Triggers meaning a hung or down runtime: pods cannot stop until the repair runs."""


@dataclass(frozen=True, slots=True)
class Trigger:
    type: str
    status: str
    for_s: float


@dataclass(frozen=True, slots=True)
class Rung:
    action: Action
    timeout_s: float
    runtime: Runtime | None = None


@dataclass(frozen=True, slots=True)
class Drain:
    timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    grace_period_s: int | None = None
    """None: each pod's own terminationGracePeriodSeconds."""
    on_timeout: OnTimeout = OnTimeout.NEXT
    terminating_skip_s: float = DEFAULT_TERMINATING_SKIP_S
    action_on_timeout: bool | None = None
    """After a drain timeout on a hung/down-runtime trigger, run the rung's action anyway (the
    repair is what frees stuck pods). None: on for restart-runtime rungs, off otherwise."""
    evict_unreplicated: bool = False
    """Pods without a controller are gone for good once evicted."""
    evict_empty_dir: bool = False
    """emptyDir data is lost on eviction."""
    evict_protected: bool = False
    """Pods annotated nodeprobe.io/protect."""

    def acts_on_timeout(self, action: Action, triggers: tuple[Trigger, ...]) -> bool:
        wanted = (action is Action.RESTART_RUNTIME if self.action_on_timeout is None
                  else self.action_on_timeout)
        return wanted and action is not Action.ESCALATE and any(
            t.type in RUNTIME_TRIGGERS for t in triggers)


@dataclass(frozen=True, slots=True)
class Plan:
    """What an episode runs by; snapshotted into the NodeRemediation when it opens."""

    triggers: tuple[Trigger, ...]
    ladder: tuple[Rung, ...]
    drain: Drain = field(default_factory=Drain)
    settle_s: float = DEFAULT_SETTLE_S
    agent_silence_s: float = DEFAULT_AGENT_SILENCE_S
    webhook_url: str | None = None


@dataclass(frozen=True, slots=True)
class BlockerSettings:
    pod_selector: Selector | None = None
    """Pods matching it on a node keep an episode from starting there (kured)."""
    prometheus_url: str | None = None
    alert_query: str = DEFAULT_ALERT_QUERY
    """A PromQL query; any series in its result blocks every new episode."""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    selector: Selector
    plan: Plan
    max_concurrent: int | None = 1
    max_concurrent_pct: float | None = None
    min_healthy_pct: float = DEFAULT_MIN_HEALTHY_PCT
    cool_down_s: float = DEFAULT_COOL_DOWN_S
    rate_per_hour: int | None = None
    storm_cool_down_s: float = DEFAULT_STORM_COOL_DOWN_S
    windows: tuple[Window, ...] = ()
    """Empty: any time."""
    blockers: BlockerSettings = field(default_factory=BlockerSettings)
    flap_attempts: int = DEFAULT_FLAP_ATTEMPTS
    flap_window_s: float = DEFAULT_FLAP_WINDOW_S
    keep: int = DEFAULT_KEEP
    keep_for_s: float = DEFAULT_KEEP_FOR_S
    dry_run: bool = False
    paused: bool = False

    @property
    def triggers(self) -> tuple[Trigger, ...]:
        return self.plan.triggers

    @property
    def ladder(self) -> tuple[Rung, ...]:
        return self.plan.ladder

    def budget(self, matched: int) -> int:
        """How many matched nodes may be held at once; a percentage rounds down, minimum 1."""
        if self.max_concurrent_pct is not None:
            return max(1, math.floor(matched * self.max_concurrent_pct / 100))
        return self.max_concurrent if self.max_concurrent is not None else 1

    def window_open(self, now: float) -> bool:
        return not self.windows or any(w.open_at(now) for w in self.windows)


