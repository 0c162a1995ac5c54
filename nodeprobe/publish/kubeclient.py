"""The agent's Kubernetes client: credentials and JSON requests on the standard library.

The agent makes a handful of calls (PATCH its node's status, POST/PATCH Events, GET its Node,
list/patch its NodeRemediations). Importing the `kubernetes` package for them cost ~14 MiB of
resident memory on every node (its `__init__` pulls config loaders, watch, stream, the dynamic
client, oauthlib and pydantic); this module needs only `http.client`, `ssl` and `yaml`.

Credentials, as kubectl reads them:
- in-cluster: `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's token (re-read every
  minute: bound tokens rotate) and `ca.crt`;
- a kubeconfig: the current context's cluster (`server`, `certificate-authority[-data]`,
  `insecure-skip-tls-verify`, `tls-server-name`) and user (`token`, `tokenFile`,
  `client-certificate[-data]` + `client-key[-data]`). `exec` and `auth-provider` plugins are not
  supported: the error says so.

Nothing here imports `kubernetes`; the operator keeps the official client (`publish/kube.py`).
Every request runs under one absolute deadline (`nodeprobe.deadline`), reads at most
`ClientSettings.max_reply_bytes`, re-reads a token file after a 401, honours Retry-After, and
never writes on a connection idle past `max_idle_s` (kube-apiserver closes them at 90 s).
"""

from __future__ import annotations

import http.client
import json
import math
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nodeprobe.deadline import Budget, tcp_connect, tls_connect

SMP = "application/strategic-merge-patch+json"
"""Conditions merge by `type` only under a strategic merge patch; a JSON merge replaces the list."""

REQUEST_TIMEOUT_S = 5.0
"""Upper bound for one API call (s): the agent loop must keep probing while the API is away."""

Timeout = float | tuple[float, float]
"""Total seconds, or (connect, read) for a response read as it streams."""

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where kubelet mounts the pod's service account token and the cluster CA."""

TOKEN_REREAD_S = 60.0
"""Re-read a token file this often (s): kubelet rotates projected tokens (client-go: 1 min)."""


class KubeConfigError(Exception):
    """No usable Kubernetes credentials; the message says where we looked."""


class KubeError(Exception):
    """The API server answered with a status outside 2xx."""

    def __init__(self, status: int, reason: str, body: str, *,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:300]}")
        self.status = status
        self.reason = reason
        self.body = body
        self.retry_after_s = retry_after_s
        """The server's Retry-After (429, 503): the writer's back-off waits at least this."""


class ReplyTooLarge(ValueError):
    """A reply bigger than `ClientSettings.max_reply_bytes`; it is not read further."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Limits of the agent's API client."""

    max_reply_bytes: int = 16 * 1024 * 1024
    """Largest reply body read (bytes); the agent's biggest is its own Node (tens of KiB)."""
    max_idle_s: float = 45.0
    """A connection idle longer than this is closed, not reused (s): kube-apiserver closes idle
    connections after 90 s, and a write on a connection the server just closed fails."""


