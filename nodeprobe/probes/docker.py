"""dockerd over its unix socket: /_ping, /version and /info, each under a hard deadline.

Socket timeouts are per operation, so a server that trickles bytes (or a connect plus a read)
could add up past any deadline. Here every socket operation is armed with the time left until one
absolute deadline, so a call returns by the deadline however the time is spent. Each `run` uses
its own `http.client` connection and closes it, so no half-read connection is ever reused and
calls from several threads share nothing but the negotiated API version. (The standard library,
not requests + the docker SDK: the same `http.client` underneath, ~6.5 MiB less per agent.)

The API version is negotiated from the daemon (`Api-Version` of /_ping, else /version's
ApiVersion), never pinned: dockerd 20.10 tops out at 1.41 and 29.x refuses clients below 1.44.
"""

from __future__ import annotations

import errno
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.deadline import Budget as _Budget
from nodeprobe.deadline import DeadlineSocket as _DeadlineSocket
from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.unixpeer import not_a_socket

_API_VERSION = re.compile(r"^\d+\.\d+$")
_INFO_VALUES = {
    "NGoroutines": Value.GOROUTINES,
    "NFd": Value.FDS,
    "NEventsListener": Value.EVENT_LISTENERS,
    "Containers": Value.CONTAINERS,
    "ContainersRunning": Value.CONTAINERS_RUNNING,
    "ContainersPaused": Value.CONTAINERS_PAUSED,
    "Images": Value.IMAGES,
}


# ---- transport: http.client on the unix socket, every socket op armed to one deadline ---------


class _DeadlineConnection(http.client.HTTPConnection):
    """HTTP/1.1 on the unix socket, every socket operation armed to the call's deadline.

    The standard library's client, not requests + the docker SDK's adapter: the same
    `http.client` underneath, ~6.5 MiB less resident memory in the agent.
    """

    def __init__(self, socket_path: str, budget: _Budget) -> None:
        super().__init__("docker", timeout=None)
        self._socket_path = socket_path
        self._budget = budget

    def connect(self) -> None:
        sock = _DeadlineSocket(self._budget)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True, slots=True)
