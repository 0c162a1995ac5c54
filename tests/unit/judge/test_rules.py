"""Root-cause attribution and the one-shot verdict, on hand-made observations."""

from __future__ import annotations

from nodeprobe.config import Config, load
from nodeprobe.judge.rules import (
    SUMMARY_MAX,
    attribute,
    problem_of,
    verdict,
)
from nodeprobe.model import Check, Observation, Outcome, Reason, Runtime, Value

D, C = Runtime.DOCKERD, Runtime.CONTAINERD
T0 = 1_700_000_000.0
DOCKER_CHECKS = (Check.DOCKER_PING, Check.DOCKER_VERSION, Check.DOCKER_INFO)
CRI_CHECKS = (
    Check.CRI_VERSION,
    Check.CRI_STATUS,
    Check.CRI_LIST_POD_SANDBOX,
    Check.CRI_LIST_CONTAINERS,
    Check.CRI_IMAGE_FS_INFO,
)


def obs(
    runtime: Runtime,
    check: Check,
    outcome: Outcome = Outcome.OK,
    *,
    latency: float = 0.002,
    detail: str = "",
    values: dict[str, float] | None = None,
    info: dict[str, str] | None = None,
) -> Observation:
    if outcome is Outcome.HUNG and latency == 0.002:
        latency = 3.0
    return Observation(runtime, check, outcome, latency, T0, detail, values or {}, info or {})


def healthy_round(**overrides: Outcome) -> list[Observation]:
    """Every default check OK, except those named (by Check value) with another outcome."""
    out = []
    for runtime, checks in ((D, DOCKER_CHECKS), (C, CRI_CHECKS)):
        for check in checks:
            outcome = overrides.get(check.value, Outcome.OK)
            detail = {
                Outcome.DOWN: "connect: connection refused",
                Outcome.ERROR: "500 Internal Server Error",
            }.get(outcome, "")
            out.append(obs(runtime, check, outcome, detail=detail))
    return out


def problems(observations: list[Observation], streak: int = 0) -> list:
    cfg = Config.defaults()
    found = [
        problem_of(o, settings=cfg.judge, require_network_ready=True, streak=streak)
        for o in observations
    ]
    return [p for p in found if p is not None]


def cause(observations: list[Observation], streak: int = 0):
    result = attribute(problems(observations, streak), seen={o.runtime for o in observations})
    assert result is not None
    return result


def test_dockerd_hung_while_containerd_answers() -> None:
    got = cause(healthy_round(docker_ping=Outcome.HUNG), streak=4)
    assert got.reason is Reason.DOCKERD_HUNG and got.runtime is D
    assert got.message == (
        "dockerd is hung: GET /_ping did not answer within 3s, "
        "4 checks in a row; containerd answers normally"
    )


def test_containerd_list_hang_with_version_ok_is_containerd_hung() -> None:
    """The containerd 1.7.0 deadlock: Version answers, the List calls do not."""
    got = cause(
        healthy_round(
            cri_list_pod_sandbox=Outcome.HUNG,
            cri_list_containers=Outcome.HUNG,
            docker_version=Outcome.HUNG,
        )
    )
    assert got.reason is Reason.CONTAINERD_HUNG
    assert got.message == (
        "containerd is hung: CRI ListPodSandbox, ListContainers did not answer within 3s; "
        "CRI Version answers; dockerd fails because of it (GET /version)"
    )


def test_both_hung_blames_containerd() -> None:
    got = cause(healthy_round(**{c.value: Outcome.HUNG for c in DOCKER_CHECKS + CRI_CHECKS}))
    assert got.reason is Reason.CONTAINERD_HUNG
    assert "dockerd fails too (GET /_ping, GET /version, GET /info)" in got.message
    assert "CRI Version answers" not in got.message


def test_containerd_down() -> None:
    got = cause(
        healthy_round(**{c.value: Outcome.DOWN for c in CRI_CHECKS}, docker_version=Outcome.ERROR)
    )
    assert got.reason is Reason.CONTAINERD_DOWN
    assert got.message.startswith("containerd is down: CRI Version: connect: connection refused")
    assert got.message.endswith("dockerd fails because of it (GET /version)")