API_ERRORS: tuple[type[BaseException], ...] = (
    KubeError,
    http.client.HTTPException,
    OSError,  # refused, reset, timed out, TLS (ssl.SSLError is an OSError)
    ValueError,  # a reply that does not parse
)
"""What a failed call may raise; anything else is a bug and should surface."""


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Back-off after a failed write (NPD calls this its resync)."""

    initial_s: float = 1.0
    """First retry delay (s); short so a blip costs one loop iteration or two."""
    max_s: float = 30.0
    """Longest delay (s); an API outage costs at most one call per 30 s per writer."""


class Backoff:
    """Exponential back-off with a cap; pure: the caller passes the time."""

    def __init__(self, settings: RetrySettings) -> None:
        self._settings = settings
        self.failures = 0
        """Consecutive failures since the last success."""
        self._next_try = -math.inf

    def ready(self, now: float) -> bool:
        return now >= self._next_try

    def failed(self, now: float, error: BaseException | None = None) -> float:
        """Record a failure at `now`; return the delay before the next try (at least the
        server's Retry-After when `error` carries one)."""
        delay = min(self._settings.max_s, self._settings.initial_s * 2.0 ** min(self.failures, 30))
        if isinstance(error, KubeError) and error.retry_after_s is not None:
            delay = max(delay, min(error.retry_after_s, self._settings.max_s))
        self.failures += 1
        self._next_try = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self._next_try = -math.inf


def parse_rfc3339(text: str) -> float:
    """Unix seconds from a Kubernetes time (`...Z`, fractions allowed); ValueError if not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rfc3339(ts: float) -> str:
    """Kubernetes `metav1.Time`: UTC, whole seconds, trailing Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_HINTS = {
    401: "the service account token is missing or expired",
    403: "RBAC does not allow it; see the chart's ClusterRole",
    404: "it does not exist; is NODE_NAME the node's name?",
}


def describe_status(status: int, reason: str, *, what: str) -> str:
    """`what: HTTP 403 Forbidden (hint)`: one line a person can act on."""
    text = f"{what}: HTTP {status} {reason}"
    hint = _HINTS.get(status, "")
    return f"{text} ({hint})" if hint else text


def describe_error(e: BaseException, *, what: str) -> str:
    """One line a person can act on, naming the call that failed."""
    if isinstance(e, KubeError):
        return describe_status(e.status, e.reason, what=what)
    return f"{what}: {type(e).__name__}: {e}"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    body: bytes
    retry_after: str | None = None


class _Token:
    """A bearer token, literal or from a file re-read every TOKEN_REREAD_S."""

    def __init__(self, *, value: str = "", path: Path | None = None) -> None:
        self._value, self._path, self._read_at = value, path, -math.inf
        self._lock = threading.Lock()

    def header(self) -> str | None:
        if self._path is not None:
            with self._lock:
                if time.monotonic() - self._read_at >= TOKEN_REREAD_S:
                    self._value = self._path.read_text().strip()
                    self._read_at = time.monotonic()
        return f"Bearer {self._value}" if self._value else None

    def reread(self) -> bool:
        """Read the file again now (after a 401); True when the token changed."""
        if self._path is None:
            return False
        with self._lock:
            old, self._value = self._value, self._path.read_text().strip()
            self._read_at = time.monotonic()
            return self._value != old


class KubeClient:
    """JSON requests to one API server; one keep-alive connection per calling thread."""

    def __init__(self, server: str, *, tls: ssl.SSLContext | None = None,
                 token: _Token | None = None, server_name: str | None = None,
                 settings: ClientSettings | None = None) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise KubeConfigError(f"server {server!r} is not an http(s) URL")
        self.server = server.rstrip("/")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._tls = tls
        self._server_name = server_name
        self._token = token or _Token()
        self._local = threading.local()
        self.settings = settings or ClientSettings()

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def in_cluster(cls, root: Path = SERVICE_ACCOUNT, *,
                   settings: ClientSettings | None = None) -> KubeClient:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get(
            "KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeConfigError("in-cluster service account: KUBERNETES_SERVICE_HOST is not set")
        token, ca = root / "token", root / "ca.crt"
        for path in (token, ca):
            if not path.is_file():
                raise KubeConfigError(f"in-cluster service account: {path} does not exist "
                                      "(is automountServiceAccountToken off?)")
        host = f"[{host}]" if ":" in host else host
        try:
            tls = ssl.create_default_context(cafile=str(ca))
        except (OSError, ssl.SSLError) as e:
            raise KubeConfigError(f"in-cluster service account: {ca}: {e}") from e
        return cls(f"https://{host}:{port}", tls=tls, token=_Token(path=token),
                   settings=settings)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, *,
                        settings: ClientSettings | None = None) -> KubeClient:
        """The current context of `path` (default $KUBECONFIG's first file, or ~/.kube/config)."""
        from nodeprobe.publish.kubeconfig import load_kubeconfig

        return load_kubeconfig(path, settings=settings)

    # ---- requests ------------------------------------------------------------------------

    def send(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
             body: object = None, content_type: str = "application/json",
             timeout: Timeout = REQUEST_TIMEOUT_S) -> Response:
        """One request, done by one absolute deadline (`timeout`, or its read part): connect,
        TLS, write and the whole reply. Within it, at most one more try each when a reused
        connection turns out closed by the server, after a 401 with a token file that changed,
        and after a Retry-After that still fits."""
        conn = self._connection()
        conn.budget.start(timeout[1] if isinstance(timeout, tuple) else timeout)
        url = self._prefix + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        tried: set[str] = set()
        while True:
            resp = self._once(conn, method, url, data, content_type, tried)
            if resp is None:
                continue  # a reused connection the server had closed: once more, fresh
            if resp.status == 401 and "401" not in tried and self._token.reread():
                tried.add("401")
                continue
            wait = _retry_after(resp)
            if wait is not None and "retry" not in tried and wait < _left(conn.budget):
                tried.add("retry")
                time.sleep(wait)
                continue
            return resp

    def _once(self, conn: _Connection, method: str, url: str, data: bytes | None,
              content_type: str, tried: set[str]) -> Response | None:
        headers = {"Accept": "application/json", "User-Agent": "nodeprobe"}
        if data is not None:
            headers["Content-Type"] = content_type
        auth = self._token.header()
        if auth:
            headers["Authorization"] = auth
        if conn.sock is not None and time.monotonic() - conn.last_used > self.settings.max_idle_s:
            conn.close()  # the server may be closing it this very moment
        reused = conn.sock is not None
        try:
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            raw = _read_capped(resp, self.settings.max_reply_bytes)
        except _CLOSED_BY_PEER:
            conn.close()
            if reused and "stale" not in tried:
                tried.add("stale")
                return None
            raise
        except BaseException:
            conn.close()  # a half-read connection is never reused
            raise
        conn.last_used = time.monotonic()
        if resp.will_close or not resp.isclosed():
            conn.close()
        return Response(resp.status, resp.reason, raw, resp.getheader("Retry-After"))

    def request_json(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                     body: object = None, content_type: str = "application/json",
                     timeout: Timeout = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """The parsed JSON reply; `KubeError` (with the server's status and body) otherwise."""
        resp = self.send(method, path, query=query, body=body, content_type=content_type,
                         timeout=timeout)
        if not 200 <= resp.status <= 299:
            raise KubeError(resp.status, resp.reason, resp.body.decode(errors="replace"),
                            retry_after_s=_retry_after(resp))
        reply: dict[str, Any] = json.loads(resp.body) if resp.body else {}
        return reply

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self._host, self._port, tls=self._tls if self._https else None,
                               server_name=self._server_name)
            self._local.conn = conn
        return conn


_CLOSED_BY_PEER = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                   ssl.SSLEOFError, ssl.SSLZeroReturnError)
"""What a write on a connection the server closed while idle raises; the server never saw the
request, so trying once more on a fresh connection is safe (client-go does the same)."""


