"""The operator's requests as the real API server's audit log records them.

The operator benchmarks count and replay what the operator sent (cordons, Lease writes) from the
audit log, so they need request bodies: `AuditedCluster` raises ServiceAccounts' level to Request.
Each event is parsed once into a `Request`, stamped with the instant its answer completed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.real_kube import WRITE_VERBS
from tests.harness.kubecluster import AUDIT_POLICY, KubeCluster


class AuditedCluster(KubeCluster):
    """The test control plane, keeping ServiceAccounts' request bodies in the audit log."""

    audit_policy = AUDIT_POLICY.replace("level: Metadata", "level: Request")


@dataclass(frozen=True)
class Request:
    """One request the API server answered; `body` is the parsed JSON of writes."""

    verb: str
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    code: int = 0
    body: Any = None
    dry_run: bool = False
    """dryRun=All (the operator's admission-guard check): answered, nothing stored."""
    took_s: float = 0.0
    """From the API server receiving the request to its answer completing."""

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS and not self.dry_run

    @property
    def key(self) -> str:
        """`verb resource[/subresource]`, as the reports count requests."""
        res = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {res or '(discovery)'}" + (" (dry run)" if self.dry_run else "")


Stamped = tuple[float, Request]


def _stamp(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _request(event: dict[str, Any]) -> Request:
    ref = event.get("objectRef") or {}
    return Request(verb=event["verb"], resource=ref.get("resource", ""),
                   subresource=ref.get("subresource", ""), namespace=ref.get("namespace", ""),
                   name=ref.get("name", ""),
                   code=int((event.get("responseStatus") or {}).get("code", 0)),
                   body=event.get("requestObject"),
                   dry_run="dryRun=All" in event.get("requestURI", ""),
                   took_s=_stamp(event["stageTimestamp"])
                   - _stamp(event["requestReceivedTimestamp"]))


class AuditTail:
    """One user's requests from a growing audit log, read incrementally (the log reaches
    hundreds of MB at 5,000 Nodes: each call reads only what was appended since the last)."""

    def __init__(self, path: Path, username: str) -> None:
        self.path, self.username = path, username
        self._events: list[Stamped] = []
        self._offset = 0
        self._lock = threading.Lock()

    def between(self, start: float, end: float) -> list[Stamped]:
        with self._lock:
            self._read()
            return [(t, r) for t, r in self._events if start <= t <= end]

    def _read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk.rfind(b"\n") + 1
        self._offset += complete
        for line in chunk[:complete].splitlines():
            event = json.loads(line)
            if event.get("stage") == "ResponseComplete" and \
                    event.get("user", {}).get("username") == self.username:
                self._events.append((_stamp(event["stageTimestamp"]), _request(event)))


def breakdown(entries: list[Stamped]) -> str:
    """Requests counted per `verb resource`, most first."""
    counts: dict[str, int] = {}
    for _, r in entries:
        counts[r.key] = counts.get(r.key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) \
        or "none"


def latency(entries: list[Stamped], key: str) -> str:
    """Median and p95 of how long the API server took to answer `key` requests (ms)."""
    took = sorted(r.took_s * 1000 for _, r in entries if r.key == key)
    if not took:
        return f"{key}: none"
    p95 = took[min(len(took) - 1, round(0.95 * (len(took) - 1)))]
    return (f"{key}: median {took[len(took) // 2]:.0f} ms, p95 {p95:.0f} ms, "
            f"max {took[-1]:.0f} ms, n={len(took)}")
