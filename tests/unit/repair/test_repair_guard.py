"""The agent's admission-guard rule (repair/guard.py): what counts as in place, how often it
asks, and that an API blip keeps the last answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from nodeprobe.repair.guard import AdmissionGuard, missing

NAME = "np-noderemediations"
POLICY: dict[str, Any] = {"metadata": {"name": NAME}}


def binding(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": NAME},
            "spec": {"policyName": NAME, "validationActions": ["Deny"], **spec}}


def test_the_guard_is_in_place_only_with_a_denying_binding_of_the_policy() -> None:
    assert missing(POLICY, binding(), name=NAME) is None
    assert missing(POLICY, binding(validationActions=["Audit", "Deny"]), name=NAME) is None
    assert missing(None, binding(), name=NAME) == (
        f"ValidatingAdmissionPolicy {NAME} is not there")
    assert missing(POLICY, None, name=NAME) == (
        f"ValidatingAdmissionPolicyBinding {NAME} is not there")
    assert "binds policy 'other'" in str(missing(POLICY, binding(policyName="other"), name=NAME))
    assert "does not deny (validationActions ['Warn', 'Audit'])" in str(
        missing(POLICY, binding(validationActions=["Warn", "Audit"]), name=NAME))
    assert "does not deny" in str(missing(POLICY, {"metadata": {}, "spec": {
        "policyName": NAME}}, name=NAME))
    assert "repair.admissionGuard is empty" in str(missing(POLICY, binding(), name=""))


class Api:
    def __init__(self) -> None:
        self.calls = 0
        self.reply: tuple[Mapping[str, Any] | None, Mapping[str, Any] | None] = (POLICY,
                                                                               binding())
        self.error: OSError | None = None

    def fetch(self, name: str) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        assert name == NAME
        self.calls += 1
        if self.error:
            raise self.error
        return self.reply


def test_asks_at_most_once_a_minute_and_keeps_the_last_answer_through_a_blip(
        caplog: pytest.LogCaptureFixture) -> None:
    api, clock, seen = Api(), [0.0], []
    guard = AdmissionGuard(api.fetch, name=NAME, monotonic=lambda: clock[0],
                           on_change=seen.append)
    assert guard.check() is None and api.calls == 1 and seen == [True]
    api.reply = (POLICY, None)
    clock[0] = 59.0
    assert guard.check() is None and api.calls == 1  # not asked again within the minute
    clock[0] = 60.0
    assert guard.check() == f"ValidatingAdmissionPolicyBinding {NAME} is not there"
    assert seen == [True, False]
    clock[0] = 120.0
    guard.check()
    assert seen == [True, False]  # unchanged: not logged or reported again
    assert sum("not in place" in r.message for r in caplog.records) == 1
    api.reply, api.error = (POLICY, binding()), OSError("connection refused")
    clock[0] = 180.0
    assert guard.check() == f"ValidatingAdmissionPolicyBinding {NAME} is not there"
    api.error = None
    clock[0] = 240.0
    assert guard.check() is None and seen == [True, False, True]


def test_before_any_answer_an_api_error_refuses() -> None:
    api = Api()
    api.error = OSError("connection refused")
    guard = AdmissionGuard(api.fetch, name=NAME, monotonic=lambda: 0.0)
    assert "cannot ask whether the admission guard" in str(guard.check())
