"""Leader election on a Lease (client-go semantics) and the write fence, on a synthetic clock."""

from __future__ import annotations

import threading

import pytest

from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.leader import Fenced, LeaderElector, Timing, Verdict, decide
from nodeprobe.operator.leases import micro
from tests.unit.operator.fake_kube import FakeKube

T0 = 1_800_000_000.0


class Clocks:
    def __init__(self) -> None:
        self.t = T0
        self.mono = 100.0

    def wall(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def tick(self, s: float) -> None:
        self.t += s
        self.mono += s


def elector(kube: FakeKube, who: str, clocks: Clocks) -> LeaderElector:
    return LeaderElector(kube, namespace="np", identity=who, timing=Timing(15, 10, 2),
                         clock=clocks.wall, monotonic=clocks.monotonic)


def test_decide_follows_client_go() -> None:
    lease = {"spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                      "renewTime": micro(T0)}}
    assert decide(None, identity="b", now=T0) is Verdict.CREATE
    assert decide(lease, identity="a", now=T0 + 1) is Verdict.RENEW
    assert decide(lease, identity="b", now=T0 + 14) is Verdict.WAIT
    assert decide(lease, identity="b", now=T0 + 16) is Verdict.TAKE
    assert decide({"spec": {"holderIdentity": None}}, identity="b", now=T0) is Verdict.TAKE


def test_one_leader_then_takeover_after_expiry() -> None:
    kube, clocks = FakeKube(), Clocks()
    a, b = elector(kube, "a", clocks), elector(kube, "b", clocks)
    assert a.try_once() and a.leading()
    assert not b.try_once() and not b.leading()
    lease = kube.leases["nodeprobe-operator"]
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 15
    clocks.tick(11)  # a stopped renewing (frozen, partitioned ...)
    assert not a.leading()  # past its renew deadline: a stops acting by itself
    assert not b.try_once()  # not expired yet for b
    clocks.tick(5)
    assert b.try_once() and b.leading()
    assert kube.leases["nodeprobe-operator"]["spec"]["leaseTransitions"] == 1
    assert not a.try_once()  # a comes back: follower


def test_racing_writers_never_both_win() -> None:
    kube, clocks = FakeKube(), Clocks()
    a, b = elector(kube, "a", clocks), elector(kube, "b", clocks)
    assert a.try_once()
    clocks.tick(20)
    stale = kube.request("GET", "/apis/coordination.k8s.io/v1/namespaces/np/leases/"
                                "nodeprobe-operator")
    assert b.try_once()
    # a's takeover with the old resourceVersion is refused (409): b stays the only leader
    with pytest.raises(KubeError) as e:
        kube.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/np/leases/"
                            "nodeprobe-operator", body={**stale, "spec": {
                                **stale["spec"], "holderIdentity": "a"}})
    assert e.value.status == 409


def test_losing_the_lease_fences_writes_at_once_and_calls_on_lost() -> None:
    kube, clocks = FakeKube(), Clocks()
    a = elector(kube, "a", clocks)
    assert a.try_once()
    fenced = Fenced(kube, a.leading)
    kube.add_node("n")
    fenced.request("PATCH", "/api/v1/nodes/n", body={"spec": {"unschedulable": True}})
    clocks.tick(11)
    with pytest.raises(KubeError, match="no longer leads"):
        fenced.request("PATCH", "/api/v1/nodes/n", body={"spec": {"unschedulable": None}})
    assert fenced.request("GET", "/api/v1/nodes/n")["spec"]["unschedulable"] is True
    # keep(): renewal fails (someone else holds it) -> on_lost once
    kube.leases["nodeprobe-operator"]["spec"].update(holderIdentity="b", renewTime=micro(clocks.t))
    lost = threading.Event()
    stop = threading.Event()
    a.timing = Timing(15, 10, 0.001)
    a.keep(stop, lost.set)
    assert lost.is_set()


def test_release_hands_over_without_waiting() -> None:
    kube, clocks = FakeKube(), Clocks()
    a, b = elector(kube, "a", clocks), elector(kube, "b", clocks)
    assert a.try_once()
    a.release()
    assert not a.leading()
    assert b.try_once()
