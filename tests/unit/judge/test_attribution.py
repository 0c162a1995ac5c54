"""Root-cause attribution, on hand-made observations."""

from __future__ import annotations

from nodeprobe.config import Config, load
from nodeprobe.judge.attribution import attribute, problem_of
from nodeprobe.judge.verdict import verdict
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


def test_process_gone_is_down() -> None:
    gone = obs(D, Check.PROCESS, Outcome.DOWN, detail="no dockerd process under /proc")
    got = cause([*healthy_round(), gone])
    assert got.reason is Reason.DOCKERD_DOWN
    assert got.message.startswith("dockerd is down: the process check: no dockerd process")


def test_version_hung_while_ping_answers_late_says_slow_not_broken_path() -> None:
    found = problems(healthy_round(docker_version=Outcome.HUNG), streak=2)
    got = attribute(found, seen={D, C}, late={Check.DOCKER_PING})
    assert got is not None and got.reason is Reason.DOCKERD_HUNG
    assert "GET /_ping answers only after its deadline: dockerd is slow, not hung" in got.message
    assert "calls into containerd fail" not in got.message
