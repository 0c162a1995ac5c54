"""Node Events (core/v1, what `kubectl describe node` shows), correlated like client-go's.

- Dedup: the same (type, reason, message) again within the aggregation window increments `count`
  and `lastTimestamp` of the existing Event (a PATCH) instead of creating another one.
- Similar: more than `similar_max` different messages for one (type, reason) within the window are
  folded into one Event "(combined from similar events): <latest message>".
- Spam filter: one token bucket per recorder (client-go keys it by source + object, and a recorder
  has one of each). Occurrences that find no token are not lost: their count rides along with the
  next write once a token is back, so a flapping runtime costs `burst` writes, then one per refill.

`Correlator` and `TokenBucket` are pure (time is passed in); `EventRecorder` does the I/O and has
the condition writer's error policy: never raise into the loop, keep what is pending, back off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.model import COMPONENT, Event, EventType
from nodeprobe.publish.kubeclient import (
    API_ERRORS,
    REQUEST_TIMEOUT_S,
    SMP,
    Backoff,
    KubeClient,
    KubeError,
    RetrySettings,
    describe_error,
    request_json,
    rfc3339,
)

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 1024
"""Bytes the API server accepts in an Event message (validation.NoteLengthLimit)."""

_REJECTED = (400, 422)
"""Statuses that mean "this Event is invalid", not "try again later"."""

COMBINED_PREFIX = "(combined from similar events): "
"""client-go's marker for folded messages; people already know it from kubelet's Events."""


def truncate(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut to the API's byte limit on a character boundary, marking the cut like kube-scheduler."""
    raw = message.encode()
    if len(raw) <= limit:
        return message
    return raw[: limit - 4].decode(errors="ignore") + " ..."


@dataclass(frozen=True, slots=True)
class EventSettings:
    namespace: str = "default"
    """Where Events about cluster-scoped objects live (client-go and kubectl use `default`)."""
    aggregate_window_s: float = 600.0
    """A repeat this soon (s) after the last occurrence bumps `count`; client-go's 10 minutes."""
    similar_max: int = 10
    """Distinct messages per (type, reason) within the window before they are combined."""
    burst: int = 25
    """Writes allowed back to back; client-go's spam filter burst."""
    refill_s: float = 300.0
    """One more write per this many seconds once the burst is spent; client-go's 1/300 qps."""
    max_records: int = 4096
    """Correlation memory bound (client-go's LRU size)."""
    request_timeout_s: float = REQUEST_TIMEOUT_S
    """Longest one API call may take (s)."""
    retry: RetrySettings = field(default_factory=RetrySettings)
    """Back-off after a failed write."""


@dataclass(slots=True)
class EventRecord:
    """One Kubernetes Event as we know it: how often it happened and how much the API has."""

    type: EventType
    reason: str
    message: str
    first_at: float
    last_at: float
    count: int = 1
    written_count: int = 0
    """`count` as the API server last accepted it; below `count` means a write is pending."""
    name: str | None = None
    """The Event object's name, chosen at the first attempt and kept across retries, so a
    create that landed although its reply was lost is found (409) instead of duplicated."""
    created: bool = False
    """The API server has the object (as far as we know)."""

    @property
    def pending(self) -> bool:
        return self.count > self.written_count


_Key = tuple[str, str, str]