def test_dockerd_down() -> None:
    got = cause(healthy_round(**{c.value: Outcome.DOWN for c in DOCKER_CHECKS}))
    assert got.reason is Reason.DOCKERD_DOWN
    assert got.message == (
        "dockerd is down: GET /_ping: connect: connection refused; containerd answers normally"
    )


def test_dockerd_version_error_with_ping_ok_points_at_the_containerd_path() -> None:
    got = cause(healthy_round(docker_version=Outcome.ERROR))
    assert got.reason is Reason.DOCKERD_ERROR
    assert "GET /_ping answers, so dockerd runs but its calls into containerd fail" in got.message


def test_dockerd_alone_without_containerd_seen() -> None:
    only = [o for o in healthy_round(docker_ping=Outcome.HUNG) if o.runtime is D]
    assert cause(only).message == "dockerd is hung: GET /_ping did not answer within 3s"


def test_cri_runtime_not_ready() -> None:
    status = obs(
        C,
        Check.CRI_STATUS,
        values={Value.RUNTIME_READY: 0.0, Value.NETWORK_READY: 1.0},
        detail="RuntimeReady=false reason=ContainerdNotReady",
    )
    got = cause([status])
    assert got.reason is Reason.CRI_NOT_READY
    assert "RuntimeReady=false" in got.message

def test_cri_status_that_did_not_answer_is_not_called_not_ready() -> None:
    """Only what was observed: a Status call that failed said nothing about RuntimeReady."""
    failed = obs(C, Check.CRI_STATUS, Outcome.ERROR, detail="CRI Status failed: INTERNAL: boom")
    got = cause([failed])
    assert got.reason is Reason.CONTAINERD_ERROR
    assert "RuntimeReady" not in got.message and "INTERNAL: boom" in got.message
    assert "RuntimeReady" not in verdict([failed]).summary


def test_cri_network_not_ready_respects_config() -> None:
    status = obs(
        C,
        Check.CRI_STATUS,
        Outcome.ERROR,
        values={Value.RUNTIME_READY: 1.0, Value.NETWORK_READY: 0.0},
        detail="cni config uninit",
    )
    assert cause([status]).reason is Reason.CRI_NETWORK_NOT_READY
    lax = load(None, overrides={"containerd.requireNetworkReady": False})
    assert problem_of(status, settings=lax.judge, require_network_ready=False) is None
    assert verdict([status], config=lax).code == 0


def test_image_fs_stats_stale() -> None:
    stale = obs(C, Check.CRI_IMAGE_FS_INFO, values={Value.IMAGE_FS_TIMESTAMP_SECONDS: T0 - 600})
    got = cause([stale])
    assert got.reason is Reason.IMAGE_FS_STATS_STALE
    assert "600s old" in got.message
    fresh = obs(C, Check.CRI_IMAGE_FS_INFO, values={Value.IMAGE_FS_TIMESTAMP_SECONDS: T0 - 5})
    assert problems([fresh]) == []


def test_not_ready_ranks_below_a_dockerd_hang() -> None:
    round_ = healthy_round(docker_ping=Outcome.HUNG)
    round_.append(
        obs(C, Check.CRI_STATUS, values={Value.RUNTIME_READY: 1.0, Value.NETWORK_READY: 0.0})
    )
    got = cause(round_)
    assert got.reason is Reason.DOCKERD_HUNG
    assert "containerd: CRI Status says NetworkReady=false" in got.message


def test_slow_is_not_a_problem() -> None:
    assert problems(healthy_round(docker_info=Outcome.SLOW)) == []
    assert attribute([], seen={D, C}) is None


# -- one-shot verdict ------------------------------------------------------------------------


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


def test_process_gone_is_down() -> None:
    gone = obs(D, Check.PROCESS, Outcome.DOWN, detail="no dockerd process under /proc")
    got = cause([*healthy_round(), gone])
    assert got.reason is Reason.DOCKERD_DOWN
    assert got.message.startswith("dockerd is down: the process check: no dockerd process")
