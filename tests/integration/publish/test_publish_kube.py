"""Condition writer and event recorder against the Kubernetes API double (and real kubectl).

The writers run on a fake clock (heartbeats, back-off and the spam filter are minutes long);
the API server, its sockets and its outages are real.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from nodeprobe.model import Condition, ConditionType, Event, EventType, Reason, Status
from nodeprobe.publish.conditions import ConditionSettings, ConditionWriter
from nodeprobe.publish.events import EventRecorder, EventSettings
from nodeprobe.publish.kubeclient import SMP, new_client
from tests.kube.double import KubeDouble
from tests.kube.objects import KUBELET_TIME, kubelet_node

NODE = "node-a"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def healthy(since: float = T0) -> dict[ConditionType, Condition]:
    return {
        ConditionType.UNAVAILABLE: Condition(
            ConditionType.UNAVAILABLE, Status.FALSE, Reason.HEALTHY, "both runtimes answer", since
        ),
        ConditionType.MEMORY_LEAK: Condition(
            ConditionType.MEMORY_LEAK, Status.FALSE, Reason.NO_LEAK, "memory is stable", since
        ),
        ConditionType.SLOW: Condition(
            ConditionType.SLOW, Status.FALSE, Reason.NOT_SLOW, "answers within 1s", since
        ),
    }


def hung(since: float) -> Condition:
    return Condition(
        ConditionType.UNAVAILABLE,
        Status.TRUE,
        Reason.DOCKERD_HUNG,
        "dockerd did not answer GET /_ping within 3s, 4 checks in a row",
        since,
    )


def writes(kube: KubeDouble, resource: str, *, at_least: int) -> int:
    """The double logs a request just after answering it: poll its counter with a deadline."""
    deadline = time.monotonic() + 5
    while kube.writes(resource=resource) < at_least and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a real counter, not synchronizing on time
    return kube.writes(resource=resource)


def conditions(kube: KubeDouble) -> dict[str, dict[str, Any]]:
    node = kube.get("nodes", NODE)
    assert node is not None
    return {c["type"]: c for c in node["status"]["conditions"]}


@pytest.fixture
def node(kube: KubeDouble) -> KubeDouble:
    kube.put_object(kubelet_node(NODE))
    kube.reset_counters()
    return kube


def writer_for(kube: KubeDouble, clock: Clock, **kw: Any) -> ConditionWriter:
    api = new_client(kubeconfig=str(kube.kubeconfig))
    return ConditionWriter(NODE, api, now=clock, **kw)


def recorder_for(kube: KubeDouble, clock: Clock, **kw: Any) -> EventRecorder:
    api = new_client(kubeconfig=str(kube.kubeconfig))
    return EventRecorder(NODE, api, now=clock, **kw)


# -- conditions ------------------------------------------------------------------------------


def test_conditions_appear_and_kubelet_ready_is_untouched(node: KubeDouble) -> None:
    clock = Clock()
    written: list[bool] = []
    w = writer_for(node, clock, on_write=lambda: written.append(True))
    w.update(healthy(since=T0 - 60))
    assert w.sync()

    got = conditions(node)
    assert list(got) == [
        "Ready",
        "ContainerRuntimeUnavailable",
        "ContainerRuntimeMemoryLeak",
        "ContainerRuntimeSlow",
    ]
    assert got["Ready"]["reason"] == "KubeletReady"
    assert got["Ready"]["lastHeartbeatTime"] == KUBELET_TIME
    assert got["ContainerRuntimeUnavailable"] == {
        "type": "ContainerRuntimeUnavailable",
        "status": "False",
        "reason": "ContainerRuntimeIsAvailable",
        "message": "both runtimes answer",
        "lastTransitionTime": "2027-01-15T07:59:00Z",
        "lastHeartbeatTime": "2027-01-15T08:00:00Z",
    }
    assert writes(node, "nodes/status", at_least=1) == 1
    [patch] = node.log(resource="nodes/status", writes_only=True)
    assert patch.content_type == SMP and patch.code == 200
    assert written == [True] and w.writes == 1 and w.errors == 0


def test_kubelet_writing_ready_meanwhile_is_kept(node: KubeDouble) -> None:
    """Our heartbeat is a merge by type: a newer kubelet heartbeat survives it."""
    clock = Clock()
    w = writer_for(node, clock)
    w.update(healthy())
    assert w.sync()
    fresh = kubelet_node(NODE)
    fresh["status"]["conditions"] = [
        *conditions(node).values(),
    ]
    fresh["status"]["conditions"][0]["lastHeartbeatTime"] = "2027-01-15T08:04:00Z"
    node.put_object(fresh)
    clock.t += 300
    assert w.sync()
    got = conditions(node)
    assert got["Ready"]["lastHeartbeatTime"] == "2027-01-15T08:04:00Z"
    assert got["ContainerRuntimeSlow"]["lastHeartbeatTime"] == "2027-01-15T08:05:00Z"


def test_steady_state_writes_only_at_each_heartbeat(node: KubeDouble) -> None:
    clock = Clock()
    w = writer_for(node, clock, settings=ConditionSettings(heartbeat_s=300))
    wrote_at = []
    for second in range(0, 901):  # the agent offers a sync every second for 15 minutes
        clock.t = T0 + second
        w.update(healthy())
        if w.sync():
            wrote_at.append(second)
    assert wrote_at == [0, 300, 600, 900]
    assert writes(node, "nodes", at_least=4) == 4
    assert conditions(node)["ContainerRuntimeUnavailable"]["lastHeartbeatTime"] == (
        "2027-01-15T08:15:00Z"
    )


def test_a_change_is_written_at_once_and_moves_the_heartbeat(node: KubeDouble) -> None:
    clock = Clock()
    w = writer_for(node, clock)
    wrote_at = []
    for second in range(0, 400):
        clock.t = T0 + second
        w.update(healthy())
        if second >= 100:
            w.update([hung(since=T0 + 100)])
        if w.sync():
            wrote_at.append(second)
    assert wrote_at == [0, 100]
    got = conditions(node)["ContainerRuntimeUnavailable"]
    assert (got["status"], got["reason"]) == ("True", "DockerdHung")
    assert got["lastTransitionTime"] == "2027-01-15T08:01:40Z"
    clock.t = T0 + 400
    assert w.sync()  # 300 s after the change, not after the first write


def test_api_outage_keeps_state_and_converges_to_the_current_truth(node: KubeDouble) -> None:
    clock = Clock()
    errors: list[str] = []
    w = writer_for(node, clock, on_error=errors.append)
    w.update({**healthy(), ConditionType.UNAVAILABLE: hung(T0)})
    assert w.sync()

    node.pause()
    took = []
    down = Condition(
        ConditionType.UNAVAILABLE, Status.TRUE, Reason.DOCKERD_DOWN, "socket refused", T0 + 20
    )
    for i in range(120):
        clock.t = T0 + 10 + i
        if i == 10:
            w.update([down])
        started = time.monotonic()
        assert not w.sync()
        took.append(time.monotonic() - started)
    w.update(healthy(since=T0 + 130))  # the truth when the API comes back
    assert w.errors >= 5 and len(errors) == w.errors
    assert "PATCH nodes/node-a/status" in w.last_error
    # 1+2+4+8+16+30+30+30 s of back-off in 120 s: a handful of tries, not 120
    assert w.errors <= 9
    assert max(took) < 1.0  # refused connections fail fast

    node.resume()
    node.reset_counters()
    clock.t = T0 + 200  # past the longest back-off
    assert w.sync(), w.last_error
    got = conditions(node)["ContainerRuntimeUnavailable"]
    assert (got["status"], got["reason"], got["message"]) == (
        "False",
        "ContainerRuntimeIsAvailable",
        "both runtimes answer",
    )
    assert got["lastTransitionTime"] == "2027-01-15T08:02:10Z"
    assert writes(node, "nodes", at_least=1) == 1  # the latest state, not a replay
    assert w.last_error == ""
    clock.t += 1
    assert not w.sync()


def test_a_hanging_api_costs_at_most_the_request_timeout(node: KubeDouble) -> None:
    clock = Clock()
    w = writer_for(node, clock, settings=ConditionSettings(request_timeout_s=0.3))
    w.update(healthy())
    node.latency = 2.0  # the server answers after 2 s; we give up at 0.3 s
    took = []
    for _ in range(5):
        clock.t += 60  # past any back-off
        started = time.monotonic()
        assert not w.sync()
        took.append(time.monotonic() - started)
    node.latency = 0.0
    assert w.errors == 5 and "Timeout" in w.last_error
    assert max(took) < 0.3 + 0.5, took
    print(
        f"\nsync under a hung API: median {statistics.median(took):.3f}s "
        f"min {min(took):.3f}s max {max(took):.3f}s"
    )


def test_a_missing_node_is_an_actionable_error_not_a_crash(kube: KubeDouble) -> None:
    clock = Clock()
    w = writer_for(kube, clock)
    w.update(healthy())
    assert not w.sync()
    assert "HTTP 404" in w.last_error and "NODE_NAME" in w.last_error


# -- events ----------------------------------------------------------------------------------


def warn(at: float, msg: str = "dockerd did not answer GET /_ping within 3s") -> Event:
    return Event(EventType.WARNING, Reason.DOCKERD_HUNG, msg, at)


def ok(at: float) -> Event:
    return Event(EventType.NORMAL, Reason.HEALTHY, "dockerd answers again", at)


def events(kube: KubeDouble) -> list[dict[str, Any]]:
    return sorted(kube.list("events", namespace="default"), key=lambda e: e["reason"])


def test_an_event_per_transition_aimed_at_the_node(node: KubeDouble) -> None:
    clock = Clock()
    r = recorder_for(node, clock)
    uid = node.get("nodes", NODE)["metadata"]["uid"]  # type: ignore[index]
    assert r.record([warn(T0)]) == 1
    clock.t += 40
    assert r.record([ok(T0 + 40)]) == 1

    got = events(node)
    assert [(e["reason"], e["type"], e["count"]) for e in got] == [
        ("ContainerRuntimeIsAvailable", "Normal", 1),
        ("DockerdHung", "Warning", 1),
    ]
    e = got[1]
    assert e["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": uid}
    assert e["source"] == {"component": "nodeprobe", "host": NODE}
    assert e["reportingComponent"] == "nodeprobe"
    assert e["firstTimestamp"] == e["lastTimestamp"] == "2027-01-15T08:00:00Z"
    writes(node, "events", at_least=2)
    assert node.requests(verb="get", resource="nodes") == 1  # uid fetched once


def test_every_write_names_nodeprobe_as_its_field_manager(node: KubeDouble) -> None:
    clock = Clock()
    w, r = writer_for(node, clock), recorder_for(node, clock)
    w.update(healthy())
    assert w.sync()
    assert r.record([warn(T0)]) == 1
    clock.t += 1
    assert r.record([warn(T0 + 1)]) == 1  # the same Event again: a PATCH of its count
    writes(node, "events", at_least=2)
    logged = node.log(writes_only=True)
    assert sorted((q.verb, q.resource, q.subresource) for q in logged) == [
        ("create", "events", ""), ("patch", "events", ""), ("patch", "nodes", "status")]
    assert all("fieldManager=nodeprobe" in q.query.split("&") for q in logged), logged


def test_kubectl_describe_node_shows_our_conditions_and_events(node: KubeDouble) -> None:
    clock = Clock()
    w = writer_for(node, clock)
    w.update({**healthy(), ConditionType.UNAVAILABLE: hung(T0)})
    assert w.sync()
    r = recorder_for(node, clock)
    r.record([warn(T0), warn(T0 + 1)])
    result = node.kubectl("describe", "node", NODE)
    assert result.returncode == 0, result.stderr
    cond_part = result.stdout.split("Conditions:")[1].split("Addresses:")[0]
    assert "ContainerRuntimeUnavailable" in cond_part and "DockerdHung" in cond_part
    assert "KubeletReady" in cond_part
    assert "ContainerRuntimeIsResponsive" in cond_part
    ev_part = result.stdout.split("Events:")[1]
    assert "DockerdHung" in ev_part and "nodeprobe" in ev_part
    assert "dockerd did not answer GET /_ping within 3s" in ev_part
    assert "(x2 over" in ev_part  # count shown as kubectl shows kubelet's repeats


def test_a_hundred_flaps_make_one_event_per_reason_and_bounded_writes(node: KubeDouble) -> None:
    clock = Clock()
    r = recorder_for(node, clock)
    for i in range(100):
        clock.t = T0 + 4 * i
        r.record([warn(clock.t)])
        clock.t += 2
        r.record([ok(clock.t)])
        r.flush()
    got = events(node)
    assert [e["reason"] for e in got] == ["ContainerRuntimeIsAvailable", "DockerdHung"]
    assert all(e["count"] >= 2 for e in got)
    written = r.creates + r.patches
    assert writes(node, "events", at_least=written) == written
    assert written <= 25 + 2  # the burst, plus refills over the 400 s of flapping
    assert r.pending() == 2 and r.throttled > 0
    # Held-back occurrences are not lost: the next tokens carry the full count.
    for _ in range(2):
        clock.t += 300
        r.flush()
    assert [e["count"] for e in events(node)] == [100, 100]
    assert r.creates + r.patches == written + 2
    assert writes(node, "events", at_least=written + 2) == written + 2
    assert r.pending() == 0


def test_an_expired_event_is_created_again(node: KubeDouble) -> None:
    clock = Clock()
    r = recorder_for(node, clock)
    r.record([warn(T0)])
    [first] = events(node)
    node.delete_object("events", first["metadata"]["name"], namespace="default")
    clock.t += 30
    assert r.record([warn(clock.t)]) == 1
    [again] = events(node)
    assert again["count"] == 2 and again["reason"] == "DockerdHung"
    assert r.errors == 0


def test_events_survive_an_api_outage(node: KubeDouble) -> None:
    clock = Clock()
    errors: list[str] = []
    r = recorder_for(node, clock, on_error=errors.append)
    r.record([warn(T0)])
    node.pause()
    clock.t += 5
    assert r.record([ok(clock.t)]) == 0
    clock.t += 5
    assert r.record([warn(clock.t)]) == 0
    assert len(errors) == r.errors >= 1 and r.pending() == 2
    node.resume()
    clock.t += 60
    assert r.flush() == 2
    assert [(e["reason"], e["count"]) for e in events(node)] == [
        ("ContainerRuntimeIsAvailable", 1),
        ("DockerdHung", 2),
    ]


def test_events_about_an_unreadable_node_use_its_name(kube: KubeDouble) -> None:
    """No Node object (or no RBAC to read it): kubelet's convention, uid = node name."""
    clock = Clock()
    r = recorder_for(kube, clock, settings=EventSettings())
    assert r.record([warn(T0)]) == 1
    [e] = events(kube)
    assert e["involvedObject"]["uid"] == NODE
