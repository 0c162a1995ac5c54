"""Root-cause attribution: which check failed how, and which runtime is the cause.

Facts this rests on (DESIGN 2a): GET /_ping touches no daemon state, so a /_ping failure is
dockerd itself; GET /version goes through containerd; CRI Version answers even when the List
calls hang (containerd 1.7.0's deadlock), so Version OK + List hung is still containerd hung.
When containerd is hung or down, dockerd's failures are its consequence: containerd is the cause.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from nodeprobe.config import JudgeSettings
from nodeprobe.model import Check, Observation, Outcome, Reason, Runtime, Value

CALLS: Mapping[Check, str] = {
    Check.DOCKER_PING: "GET /_ping",
    Check.DOCKER_VERSION: "GET /version",
    Check.DOCKER_INFO: "GET /info",
    Check.CRI_VERSION: "CRI Version",
    Check.CRI_STATUS: "CRI Status",
    Check.CRI_LIST_POD_SANDBOX: "CRI ListPodSandbox",
    Check.CRI_LIST_CONTAINERS: "CRI ListContainers",
    Check.CRI_IMAGE_FS_INFO: "CRI ImageFsInfo",
    Check.PROCESS: "the process check",
    Check.CANARY: "the container start canary",
    Check.DISK: "the disk check",
    Check.RUNTIME_LOG: "the runtime log check",
}

_OWN_REASON = {
    Runtime.DOCKERD: {
        Outcome.HUNG: Reason.DOCKERD_HUNG,
        Outcome.DOWN: Reason.DOCKERD_DOWN,
        Outcome.ERROR: Reason.DOCKERD_ERROR,
    },
    Runtime.CONTAINERD: {
        Outcome.HUNG: Reason.CONTAINERD_HUNG,
        Outcome.DOWN: Reason.CONTAINERD_DOWN,
        Outcome.ERROR: Reason.CONTAINERD_ERROR,
    },
}
CANARY_REASON: Mapping[str, Reason] = {
    "sandbox": Reason.POD_SANDBOX_START_FAILED,
    "create": Reason.CONTAINER_CREATE_FAILED,
    "start": Reason.CONTAINER_START_FAILED,
    "remove": Reason.CONTAINER_REMOVE_FAILED,
}
"""The canary's failed step -> reason; steps not listed (image, setup) are set-up problems."""

