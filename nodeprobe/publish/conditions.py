"""Node condition writer, modelled on node-problem-detector's condition manager.

The agent loop calls `update()` with the judged conditions and `sync()` about once a second.
`sync()` writes only when a condition changed (status, reason or message) or the heartbeat is due,
with one strategic-merge PATCH to `nodes/{node}/status` that carries nodeprobe's conditions only:
conditions merge by `type`, so kubelet's `Ready` and NPD's conditions are never touched.

The decision ("what to write now") is the pure function `plan`; `ConditionWriter` does the I/O.

On start the writer adopts what the Node already says (`adopt`): a DaemonSet rollout must not turn
a held `True` into `Unknown` and back, because remediation triggers count from lastTransitionTime.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.model import COMPONENT, Condition, ConditionType, Status
from nodeprobe.publish.kubeclient import (
    API_ERRORS,
    REQUEST_TIMEOUT_S,
    SMP,
    Backoff,
    KubeClient,
    RetrySettings,
    describe_error,
    parse_rfc3339,
    request_json,
    rfc3339,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConditionSettings:
    heartbeat_s: float = 300.0
    """Rewrite unchanged conditions this often (s), so a stale lastHeartbeatTime means a dead
    agent; NPD's default. Steady state costs one write per node per heartbeat."""
    request_timeout_s: float = REQUEST_TIMEOUT_S
    """Longest one PATCH may take (s)."""
    retry: RetrySettings = field(default_factory=RetrySettings)
    """Back-off after a failed write."""


@dataclass(frozen=True, slots=True)
class Written:
    """What the API server last accepted from us, and when."""

    conditions: Mapping[ConditionType, Condition]
    at: float


def changed(desired: Mapping[ConditionType, Condition], written: Written | None) -> bool:
    """True when any condition differs in what a reader sees (status, reason, message)."""
    if written is None:
        return bool(desired)
    for ctype, cond in desired.items():
        old = written.conditions.get(ctype)
        if old is None or (old.status, old.reason, old.message) != (
            cond.status,
            cond.reason,
            cond.message,
        ):
            return True
    return False


def plan(
    desired: Mapping[ConditionType, Condition],
    written: Written | None,
    now: float,
    *,
    heartbeat_s: float,
) -> str | None:
    """Why to write now ("first", "changed", "heartbeat"), or None to stay quiet."""
    if not desired:
        return None
    if written is None:
        return "first"
    if changed(desired, written):
        return "changed"
    if now - written.at >= heartbeat_s:
        return "heartbeat"
    return None


def adoptable(node: Mapping[str, Any]) -> Written | None:
    """The conditions nodeprobe owns as the Node states them, and their latest heartbeat.

    None when the Node carries none of ours (a first install). A condition that does not parse
    (a status we do not know, a bad time) is left out: it is then written fresh, never guessed.
    """
    owned = {str(t): t for t in ConditionType}
    found: dict[ConditionType, Condition] = {}
    heartbeat = 0.0
    for item in (node.get("status") or {}).get("conditions") or []:
        ctype = owned.get(item.get("type", ""))
        if ctype is None:
            continue
        try:
            status = Status(item.get("status"))
            since = parse_rfc3339(item["lastTransitionTime"])
            beat = parse_rfc3339(item.get("lastHeartbeatTime") or item["lastTransitionTime"])
        except (KeyError, TypeError, ValueError):
            continue
        found[ctype] = Condition(ctype, status, str(item.get("reason", "")),
                                 str(item.get("message", "")), since)
        heartbeat = max(heartbeat, beat)
    return Written(found, heartbeat) if found else None


def patch_body(conditions: Mapping[ConditionType, Condition], now: float) -> dict[str, Any]:
    """The strategic merge patch: our conditions only, in a stable order."""
    order = list(ConditionType)
    items = sorted(conditions.values(), key=lambda c: order.index(c.type))
    return {
        "status": {
            "conditions": [
                {
                    "type": str(c.type),
                    "status": str(c.status),
                    "reason": c.reason,
                    "message": c.message,
                    "lastTransitionTime": rfc3339(c.since),
                    "lastHeartbeatTime": rfc3339(now),
                }
                for c in items
            ]
        }
    }


