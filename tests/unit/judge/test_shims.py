"""Orphaned shims and the shim leak, judged from synthetic counts (no sockets, no /proc)."""

from __future__ import annotations

from nodeprobe.config import Config, load
from nodeprobe.judge.continuous import Judge
from nodeprobe.judge.shims import Tally, tallies
from nodeprobe.model import (
    Check,
    ConditionType,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)

C, D = Runtime.CONTAINERD, Runtime.DOCKERD
T0 = 1_700_000_000.0
DEGRADED, LEAK = ConditionType.DEGRADED, ConditionType.MEMORY_LEAK
CHECKS = [(C, Check.PROCESS), (C, Check.CRI_LIST_POD_SANDBOX), (C, Check.CRI_LIST_CONTAINERS),
          (D, Check.DOCKER_INFO)]


def counts(*, k8s: int = 0, moby: int = 0, ready: int = 0, sandboxes: int | None = None,
           running: int = 0, docker_running: int = 0, docker_paused: int = 0,
           at: float = T0, failed: frozenset[Check] = frozenset(),
           pids: str = "") -> list[Observation]:
    """One round: the containerd process check last, as the judge steps on it."""
    def obs(runtime: Runtime, check: Check, values: dict[str, float],
            info: dict[str, str] | None = None) -> Observation:
        if check in failed:
            return Observation(runtime, check, Outcome.HUNG, 3.0, at)
        return Observation(runtime, check, Outcome.OK, 0.01, at, values=values, info=info or {})

    return [
        obs(C, Check.CRI_LIST_POD_SANDBOX, {
            Value.POD_SANDBOXES: float(ready if sandboxes is None else sandboxes),
            Value.POD_SANDBOXES_READY: float(ready)}),
        obs(C, Check.CRI_LIST_CONTAINERS, {Value.CONTAINERS_RUNNING: float(running)}),
        obs(D, Check.DOCKER_INFO, {Value.CONTAINERS_RUNNING: float(docker_running),
                                   Value.CONTAINERS_PAUSED: float(docker_paused)}),
        obs(C, Check.PROCESS, {Value.SHIMS: float(k8s + moby), Value.SHIMS_K8S: float(k8s),
                               Value.SHIMS_MOBY: float(moby)},
            {"shim_pids_k8s.io": pids} if pids else None),
    ]


def feed(judge: Judge, rounds: list[list[Observation]]) -> None:
    for round_ in rounds:
        for o in round_:
            judge.observe(o, now=o.at)


def degraded(judge: Judge) -> tuple[Status, str, str]:
    cond = judge.conditions()[DEGRADED]
    return cond.status, cond.reason, cond.message


# ---- what each namespace should count ---------------------------------------------------------


def test_a_pod_is_one_shim_and_its_containers_share_it() -> None:
    found = tallies(counts(k8s=2, ready=2, running=5, moby=3, docker_running=2, docker_paused=1))
    assert [(t.namespace, t.shims, t.expected, t.surplus) for t in found] == [
        ("k8s.io", 2, 2, 0), ("moby", 3, 3, 0)]


def test_a_not_ready_sandbox_with_a_running_container_keeps_its_shim() -> None:
    (k8s, _) = tallies(counts(k8s=3, ready=2, sandboxes=4, running=1))
    assert (k8s.expected, k8s.surplus) == (3, 0)
    assert k8s.basis == "2 ready pod sandboxes and 1 not ready with a running container"


def test_a_deficit_is_never_a_surplus() -> None:
    # dockerd on its own containerd: its shims serve another socket
    (_, moby) = tallies(counts(moby=0, docker_running=7))
    assert moby == Tally("moby", 0, 7, "7 running or paused docker containers")
    assert moby.surplus == 0


def test_a_namespace_is_judged_only_when_all_its_counts_answered() -> None:
    assert [t.namespace for t in tallies(counts(k8s=3, failed=frozenset(
        {Check.CRI_LIST_POD_SANDBOX})))] == ["moby"]
    assert [t.namespace for t in tallies(counts(k8s=3, failed=frozenset(
        {Check.CRI_LIST_CONTAINERS, Check.DOCKER_INFO})))] == []
    assert tallies(counts(k8s=3, failed=frozenset({Check.PROCESS}))) == ()
    no_cri = [o for o in counts(k8s=3) if o.check is not Check.CRI_LIST_POD_SANDBOX]
    assert [t.namespace for t in tallies(no_cri)] == ["moby"]


# ---- hysteresis in the agent's judge -----------------------------------------------------------


