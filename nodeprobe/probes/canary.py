"""The container start canary, Docker flavour, and what both flavours share.

The canary is the one check that walks the path a pod start takes: image store, snapshotter
(overlay2), shim, runc. Docker: POST /containers/create (no network, no log driver), start,
kill, wait, DELETE. CRI (canary_cri.py): RunPodSandbox, CreateContainer, StartContainer,
StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.

Deadline: each run is carried out in its own thread and the check waits for it up to the
deadline; a run still going then is HUNG, named by the step it is in. Its calls are not cut at
the deadline: cancelling a half-made pod is what leaves debris behind (containerd 1.6 then keeps a
container its CRI store does not list). The run goes on, each call bounded by the deadline plus
`checks.canary.cleanupDeadline`, and removes what it made (force-remove under a fresh cleanup
deadline when a step failed). Every run first removes what earlier runs or an earlier agent left,
found by the label `nodeprobe.io/canary`. A run still going when the next is due is reported
HUNG at its step at once, without starting another.

Latency: the observation's latency is the time from create to a running container (the sandbox
included for CRI), the figure ContainerStartSlow judges; each step's time is in `values`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.docker import CallFailed, EngineCall

log = logging.getLogger(__name__)
_T = TypeVar("_T")

LABEL = "nodeprobe.io/canary"
"""Label on everything the canary creates; leftovers are found (and removed) by it."""
NAME_PREFIX = "nodeprobe-canary-"


@dataclass(slots=True)
class StepFailed(Exception):
    """A canary step did not succeed: which step, the outcome, and a sentence."""

    step: str
    outcome: Outcome
    detail: str


class Attempt:
    """One canary run, carried out in its own thread; the caller waits for it up to the deadline.

    A call that passes the deadline is not cancelled: cancelling a RunPodSandbox mid-way makes
    containerd 1.6 leave a container its CRI store does not list, so no one could remove it. The
    run goes on (each call bounded by deadline + cleanupDeadline) and removes what it made.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.done = threading.Event()
        self.failure: StepFailed | None = None
        self._lock = threading.Lock()
        self._step = "setup"
        self._values: dict[str, float] = {}
        self.to_running: float | None = None

    def enter(self, step: str) -> None:
        with self._lock:
            self._step = step

    @property
    def step(self) -> str:
        with self._lock:
            return self._step

    def timed(self, value: Value, began: float) -> None:
        with self._lock:
            self._values[str(value)] = time.monotonic() - began

    def values(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)


def steps_text(values: dict[str, float]) -> str:
    names = {
        Value.CANARY_SANDBOX_SECONDS: "sandbox", Value.CANARY_CREATE_SECONDS: "create",
        Value.CANARY_START_SECONDS: "start", Value.CANARY_REMOVE_SECONDS: "remove",
    }
    return ", ".join(f"{names[Value(k)]} {v:.2f}s" for k, v in values.items())