class Correlator:
    """Folds a stream of `Event`s into `EventRecord`s; pure, bounded memory."""

    def __init__(self, settings: EventSettings) -> None:
        self._settings = settings
        self._records: dict[_Key, EventRecord] = {}
        self._similar: dict[tuple[str, str], dict[str, float]] = {}

    def add(self, ev: Event) -> EventRecord:
        message = self._message(ev)
        combined = message != ev.message
        key = (str(ev.type), ev.reason, COMBINED_PREFIX if combined else ev.message)
        rec = self._records.get(key)
        window = self._settings.aggregate_window_s
        if rec is not None and (rec.pending or ev.at - rec.last_at <= window):
            rec.count += 1
            rec.last_at = max(rec.last_at, ev.at)
            rec.message = message
        else:
            rec = EventRecord(ev.type, ev.reason, message, first_at=ev.at, last_at=ev.at)
            self._records[key] = rec
        self._prune(ev.at)
        return rec

    def pending(self) -> list[EventRecord]:
        """Records the API does not have yet, oldest change first."""
        return sorted((r for r in self._records.values() if r.pending), key=lambda r: r.last_at)

    def __len__(self) -> int:
        return len(self._records)

    def _message(self, ev: Event) -> str:
        """client-go's EventAggregator: too many different messages for one reason are combined."""
        seen = self._similar.setdefault((str(ev.type), ev.reason), {})
        window = self._settings.aggregate_window_s
        for msg, at in list(seen.items()):
            if ev.at - at > window:
                del seen[msg]
        seen[ev.message] = ev.at
        if len(seen) > self._settings.similar_max:
            return COMBINED_PREFIX + ev.message
        return ev.message

    def _prune(self, now: float) -> None:
        window = self._settings.aggregate_window_s
        stale = [k for k, r in self._records.items() if not r.pending and now - r.last_at > window]
        for k in stale:
            del self._records[k]
        overflow = len(self._records) - self._settings.max_records
        if overflow > 0:
            done = sorted(
                (k for k, r in self._records.items() if not r.pending),
                key=lambda k: self._records[k].last_at,
            )
            for k in done[:overflow]:
                del self._records[k]