class _Response:
    status_code: int
    headers: http.client.HTTPMessage  # case-insensitive, as HTTP headers are
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class CallFailed(Exception):
    """A Docker call that did not give the wanted answer: its outcome and a sentence."""

    def __init__(self, outcome: Outcome, detail: str, *, status: int = 0) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.status = status
        """The HTTP status when the daemon answered (0 when it did not)."""


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps (the real OSError may sit in `__cause__` or `args`)."""
    seen: set[int] = set()
    queue = [exc]
    while queue:
        e = queue.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        nested = [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
        queue.extend(n for n in nested if isinstance(n, BaseException))


def permission_message(socket_path: str) -> str:
    return (f"permission denied on {socket_path}: the socket is root's; run as root "
            "(membership in the docker group is root-equivalent, prefer sudo)")


def classify_error(
    exc: BaseException, *, socket_path: str, request: str, deadline_s: float
) -> tuple[Outcome, str]:
    """Map what a call raised to an outcome and a sentence a person can act on."""
    causes = list(_causes(exc))

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(c, types) for c in causes)

    if has(PermissionError):
        return Outcome.ERROR, permission_message(socket_path)
    if has(FileNotFoundError):
        return Outcome.DOWN, (f"no socket at {socket_path}: dockerd is not running "
                              "(or listens elsewhere; check its -H flag)")
    if has(ConnectionRefusedError) and (wrong := not_a_socket(socket_path, daemon="dockerd")):
        return Outcome.DOWN, wrong
    if has(ConnectionRefusedError):
        return Outcome.DOWN, (f"dockerd refused the connection on {socket_path}: the socket "
                              "exists but nothing listens (dockerd crashed or is restarting)")
    if has(TimeoutError):
        return Outcome.HUNG, (f"dockerd accepted the connection on {socket_path} but did not "
                              f"answer {request} within {deadline_s:g}s")
    if any(isinstance(c, BlockingIOError) and c.errno == errno.EAGAIN for c in causes):
        return Outcome.HUNG, (f"dockerd's listen backlog on {socket_path} is full: it has "
                              f"stopped accepting connections ({request})")
    if has(http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionResetError,
           BrokenPipeError):
        return Outcome.ERROR, f"dockerd closed the connection mid-reply to {request}"
    if has(http.client.BadStatusLine, http.client.LineTooLong, http.client.HTTPException):
        return Outcome.ERROR, f"dockerd answered {request} with something that is not HTTP"
    root = causes[-1]
    return Outcome.ERROR, f"{request} on {socket_path} failed: {type(root).__name__}: {root}"


def body_snippet(resp: _Response) -> str:
    try:
        message = resp.json().get("message")
        if isinstance(message, str):
            return message
    except (ValueError, AttributeError):
        pass
    return repr(resp.content[:120])


# ---- the probe --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Result:
    outcome: Outcome
    detail: str
    values: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)


class EngineCall:
    """One `run`: its own connection, its own deadline, closed at the end whatever happened."""

    def __init__(self, socket_path: str, *, deadline: float, deadline_s: float) -> None:
        self.socket_path = socket_path
        self.deadline_s = deadline_s
        self.conn = _DeadlineConnection(socket_path, _Budget(deadline))
        self.deadline = deadline

    def _send(self, method: str, path: str, body: Any) -> _Response:
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=payload, headers=headers)
        resp = self.conn.getresponse()
        return _Response(resp.status, resp.headers, resp.read())

    def get(self, path: str) -> _Response:
        return self.request("GET", path)

    def request(
        self, method: str, path: str, *, body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> _Response:
        """One HTTP call within the deadline; a status outside `ok` raises `CallFailed`."""
        request = f"{method} {path.split('?')[0]}"
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise CallFailed(Outcome.HUNG, f"no time left for {request} within "
                                           f"{self.deadline_s:g}s")
        try:
            resp = self._send(method, path, body)
        except Exception as e:  # every failure of the call is an observation
            outcome, detail = classify_error(e, socket_path=self.socket_path, request=request,
                                             deadline_s=self.deadline_s)
            raise CallFailed(outcome, detail) from e
        if resp.status_code not in ok:
            raise CallFailed(Outcome.ERROR, f"dockerd answered {request} with HTTP "
                                            f"{resp.status_code}: {body_snippet(resp)}",
                             status=resp.status_code)
        return resp

    def get_json(self, path: str) -> dict[str, Any]:
        resp = self.get(path)
        try:
            data = resp.json()
        except ValueError as e:
            raise CallFailed(Outcome.ERROR, f"dockerd answered GET {path} with HTTP 200 but "
                                             f"the body is not JSON: {resp.content[:80]!r}") from e
        if not isinstance(data, dict):
            raise CallFailed(Outcome.ERROR, f"dockerd answered GET {path} with JSON that is "
                                             f"not an object: {type(data).__name__}")
        return data

    def close(self) -> None:
        self.conn.close()


class DockerProbe:
    """The Docker Engine API on one unix socket. `run` is safe from several threads at once."""

    runtime: Runtime = Runtime.DOCKERD
    checks: tuple[Check, ...] = (Check.DOCKER_PING, Check.DOCKER_VERSION, Check.DOCKER_INFO)

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._lock = threading.Lock()
        self._api_version: str | None = None

    @property
    def api_version(self) -> str | None:
        """The negotiated API version; None until a call negotiates it, and after DOWN or ERROR."""
        with self._lock:
            return self._api_version

    def close(self) -> None:
        """Nothing is held between calls: each `run` closes its own connection."""

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        """Make one call; returns by the deadline (plus scheduling noise) and never raises."""
        at = time.time()
        start = time.monotonic()
        call: EngineCall | None = None
        try:
            call = EngineCall(self.socket_path, deadline=start + deadline_s, deadline_s=deadline_s)
            result = self._dispatch(call, check)
        except CallFailed as e:
            result = _Result(e.outcome, e.detail)
        except Exception as e:  # a probe never raises: an unforeseen failure is an ERROR
            result = _Result(Outcome.ERROR, f"{check} on {self.socket_path} failed: "
                                            f"{type(e).__name__}: {e}")
        finally:
            if call is not None:
                call.close()
        latency = time.monotonic() - start
        if result.outcome.failed:
            if result.outcome is not Outcome.HUNG:
                # renegotiate next time: the daemon that comes back may be another version. A
                # hung daemon is still the same daemon: keep the version (and name the call).
                self._forget_version()
        elif latency > slow_s:
            result.outcome = Outcome.SLOW
            result.detail = f"slow ({latency:.2f}s > {slow_s:g}s): {result.detail}"
        api = self.api_version
        if api is not None:
            result.info.setdefault("api_version", api)
        return Observation(runtime=self.runtime, check=check, outcome=result.outcome,
                           latency_s=latency, at=at, detail=result.detail,
                           values=result.values, info=result.info)

    def _dispatch(self, call: EngineCall, check: Check) -> _Result:
        if check is Check.DOCKER_PING:
            return self._ping(call)
        if check is Check.DOCKER_VERSION:
            return self._version(call, self._negotiate(call, purpose="/version"))
        if check is Check.DOCKER_INFO:
            return self._info(call, self._negotiate(call, purpose="/info"))
        return _Result(Outcome.ERROR, f"{check} is not a Docker check")

    def _forget_version(self) -> None:
        with self._lock:
            self._api_version = None

    def _remember_version(self, version: object) -> str | None:
        if not isinstance(version, str) or not _API_VERSION.match(version):
            return None
        with self._lock:
            self._api_version = version
        return version

    def _negotiate(self, call: EngineCall, *, purpose: str) -> str:
        """The cached API version, or ask the daemon (within the same deadline)."""
        cached = self.api_version
        if cached is not None:
            return cached
        try:
            found = self._remember_version(call.get("/_ping").headers.get("Api-Version"))
            if found is None:
                found = self._remember_version(call.get_json("/version").get("ApiVersion"))
        except CallFailed as e:
            raise CallFailed(e.outcome, f"{e.detail} (negotiating the API version for "
                                         f"{purpose})") from e
        if found is None:
            raise CallFailed(Outcome.ERROR, "dockerd did not say its API version (no "
                                             "Api-Version header on /_ping, no ApiVersion in "
                                             "/version)")
        return found

    def _ping(self, call: EngineCall) -> _Result:
        resp = call.get("/_ping")
        api = self._remember_version(resp.headers.get("Api-Version"))
        suffix = f" (API {api})" if api else ""
        return _Result(Outcome.OK, f"dockerd answered GET /_ping{suffix}")

    def _version(self, call: EngineCall, api: str) -> _Result:
        path = f"/v{api}/version"
        data = call.get_json(path)
        info = _strings(data, {"Version": "version", "ApiVersion": "api_version"})
        components = data.get("Components")
        containerd = None
        if isinstance(components, list):
            for comp in components:
                if isinstance(comp, dict) and str(comp.get("Name", "")).lower() == "containerd":
                    containerd = comp
        if containerd is None:
            return _Result(Outcome.ERROR, "dockerd answers /version but lists no containerd "
                                          "component: its containerd connection is broken",
                           info=info)
        if isinstance(containerd.get("Version"), str):
            info["containerd_version"] = containerd["Version"]
        return _Result(Outcome.OK, f"dockerd {info.get('version', '?')} answered GET {path} "
                                   f"with containerd {info.get('containerd_version', '?')}",
                       info=info)

    def _info(self, call: EngineCall, api: str) -> _Result:
        path = f"/v{api}/info"
        data = call.get_json(path)
        values: dict[str, float] = {}
        for key, name in _INFO_VALUES.items():
            num = data.get(key)
            if isinstance(num, int | float) and not isinstance(num, bool):
                values[str(name)] = num
        info = _strings(data, {"Driver": "driver", "ServerVersion": "server_version"})
        shown = ", ".join(f"{k} {v:g}" for k, v in values.items())
        return _Result(Outcome.OK, f"dockerd answered GET {path}: {shown or 'no counters'}",
                       values=values, info=info)


def _strings(data: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, str]:
    return {name: data[key] for key, name in keys.items() if isinstance(data.get(key), str)}
