"""The CRI probe: containerd's Kubernetes-facing gRPC API, as kubelet sees it.

One call per check (Version, Status, ListPodSandbox, ListContainers, ImageFsInfo), each under a
hard gRPC deadline, never `wait_for_ready`: a refused connection is DOWN at once, a call the
runtime accepted but did not answer is HUNG when its deadline passes. `runtime.v1` is tried
first; `runtime.v1alpha2` only when v1 answers UNIMPLEMENTED (containerd 1.7 flags v1alpha2 use
as deprecated on the node, 2.0 removed it), and the choice is remembered until the runtime goes
DOWN (it may come back as another version). After DOWN or HUNG the channel is replaced, so a
runtime that comes back answers the next call instead of waiting out gRPC's reconnect back-off.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import grpc

from nodeprobe.cri import runtime_v1_pb2, runtime_v1_pb2_grpc
from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.grpc_channels import Channels, ProbeClosed, first_string
from nodeprobe.probes.unixpeer import not_a_socket

log = logging.getLogger(__name__)

V1 = "v1"
V1ALPHA2 = "v1alpha2"
CRI_DISABLED = "disabled"
"""`cri_api` info value when containerd answers on its own API but serves no CRI."""
NATIVE_VERSION = "/containerd.services.version.v1.Version/Version"
"""containerd's own Version RPC (google.protobuf.Empty -> VersionResponse{version=1, revision=2});
not namespaced, served whether or not the CRI plugin is loaded."""
INFO_CRI_API = "cri_api"
"""Info key: the CRI version this probe talks (`v1` or `v1alpha2`)."""
KUBELET_API_VERSION = "0.1.0"
"""What kubelet sends in VersionRequest.version; runtimes ignore it but some log it."""
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""kubelet's limit for CRI replies; ListContainers on a busy node can be megabytes."""
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.enable_retries", 0),
    ("grpc.use_local_subchannel_pool", 1),
)
"""Back-off capped at 1 s (gRPC's default grows to 120 s) so a restarted runtime is seen at once;
no transparent retries (one probe = one call); a private subchannel pool so a replaced channel
really opens a new connection instead of sharing the old, possibly wedged, one."""

_APIS: dict[str, tuple[ModuleType, ModuleType]] = {V1: (runtime_v1_pb2, runtime_v1_pb2_grpc)}


def _api(name: str) -> tuple[ModuleType, ModuleType]:
    """The stubs of one CRI version. v1alpha2's are imported on the first fallback only: a node
    on containerd 1.7+ or 2.x never needs them, and they cost ~0.6 MiB of resident memory."""
    if name not in _APIS:
        _APIS[name] = (importlib.import_module(f"nodeprobe.cri.runtime_{name}_pb2"),
                       importlib.import_module(f"nodeprobe.cri.runtime_{name}_pb2_grpc"))
    return _APIS[name]


class BadReply(ValueError):
    """The runtime answered, but not with what the CRI promises."""


@dataclass(frozen=True, slots=True)
class _Reading:
    """What one good reply says; `failed_detail` set means ERROR despite a valid RPC."""

    detail: str
    values: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    failed_detail: str = ""


def _read_version(reply: Any, probe: CriProbe) -> _Reading:
    name, version = reply.runtime_name, reply.runtime_version
    if not name or not version:
        raise BadReply(f"Version reply names no runtime (runtime_name={name!r}, "
                       f"runtime_version={version!r})")
    api_version = reply.runtime_api_version
    info = {
        "runtime_name": name,
        "runtime_version": version,
        "runtime_api_version": api_version,
        "version": version,
        "api_version": api_version,
    }
    return _Reading(f"{name} {version}, CRI API {api_version}", info=info)


def _condition(reply: Any, kind: str) -> tuple[bool, str] | None:
    for cond in reply.status.conditions:
        if cond.type == kind:
            why = ": ".join(p for p in (cond.reason, cond.message) if p)
            return bool(cond.status), why
    return None