class CanaryBase:
    """Runs `_work` in a thread per run and turns what it did into one observation."""

    runtime: Runtime
    checks: tuple[Check, ...] = (Check.CANARY,)
    image: str
    cleanup_deadline_s: float
    what: str = "container"

    _attempt: Attempt | None = None

    def close(self) -> None:
        """Nothing is held between runs; a run in flight ends within its own bounds."""

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until the last run (and its clean-up) has ended; True when it has."""
        attempt = self._attempt
        return attempt is None or attempt.done.wait(timeout_s)

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        at, start = time.time(), time.monotonic()
        previous = self._attempt
        failure: StepFailed | None
        if previous is not None and not previous.done.is_set():
            step = previous.step
            failure = StepFailed(step, Outcome.HUNG, (
                f"canary {step}: the previous run is still in it after "
                f"{start - previous.started:.0f}s"))
            return self._finish(at, start, slow_s, previous, failure)
        attempt = Attempt(start)
        self._attempt = attempt
        budget = start + deadline_s + self.cleanup_deadline_s
        threading.Thread(target=self._guarded, args=(attempt, budget), daemon=True,
                         name=f"canary-{self.runtime}").start()
        if attempt.done.wait(deadline_s):
            failure = attempt.failure
        else:
            step = attempt.step
            failure = StepFailed(step, Outcome.HUNG, (
                f"canary {step}: not finished within {deadline_s:g}s; the run goes on in the "
                f"background for up to {self.cleanup_deadline_s:g}s more and removes what it made"))
        return self._finish(at, start, slow_s, attempt, failure)

    def _finish(self, at: float, start: float, slow_s: float, attempt: Attempt,
                failure: StepFailed | None) -> Observation:
        values = attempt.values()
        info = {"image": self.image}
        if failure is not None:
            return Observation(self.runtime, Check.CANARY, failure.outcome,
                               time.monotonic() - start, at, failure.detail, values,
                               {**info, "step": failure.step})
        latency = attempt.to_running or 0.0
        detail = f"started and removed a {self.what} from {self.image}: {steps_text(values)}"
        outcome = Outcome.OK
        if latency > slow_s:
            outcome = Outcome.SLOW
            detail = f"slow container start ({latency:.2f}s > {slow_s:g}s): {detail}"
        return Observation(self.runtime, Check.CANARY, outcome, latency, at, detail, values, info)

    def _guarded(self, attempt: Attempt, budget: float) -> None:
        try:
            self._work(attempt, budget)
        except StepFailed as e:
            attempt.failure = e
        except Exception as e:  # a probe never raises
            log.warning("the %s canary failed", self.runtime, exc_info=True)
            attempt.failure = StepFailed("setup", Outcome.ERROR,
                                         f"the canary failed: {type(e).__name__}: {e}")
        finally:
            late = time.monotonic() - attempt.started
            if attempt.failure is not None:
                log.info("canary %s on %s ended after %.1fs: %s", attempt.failure.step,
                         self.runtime, late, attempt.failure.detail)
            attempt.done.set()

    def _work(self, attempt: Attempt, budget: float) -> None:
        raise NotImplementedError


def image_missing_message(image: str, runtime: str, store: str) -> str:
    return (f"the canary image {image} is not in {runtime}'s local image store ({store}); "
            "nodeprobe never pulls: set checks.canary.image to an image the node keeps (its "
            "sandbox/pause image), or pre-pull it")


# ---- Docker -------------------------------------------------------------------------------------


class DockerCanary(CanaryBase):
    """The canary through the Docker Engine API."""

    runtime: Runtime = Runtime.DOCKERD

    def __init__(self, socket_path: str, *, image: str, cleanup_deadline_s: float) -> None:
        self.socket_path = socket_path
        self.image = image
        self.cleanup_deadline_s = cleanup_deadline_s

    def image_problem(self, *, deadline_s: float) -> str | None:
        """A sentence when the image is certainly missing; None when present or unknown."""
        call = self._call(deadline_s)
        try:
            api = self._api(call)
            call.request("GET", f"/v{api}/images/{_quote(self.image)}/json")
        except CallFailed as e:
            if e.status == 404:
                return image_missing_message(self.image, "dockerd", "docker images")
            return None
        finally:
            call.close()
        return None

    def _work(self, attempt: Attempt, budget: float) -> None:
        call = EngineCall(self.socket_path, deadline=budget, deadline_s=budget - attempt.started)
        cid: str | None = None
        try:
            api = _step("setup", lambda: self._api(call))
            self._remove_labelled(call, api)  # what earlier runs or an earlier agent left
            attempt.enter("create")
            cid = self._create(call, api, attempt)
            attempt.enter("start")
            began = time.monotonic()
            _step("start", lambda: call.request("POST", f"/v{api}/containers/{cid}/start",
                                                ok=(204, 304)))
            attempt.timed(Value.CANARY_START_SECONDS, began)
            attempt.to_running = time.monotonic() - attempt.started
            attempt.enter("remove")
            began = time.monotonic()
            _step("remove", lambda: self._remove(call, api, cid or ""))
            cid = None
            attempt.timed(Value.CANARY_REMOVE_SECONDS, began)
        finally:
            call.close()
            if cid is not None:
                self._cleanup(cid)

    # ---- steps --------------------------------------------------------------------------

    def _call(self, deadline_s: float) -> EngineCall:
        return EngineCall(self.socket_path, deadline=time.monotonic() + deadline_s,
                          deadline_s=deadline_s)

    @staticmethod
    def _api(call: EngineCall) -> str:
        version = call.get("/_ping").headers.get("Api-Version")
        if not version:
            raise CallFailed(Outcome.ERROR, "dockerd sent no Api-Version header on /_ping")
        return str(version)

    def _create(self, call: EngineCall, api: str, attempt: Attempt) -> str:
        body = {
            "Image": self.image,
            "Labels": {LABEL: "true"},
            "NetworkDisabled": True,
            "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "none"}},
        }
        name = NAME_PREFIX + uuid.uuid4().hex[:12]
        began = time.monotonic()
        try:
            resp = call.request("POST", f"/v{api}/containers/create?name={name}", body=body,
                                ok=(201,))
        except CallFailed as e:
            if e.status == 404 and "image" in e.detail.lower():
                raise StepFailed("image", Outcome.ERROR, image_missing_message(
                    self.image, "dockerd", "docker images")) from e
            raise StepFailed("create", e.outcome, f"canary create: {e.detail}") from e
        attempt.timed(Value.CANARY_CREATE_SECONDS, began)
        cid = resp.json().get("Id") if resp.content else None
        if not isinstance(cid, str) or not cid:
            raise StepFailed("create", Outcome.ERROR, "canary create: dockerd answered 201 "
                                                      "without a container Id")
        return cid

    @staticmethod
    def _remove(call: EngineCall, api: str, cid: str) -> None:
        # kill: 409 when it already exited (an image whose command ends at once)
        call.request("POST", f"/v{api}/containers/{cid}/kill", ok=(204, 409))
        call.request("POST", f"/v{api}/containers/{cid}/wait?condition=not-running", ok=(200,))
        call.request("DELETE", f"/v{api}/containers/{cid}?force=1&v=1", ok=(204,))

    @staticmethod
    def _remove_labelled(call: EngineCall, api: str) -> None:
        """Remove the containers a canary made (its label and its name prefix, never a user's
        container that carries the label); a failure is the create's to report."""
        filters = urllib.parse.quote(json.dumps({"label": [LABEL]}))
        try:
            found = call.request("GET", f"/v{api}/containers/json?all=1&filters={filters}").json()
            for item in found if isinstance(found, list) else []:
                if isinstance(item, dict) and isinstance(item.get("Id"), str) and _ours(item):
                    log.info("removing canary leftover %s", item["Id"][:12])
                    call.request("DELETE", f"/v{api}/containers/{item['Id']}?force=1&v=1",
                                 ok=(204, 404))
        except (CallFailed, ValueError):
            log.debug("canary sweep failed", exc_info=True)

    def _cleanup(self, cid: str) -> None:
        """After a failed step: force-remove under a fresh cleanup deadline."""
        call = self._call(self.cleanup_deadline_s)
        try:
            api = self._api(call)
            call.request("DELETE", f"/v{api}/containers/{cid}?force=1&v=1", ok=(204, 404))
            log.info("removed canary container %s after a failed run", cid[:12])
        except CallFailed as e:
            log.warning("could not remove canary container %s (the next run sweeps it): %s",
                        cid[:12], e.detail)
        finally:
            call.close()


def _step(step: str, fn: Callable[[], _T]) -> _T:
    try:
        return fn()
    except CallFailed as e:
        raise StepFailed(step, e.outcome, f"canary {step}: {e.detail}") from e


def _quote(image: str) -> str:
    return urllib.parse.quote(image, safe="/:@")


def _ours(item: dict[str, object]) -> bool:
    """A listed container the canary made: one of its names has the canary's prefix."""
    names = item.get("Names")
    return isinstance(names, list) and any(
        isinstance(n, str) and n.lstrip("/").startswith(NAME_PREFIX) for n in names)
