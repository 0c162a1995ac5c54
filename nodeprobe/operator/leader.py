"""Leader election on a coordination.k8s.io Lease, with client-go's semantics.

Replicas try to take the Lease `nodeprobe-operator` in the operator's namespace every
`retry_s`. A replica holds it while its last successful renewal is younger than `renew_deadline_s`;
others may take it once `renewTime + leaseDurationSeconds` has passed by their own clock. Writes
use the Lease's resourceVersion, so two replicas never both win (the loser gets 409).

`Fenced` wraps the operator's `Kube` so that every write is refused the moment this replica no
longer knows it leads: losing the Lease stops acting at once, before kopf has even stopped.
`decide()` is pure; `LeaderElector` does the calls.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.operator.grammar import parse_iso
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.leases import micro

log = logging.getLogger(__name__)

LEASE_NAME = "nodeprobe-operator"


@dataclass(frozen=True, slots=True)
class Timing:
    lease_s: float = 15.0
    """How long a leader's Lease is valid after its last renewal (client-go's default)."""
    renew_deadline_s: float = 10.0
    """A leader that could not renew for this long stops acting (must be < lease_s)."""
    retry_s: float = 2.0
    """How often leaders renew and followers try to take over."""


class Verdict(enum.StrEnum):
    CREATE = "create"
    TAKE = "take"
    RENEW = "renew"
    WAIT = "wait"


def decide(lease: Mapping[str, Any] | None, *, identity: str, now: float) -> Verdict:
    """What this replica should do with the Lease as it is now."""
    if lease is None:
        return Verdict.CREATE
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if holder == identity:
        return Verdict.RENEW
    renewed = parse_iso(spec.get("renewTime")) or 0.0
    if not holder or now > renewed + float(spec.get("leaseDurationSeconds") or 0):
        return Verdict.TAKE
    return Verdict.WAIT


class LeaderElector:
    def __init__(self, kube: Kube, *, namespace: str, identity: str, name: str = LEASE_NAME,
                 timing: Timing = Timing(), clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.identity = identity
        self.timing = timing
        self.clock = clock
        self.monotonic = monotonic
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self._renewed_at: float | None = None
        """monotonic() of the last successful acquire or renew."""
        self.attempted_at: float | None = None
        """monotonic() of the last attempt, won or not (a standby's liveness)."""

    def leading(self) -> bool:
        return (self._renewed_at is not None
                and self.monotonic() - self._renewed_at < self.timing.renew_deadline_s)

    def try_once(self) -> bool:
        """One acquire-or-renew attempt; True when this replica holds the Lease now."""
        self.attempted_at = self.monotonic()
        now = self.clock()
        try:
            lease: dict[str, Any] | None = self.kube.request("GET", f"{self.path}/{self.name}")
        except KubeError as e:
            if e.status != 404:
                log.warning("leader lease %s: cannot read it: %s", self.name, e)
                return self.leading()
            lease = None
        verdict = decide(lease, identity=self.identity, now=now)
        if verdict is Verdict.WAIT:
            return False
        spec = {"holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.timing.lease_s), "renewTime": micro(now)}
        try:
            if verdict is Verdict.CREATE:
                self.kube.request("POST", self.path, body={
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name},
                    "spec": {**spec, "acquireTime": micro(now), "leaseTransitions": 0}})
            else:
                assert lease is not None
                old = lease.get("spec") or {}
                new = {**old, **spec}
                if verdict is Verdict.TAKE:
                    new["acquireTime"] = micro(now)
                    new["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + 1
                self.kube.request("PUT", f"{self.path}/{self.name}", body={
                    **lease, "spec": new})  # carries metadata.resourceVersion: 409 if raced
        except KubeError as e:
            if e.status != 409:
                log.warning("leader lease %s: %s failed: %s", self.name, verdict.value, e)
            return self.leading()
        if verdict is not Verdict.RENEW:
            log.info("leader lease %s: %s now leads", self.name, self.identity)
        self._renewed_at = self.monotonic()
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or `stop` is set (False)."""
        while not stop.is_set():
            if self.try_once():
                return True
            stop.wait(self.timing.retry_s)
        return False

    def keep(self, stop: threading.Event, on_lost: Callable[[], None]) -> None:
        """Renew every retry period until `stop`; call `on_lost` once the deadline passes."""
        while not stop.wait(self.timing.retry_s):
            self.try_once()
            if not self.leading():
                log.error("leader lease %s: not renewed for %.0f s; stopping at once",
                          self.name, self.timing.renew_deadline_s)
                on_lost()
                return

    def release(self) -> None:
        """On a clean shutdown, let the other replica take over without waiting for expiry.

        Asks the server, not `leading()`: a shutdown slower than the renew deadline still gives
        back a Lease that names this replica (the PUT carries its resourceVersion, so a Lease
        another replica took meanwhile is never touched)."""
        if self._renewed_at is None:
            return
        try:
            lease = self.kube.request("GET", f"{self.path}/{self.name}")
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                self.kube.request("PUT", f"{self.path}/{self.name}", body={
                    **lease, "spec": {**lease["spec"], "holderIdentity": None}})
                log.info("leader lease %s: released", self.name)
        except KubeError as e:
            log.info("leader lease %s: not released: %s", self.name, e)
        self._renewed_at = None


class Fenced(Kube):
    """A `Kube` whose writes are refused while `allowed()` is False (reads still work)."""

    def __init__(self, inner: Kube, allowed: Callable[[], bool]) -> None:
        self.inner = inner
        self.allowed = allowed
        self.field_manager = getattr(inner, "field_manager", "")

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: object = None, content_type: str = "application/json") -> dict[str, Any]:
        if method != "GET" and not self.allowed():
            raise KubeError(0, f"{method} {path}: refused, this replica no longer leads")
        return self.inner.request(method, path, query=query, body=body, content_type=content_type)

    def stream(self, path: str, *, query: Mapping[str, str], read_timeout_s: float) -> Any:
        return self.inner.stream(path, query=query, read_timeout_s=read_timeout_s)