class TokenBucket:
    """`burst` tokens, one more every `refill_s`; pure: the caller passes the time."""

    def __init__(self, *, burst: int, refill_s: float) -> None:
        self._burst = float(burst)
        self._refill_s = refill_s
        self._tokens = float(burst)
        self._at: float | None = None

    def take(self, now: float) -> bool:
        if self._at is not None and now > self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at) / self._refill_s)
        self._at = now if self._at is None else max(self._at, now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def give_back(self) -> None:
        """Return a token whose write failed: a failure is not spam."""
        self._tokens = min(self._burst, self._tokens + 1.0)


class EventRecorder:
    """Writes nodeprobe's Events about one Node; never raises API errors into the loop."""

    def __init__(
        self,
        node: str,
        api_client: KubeClient,
        *,
        now: Callable[[], float] = time.time,
        settings: EventSettings | None = None,
        node_uid: str | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._node = node
        self._api = api_client
        self._now = now
        self._settings = settings or EventSettings()
        self._uid = node_uid
        self._on_error = on_error
        self._correlator = Correlator(self._settings)
        self._bucket = TokenBucket(burst=self._settings.burst, refill_s=self._settings.refill_s)
        self._backoff = Backoff(self._settings.retry)
        self._lock = threading.Lock()
        self._last_nanos = 0
        self.creates = 0
        self.patches = 0
        self.errors = 0
        self.throttled = 0
        """Flushes that stopped because the spam filter had no token."""
        self.last_error = ""

    def record(self, events: Iterable[Event]) -> int:
        """Correlate new events and write what is due; returns the number of writes."""
        with self._lock:
            for ev in events:
                self._correlator.add(ev)
        return self.flush()

    def flush(self) -> int:
        """Write pending records while tokens last; call every loop iteration for retries."""
        with self._lock:
            now = self._now()
            if not self._backoff.ready(now):
                return 0
            done = 0
            for rec in self._correlator.pending():
                if not self._bucket.take(now):
                    self.throttled += 1
                    break
                try:
                    self._write(rec, now)
                except KubeError as e:
                    if e.status in _REJECTED:
                        self._rejected(e, rec)
                        continue
                    self._bucket.give_back()
                    self._failed(e, now)
                    break
                except API_ERRORS as e:
                    self._bucket.give_back()
                    self._failed(e, now)
                    break
                done += 1
            if done and self._backoff.failures:
                log.info("event writes work again after %d failures", self._backoff.failures)
                self._backoff.succeeded()
            return done

    def pending(self) -> int:
        with self._lock:
            return len(self._correlator.pending())

    def _write(self, rec: EventRecord, now: float) -> None:
        if rec.created:
            try:
                self._patch(rec)
            except KubeError as e:
                if e.status != 404:
                    raise
                log.info("event %s is gone (expired?); creating it again", rec.name)
                rec.created = False
        if not rec.created:
            if rec.name is None:
                rec.name = self._new_name(rec.first_at)
            try:
                self._create(rec, rec.name)
            except KubeError as e:
                if e.status != 409:
                    raise
                self._patch(rec)  # an earlier create landed; its reply was lost
            rec.created = True
        rec.written_count = rec.count

    def _create(self, rec: EventRecord, name: str) -> None:
        request_json(
            self._api, "POST", f"/api/v1/namespaces/{self._settings.namespace}/events",
            query={"fieldManager": COMPONENT}, body=self._body(rec, name),
            timeout=self._settings.request_timeout_s,
        )
        self.creates += 1

    def _patch(self, rec: EventRecord) -> None:
        assert rec.name is not None
        request_json(
            self._api, "PATCH", f"/api/v1/namespaces/{self._settings.namespace}/events/{rec.name}",
            query={"fieldManager": COMPONENT},
            body={
                "count": rec.count,
                "lastTimestamp": rfc3339(rec.last_at),
                "message": truncate(rec.message),
            },
            content_type=SMP, timeout=self._settings.request_timeout_s,
        )
        self.patches += 1

    def _body(self, rec: EventRecord, name: str) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": self._settings.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self._node,
                "uid": self._node_uid(),
            },
            "type": str(rec.type),
            "reason": rec.reason,
            "message": truncate(rec.message),
            "count": rec.count,
            "firstTimestamp": rfc3339(rec.first_at),
            "lastTimestamp": rfc3339(rec.last_at),
            "source": {"component": COMPONENT, "host": self._node},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._node,
        }

    def _node_uid(self) -> str:
        """The Node's uid, read once. If the API refuses (RBAC, no such node) use the node name,
        kubelet's convention, which `kubectl describe node` searches for too. An unreachable API
        propagates: the write that needs it would fail anyway."""
        if self._uid is None:
            try:
                obj = request_json(self._api, "GET", f"/api/v1/nodes/{self._node}",
                                   timeout=self._settings.request_timeout_s)
            except KubeError as e:
                what = f"GET nodes/{self._node}"
                log.warning("%s; Events name the node by name", describe_error(e, what=what))
                self._uid = self._node
            else:
                self._uid = str((obj.get("metadata") or {}).get("uid") or self._node)
        return self._uid

    def _new_name(self, at: float) -> str:
        """client-go's `<object>.<unix nanos in hex>`, unique within this recorder."""
        nanos = max(int(at * 1e9), self._last_nanos + 1)
        self._last_nanos = nanos
        return f"{self._node}.{nanos:x}"

    def _rejected(self, e: KubeError, rec: EventRecord) -> None:
        """The server will never take this one (invalid): drop it rather than block the rest."""
        rec.written_count = rec.count
        msg = describe_error(e, what=f"write Event {rec.reason} about node {self._node}")
        self.errors += 1
        self.last_error = msg
        log.error("%s; dropping it: %s", msg, (e.body or "")[:500])
        if self._on_error is not None:
            self._on_error(msg)

    def _failed(self, e: BaseException, now: float) -> None:
        msg = describe_error(e, what=f"write Event about node {self._node}")
        delay = self._backoff.failed(now, e)
        self.errors += 1
        self.last_error = msg
        level = logging.WARNING if self._backoff.failures == 1 else logging.DEBUG
        log.log(level, "%s; keeping it, next try in %.0fs", msg, delay)
        if self._on_error is not None:
            self._on_error(msg)
