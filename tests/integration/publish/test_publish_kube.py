"""Condition writer and event recorder against the real API server, and real kubectl.

The writers authenticate only with the chart's agent ServiceAccount token, bound to the agent
pod on a Node of the test's own, so every call here also passes the chart's RBAC. They run on
a fake clock (heartbeats, back-off and the spam filter are minutes long); the API server, its
merge semantics, its sockets and its outages (the process stopped, or SIGSTOPped) are real.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from nodeprobe.model import Condition, ConditionType, Event, EventType, Reason, Status
from nodeprobe.publish.conditions import ConditionSettings, ConditionWriter
from nodeprobe.publish.events import EventRecorder, EventSettings
from nodeprobe.publish.kubeclient import SMP, new_client
from tests.harness.chart import kubectl
from tests.harness.kubecluster import KubeCluster
from tests.integration.kube.nodes import AgentNode, conditions, node_events, summary

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


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


def writer_for(node: AgentNode, clock: Clock, *, name: str | None = None,
               **kw: Any) -> ConditionWriter:
    api = new_client(kubeconfig=str(node.kubeconfig))
    return ConditionWriter(name or node.name, api, now=clock, **kw)


def recorder_for(node: AgentNode, clock: Clock, *, name: str | None = None,
                 **kw: Any) -> EventRecorder:
    api = new_client(kubeconfig=str(node.kubeconfig))
    return EventRecorder(name or node.name, api, now=clock, **kw)


def status_writes(node: AgentNode, *, at_least: int) -> list[tuple[str, str, int]]:
    return [w for w in summary(node.wait_writes(at_least=at_least)) if w[1] == "nodes/status"]


# -- conditions ------------------------------------------------------------------------------


def test_conditions_appear_and_kubelet_ready_is_untouched(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    ready = conditions(kube_cluster, node.name)["Ready"]
    written: list[bool] = []
    w = writer_for(node, clock, on_write=lambda: written.append(True))
    w.update(healthy(since=T0 - 60))
    assert w.sync(), w.last_error

    got = conditions(kube_cluster, node.name)
    # The real strategic merge puts the new entries before kubelet's (the double appended them):
    # the order carries no meaning, the set and kubelet's entry do.
    assert sorted(got) == [
        "ContainerRuntimeMemoryLeak",
        "ContainerRuntimeSlow",
        "ContainerRuntimeUnavailable",
        "Ready",
    ]
    assert got["Ready"] == ready  # a strategic merge by type: kubelet's entry is left as it was
    assert got["ContainerRuntimeUnavailable"] == {
        "type": "ContainerRuntimeUnavailable",
        "status": "False",
        "reason": "ContainerRuntimeIsAvailable",
        "message": "both runtimes answer",
        "lastTransitionTime": "2027-01-15T07:59:00Z",
        "lastHeartbeatTime": "2027-01-15T08:00:00Z",
    }
    assert summary(node.wait_writes(at_least=1)) == [("patch", "nodes/status", 200)]
    assert written == [True] and w.writes == 1 and w.errors == 0


def test_a_new_writer_that_adopts_what_it_judges_holds_without_a_write(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    """A DaemonSet rollout's new pod: the Node already states its judgement, so nothing is
    written and the state holds (its readiness); a change holds only once written."""
    node, clock = agent_on_node, Clock()
    first = writer_for(node, clock)
    first.update(healthy(since=T0 - 60))
    assert first.sync(), first.last_error
    second = writer_for(node, clock)
    assert not second.holds()  # nothing desired yet
    second.adopt()
    second.update(healthy(since=T0 - 60))
    assert not second.sync() and second.holds() and second.writes == 0
    second.update({ConditionType.UNAVAILABLE: hung(T0)})
    assert not second.holds()
    assert second.sync(), second.last_error
    assert second.holds()


def test_kubelet_writing_ready_meanwhile_is_kept(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    """Our heartbeat is a merge by type: a newer kubelet heartbeat survives it, and the Node
    having changed since our last write is no conflict (a patch carries no resourceVersion)."""
    node, clock = agent_on_node, Clock()
    w = writer_for(node, clock)
    w.update(healthy())
    assert w.sync(), w.last_error
    ours = kube_cluster.must("GET", f"/api/v1/nodes/{node.name}")["metadata"]["resourceVersion"]
    ready = {**conditions(kube_cluster, node.name)["Ready"],
             "lastHeartbeatTime": "2027-01-15T08:04:00Z"}
    kubelets = kube_cluster.must("PATCH", f"/api/v1/nodes/{node.name}/status",
                                 {"status": {"conditions": [ready]}}, content_type=SMP)
    assert kubelets["metadata"]["resourceVersion"] != ours
    clock.t += 300
    assert w.sync(), w.last_error
    assert [code for _, _, code in status_writes(node, at_least=2)] == [200, 200]
    got = conditions(kube_cluster, node.name)
    assert got["Ready"]["lastHeartbeatTime"] == "2027-01-15T08:04:00Z"
    assert got["ContainerRuntimeSlow"]["lastHeartbeatTime"] == "2027-01-15T08:05:00Z"


def test_steady_state_writes_only_at_each_heartbeat(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    w = writer_for(node, clock, settings=ConditionSettings(heartbeat_s=300))
    wrote_at = []
    for second in range(0, 901):  # the agent offers a sync every second for 15 minutes
        clock.t = T0 + second
        w.update(healthy())
        if w.sync():
            wrote_at.append(second)
    assert wrote_at == [0, 300, 600, 900]
    assert len(status_writes(node, at_least=4)) == 4
    assert conditions(kube_cluster, node.name)["ContainerRuntimeUnavailable"][
        "lastHeartbeatTime"] == "2027-01-15T08:15:00Z"


def test_a_change_is_written_at_once_and_moves_the_heartbeat(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
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
    got = conditions(kube_cluster, node.name)["ContainerRuntimeUnavailable"]
    assert (got["status"], got["reason"]) == ("True", "DockerdHung")
    assert got["lastTransitionTime"] == "2027-01-15T08:01:40Z"
    clock.t = T0 + 400
    assert w.sync()  # 300 s after the change, not after the first write


def test_an_api_outage_keeps_state_and_converges_to_the_current_truth(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    """kube-apiserver stopped: writes and Events fail fast and back off; once it is started
    again the Node shows the latest truth (not a replay) and the held Events arrive counted."""
    node, clock = agent_on_node, Clock()
    errors: list[str] = []
    w = writer_for(node, clock, on_error=errors.append)
    r = recorder_for(node, clock)
    w.update({**healthy(), ConditionType.UNAVAILABLE: hung(T0)})
    assert w.sync(), w.last_error
    assert r.record([warn(T0)]) == 1

    took = []
    with kube_cluster.outage():
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
            if i in (5, 15):
                assert r.record([ok(clock.t) if i == 5 else warn(clock.t)]) == 0
        w.update(healthy(since=T0 + 130))  # the truth when the API comes back
        assert r.errors >= 1 and r.pending() == 2
    assert w.errors >= 5 and len(errors) == w.errors
    assert f"PATCH nodes/{node.name}/status" in w.last_error
    # 1+2+4+8+16+30+30+30 s of back-off in 120 s: a handful of tries, not 120
    assert w.errors <= 9
    assert max(took) < 1.0  # refused connections fail fast

    before = len(status_writes(node, at_least=1))
    clock.t = T0 + 200  # past the longest back-off
    assert w.sync(), w.last_error
    got = conditions(kube_cluster, node.name)["ContainerRuntimeUnavailable"]
    assert (got["status"], got["reason"], got["message"]) == (
        "False",
        "ContainerRuntimeIsAvailable",
        "both runtimes answer",
    )
    assert got["lastTransitionTime"] == "2027-01-15T08:02:10Z"
    assert len(status_writes(node, at_least=before + 1)) == before + 1  # latest, no replay
    assert w.last_error == ""
    clock.t += 1
    assert not w.sync()
    assert r.flush() == 2
    assert [(e["reason"], e["count"]) for e in node_events(kube_cluster, node.name)] == [
        ("ContainerRuntimeIsAvailable", 1),
        ("DockerdHung", 2),
    ]


def test_a_hanging_api_costs_at_most_the_request_timeout(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    """kube-apiserver SIGSTOPped: connections are accepted and nothing answers."""
    node, clock = agent_on_node, Clock()
    w = writer_for(node, clock, settings=ConditionSettings(request_timeout_s=0.3))
    w.update(healthy())
    took = []
    with kube_cluster.hung():
        for _ in range(5):
            clock.t += 60  # past any back-off
            started = time.monotonic()
            assert not w.sync()
            took.append(time.monotonic() - started)
    assert w.errors == 5 and "Timeout" in w.last_error, w.last_error
    assert max(took) < 0.3 + 0.5, took
    print(
        f"\nsync under a hung API: median {statistics.median(took):.3f}s "
        f"min {min(took):.3f}s max {max(took):.3f}s"
    )
    clock.t += 60
    assert w.sync(), w.last_error  # and it recovers on the same client


def test_a_missing_node_is_an_actionable_error_not_a_crash(agent_on_node: AgentNode) -> None:
    w = writer_for(agent_on_node, Clock(), name=f"missing-{uuid.uuid4().hex[:8]}")
    w.update(healthy())
    assert not w.sync()
    assert "HTTP 404" in w.last_error and "NODE_NAME" in w.last_error


# -- events ----------------------------------------------------------------------------------


def warn(at: float, msg: str = "dockerd did not answer GET /_ping within 3s") -> Event:
    return Event(EventType.WARNING, Reason.DOCKERD_HUNG, msg, at)


def ok(at: float) -> Event:
    return Event(EventType.NORMAL, Reason.HEALTHY, "dockerd answers again", at)


def test_an_event_per_transition_aimed_at_the_node(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    r = recorder_for(node, clock)
    uid = kube_cluster.must("GET", f"/api/v1/nodes/{node.name}")["metadata"]["uid"]
    assert r.record([warn(T0)]) == 1
    clock.t += 40
    assert r.record([ok(T0 + 40)]) == 1

    got = node_events(kube_cluster, node.name)
    assert [(e["reason"], e["type"], e["count"]) for e in got] == [
        ("ContainerRuntimeIsAvailable", "Normal", 1),
        ("DockerdHung", "Warning", 1),
    ]
    e = got[1]
    assert e["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": node.name,
                                   "uid": uid}
    assert e["source"] == {"component": "nodeprobe", "host": node.name}
    assert e["reportingComponent"] == "nodeprobe"
    assert e["firstTimestamp"] == e["lastTimestamp"] == "2027-01-15T08:00:00Z"
    node.wait_writes(at_least=2)
    gets = [e for e in kube_cluster.audit(node.username)
            if e["verb"] == "get" and (e.get("objectRef") or {}).get("name") == node.name]
    assert summary(gets) == [("get", "nodes", 200)]  # the uid is fetched once


def test_every_write_names_nodeprobe_as_its_field_manager(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    w, r = writer_for(node, clock), recorder_for(node, clock)
    w.update(healthy())
    assert w.sync(), w.last_error
    assert r.record([warn(T0)]) == 1
    clock.t += 1
    assert r.record([warn(T0 + 1)]) == 1  # the same Event again: a PATCH of its count
    logged = node.wait_writes(at_least=3)
    assert sorted(summary(logged)) == [
        ("create", "events", 201), ("patch", "events", 200), ("patch", "nodes/status", 200)]
    assert all("fieldManager=nodeprobe" in e["requestURI"].split("?")[1].split("&")
               for e in logged), [e["requestURI"] for e in logged]
    managers = kube_cluster.must("GET", f"/api/v1/nodes/{node.name}")["metadata"]["managedFields"]
    assert any(m["manager"] == "nodeprobe" and m.get("subresource") == "status"
               for m in managers), managers


def test_kubectl_describe_node_shows_our_conditions_and_events(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    w = writer_for(node, clock)
    w.update({**healthy(), ConditionType.UNAVAILABLE: hung(T0)})
    assert w.sync(), w.last_error
    r = recorder_for(node, clock)
    r.record([warn(T0), warn(T0 + 1)])
    result = kubectl(kube_cluster, "describe", "node", node.name)
    assert result.returncode == 0, result.stderr
    cond_part = result.stdout.split("Conditions:")[1].split("Addresses:")[0]
    assert "ContainerRuntimeUnavailable" in cond_part and "DockerdHung" in cond_part
    assert "KubeletReady" in cond_part
    assert "ContainerRuntimeIsResponsive" in cond_part
    ev_part = result.stdout.split("Events:")[1]
    assert "DockerdHung" in ev_part and "nodeprobe" in ev_part
    assert "dockerd did not answer GET /_ping within 3s" in ev_part
    assert "(x2 over" in ev_part, ev_part  # count shown as kubectl shows kubelet's repeats


def test_a_hundred_flaps_make_one_event_per_reason_and_bounded_writes(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    r = recorder_for(node, clock)
    for i in range(100):
        clock.t = T0 + 4 * i
        r.record([warn(clock.t)])
        clock.t += 2
        r.record([ok(clock.t)])
        r.flush()
    got = node_events(kube_cluster, node.name)
    assert [e["reason"] for e in got] == ["ContainerRuntimeIsAvailable", "DockerdHung"]
    assert all(e["count"] >= 2 for e in got)
    written = r.creates + r.patches
    assert len(node.wait_writes(at_least=written)) == written
    assert written <= 25 + 2  # the burst, plus refills over the 400 s of flapping
    assert r.pending() == 2 and r.throttled > 0
    # Held-back occurrences are not lost: the next tokens carry the full count.
    for _ in range(2):
        clock.t += 300
        r.flush()
    assert [e["count"] for e in node_events(kube_cluster, node.name)] == [100, 100]
    assert r.creates + r.patches == written + 2
    assert len(node.wait_writes(at_least=written + 2)) == written + 2
    assert r.pending() == 0


def test_an_expired_event_is_created_again(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    node, clock = agent_on_node, Clock()
    r = recorder_for(node, clock)
    r.record([warn(T0)])
    [first] = node_events(kube_cluster, node.name)
    kube_cluster.must("DELETE", f"/api/v1/namespaces/default/events/{first['metadata']['name']}")
    clock.t += 30
    assert r.record([warn(clock.t)]) == 1
    [again] = node_events(kube_cluster, node.name)
    assert again["count"] == 2 and again["reason"] == "DockerdHung"
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    assert r.errors == 0


def test_events_about_an_unreadable_node_use_its_name(
    kube_cluster: KubeCluster, agent_on_node: AgentNode
) -> None:
    """No Node object (or no RBAC to read it): kubelet's convention, uid = node name."""
    missing = f"gone-{uuid.uuid4().hex[:8]}"
    r = recorder_for(agent_on_node, Clock(), name=missing, settings=EventSettings())
    try:
        assert r.record([warn(T0)]) == 1, r.last_error
        [e] = node_events(kube_cluster, missing)
        assert e["involvedObject"]["uid"] == missing
    finally:
        kube_cluster.request("DELETE", "/api/v1/namespaces/default/events?fieldSelector="
                                       f"involvedObject.name%3D{missing}")


