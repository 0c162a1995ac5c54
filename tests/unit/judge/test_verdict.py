"""The one-shot verdict of `nodeprobe check`, on hand-made observations."""

from __future__ import annotations

from nodeprobe.judge.verdict import SUMMARY_MAX, verdict
from nodeprobe.model import Check, Outcome, Reason, Value
from tests.unit.judge.test_attribution import C, D, healthy_round, obs


def test_verdict_unknown_when_nothing_probed() -> None:
    v = verdict([])
    assert (v.code, v.reason) == (2, Reason.UNKNOWN)
    assert v.summary.startswith("unknown: no container runtime found")


def test_verdict_healthy_names_versions() -> None:
    round_ = healthy_round()
    round_[0] = obs(D, Check.DOCKER_PING, info={"version": "20.10.24"})
    round_[3] = obs(C, Check.CRI_VERSION, info={"version": "1.6.20"})
    v = verdict(round_)
    assert (v.code, v.reason) == (0, Reason.HEALTHY)
    assert v.summary == "dockerd 20.10.24 and containerd 1.6.20 answer normally (8 checks)"


def test_verdict_healthy_but_slow_says_so() -> None:
    round_ = healthy_round()
    round_[2] = obs(D, Check.DOCKER_INFO, Outcome.SLOW, latency=2.5)
    v = verdict(round_)
    assert v.code == 0 and v.summary.endswith("; 1 slow, worst dockerd GET /info 2.5s")


def test_verdict_problem_is_one_short_line() -> None:
    round_ = healthy_round(
        cri_list_pod_sandbox=Outcome.HUNG,
        cri_status=Outcome.HUNG,
        docker_version=Outcome.HUNG,
        docker_info=Outcome.HUNG,
    )
    v = verdict(round_)
    assert (v.code, v.reason) == (1, Reason.CONTAINERD_HUNG)
    assert v.summary.startswith("containerd is hung: CRI Status, ListPodSandbox did not answer")
    assert "dockerd fails because of it" in v.summary
    assert "\n" not in v.summary and len(v.summary) <= SUMMARY_MAX


def test_verdict_long_detail_is_cut() -> None:
    round_ = [obs(D, Check.DOCKER_PING, Outcome.ERROR, detail="x" * 500)]
    v = verdict(round_)
    assert v.code == 1 and len(v.summary) <= SUMMARY_MAX


def test_verdict_ceiling_breach() -> None:
    round_ = healthy_round()
    round_.append(obs(D, Check.PROCESS, values={Value.RSS_ANON_BYTES: 3 * 2**30}))
    v = verdict(round_)
    assert (v.code, v.reason) == (1, Reason.DOCKERD_MEMORY_CEILING)
    assert v.summary == "dockerd RssAnon is 3.0 GiB, above its ceiling of 2.0 GiB"
    v = verdict(
        [*round_[:-1], obs(D, Check.PROCESS, values={Value.RSS_ANON_BYTES: 2**30})],
        node_memory_bytes=2 * 2**30,
    )
    assert v.reason == Reason.DOCKERD_MEMORY_CEILING
    assert "(25 % of node memory 2.0 GiB)" in v.summary


def test_verdict_one_runtime_only() -> None:
    only = [o for o in healthy_round() if o.runtime is C]
    assert verdict(only).summary == "containerd answers normally (5 checks)"