def _read_status(reply: Any, probe: CriProbe) -> _Reading:
    runtime = _condition(reply, "RuntimeReady")
    if runtime is None:
        raise BadReply("Status reply lists no RuntimeReady condition")
    network = _condition(reply, "NetworkReady") or (False, "no NetworkReady condition reported")
    values: dict[str, float] = {
        Value.RUNTIME_READY: 1.0 if runtime[0] else 0.0,
        Value.NETWORK_READY: 1.0 if network[0] else 0.0,
    }
    parts, info = [], {}
    for kind, (ready, why) in (("RuntimeReady", runtime), ("NetworkReady", network)):
        text = f"{kind}={str(ready).lower()}" + ("" if ready or not why else f" ({why})")
        parts.append(text)
        info[kind] = text
    detail = "CRI reports " + ", ".join(parts)
    if not runtime[0]:
        return _Reading(detail, values, info, failed_detail=f"CRI reports {info['RuntimeReady']}")
    if not network[0]:
        if probe.require_network_ready:
            return _Reading(detail, values, info,
                            failed_detail=f"CRI reports {info['NetworkReady']}")
        detail += " (NetworkReady not required)"
    return _Reading(detail, values, info)


def _read_sandboxes(reply: Any, probe: CriProbe) -> _Reading:
    items = reply.items
    ready = sum(1 for s in items if s.state == 0)  # SANDBOX_READY
    values: dict[str, float] = {Value.POD_SANDBOXES: float(len(items)),
                                Value.POD_SANDBOXES_READY: float(ready)}
    return _Reading(f"{len(items)} pod sandboxes ({ready} ready)", values)


def _read_containers(reply: Any, probe: CriProbe) -> _Reading:
    items = reply.containers
    running = sum(1 for c in items if c.state == 1)  # CONTAINER_RUNNING
    values: dict[str, float] = {Value.CONTAINERS: float(len(items)),
                                Value.CONTAINERS_RUNNING: float(running)}
    return _Reading(f"{len(items)} containers ({running} running)", values)


def _read_image_fs(reply: Any, probe: CriProbe) -> _Reading:
    if not reply.image_filesystems:
        raise BadReply("ImageFsInfo reply lists no image filesystem")
    fs = reply.image_filesystems[0]  # kubelet reads the first one too
    if fs.timestamp <= 0:
        raise BadReply(f"ImageFsInfo reply has no timestamp (timestamp={fs.timestamp})")
    stamp = fs.timestamp / 1e9
    age = time.time() - stamp
    values: dict[str, float] = {
        Value.IMAGE_FS_TIMESTAMP_SECONDS: stamp,
        Value.IMAGE_FS_USED_BYTES: float(fs.used_bytes.value),
    }
    return _Reading(
        f"image fs {fs.fs_id.mountpoint or '?'}: {fs.used_bytes.value} bytes used, "
        f"stats {age:.0f}s old",
        values,
        {"image_fs_mountpoint": fs.fs_id.mountpoint},
    )


@dataclass(frozen=True, slots=True)
class _Call:
    stub: str
    method: str
    request: Callable[[ModuleType], Any]
    read: Callable[[Any, CriProbe], _Reading]


_CALLS: Mapping[Check, _Call] = {
    Check.CRI_VERSION: _Call("RuntimeServiceStub", "Version",
                             lambda pb: pb.VersionRequest(version=KUBELET_API_VERSION),
                             _read_version),
    Check.CRI_STATUS: _Call("RuntimeServiceStub", "Status", lambda pb: pb.StatusRequest(),
                            _read_status),
    Check.CRI_LIST_POD_SANDBOX: _Call("RuntimeServiceStub", "ListPodSandbox",
                                      lambda pb: pb.ListPodSandboxRequest(), _read_sandboxes),
    Check.CRI_LIST_CONTAINERS: _Call("RuntimeServiceStub", "ListContainers",
                                     lambda pb: pb.ListContainersRequest(), _read_containers),
    Check.CRI_IMAGE_FS_INFO: _Call("ImageServiceStub", "ImageFsInfo",
                                   lambda pb: pb.ImageFsInfoRequest(), _read_image_fs),
}


