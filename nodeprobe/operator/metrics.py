"""The operator's Prometheus metrics: the `Sink` that writes what `stats` computed.

Alerts (charts/nodeprobe/files/nodeprobe.rules.yaml) and the dashboard (tools/dashboard.py) are
written against these names; docs/metrics.md lists them. Everything is registered on the
`CollectorRegistry` passed in, when `OperatorMetrics` is constructed, and every labelled series
exists from then on (as 0), so rates and alerts work before the first event.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from nodeprobe.model import RemediationPhase
from nodeprobe.operator.gates import Wait
from nodeprobe.operator.records import TERMINAL
from nodeprobe.operator.stats import OPEN_PHASES, PassStats

CORDON_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
                  86400.0)
"""Seconds: a trigger's `for` (typically 1-5 min) plus a tick at best; windows, budgets and
cool-downs can hold a node back for hours."""


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.remediations = Counter(
            "nodeprobe_remediations_total",
            "NodeRemediations that reached a final phase, by outcome.",
            ["outcome"], registry=registry)
        self.episodes = Gauge(
            "nodeprobe_operator_episodes",
            "NodeRemediations holding their node, by phase (Escalated until a person releases "
            "it), as of the last pass.", ["phase"], registry=registry)
        self.held = Gauge(
            "nodeprobe_operator_nodes_held",
            "Nodes held against the cluster budget (our episodes and other remediators' "
            "Leases), as of the last pass.", registry=registry)
        self.budget = Gauge(
            "nodeprobe_operator_budget_nodes",
            "The cluster budget: nodes that may be held at once under all policies.",
            registry=registry)
        self.waiting = Gauge(
            "nodeprobe_operator_waiting_nodes",
            "Sick nodes (trigger held for its duration) without a NodeRemediation, by why "
            "they wait, as of the last pass.", ["reason"], registry=registry)
        self.cordon = Histogram(
            "nodeprobe_operator_trigger_to_cordon_seconds",
            "Seconds from the trigger condition's lastTransitionTime to the operator's cordon.",
            buckets=CORDON_BUCKETS, registry=registry)
        self.last_pass = Gauge(
            "nodeprobe_operator_last_pass_timestamp_seconds",
            "Unix time the last reconcile pass finished (0: none yet).", registry=registry)
        self.guard = Gauge(
            "nodeprobe_operator_admission_guard",
            "1 while the admission policy that keeps NodeRemediations to the operator is in "
            "place, 0 while it is missing (then the operator acts on nothing).",
            registry=registry)
        for outcome in sorted(TERMINAL):
            self.remediations.labels(outcome.value)
        for phase in OPEN_PHASES:
            self.episodes.labels(phase.value)
        for reason in Wait:
            self.waiting.labels(reason.value)

    def passed(self, stats: PassStats) -> None:
        for phase, n in stats.episodes.items():
            self.episodes.labels(phase.value).set(n)
        for reason, n in stats.waiting.items():
            self.waiting.labels(reason.value).set(n)
        self.held.set(stats.held)
        self.budget.set(stats.budget)
        self.last_pass.set(stats.at)

    def finished(self, outcome: RemediationPhase) -> None:
        self.remediations.labels(outcome.value).inc()

    def cordoned(self, after_s: float) -> None:
        self.cordon.observe(after_s)

    def guarded(self, in_place: bool) -> None:
        self.guard.set(1 if in_place else 0)