_SPECIAL_ORDER = (
    Reason.CRI_NOT_READY,
    Reason.CONTAINERD_ERROR,
    Reason.CRI_NETWORK_NOT_READY,
    Reason.IMAGE_FS_STATS_STALE,
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One check that failed (after reinterpretation), with a phrase saying how."""

    runtime: Runtime
    check: Check
    outcome: Outcome
    reason: Reason
    """What this check alone would be called; attribution may pick another cause."""
    text: str
    latency_s: float = 0.0
    streak: int = 0
    """Failures in a row (0 = unknown, as in one-shot)."""


@dataclass(frozen=True, slots=True)
class Cause:
    reason: Reason
    message: str
    runtime: Runtime


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class StaleBound:
    """How old ImageFsInfo stats may get, and why (for the message)."""

    seconds: float
    basis: str


def first_stale_bound(settings: JudgeSettings) -> StaleBound:
    """The bound before any refresh has been seen: a raised stats_collect_period is unknown yet."""
    bound = settings.image_fs_stale_after * settings.image_fs_stale_factor
    return StaleBound(bound, "no refresh seen yet")


def stale_bound(settings: JudgeSettings, period_s: float | None) -> StaleBound:
    """`imageFsStaleAfter`, or `imageFsStaleFactor` observed refresh periods if that is longer."""
    if period_s is None:
        return first_stale_bound(settings)
    by_period = settings.image_fs_stale_factor * period_s
    if by_period > settings.image_fs_stale_after:
        return StaleBound(by_period, f"{settings.image_fs_stale_factor:g} x the refresh period "
                                     f"seen, {period_s:.0f}s")
    return StaleBound(settings.image_fs_stale_after, f"refreshes seen every {period_s:.0f}s")


def problem_of(
    obs: Observation,
    *,
    settings: JudgeSettings,
    require_network_ready: bool,
    streak: int = 0,
    stale: StaleBound | None = None,
) -> Problem | None:
    """The problem this observation shows, or None. Reinterprets CRI Status readiness and stale
    ImageFsInfo stats, which answer 'OK' at the RPC level but mean trouble. `stale` is the
    bound the caller derived from the refreshes it saw (default: none seen)."""
    if obs.check is Check.CRI_STATUS and obs.outcome in (Outcome.OK, Outcome.SLOW, Outcome.ERROR):
        return _not_ready(obs, streak, require_network_ready=require_network_ready)
    stamp = obs.values.get(Value.IMAGE_FS_TIMESTAMP_SECONDS)
    if obs.check is Check.CRI_IMAGE_FS_INFO and not obs.outcome.failed and stamp is not None:
        return _stale_stats(obs, streak, age=obs.at - stamp,
                            bound=stale or first_stale_bound(settings))
    if not obs.outcome.failed or obs.check in (Check.DISK, Check.RUNTIME_LOG):
        return None  # disk and log readings are judged by judge/degraded.py
    if obs.check is Check.CANARY:
        return _canary_problem(obs, streak)
    return _failed_call(obs, streak)


def _reinterpreted(obs: Observation, reason: Reason, text: str, streak: int) -> Problem:
    """An answer that came back but means trouble: an error under `reason`."""
    return Problem(obs.runtime, obs.check, Outcome.ERROR, reason, text, obs.latency_s, streak)


def _not_ready(obs: Observation, streak: int, *, require_network_ready: bool) -> Problem | None:
    """What CRI Status says of readiness; a failed call said nothing, so it is only a failure."""
    runtime_ready = obs.values.get(Value.RUNTIME_READY)
    if runtime_ready is None and obs.outcome is Outcome.ERROR:
        # the call failed: it said nothing about readiness, so do not claim it did
        return _failed_call(obs, streak)
    if runtime_ready == 0.0:
        text = f"CRI Status says RuntimeReady=false: {_short(obs.detail)}"
        return _reinterpreted(obs, Reason.CRI_NOT_READY, text, streak)
    if obs.values.get(Value.NETWORK_READY) == 0.0 and require_network_ready:
        text = f"CRI Status says NetworkReady=false (CNI not ready): {_short(obs.detail)}"
        return _reinterpreted(obs, Reason.CRI_NETWORK_NOT_READY, text, streak)
    return None


def _stale_stats(obs: Observation, streak: int, *, age: float, bound: StaleBound) -> Problem | None:
    """ImageFsInfo answers with stats a syncer refreshes: older than `bound`, it is stuck."""
    if age > bound.seconds:
        text = (
            f"CRI ImageFsInfo stats are {age:.0f}s old (stale after {bound.seconds:.0f}s, "
            f"{bound.basis}): containerd's stats syncer is stuck"
        )
        return _reinterpreted(obs, Reason.IMAGE_FS_STATS_STALE, text, streak)
    return None


def _failed_call(obs: Observation, streak: int) -> Problem:
    call = CALLS[obs.check]
    if obs.outcome is Outcome.HUNG:
        text = f"did not answer {call} within {obs.latency_s:.3g}s"
    elif obs.outcome is Outcome.DOWN:
        # longer: why it is not there (e.g. a directory where the socket should be) is the news
        text = f"{call}: {_short(obs.detail, 170) or 'not there'}"
    else:
        text = f"{call} failed: {_short(obs.detail) or 'bad answer'}"
    reason = _OWN_REASON[obs.runtime][obs.outcome]
    return Problem(obs.runtime, obs.check, obs.outcome, reason, text, obs.latency_s, streak)


def _canary_problem(obs: Observation, streak: int) -> Problem | None:
    reason = CANARY_REASON.get(obs.info.get("step", ""))
    if reason is None:
        return None  # the image is missing or the runtime lacks the calls: set-up, not a fault
    return Problem(obs.runtime, obs.check, obs.outcome, reason, _short(obs.detail, 160),
                   obs.latency_s, streak)


def _calls(problems: Sequence[Problem]) -> str:
    names = [CALLS[p.check] for p in problems]
    if len(names) > 1 and all(n.startswith("CRI ") for n in names):
        return "CRI " + ", ".join(n[4:] for n in names)
    return ", ".join(names)


def _streak(problems: Iterable[Problem]) -> str:
    best = max((p.streak for p in problems), default=0)
    return f", {best} checks in a row" if best > 1 else ""


def _describe(runtime: Runtime, problems: Sequence[Problem]) -> tuple[Outcome, str]:
    """'dockerd did not answer GET /_ping within 3s, 4 checks in a row' and the worst outcome."""
    worst = max((p.outcome for p in problems), key=lambda o: o.severity)
    if worst is Outcome.HUNG:
        hung = [p for p in problems if p.outcome is Outcome.HUNG]
        wait = max(p.latency_s for p in hung)
        return worst, (
            f"{runtime} is hung: {_calls(hung)} did not answer within {wait:.3g}s{_streak(hung)}"
        )
    if worst is Outcome.DOWN:
        down = next(p for p in problems if p.outcome is Outcome.DOWN)
        return worst, f"{runtime} is down: {down.text}{_streak([down])}"
    return worst, f"{runtime}: {problems[0].text}{_streak(problems)}"


def attribute(
    problems: Sequence[Problem], *, seen: Collection[Runtime], late: Collection[Check] = (),
    fresh: Collection[tuple[Runtime, Check]] | None = None,
) -> Cause | None:
    """The one cause behind these problems, worded for a person; None when there are none.

    `seen` lists the runtimes that were probed at all, so the message can say which answer fine;
    `late` the checks that answer, but only after their deadline (slow, not hung); `fresh` the
    checks that answered since the failures began (None: every answer is fresh, as in a one-shot
    check), so a call is said to answer only from an answer that came during the fault.
    """
    if not problems:
        return None
    api = [p for p in problems if p.check is not Check.CANARY]
    if not api:  # only the canary fails: the API answers, the container path does not
        first = problems[0]
        return Cause(first.reason, f"{first.runtime}: {first.text}{_streak([first])}",
                     first.runtime)
    problems = api  # an API failure explains a failing canary
    docker = [p for p in problems if p.runtime is Runtime.DOCKERD]
    cont = [p for p in problems if p.runtime is Runtime.CONTAINERD]
    cont_core = [p for p in cont if p.outcome in (Outcome.HUNG, Outcome.DOWN)]
    if cont_core:
        return _containerd_cause(cont_core, cont=cont, docker=docker, seen=seen, fresh=fresh)
    if docker:
        return _dockerd_cause(docker, cont=cont, seen=seen, late=late)
    first = min(cont, key=lambda p: _SPECIAL_ORDER.index(p.reason))
    return Cause(first.reason, f"containerd: {first.text}{_streak([first])}", Runtime.CONTAINERD)


def _containerd_cause(
    core: Sequence[Problem], *, cont: Sequence[Problem], docker: Sequence[Problem],
    seen: Collection[Runtime], fresh: Collection[tuple[Runtime, Check]] | None,
) -> Cause:
    """containerd hung or down is the root cause; dockerd's failures are said as its effect."""
    worst, text = _describe(Runtime.CONTAINERD, core)
    version = (Runtime.CONTAINERD, Check.CRI_VERSION)
    if (worst is Outcome.HUNG and not any(p.check is Check.CRI_VERSION for p in cont)
            and (fresh is None or version in fresh)):
        text += "; CRI Version answers"
    if docker:
        own = any(p.check is Check.DOCKER_PING for p in docker)
        text += (
            f"; dockerd fails too ({_calls(docker)})"
            if own
            else f"; dockerd fails because of it ({_calls(docker)})"
        )
    elif Runtime.DOCKERD in seen:
        text += "; dockerd answers"
    return Cause(_OWN_REASON[Runtime.CONTAINERD][worst], text, Runtime.CONTAINERD)


def _dockerd_cause(
    docker: Sequence[Problem], *, cont: Sequence[Problem], seen: Collection[Runtime],
    late: Collection[Check],
) -> Cause:
    """dockerd itself fails (containerd answers, or fails only in a minor way)."""
    worst, text = _describe(Runtime.DOCKERD, docker)
    checks = {p.check for p in docker}
    if Check.DOCKER_PING not in checks and Check.DOCKER_VERSION in checks:
        text += (
            "; GET /_ping answers only after its deadline: dockerd is slow, not hung"
            if Check.DOCKER_PING in late
            else "; GET /_ping answers, so dockerd runs but its calls into containerd fail"
        )
    if cont:
        text += f"; containerd: {cont[0].text}"
    elif Runtime.CONTAINERD in seen:
        text += "; containerd answers normally"
    return Cause(_OWN_REASON[Runtime.DOCKERD][worst], text, Runtime.DOCKERD)