class CriProbe:
    """CRI over gRPC on one unix socket. `run` is safe from several threads at once."""

    runtime = Runtime.CONTAINERD
    checks = tuple(_CALLS)

    def __init__(self, socket_path: str, *, require_network_ready: bool = True) -> None:
        path = socket_path.removeprefix("unix://")
        self.socket_path = os.path.abspath(path)
        self.require_network_ready = require_network_ready
        """False: Status NetworkReady=false is reported (values, info, detail) but stays OK."""
        self._channels = Channels(f"unix://{self.socket_path}", options=CHANNEL_OPTIONS)
        self._api_lock = threading.Lock()
        self._api: str | None = None

    @property
    def api(self) -> str | None:
        """The CRI version chosen so far (`v1`, `v1alpha2`), None before the first answer."""
        with self._api_lock:
            return self._api

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        at, start = time.time(), time.monotonic()
        try:
            outcome, detail, values, info = self._run(check, start + deadline_s, deadline_s)
        except Exception as e:  # the protocol promises an observation, never an exception
            log.debug("CRI %s failed unexpectedly", check, exc_info=True)
            outcome, detail, values, info = (
                Outcome.ERROR, f"{self._name(check)} failed: {type(e).__name__}: {e}", {}, {})
        latency = time.monotonic() - start
        if outcome is Outcome.OK and latency > slow_s:
            outcome = Outcome.SLOW
            detail += f" (took {latency:.3f}s, objective {slow_s:g}s)"
        return Observation(self.runtime, check, outcome, latency, at, detail, values, info)

    def close(self) -> None:
        self._channels.close()

    # ---- internals ----------------------------------------------------------------------

    def _name(self, check: Check) -> str:
        call = _CALLS.get(check)
        method = call.method if call else str(check)
        return f"CRI {method} on {self.socket_path}"

    def _run(self, check: Check, deadline: float, deadline_s: float
             ) -> tuple[Outcome, str, dict[str, float], dict[str, str]]:
        call = _CALLS.get(check)
        if call is None:
            return Outcome.ERROR, f"the CRI probe has no check {check!r}", {}, {}
        if deadline_s <= 0:
            return Outcome.ERROR, f"deadline must be positive, got {deadline_s}", {}, {}
        try:
            with self._channels.lease() as channel:
                try:
                    if self.api == CRI_DISABLED:
                        raise _NeitherApi(V1, V1ALPHA2)
                    api, reply = self._negotiated_call(channel, call, deadline)
                except _NeitherApi as e:
                    return self._without_cri(check, channel, deadline, deadline_s, e)
                except grpc.RpcError as e:
                    outcome, detail = self._classify(check, e, deadline_s)
                    if outcome in (Outcome.DOWN, Outcome.HUNG):
                        self._channels.replace(channel)
                    if outcome is Outcome.DOWN:
                        with self._api_lock:
                            self._api = None  # it may come back as another version
                    return outcome, detail, {}, {}
        except ProbeClosed as e:
            return Outcome.ERROR, f"{self._name(check)}: {e}", {}, {}
        info = {INFO_CRI_API: api}
        try:
            reading = call.read(reply, self)
        except BadReply as e:
            return Outcome.ERROR, f"{self._name(check)}: bad reply: {e}", {}, info
        info.update(reading.info)
        if reading.failed_detail:
            return Outcome.ERROR, reading.failed_detail, reading.values, info
        return Outcome.OK, reading.detail, reading.values, info

    def _negotiated_call(self, channel: grpc.Channel, call: _Call, deadline: float
                         ) -> tuple[str, Any]:
        """Call on the remembered API (v1 first); on UNIMPLEMENTED try the other once."""
        known = self.api
        first = known or V1
        try:
            reply = self._invoke(channel, call, first, deadline)
        except grpc.RpcError as e:
            if e.code() is not grpc.StatusCode.UNIMPLEMENTED:
                if known is None and e.code() not in _NOT_ANSWERED:
                    self._remember(first)
                raise
        else:
            if known is None:
                self._remember(first)
            return first, reply
        other = V1ALPHA2 if first == V1 else V1
        try:
            reply = self._invoke(channel, call, other, deadline)
        except grpc.RpcError as e:
            if e.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise _NeitherApi(first, other) from e
            raise
        self._remember(other)
        return other, reply

    def _without_cri(self, check: Check, channel: grpc.Channel, deadline: float,
                     deadline_s: float, neither: _NeitherApi
                     ) -> tuple[Outcome, str, dict[str, float], dict[str, str]]:
        """Neither CRI version is served. If containerd's own API answers, its CRI plugin is
        disabled (Docker 23+ ships containerd so): not a fault. Skip CRI, say so, and keep
        containerd's own Version as the liveness call of this check."""
        rpc = channel.unary_unary(NATIVE_VERSION, request_serializer=lambda _: b"",
                                  response_deserializer=lambda raw: raw)
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            raw = rpc(b"", timeout=remaining, wait_for_ready=False)
        except grpc.RpcError as e:
            if self.api == CRI_DISABLED:
                outcome, detail = self._classify(check, e, deadline_s)
                if outcome is Outcome.DOWN:
                    with self._api_lock:
                        self._api = None
                return outcome, detail.replace(f"CRI {_CALLS[check].method}",
                                               "containerd's Version (CRI disabled)"), {}, {}
            return Outcome.ERROR, f"{self._name(check)}: {neither}", {}, {}
        version = first_string(raw) or "?"
        if self.api != CRI_DISABLED:
            log.warning("%s: containerd %s answers, but its CRI plugin is disabled: CRI checks "
                        "skipped, containerd's own Version probed instead", self.socket_path,
                        version)
            self._remember(CRI_DISABLED)
        detail = (f"CRI not served (containerd {version} has its CRI plugin disabled): "
                  f"{_CALLS[check].method} skipped; containerd's own Version answers")
        return Outcome.OK, detail, {}, {INFO_CRI_API: CRI_DISABLED, "version": version,
                                        "runtime_name": "containerd"}

    def _remember(self, api: str) -> None:
        with self._api_lock:
            if self._api != api:
                log.info("CRI on %s: using runtime.%s", self.socket_path, api)
            self._api = api

    @staticmethod
    def _invoke(channel: grpc.Channel, call: _Call, api: str, deadline: float) -> Any:
        pb, pb_grpc = _api(api)
        stub = getattr(pb_grpc, call.stub)(channel)
        remaining = max(deadline - time.monotonic(), 0.001)
        return getattr(stub, call.method)(call.request(pb), timeout=remaining,
                                          wait_for_ready=False)

    def _classify(self, check: Check, e: grpc.RpcError, deadline_s: float) -> tuple[Outcome, str]:
        name = self._name(check)
        code = e.code()
        details = e.details() or ""
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome.HUNG, f"{name} did not answer within {deadline_s:g}s"
        if code is grpc.StatusCode.UNAVAILABLE:
            return self._unavailable(name, details)
        return Outcome.ERROR, f"{name} failed: {code.name}: {details}"

    def _unavailable(self, name: str, details: str) -> tuple[Outcome, str]:
        """gRPC says only 'failed to connect'; ask the socket itself why."""
        path = self.socket_path
        try:
            is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
        except FileNotFoundError:
            return Outcome.DOWN, (f"{name}: socket does not exist: is containerd running, and is "
                                  "this its CRI socket (containerd.sock)?")
        except OSError as e:
            return Outcome.ERROR, f"{name}: cannot stat the socket: {e.strerror or e}"
        if not is_socket:
            wrong = not_a_socket(path, daemon="containerd") or f"{path} is not a socket"
            return Outcome.DOWN, f"{name}: {wrong}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            try:
                s.connect(path)
            except ConnectionRefusedError:
                return Outcome.DOWN, (f"{name}: connection refused: nothing listens on the "
                                      "socket (containerd crashed or stopped)")
            except PermissionError:
                return Outcome.ERROR, (f"{name}: permission denied on the socket: run as root "
                                       "or mount it read-write into the pod")
            except TimeoutError:
                return Outcome.HUNG, (f"{name}: the socket does not accept connections "
                                      "(listen backlog full: containerd is not accepting)")
            except OSError as e:
                return Outcome.DOWN, f"{name}: cannot connect: {e.strerror or e}"
        return Outcome.ERROR, (f"{name}: the socket accepts connections but gRPC failed "
                               f"({details}): is this a CRI gRPC socket?")


_NOT_ANSWERED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                           grpc.StatusCode.CANCELLED})
"""Codes that say nothing about which API the runtime speaks."""


class _NeitherApi(Exception):
    """Both runtime.v1 and runtime.v1alpha2 answered UNIMPLEMENTED."""

    def __init__(self, first: str, other: str) -> None:
        super().__init__(f"the runtime implements neither runtime.{first} nor runtime.{other} "
                         "(UNIMPLEMENTED): not a CRI runtime, or its CRI plugin is disabled "
                         "(containerd: disabled_plugins in config.toml)")
