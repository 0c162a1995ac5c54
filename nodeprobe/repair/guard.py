"""Is the admission guard on NodeRemediations in place? Without it the agent carries out nothing.

The chart's ValidatingAdmissionPolicy `<release>-noderemediations` and its binding keep
NodeRemediations to the operator: nobody else opens one, rewrites its spec or revives a finished
one. `verify.py`'s rules 2 and 3 lean on that (the plan in the spec is the operator's). On a
cluster without it (Kubernetes < 1.30, or the objects deleted) the agent refuses every request.

The agent cannot ask with a dry-run create as the operator does (its RBAC has no `create`), so it
GETs the policy and the binding by name and requires the binding to name the policy with a
`Deny` validation action. `missing` is the pure rule; `AdmissionGuard` does the asking at most
once per `recheck_s` and keeps its last answer through an API blip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from nodeprobe.publish.kubeclient import API_ERRORS, KubeClient, KubeError, request_json

log = logging.getLogger(__name__)

ADMISSION_API = "/apis/admissionregistration.k8s.io/v1"
RECHECK_S = 60.0
"""How often the guard is asked again (two GETs)."""
Fetch = Callable[[str], tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]
"""GET the policy and the binding named so; None for one that is not there (404)."""


def missing(policy: Mapping[str, Any] | None, binding: Mapping[str, Any] | None, *,
            name: str) -> str | None:
    """Why the guard named `name` is not in place, or None when it is."""
    if not name:
        return "repair.admissionGuard is empty: no admission guard to check"
    if policy is None:
        return f"ValidatingAdmissionPolicy {name} is not there"
    if binding is None:
        return f"ValidatingAdmissionPolicyBinding {name} is not there"
    spec = binding.get("spec") or {}
    if spec.get("policyName") != name:
        return f"binding {name} binds policy {spec.get('policyName')!r}, not {name!r}"
    actions = spec.get("validationActions") or []
    if "Deny" not in actions:
        return f"binding {name} does not deny (validationActions {list(actions)})"
    return None


class AdmissionGuard:
    """Asks `fetch` at most every `recheck_s`; remembers the answer in between and through
    errors; logs a change once and hands the state (True: in place) to `on_change`."""

    def __init__(self, fetch: Fetch, *, name: str, recheck_s: float = RECHECK_S,
                 errors: tuple[type[BaseException], ...] = API_ERRORS,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] = lambda _: None) -> None:
        self.fetch, self.name, self.recheck_s = fetch, name, recheck_s
        self.errors, self.monotonic, self.on_change = errors, monotonic, on_change
        self._asked: float | None = None
        self.why: str | None = None

    def check(self) -> str | None:
        """Why the agent must not act now, or None when the guard is in place."""
        now = self.monotonic()
        if self._asked is not None and now - self._asked < self.recheck_s:
            return self.why
        try:
            policy, binding = self.fetch(self.name)
        except self.errors as e:
            log.warning("cannot ask whether the admission guard %s is in place: %s",
                        self.name, e)
            if self._asked is not None:
                return self.why  # the last answer stands until the API answers again
            return f"cannot ask whether the admission guard {self.name} is in place yet: {e}"
        why = missing(policy, binding, name=self.name)
        first, self._asked = self._asked is None, now
        if first or why != self.why:
            if why:
                log.error("the admission guard on NodeRemediations is not in place (%s); the "
                          "agent carries out no repair until it is. Install the chart's "
                          "ValidatingAdmissionPolicy and binding (Kubernetes >= 1.30)", why)
            else:
                log.info("admission guard %s on NodeRemediations in place", self.name)
            self.on_change(why is None)
        self.why = why
        return why


def kube_fetch(api: KubeClient) -> Fetch:
    """GETs of the policy and the binding through the agent's API client (404: not there)."""

    def get(path: str) -> Mapping[str, Any] | None:
        try:
            return request_json(api, "GET", path)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def fetch(name: str) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        return (get(f"{ADMISSION_API}/validatingadmissionpolicies/{name}"),
                get(f"{ADMISSION_API}/validatingadmissionpolicybindings/{name}"))

    return fetch
