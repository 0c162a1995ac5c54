"""The condition writer's pure decisions: when to write, what to write, how long to back off."""

from __future__ import annotations

from nodeprobe.model import Condition, ConditionType, Reason, Status
from nodeprobe.publish.conditions import ConditionSettings, Written, changed, patch_body, plan
from nodeprobe.publish.kubeclient import Backoff, RetrySettings, rfc3339

T0 = 1_800_000_000.0


def cond(
    ctype: ConditionType = ConditionType.UNAVAILABLE,
    status: Status = Status.FALSE,
    reason: str = Reason.HEALTHY,
    message: str = "dockerd and containerd answer",
    since: float = T0,
) -> Condition:
    return Condition(ctype, status, reason, message, since)


def desired(*conds: Condition) -> dict[ConditionType, Condition]:
    return {c.type: c for c in conds}


def test_defaults_are_the_promised_ones() -> None:
    s = ConditionSettings()
    assert s.heartbeat_s == 300.0
    assert s.request_timeout_s == 5.0
    assert (s.retry.initial_s, s.retry.max_s) == (1.0, 30.0)


def test_nothing_desired_means_no_write() -> None:
    assert plan({}, None, T0, heartbeat_s=300) is None


def test_first_state_is_written_at_once() -> None:
    assert plan(desired(cond()), None, T0, heartbeat_s=300) == "first"


def test_steady_state_is_quiet_until_the_heartbeat_exactly() -> None:
    d = desired(cond())
    w = Written(d, T0)
    for dt in (0.0, 1.0, 150.0, 299.0, 299.999):
        assert plan(d, w, T0 + dt, heartbeat_s=300) is None
    assert plan(d, w, T0 + 300.0, heartbeat_s=300) == "heartbeat"


def test_status_reason_or_message_change_is_written() -> None:
    w = Written(desired(cond()), T0)
    hung = cond(status=Status.TRUE, reason=Reason.DOCKERD_HUNG, since=T0 + 5)
    assert plan(desired(hung), w, T0 + 5, heartbeat_s=300) == "changed"
    same_status_new_message = cond(message="containerd answers slowly")
    assert changed(desired(same_status_new_message), w)
    new_reason = cond(reason=Reason.UNKNOWN)
    assert changed(desired(new_reason), w)


def test_a_new_condition_type_is_a_change() -> None:
    w = Written(desired(cond()), T0)
    both = desired(cond(), cond(ConditionType.SLOW, reason=Reason.NOT_SLOW))
    assert changed(both, w)


def test_transition_time_alone_is_not_a_change() -> None:
    w = Written(desired(cond()), T0)
    assert not changed(desired(cond(since=T0 + 99)), w)


def test_patch_carries_only_our_conditions_with_both_timestamps() -> None:
    d = desired(
        cond(ConditionType.SLOW, reason=Reason.NOT_SLOW, since=T0 - 60),
        cond(status=Status.TRUE, reason=Reason.DOCKERD_HUNG, message="no answer", since=T0 - 10),
    )
    body = patch_body(d, T0)
    assert list(body) == ["status"] and list(body["status"]) == ["conditions"]
    items = body["status"]["conditions"]
    assert [c["type"] for c in items] == ["ContainerRuntimeUnavailable", "ContainerRuntimeSlow"]
    assert items[0] == {
        "type": "ContainerRuntimeUnavailable",
        "status": "True",
        "reason": "DockerdHung",
        "message": "no answer",
        "lastTransitionTime": rfc3339(T0 - 10),
        "lastHeartbeatTime": rfc3339(T0),
    }


def test_rfc3339_is_utc_whole_seconds() -> None:
    assert rfc3339(0.9) == "1970-01-01T00:00:00Z"
    assert rfc3339(T0) == "2027-01-15T08:00:00Z"


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(RetrySettings(initial_s=1.0, max_s=30.0))
    assert b.ready(T0)
    delays = [b.failed(T0) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert not b.ready(T0 + 29.9) and b.ready(T0 + 30.0)
    b.succeeded()
    assert b.ready(T0) and b.failures == 0
    assert b.failed(T0) == 1.0


def test_backoff_survives_very_long_outages() -> None:
    b = Backoff(RetrySettings())
    for _ in range(10_000):
        assert b.failed(T0) <= 30.0


def test_adoptable_reads_only_our_conditions_and_the_latest_heartbeat() -> None:
    from nodeprobe.publish.conditions import adoptable

    node = {"status": {"conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "ContainerRuntimeUnavailable", "status": "True", "reason": "DockerdHung",
         "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z",
         "lastHeartbeatTime": "2026-01-01T00:05:00Z"},
        {"type": "ContainerRuntimeSlow", "status": "Maybe", "reason": "X",
         "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "ContainerRuntimeMemoryLeak", "status": "False", "reason": "R",
         "lastTransitionTime": "not a time"},
    ]}}
    written = adoptable(node)
    assert written is not None
    assert list(written.conditions) == [ConditionType.UNAVAILABLE]
    cond = written.conditions[ConditionType.UNAVAILABLE]
    assert (cond.status, cond.reason, cond.message) == (Status.TRUE, "DockerdHung", "m")
    assert cond.since == 1767225600.0
    assert written.at == 1767225900.0


def test_adoptable_is_none_on_a_new_node() -> None:
    from nodeprobe.publish.conditions import adoptable

    assert adoptable({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}) is None
    assert adoptable({}) is None
