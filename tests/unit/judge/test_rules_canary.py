"""The canary's failures name their step; API failures explain a failing canary."""

from __future__ import annotations

from nodeprobe.config import Config
from nodeprobe.judge.attribution import attribute, problem_of
from nodeprobe.judge.verdict import verdict
from nodeprobe.model import Check, Observation, Outcome, Reason, Runtime

SETTINGS = Config.defaults().judge


def canary(outcome: Outcome, step: str, runtime: Runtime = Runtime.DOCKERD) -> Observation:
    return Observation(runtime, Check.CANARY, outcome, 60.0, 1000.0,
                       f"canary {step}: it went wrong", info={"step": step})


def problem(obs: Observation) -> object:
    return problem_of(obs, settings=SETTINGS, require_network_ready=False)


def test_each_step_has_its_reason() -> None:
    for step, reason in (("sandbox", Reason.POD_SANDBOX_START_FAILED),
                         ("create", Reason.CONTAINER_CREATE_FAILED),
                         ("start", Reason.CONTAINER_START_FAILED),
                         ("remove", Reason.CONTAINER_REMOVE_FAILED)):
        p = problem_of(canary(Outcome.HUNG, step), settings=SETTINGS,
                       require_network_ready=False)
        assert p is not None and p.reason is reason
        cause = attribute([p], seen={Runtime.DOCKERD})
        assert cause is not None and cause.reason is reason
        assert cause.message.startswith(f"dockerd: canary {step}")


def test_set_up_problems_raise_nothing() -> None:
    for step in ("image", "setup"):
        assert problem(canary(Outcome.ERROR, step)) is None


def test_a_hung_api_explains_the_failing_canary() -> None:
    hung = Observation(Runtime.DOCKERD, Check.DOCKER_PING, Outcome.HUNG, 3.0, 1000.0, "")
    result = verdict([hung, canary(Outcome.HUNG, "start")])
    assert result.reason == Reason.DOCKERD_HUNG
    assert verdict([canary(Outcome.HUNG, "start")]).reason == Reason.CONTAINER_START_FAILED