@pytest.mark.parametrize("max_idle_s", [0.5, 3600.0])
def test_no_failed_write_after_the_api_server_closed_an_idle_connection(
    agent_on_node: AgentNode, tmp_path: Path, max_idle_s: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 17: every 5-minute heartbeat failed once ("PATCH nodes/n1/status: SSLEOFError"),
    because kube-apiserver had closed the idle connection at 90 s. Through a real TLS
    connection to the real API server, closed when idle for 1 s by a proxy in front: the
    second write succeeds at once, with the idle limit (0.5 s) or, past it, by one retry on a
    fresh connection (3600 s)."""
    import yaml

    from nodeprobe.publish.kubeclient import ClientSettings, KubeClient
    from tests.integration.publish.idle_proxy import IdleClosingProxy

    doc = yaml.safe_load(agent_on_node.kubeconfig.read_text())
    server = doc["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = IdleClosingProxy((host, int(port)), idle_s=1.0)
    try:
        doc["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
        config = tmp_path / "via-proxy.kubeconfig"
        config.write_text(yaml.safe_dump(doc))
        api = KubeClient.from_kubeconfig(str(config),
                                         settings=ClientSettings(max_idle_s=max_idle_s))
        path = f"/api/v1/nodes/{agent_on_node.name}/status"
        body = {"status": {"conditions": [{"type": "ContainerRuntimeUnavailable",
                                           "status": "False", "reason": "RuntimesAnswer",
                                           "message": "idle test"}]}}
        api.request_json("PATCH", path, body=body, content_type=SMP)
        assert proxy.closed_idle.wait(30)
        with caplog.at_level("WARNING"):
            api.request_json("PATCH", path, body=body, content_type=SMP)
        api.close()
    finally:
        proxy.close()
    assert proxy.connections == 2
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_401_rereads_a_rotated_token_file_at_once(agent_on_node: AgentNode,
                                                   tmp_path: Path) -> None:
    """The real API server refuses the file's old token (as it does one past its expiry); the
    client re-reads the file on that 401, not at the next 60 s re-read, and the write goes
    through with the token kubelet wrote meanwhile."""
    import yaml

    from nodeprobe.publish.kubeclient import KubeClient, KubeError

    doc = yaml.safe_load(agent_on_node.kubeconfig.read_text())
    good = doc["users"][0]["user"].pop("token")
    token = tmp_path / "token"
    token.write_text("not-a-token\n")
    doc["users"][0]["user"]["tokenFile"] = "token"
    config = tmp_path / "file.kubeconfig"
    config.write_text(yaml.safe_dump(doc))
    api = KubeClient.from_kubeconfig(str(config))
    path = f"/api/v1/nodes/{agent_on_node.name}"
    with pytest.raises(KubeError) as e:
        api.request_json("GET", path)  # the file holds a bad token, unchanged on re-read
    assert e.value.status == 401
    token.write_text(good + "\n")  # rotated
    assert api.request_json("GET", path)["metadata"]["name"] == agent_on_node.name
    api.close()
    codes = [entry["responseStatus"]["code"] for entry in agent_on_node.cluster.audit(
        agent_on_node.username) if entry["objectRef"].get("name") == agent_on_node.name
        and entry["verb"] == "get"]
    assert codes[-1] == 200