def test_orphans_raise_after_four_process_checks_and_name_count_pids_and_what_to_do() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    rounds = [counts(k8s=3, ready=1, running=2, pids="101,102,103", at=T0 + 15 * i)
              for i in range(4)]
    feed(judge, rounds[:3])
    assert degraded(judge)[:2] == (Status.FALSE, Reason.NOT_DEGRADED)
    feed(judge, rounds[3:])
    status, reason, message = degraded(judge)
    assert (status, reason) == (Status.TRUE, Reason.CONTAINERD_ORPHANED_SHIMS)
    assert message.startswith(
        "containerd runs 3 shims in namespace k8s.io for 1 ready pod sandboxes: 2 orphaned "
        "(shim pids, oldest first: 101, 102, 103), over 4 process checks in a row.")
    assert "ctr -n <namespace> tasks ls" in message and "kill those shims" in message
    # the pods are back in step: cleared after judge.clearAfter (3) checks
    feed(judge, [counts(k8s=1, ready=1, running=2, at=T0 + 60 + 15 * i) for i in range(2)])
    assert degraded(judge)[1] == Reason.CONTAINERD_ORPHANED_SHIMS
    feed(judge, [counts(k8s=1, ready=1, running=2, at=T0 + 200)])
    assert degraded(judge)[:2] == (Status.FALSE, Reason.NOT_DEGRADED)


def test_start_and_stop_races_and_canary_runs_never_raise() -> None:
    """Three of four checks see a shim more than the lists (a pod starting between the calls,
    a canary's sandbox, a container stopping), never 4 in a row in one namespace."""
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    for i in range(40):
        k8s, moby = 5 + (i % 4 in (1, 2)), 1 + (i % 4 in (2, 3))  # two in a row in each
        feed(judge, [counts(k8s=k8s, ready=5, running=9, moby=moby, docker_running=1,
                            at=T0 + 15 * i)])
        assert degraded(judge)[:2] == (Status.FALSE, Reason.NOT_DEGRADED), i


def test_unknown_counts_hold_still() -> None:
    """CRI hung: the k8s.io surplus cannot be judged; three of four checks do not raise."""
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    cri = frozenset({Check.CRI_LIST_POD_SANDBOX})
    feed(judge, [counts(k8s=3, ready=1, at=T0),
                 counts(k8s=3, ready=1, at=T0 + 15),
                 counts(k8s=3, at=T0 + 30, failed=cri),
                 counts(k8s=3, at=T0 + 45, failed=cri),
                 counts(k8s=3, ready=1, at=T0 + 60)])
    assert degraded(judge)[1] != Reason.CONTAINERD_ORPHANED_SHIMS
    feed(judge, [counts(k8s=3, ready=1, at=T0 + 75)])
    assert degraded(judge)[1] == Reason.CONTAINERD_ORPHANED_SHIMS


def test_the_number_of_checks_is_configurable() -> None:
    config = load(None, overrides={"judge.orphanedShimChecks": 2})
    judge = Judge(config, expected=CHECKS, now=T0)
    feed(judge, [counts(moby=2, docker_running=1, at=T0 + 15 * i) for i in range(2)])
    status, reason, message = degraded(judge)
    assert (status, reason) == (Status.TRUE, Reason.CONTAINERD_ORPHANED_SHIMS)
    assert "2 shims in namespace moby for 1 running or paused docker containers: 1 orphaned" \
        in message


# ---- the leak: shims grow, pods stay flat ------------------------------------------------------


def test_shims_growing_with_flat_pods_is_a_shim_leak() -> None:
    config = load(None, overrides={"judge.orphanedShimChecks": 1000})  # the leak alone
    judge = Judge(config, expected=CHECKS, now=T0)
    for i in range(0, 241):  # an hour at 15 s: one more shim every 6 minutes, 10 pods
        feed(judge, [counts(k8s=10 + i // 24, ready=10, running=20, at=T0 + 15 * i)])
    cond = judge.conditions()[LEAK]
    assert (cond.status, cond.reason) == (Status.TRUE, Reason.CONTAINERD_SHIM_LEAK)
    assert cond.message.startswith("containerd shims beyond its pods and containers grew from")


def test_shims_growing_with_their_pods_is_no_leak() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    for i in range(0, 241):
        pods = 10 + i // 6
        feed(judge, [counts(k8s=pods, ready=pods, running=2 * pods, at=T0 + 15 * i)])
    assert judge.conditions()[LEAK].status is Status.FALSE
    assert degraded(judge)[0] is Status.FALSE


def test_a_step_of_orphans_that_stays_flat_is_no_leak_but_orphans() -> None:
    judge = Judge(Config.defaults(), expected=CHECKS, now=T0)
    for i in range(0, 241):
        feed(judge, [counts(k8s=10 + 3 * (i >= 120), ready=10, running=20, at=T0 + 15 * i)])
    assert judge.conditions()[LEAK].status is Status.FALSE
    assert degraded(judge)[1] == Reason.CONTAINERD_ORPHANED_SHIMS
