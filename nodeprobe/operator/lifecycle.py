"""A RemediationPolicy's lifecycle, as kopf's handlers run it (`handlers.py` binds them).

- created, changed or seen again at start-up: validate the spec, every problem at once, into the
  policy's status (`valid`, `problems`), with one `PolicyInvalid` Event per new problem;
- deleted: kopf's finalizer (`nodeprobe.io/live-episodes`) holds the deletion while the policy
  has live episodes (the reconcile pass aborts those before their action and lets the others
  finish); the status says what it waits for; once none is left the finalizer goes.

Plain functions of the policy's body (a mapping) and what the pass knows: no kopf types here, so
the unit tests drive them without a kopf loop. `Announce` is how Events reach the policy (kopf's
poster in the operator, a list in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nodeprobe.model import EventType, RemediationPhase
from nodeprobe.operator.names import API, GROUP, LABEL_POLICY, REMEDIATION_PLURAL, VERSION
from nodeprobe.operator.parse import validate_policy
from nodeprobe.operator.records import TERMINAL

REMEDIATIONS = f"{API}/{REMEDIATION_PLURAL}"
"""Where the delete handler lists a policy's NodeRemediations (by label) for `live_episodes`."""
Announce = Callable[[Mapping[str, Any], EventType, str, str], None]
"""(object reference, type, reason, message): post one Event about the object."""


def policy_ref(name: str, uid: str) -> dict[str, Any]:
    """The object reference Events about a policy carry."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RemediationPolicy",
            "metadata": {"name": name, "uid": uid}}


def validation(body: Mapping[str, Any], announce: Announce) -> dict[str, Any]:
    """The status fields that say whether the policy is valid, and an Event for each problem
    the status does not list yet (so a restart repeats none)."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    problems = validate_policy(spec)
    ref = policy_ref(str(meta.get("name", "")), str(meta.get("uid", "")))
    for problem in problems:
        if problem not in (status.get("problems") or []):
            announce(ref, EventType.WARNING, "PolicyInvalid", problem)
    if not problems:
        return {"valid": True, "problems": None}
    return {"valid": False, "problems": problems, "blocked": problems,
            "message": f"policy rejected: {'; '.join(problems)}"}


def live_episodes(remediations: Sequence[Mapping[str, Any]], policy: str) -> list[str]:
    """Names of the policy's NodeRemediations that have not reached a final phase."""
    return sorted(
        str((nr.get("metadata") or {}).get("name"))
        for nr in remediations
        if ((nr.get("metadata") or {}).get("labels") or {}).get(LABEL_POLICY) == policy
        and (nr.get("status") or {}).get("phase", RemediationPhase.PENDING) not in TERMINAL)


def deletion_wait(body: Mapping[str, Any], live: list[str],
                  announce: Announce) -> dict[str, Any] | None:
    """The status patch that says why the deletion waits (an Event when that changed), or None
    when nothing is live and the finalizer may go."""
    if not live:
        return None
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    why = (f"deletion waits for {len(live)} live episode(s) to finish or be aborted: "
           + ", ".join(live[:5]))
    if status.get("message") != why:
        announce(policy_ref(str(meta.get("name", "")), str(meta.get("uid", ""))),
                 EventType.NORMAL, "DeletionWaits", why)
    return {"message": why, "deleting": True, "blocked": [why]}