def _left(budget: Budget) -> float:
    try:
        return budget.remaining()
    except TimeoutError:
        return 0.0


def _retry_after(resp: Response) -> float | None:
    """Seconds from a 429/503 reply's Retry-After (the API server sends whole seconds)."""
    if resp.status not in (429, 503) or not resp.retry_after:
        return None
    try:
        return max(0.0, float(resp.retry_after))
    except ValueError:
        return None


def _read_capped(resp: http.client.HTTPResponse, cap: int) -> bytes:
    length = resp.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise ReplyTooLarge(f"reply of {int(length)} bytes is over the {cap}-byte limit")
    raw = resp.read(cap + 1)
    if len(raw) > cap:
        raise ReplyTooLarge(f"reply is over the {cap}-byte limit")
    if not resp.isclosed():
        resp.read(1)  # the chunked terminator, so the connection can be reused
    return raw


def _ascii(host: str) -> str | bytes:
    """An ASCII host name or IP as bytes: given a str, getaddrinfo and ssl's server name encode
    it with the idna codec, whose import (stringprep, unicodedata) costs ~0.45 MiB resident."""
    return host.encode() if host.isascii() else host


class _Connection(http.client.HTTPConnection):
    """HTTP/1.1 (TLS optional) whose every socket operation is armed to the request's deadline
    (`nodeprobe.deadline`): a server that trickles its reply cannot hold a call past it."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None,
                 server_name: str | None) -> None:
        super().__init__(host, port, timeout=None)
        self._tls = tls
        self._server_name = server_name
        self.budget = Budget()
        self.last_used = -math.inf

    def connect(self) -> None:
        sock: socket.socket = tcp_connect(_ascii(self.host), self.port, self.budget)
        if self._tls is not None:
            try:
                sock = tls_connect(sock, self._tls, _ascii(self._server_name or self.host),
                                   self.budget)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


def new_client(*, kubeconfig: str | None = None, in_cluster: bool = False,
               settings: ClientSettings | None = None) -> KubeClient:
    """In-cluster credentials, or a kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."""
    if in_cluster:
        return KubeClient.in_cluster(settings=settings)
    return KubeClient.from_kubeconfig(kubeconfig, settings=settings)


def request_json(api: KubeClient, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """`api.request_json(...)`, as a function (the writers' call sites read better this way)."""
    return api.request_json(method, path, **kw)