class ConditionWriter:
    """Keeps the Node's nodeprobe conditions equal to the latest judged state.

    Never raises into the loop for API trouble: the desired state is kept, the error counted, and
    the write retried with back-off; after an outage it writes the latest state, not the history.
    """

    def __init__(
        self,
        node: str,
        api_client: KubeClient,
        *,
        now: Callable[[], float] = time.time,
        settings: ConditionSettings | None = None,
        on_write: Callable[[], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._node = node
        self._api = api_client
        self._now = now
        self._settings = settings or ConditionSettings()
        self._on_write = on_write
        self._on_error = on_error
        self._backoff = Backoff(self._settings.retry)
        self._lock = threading.Lock()
        self._desired: dict[ConditionType, Condition] = {}
        self._written: Written | None = None
        self.writes = 0
        """Successful PATCHes."""
        self.errors = 0
        """Failed PATCHes."""
        self.last_error = ""
        """The latest failure, for /readyz and logs; empty after a success."""

    @property
    def written(self) -> Written | None:
        return self._written

    def adopt(self) -> dict[ConditionType, Condition]:
        """Read our conditions from the Node and take them as already written.

        Nothing is written until the judged state differs from them (or the heartbeat is due).
        An API error leaves nothing adopted: the agent then starts from Unknown, as on a new node.
        """
        try:
            node = request_json(self._api, "GET", f"/api/v1/nodes/{self._node}",
                                timeout=self._settings.request_timeout_s)
        except API_ERRORS as e:
            log.warning("%s; starting without the node's conditions (their lastTransitionTime "
                        "may move)", describe_error(e, what=f"GET nodes/{self._node}"))
            return {}
        written = adoptable(node)
        if written is None:
            return {}
        with self._lock:
            self._written = written
            self._desired.update(written.conditions)
        log.info("adopted from node %s: %s", self._node, ", ".join(
            f"{c.type}={c.status} ({c.reason})" for c in written.conditions.values()))
        return dict(written.conditions)

    def update(self, conditions: Mapping[ConditionType, Condition] | Iterable[Condition]) -> None:
        """Record the desired state; types not mentioned keep their previous desired value."""
        items = conditions.values() if isinstance(conditions, Mapping) else conditions
        with self._lock:
            for cond in items:
                self._desired[cond.type] = cond

    def holds(self) -> bool:
        """The Node states the desired conditions: written, or adopted and unchanged since."""
        with self._lock:
            desired = dict(self._desired)
        return bool(desired) and self._written is not None and not changed(desired,
                                                                           self._written)

    def sync(self) -> bool:
        """Write if needed and allowed now; True when a write succeeded. Never raises API errors."""
        now = self._now()
        with self._lock:
            desired = dict(self._desired)
        why = plan(desired, self._written, now, heartbeat_s=self._settings.heartbeat_s)
        if why is None or not self._backoff.ready(now):
            return False
        try:
            request_json(
                self._api, "PATCH", f"/api/v1/nodes/{self._node}/status",
                query={"fieldManager": COMPONENT}, body=patch_body(desired, now),
                content_type=SMP, timeout=self._settings.request_timeout_s,
            )
        except API_ERRORS as e:
            self._failed(e, now)
            return False
        if self._backoff.failures:
            log.info("node status writes work again after %d failures", self._backoff.failures)
        self._backoff.succeeded()
        self._written = Written(desired, now)
        self.writes += 1
        self.last_error = ""
        log.debug("wrote %d conditions to node %s (%s)", len(desired), self._node, why)
        if self._on_write is not None:
            self._on_write()
        return True

    def _failed(self, e: BaseException, now: float) -> None:
        msg = describe_error(e, what=f"PATCH nodes/{self._node}/status")
        delay = self._backoff.failed(now, e)
        self.errors += 1
        self.last_error = msg
        level = logging.WARNING if self._backoff.failures == 1 else logging.DEBUG
        log.log(level, "%s; keeping the state, next try in %.0fs", msg, delay)
        if self._on_error is not None:
            self._on_error(msg)
