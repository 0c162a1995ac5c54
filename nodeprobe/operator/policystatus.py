"""The policy half of a pass: each policy parsed once into a `PolicyState`, its storm memory,
and its status and Events (said only when they change).

Validity and deletion are kopf's (`lifecycle`, `handlers`): the pass writes neither, it only
skips invalid and deleting policies. Events about policies go through `Announce` (kopf's poster
in the operator).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.model import EventType
from nodeprobe.operator.grammar import iso, parse_iso
from nodeprobe.operator.kube import MERGE, Kube
from nodeprobe.operator.lifecycle import Announce, policy_ref
from nodeprobe.operator.names import API, POLICY_PLURAL
from nodeprobe.operator.parse import parse_policy, plan_snapshot, validate_policy
from nodeprobe.operator.policy import Policy


@dataclass(frozen=True, slots=True)
class PolicyState:
    """A RemediationPolicy as listed for this pass."""

    name: str
    uid: str
    deleting: bool
    policy: Policy | None
    """None when the spec is invalid (`problems`)."""
    problems: tuple[str, ...]
    snapshot: Mapping[str, Any]
    """The plan fields a new NodeRemediation copies (`parse.plan_snapshot`)."""
    status: Mapping[str, Any]
    """The status as listed: compared with, so that only changes are written; never an input
    to a decision."""


def policy_state(obj: Mapping[str, Any]) -> PolicyState:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    name = str(meta.get("name", ""))
    problems = validate_policy(spec)
    return PolicyState(
        name=name, uid=str(meta.get("uid", "")), deleting=bool(meta.get("deletionTimestamp")),
        policy=None if problems else parse_policy(name, spec), problems=tuple(problems),
        snapshot=plan_snapshot(spec) if isinstance(spec, Mapping) else {},
        status=obj.get("status") or {})


class Storms:
    """Per policy: when its minHealthy storm began, and when the last one ended (Unix seconds).

    Kept in this process and written to the status for people. It is read from the status only
    the first time this process sees the policy, so a restarted operator keeps a storm cool-down
    going; after that the status is output only.
    """

    def __init__(self) -> None:
        self._by: dict[str, tuple[float | None, float | None]] = {}

    def of(self, st: PolicyState) -> tuple[float | None, float | None]:
        if st.name not in self._by:
            self._by[st.name] = (parse_iso(st.status.get("stormSince")),
                                 parse_iso(st.status.get("stormEndedAt")))
        return self._by[st.name]

    def after(self, name: str, *, storm: bool, now: float) -> dict[str, Any]:
        """Record this pass's verdict; the status fields that change (empty when none)."""
        since, _ = self._by.get(name, (None, None))
        if storm and since is None:
            self._by[name] = (now, None)
            return {"stormSince": iso(now), "stormEndedAt": None}
        if not storm and since is not None:
            self._by[name] = (None, now)
            return {"stormSince": None, "stormEndedAt": iso(now)}
        return {}


class PolicyReport:
    """Writes a policy's status where it changed, and one Event per new reason."""

    def __init__(self, kube: Kube, announce: Announce) -> None:
        self.kube = kube
        self.announce = announce

    def write(self, st: PolicyState, new: dict[str, Any], *, blocked: list[str],
              plan: list[str]) -> None:
        old = st.status
        new["blocked"] = blocked or None
        changed = {k: _replacing(old.get(k), v) for k, v in new.items() if old.get(k) != v}
        if not changed:
            return
        self.kube.request("PATCH", f"{API}/{POLICY_PLURAL}/{st.name}/status",
                          body={"status": changed}, content_type=MERGE)
        for kind, reason, message in _events(old, new, blocked, plan):
            self.announce(policy_ref(st.name, st.uid), kind, reason, message)


def _events(old: Mapping[str, Any], new: Mapping[str, Any], blocked: list[str],
            plan: list[str]) -> list[tuple[EventType, str, str]]:
    """Blocked reasons, waiting nodes (not the plain "waiting for ..." ones) and dry-run lines
    that the old status did not have yet."""
    out = [(EventType.WARNING, "RemediationBlocked", reason) for reason in blocked
           if reason not in (old.get("blocked") or [])]
    out += [(EventType.NORMAL, "RemediationWaiting", f"{node}: {why}")
            for node, why in (new.get("waiting") or {}).items()
            if (old.get("waiting") or {}).get(node) != why and not why.startswith("waiting for")
            and why not in blocked]
    out += [(EventType.NORMAL, "DryRun", line) for line in plan
            if line not in (old.get("dryRunPlan") or [])]
    return out


def _replacing(old: object, new: Any) -> Any:
    """A merge patch that replaces map `old` by map `new` (a key left out stays otherwise)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return {**dict.fromkeys(old), **new}
    return new


def kube_announce(kube: Kube, *, namespace: str,
                  now: Callable[[], float]) -> Announce:
    """Events written by our own client: for runs without kopf (the unit tests' reconciler)."""
    def announce(ref: Mapping[str, Any], kind: EventType, reason: str, message: str) -> None:
        meta = ref.get("metadata") or {}
        kube.event(involved={"apiVersion": ref.get("apiVersion"), "kind": ref.get("kind"),
                             "name": meta.get("name"), "uid": meta.get("uid", "")},
                   kind=kind, reason=reason, message=message, namespace=namespace,
                   now=iso(now()))
    return announce
