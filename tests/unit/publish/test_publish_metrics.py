"""Metrics on a private registry: names, pre-created series, and what each method sets."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nodeprobe.model import (
    REASONS,
    Check,
    Condition,
    ConditionType,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)
from nodeprobe.publish.metrics import Metrics
from nodeprobe.publish.server import healthz, readyz

T0 = 1_800_000_000.0


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


def val(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def obs(
    outcome: Outcome = Outcome.OK,
    *,
    runtime: Runtime = Runtime.DOCKERD,
    check: Check = Check.DOCKER_INFO,
    values: dict[str, float] | None = None,
    info: dict[str, str] | None = None,
    latency_s: float = 0.002,
) -> Observation:
    return Observation(runtime, check, outcome, latency_s, T0, values=values or {}, info=info or {})


def test_every_reason_belongs_to_some_condition() -> None:
    listed = {r for reasons in REASONS.values() for r in reasons}
    assert listed == set(Reason)


def test_the_promised_names_exist(reg: CollectorRegistry) -> None:
    Metrics(reg, version="1.2.3")
    names = {m.name for m in reg.collect()}
    expected = {
        "nodeprobe_probe_duration_seconds",
        "nodeprobe_probe_outcomes",  # counters are named without _total in collect()
        "nodeprobe_probe_last_outcome",
        "nodeprobe_runtime_rss_anon_bytes",
        "nodeprobe_runtime_rss_bytes",
        "nodeprobe_runtime_cgroup_anon_bytes",
        "nodeprobe_runtime_goroutines",
        "nodeprobe_runtime_open_fds",
        "nodeprobe_runtime_event_listeners",
        "nodeprobe_runtime_shims",
        "nodeprobe_runtime_containers",
        "nodeprobe_runtime_images",
        "nodeprobe_runtime_open_fds_limit",
        "nodeprobe_runtime_containers_running",
        "nodeprobe_runtime_pod_sandboxes_ready",
        "nodeprobe_runtime_root_available_bytes",
        "nodeprobe_runtime_root_size_bytes",
        "nodeprobe_runtime_root_inodes_available",
        "nodeprobe_runtime_dangling_images_bytes",
        "nodeprobe_canary_start_seconds",
        "nodeprobe_condition_status",
        "nodeprobe_condition_last_transition_timestamp_seconds",
        "nodeprobe_publish_errors",
        "nodeprobe_loop_last_iteration_timestamp_seconds",
        "nodeprobe_build_info",
        "nodeprobe_runtime_info",
        "nodeprobe_repair_admission_guard",
    }
    assert names == expected
    assert val(reg, "nodeprobe_build_info", version="1.2.3") == 1


def test_two_instances_on_two_registries_do_not_collide() -> None:
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())


def test_series_exist_before_any_event(reg: CollectorRegistry) -> None:
    Metrics(reg)
    for ctype, reasons in REASONS.items():
        for reason in reasons:
            assert val(reg, "nodeprobe_condition_status", condition=ctype, reason=reason) == 0
    for target in ("node_status", "event"):
        assert val(reg, "nodeprobe_publish_errors_total", target=target) == 0
    for outcome in Outcome:
        labels = {"runtime": "dockerd", "check": "docker_ping", "outcome": outcome}
        assert val(reg, "nodeprobe_probe_outcomes_total", **labels) == 0
        assert val(reg, "nodeprobe_probe_last_outcome", **labels) == 0
        labels = {"runtime": "containerd", "check": "cri_list_pod_sandbox", "outcome": outcome}
        assert val(reg, "nodeprobe_probe_outcomes_total", **labels) == 0
    assert (
        val(reg, "nodeprobe_probe_duration_seconds_count", runtime="dockerd", check="docker_ping")
        == 0
    )
    # No made-up readings: a 0 goroutine count would be a lie.
    assert val(reg, "nodeprobe_runtime_goroutines", runtime="dockerd") is None


def test_observe_counts_times_and_flags_the_last_outcome(reg: CollectorRegistry) -> None:
    m = Metrics(reg)
    m.observe(obs(Outcome.OK, latency_s=0.004))
    m.observe(obs(Outcome.HUNG, latency_s=3.0))
    lbl = {"runtime": "dockerd", "check": "docker_info"}
    assert val(reg, "nodeprobe_probe_outcomes_total", **lbl, outcome="OK") == 1
    assert val(reg, "nodeprobe_probe_outcomes_total", **lbl, outcome="HUNG") == 1
    assert val(reg, "nodeprobe_probe_last_outcome", **lbl, outcome="HUNG") == 1
    assert val(reg, "nodeprobe_probe_last_outcome", **lbl, outcome="OK") == 0
    assert val(reg, "nodeprobe_probe_duration_seconds_count", **lbl) == 2
    assert val(reg, "nodeprobe_probe_duration_seconds_sum", **lbl) == pytest.approx(3.004)
    assert val(reg, "nodeprobe_probe_duration_seconds_bucket", **lbl, le="0.005") == 1
    assert val(reg, "nodeprobe_probe_duration_seconds_bucket", **lbl, le="5.0") == 2


def test_readings_become_gauges_and_vanish_when_their_check_fails(
    reg: CollectorRegistry,
) -> None:
    m = Metrics(reg)
    m.observe(obs(values={Value.GOROUTINES: 118, Value.FDS: 42, Value.PID: 77, "junk": 1}))
    m.observe(obs(check=Check.PROCESS, values={Value.RSS_ANON_BYTES: 5e7, Value.RSS_BYTES: 8e7}))
    assert val(reg, "nodeprobe_runtime_goroutines", runtime="dockerd") == 118
    assert val(reg, "nodeprobe_runtime_open_fds", runtime="dockerd") == 42
    assert val(reg, "nodeprobe_runtime_rss_anon_bytes", runtime="dockerd") == 5e7
    m.observe(obs(Outcome.HUNG))
    assert val(reg, "nodeprobe_runtime_goroutines", runtime="dockerd") is None
    assert val(reg, "nodeprobe_runtime_open_fds", runtime="dockerd") is None
    assert val(reg, "nodeprobe_runtime_rss_anon_bytes", runtime="dockerd") == 5e7
    m.observe(obs(Outcome.HUNG))  # twice in a row is fine
    m.observe(obs(values={Value.GOROUTINES: 120}))
    assert val(reg, "nodeprobe_runtime_goroutines", runtime="dockerd") == 120


def test_runtime_info_keeps_one_series_per_runtime(reg: CollectorRegistry) -> None:
    m = Metrics(reg)
    m.observe(obs(info={"version": "20.10.24", "api_version": "1.41"}))
    m.observe(obs(info={"version": "20.10.24", "api_version": "1.41"}))
    m.observe(obs(runtime=Runtime.CONTAINERD, check=Check.CRI_VERSION, info={"version": "1.6.20"}))
    assert (
        val(
            reg, "nodeprobe_runtime_info", runtime="dockerd", version="20.10.24", api_version="1.41"
        )
        == 1
    )
    m.observe(obs(info={"version": "24.0.5", "api_version": "1.43"}))
    samples = [s for f in reg.collect() if f.name == "nodeprobe_runtime_info" for s in f.samples]
    assert sorted((s.labels["runtime"], s.labels["version"]) for s in samples) == [
        ("containerd", "1.6.20"),
        ("dockerd", "24.0.5"),
    ]


def test_condition_status_flags_only_the_current_reason_of_a_true_condition(
    reg: CollectorRegistry,
) -> None:
    m = Metrics(reg)
    unhealthy = "ContainerRuntimeUnavailable"
    m.set_conditions(
        {
            ConditionType.UNAVAILABLE: Condition(
                ConditionType.UNAVAILABLE, Status.TRUE, Reason.DOCKERD_HUNG, "x", T0
            )
        }
    )
    assert val(reg, "nodeprobe_condition_status", condition=unhealthy, reason="DockerdHung") == 1
    assert val(reg, "nodeprobe_condition_status", condition=unhealthy, reason="DockerdDown") == 0
    since = "nodeprobe_condition_last_transition_timestamp_seconds"
    assert val(reg, since, condition=unhealthy) == T0
    m.set_conditions(
        [Condition(ConditionType.UNAVAILABLE, Status.TRUE, Reason.CONTAINERD_HUNG, "x", T0 + 7)]
    )
    assert val(reg, since, condition=unhealthy) == T0 + 7
    assert val(reg, "nodeprobe_condition_status", condition=unhealthy, reason="DockerdHung") == 0
    assert val(reg, "nodeprobe_condition_status", condition=unhealthy, reason="ContainerdHung") == 1
    m.set_conditions([Condition(ConditionType.UNAVAILABLE, Status.FALSE, Reason.HEALTHY, "ok", T0)])
    flagged = [
        s
        for f in reg.collect()
        if f.name == "nodeprobe_condition_status"
        for s in f.samples
        if s.value != 0
    ]
    assert flagged == []


def test_publish_error_and_loop_tick(reg: CollectorRegistry) -> None:
    m = Metrics(reg)
    m.publish_error("event")
    m.publish_error("event")
    m.loop_tick(T0)
    assert val(reg, "nodeprobe_publish_errors_total", target="event") == 2
    assert val(reg, "nodeprobe_loop_last_iteration_timestamp_seconds") == T0
    assert m.health().last_tick == T0
    assert b"nodeprobe_publish_errors_total" in generate_latest(reg)


def test_healthz_is_live_while_the_loop_ticks() -> None:
    m = Metrics(CollectorRegistry())
    ok, why = healthz(m.health(), T0 + 10, started_at=T0, stale_after_s=60)
    assert ok and "starting" in why
    ok, why = healthz(m.health(), T0 + 61, started_at=T0, stale_after_s=60)
    assert not ok and "started 61s ago" in why
    m.loop_tick(T0 + 100)
    assert healthz(m.health(), T0 + 160, started_at=T0, stale_after_s=60)[0]
    ok, why = healthz(m.health(), T0 + 161, started_at=T0, stale_after_s=60)
    assert not ok and "61s ago" in why and "stuck" in why


def test_readyz_waits_for_a_round_and_the_first_node_status_write() -> None:
    m = Metrics(CollectorRegistry())
    ok, why = readyz(m.health(), need_node_status=True)
    assert not ok and "round of checks" in why
    m.mark_round_done()
    assert readyz(m.health(), need_node_status=False) == (True, "ok")
    ok, why = readyz(m.health(), need_node_status=True)
    assert not ok and "node status" in why
    m.mark_node_status_written()
    assert readyz(m.health(), need_node_status=True) == (True, "ok")
