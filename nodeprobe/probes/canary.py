"""The container start canary, Docker flavour, and what both flavours share.

The canary is the one check that walks the path a pod start takes: image store, snapshotter
(overlay2), shim, runc. Docker: POST /containers/create (no network, no log driver), start,
kill, wait, DELETE. CRI (canary_cri.py): RunPodSandbox, CreateContainer, StartContainer,
StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.

Deadline: one run shares one absolute deadline, every call is armed with what is left of it. A
run that fails or times out after creating something hands the removal to a background thread
with its own deadline (`checks.canary.cleanupDeadline`), and every run first sweeps what earlier
runs (or an earlier agent) left behind, found by the label `nodeprobe.io/canary`. So a daemon
that hangs mid-run costs one thread for a bounded time and never accumulates containers.

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
from dataclasses import dataclass, field
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


@dataclass(slots=True)
class Timings:
    """Seconds per step and the time to a running container, filled in as the run goes."""

    values: dict[str, float] = field(default_factory=dict)
    to_running: float | None = None

    def timed(self, value: Value, started: float) -> None:
        self.values[str(value)] = time.monotonic() - started


def finish(
    runtime: Runtime, *, at: float, start: float, slow_s: float, timings: Timings,
    failure: StepFailed | None, detail: str, info: dict[str, str],
) -> Observation:
    """The observation of one run: SLOW when the start took longer than the objective."""
    if failure is not None:
        info = {**info, "step": failure.step}
        return Observation(runtime, Check.CANARY, failure.outcome, time.monotonic() - start, at,
                           failure.detail, dict(timings.values), info)
    latency = timings.to_running if timings.to_running is not None else 0.0
    outcome = Outcome.OK
    if latency > slow_s:
        outcome = Outcome.SLOW
        detail = f"slow container start ({latency:.2f}s > {slow_s:g}s): {detail}"
    return Observation(runtime, Check.CANARY, outcome, latency, at, detail,
                       dict(timings.values), info)


def steps_text(timings: Timings) -> str:
    names = {
        Value.CANARY_SANDBOX_SECONDS: "sandbox", Value.CANARY_CREATE_SECONDS: "create",
        Value.CANARY_START_SECONDS: "start", Value.CANARY_REMOVE_SECONDS: "remove",
    }
    return ", ".join(f"{names[Value(k)]} {v:.2f}s" for k, v in timings.values.items())


class Cleaner:
    """Removes what a failed run left, in one background thread at a time, under a deadline."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self, work: Callable[[], None]) -> None:
        """Run `work` in the background unless a cleanup is already running (the next run's
        sweep then catches what this one would have removed)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, args=(work,),
                                            name=f"{self._name}-cleanup", daemon=True)
            self._thread.start()

    def join(self, timeout_s: float) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:  # the next run's sweep retries; never let a thread die loudly
            log.warning("%s cleanup failed; the next run sweeps again", self._name, exc_info=True)


def image_missing_message(image: str, runtime: str, store: str) -> str:
    return (f"the canary image {image} is not in {runtime}'s local image store ({store}); "
            "nodeprobe never pulls: set checks.canary.image to an image the node keeps (its "
            "sandbox/pause image), or pre-pull it")


# ---- Docker -------------------------------------------------------------------------------------


class DockerCanary:
    """The canary through the Docker Engine API. One run at a time (the scheduler's rule)."""

    runtime: Runtime = Runtime.DOCKERD
    checks: tuple[Check, ...] = (Check.CANARY,)

    def __init__(self, socket_path: str, *, image: str, cleanup_deadline_s: float) -> None:
        self.socket_path = socket_path
        self.image = image
        self.cleanup_deadline_s = cleanup_deadline_s
        self.cleaner = Cleaner("docker-canary")

    def close(self) -> None:
        """Nothing is held between runs; a cleanup in flight ends at its own deadline."""

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

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        at, start = time.time(), time.monotonic()
        timings = Timings()
        call = EngineCall(self.socket_path, deadline=start + deadline_s, deadline_s=deadline_s)
        cid: str | None = None
        failure: StepFailed | None = None
        try:
            api = self._step("setup", lambda: self._api(call))
            self._sweep(call, api)
            cid = self._create(call, api, timings)
            begun = time.monotonic()
            self._step("start", lambda: call.request("POST", f"/v{api}/containers/{cid}/start",
                                                     ok=(204, 304)))
            timings.timed(Value.CANARY_START_SECONDS, begun)
            timings.to_running = time.monotonic() - start
            begun = time.monotonic()
            self._step("remove", lambda: self._remove(call, api, cid or ""))
            cid = None
            timings.timed(Value.CANARY_REMOVE_SECONDS, begun)
        except StepFailed as e:
            failure = e
        except Exception as e:  # a probe never raises
            failure = StepFailed("setup", Outcome.ERROR,
                                 f"the Docker canary failed: {type(e).__name__}: {e}")
        finally:
            call.close()
        if cid is not None:
            left = cid
            self.cleaner.start(lambda: self._cleanup(left))
        detail = f"started and removed a container from {self.image}: {steps_text(timings)}"
        return finish(self.runtime, at=at, start=start, slow_s=slow_s, timings=timings,
                      failure=failure, detail=detail, info={"image": self.image})

    # ---- steps --------------------------------------------------------------------------

    def _call(self, deadline_s: float) -> EngineCall:
        return EngineCall(self.socket_path, deadline=time.monotonic() + deadline_s,
                          deadline_s=deadline_s)

    @staticmethod
    def _step(step: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except CallFailed as e:
            raise StepFailed(step, e.outcome, f"canary {step}: {e.detail}") from e

    @staticmethod
    def _api(call: EngineCall) -> str:
        version = call.get("/_ping").headers.get("Api-Version")
        if not version:
            raise CallFailed(Outcome.ERROR, "dockerd sent no Api-Version header on /_ping")
        return str(version)

    def _create(self, call: EngineCall, api: str, timings: Timings) -> str:
        body = {
            "Image": self.image,
            "Labels": {LABEL: "true"},
            "NetworkDisabled": True,
            "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "none"}},
        }
        name = NAME_PREFIX + uuid.uuid4().hex[:12]
        begun = time.monotonic()
        try:
            resp = call.request("POST", f"/v{api}/containers/create?name={name}", body=body,
                                ok=(201,))
        except CallFailed as e:
            if e.status == 404 and "image" in e.detail.lower():
                raise StepFailed("image", Outcome.ERROR, image_missing_message(
                    self.image, "dockerd", "docker images")) from e
            raise StepFailed("create", e.outcome, f"canary create: {e.detail}") from e
        timings.timed(Value.CANARY_CREATE_SECONDS, begun)
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

    def _sweep(self, call: EngineCall, api: str) -> None:
        """Remove leftovers of earlier runs; a failure here is the create's to report."""
        if self.cleaner.busy():
            return
        filters = urllib.parse.quote(json.dumps({"label": [LABEL]}))
        try:
            found = call.request("GET", f"/v{api}/containers/json?all=1&filters={filters}").json()
            for item in found if isinstance(found, list) else []:
                if isinstance(item, dict) and isinstance(item.get("Id"), str):
                    log.info("removing canary leftover %s", item["Id"][:12])
                    call.request("DELETE", f"/v{api}/containers/{item['Id']}?force=1&v=1",
                                 ok=(204, 404))
        except (CallFailed, ValueError):
            log.debug("canary sweep failed", exc_info=True)

    def _cleanup(self, cid: str) -> None:
        call = self._call(self.cleanup_deadline_s)
        try:
            api = self._api(call)
            call.request("DELETE", f"/v{api}/containers/{cid}?force=1&v=1", ok=(204, 404))
            log.info("removed canary container %s after a failed run", cid[:12])
        except CallFailed as e:
            log.warning("could not remove canary container %s: %s", cid[:12], e.detail)
        finally:
            call.close()


def _quote(image: str) -> str:
    return urllib.parse.quote(image, safe="/:@")
