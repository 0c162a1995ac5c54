"""Is the admission guard on NodeRemediations in place? Without it the operator acts on nothing.

A NodeRemediation starts a repair, so only the operator may open one and nobody may rewrite its
spec or revive a finished one: the chart's ValidatingAdmissionPolicy
(`<release>-noderemediations`) enforces that. RBAC alone does not (GitOps and CI identities
often hold it on every CRD). The check asks the API server itself: a dry-run create labelled
`nodeprobe.io/admission-check`, which that policy refuses for everyone with a known message.
Admitted, or refused for another reason, means no guard: the operator then starts, advances
and releases nothing, says why in its log, and sets `nodeprobe_operator_admission_guard` to 0.
This proves the policy is bound and denying, not merely that an object with its name exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.names import GROUP, REMEDIATION_PLURAL, VERSION

log = logging.getLogger(__name__)

CHECK_LABEL = f"{GROUP}/admission-check"
MARKER = "nodeprobe-admission-check"
"""In the policy's refusal message: the refusal came from our guard, not something else."""
PROBE_NAME = "nodeprobe-guard-probe"
"""Not the marker: a refusal that names the object must not pass for the guard's."""
RECHECK_S = 60.0
"""How often the guard is asked again (a dry-run create is cheap and writes nothing)."""
MISSING = ("the admission policy that keeps NodeRemediations to the operator is not in place "
           "({why}); the operator acts on nothing until it is. Install the chart's "
           "ValidatingAdmissionPolicy <release>-noderemediations and its binding (Kubernetes "
           ">= 1.30)")


def probe(kube: Kube) -> str | None:
    """None while the guard refuses the probe; else why it is considered missing. Raises
    `KubeError` (status 0) when the API server cannot be asked at all."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NodeRemediation",
            "metadata": {"name": PROBE_NAME, "labels": {CHECK_LABEL: "true"}},
            "spec": {"nodeName": PROBE_NAME, "policy": PROBE_NAME}}
    try:
        kube.request("POST", f"/apis/{GROUP}/{VERSION}/{REMEDIATION_PLURAL}",
                     query={"dryRun": "All"}, body=body)
    except KubeError as e:
        if e.status == 0:
            raise
        if e.status == 403 and MARKER in str(e):
            return None
        return MISSING.format(why=f"a dry-run create was refused, but not by it: {e}")
    return MISSING.format(why="a dry-run create labelled nodeprobe.io/admission-check was "
                              "admitted")


class Guard:
    """Asks `probe` at most every `recheck_s`; remembers the answer in between."""

    def __init__(self, kube: Kube, *, recheck_s: float = RECHECK_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.recheck_s = recheck_s
        self.monotonic = monotonic
        self._asked: float | None = None
        self.missing: str | None = None

    def check(self) -> str | None:
        """Why the operator must not act now, or None when the guard is in place."""
        now = self.monotonic()
        if self._asked is not None and now - self._asked < self.recheck_s:
            return self.missing
        try:
            missing = probe(self.kube)
        except KubeError as e:
            log.warning("cannot ask whether the admission guard is in place: %s", e)
            if self._asked is not None:
                return self.missing  # the last answer stands until the API answers again
            return f"cannot ask whether the admission guard is in place yet: {e}"
        first, self._asked = self._asked is None, now
        if first or missing != self.missing:
            if missing:
                log.error("%s", missing)
            else:
                log.info("admission guard on NodeRemediations in place")
        self.missing = missing
        return missing
