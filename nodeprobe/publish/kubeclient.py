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
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:300]}")
        self.status = status
        self.reason = reason
        self.body = body


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

    def failed(self, now: float) -> float:
        """Record a failure at `now`; return the delay before the next try."""
        delay = min(self._settings.max_s, self._settings.initial_s * 2.0 ** min(self.failures, 30))
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


class KubeClient:
    """JSON requests to one API server; one keep-alive connection per calling thread."""

    def __init__(self, server: str, *, tls: ssl.SSLContext | None = None,
                 token: _Token | None = None, server_name: str | None = None) -> None:
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

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def in_cluster(cls, root: Path = SERVICE_ACCOUNT) -> KubeClient:
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
        return cls(f"https://{host}:{port}", tls=tls, token=_Token(path=token))

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> KubeClient:
        """The current context of `path` (default $KUBECONFIG's first file, or ~/.kube/config)."""
        import yaml

        where = path or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                         or str(Path.home() / ".kube" / "config"))
        try:
            doc = yaml.safe_load(Path(where).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise KubeConfigError(f"cannot load Kubernetes credentials from {where}: {e}") from e
        try:
            return _from_kubeconfig_doc(doc if isinstance(doc, dict) else {},
                                        base=Path(where).parent)
        except KubeConfigError as e:
            raise KubeConfigError(f"{where}: {e}") from e

    # ---- requests ------------------------------------------------------------------------

    def send(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
             body: object = None, content_type: str = "application/json",
             timeout: Timeout = REQUEST_TIMEOUT_S) -> Response:
        """One request; the whole reply read within `timeout` (total, or (connect, read))."""
        connect_s, read_s = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        deadline = time.monotonic() + (read_s if isinstance(timeout, tuple) else timeout)
        url = self._prefix + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": "nodeprobe"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        auth = self._token.header()
        if auth:
            headers["Authorization"] = auth
        conn = self._connection(connect_s)
        try:
            if conn.sock is None:
                conn.connect()
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            conn.request(method, url, body=data, headers=headers)
            resp = conn.getresponse()
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            raw = resp.read()
        except BaseException:
            conn.close()  # a half-read connection is never reused
            raise
        if resp.will_close:
            conn.close()
        return Response(resp.status, resp.reason, raw)

    def request_json(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                     body: object = None, content_type: str = "application/json",
                     timeout: Timeout = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """The parsed JSON reply; `KubeError` (with the server's status and body) otherwise."""
        resp = self.send(method, path, query=query, body=body, content_type=content_type,
                         timeout=timeout)
        if not 200 <= resp.status <= 299:
            raise KubeError(resp.status, resp.reason, resp.body.decode(errors="replace"))
        reply: dict[str, Any] = json.loads(resp.body) if resp.body else {}
        return reply

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def _connection(self, connect_s: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = _HTTPSConnection(self._host, self._port, timeout=connect_s,
                                        context=self._tls, server_name=self._server_name)
            else:
                conn = _HTTPConnection(self._host, self._port, timeout=connect_s)
            self._local.conn = conn
        conn.timeout = connect_s
        return conn


def _ascii(host: str) -> str | bytes:
    """An ASCII host name or IP as bytes: given a str, getaddrinfo and ssl's server name encode
    it with the idna codec, whose import (stringprep, unicodedata) costs ~0.45 MiB resident."""
    return host.encode() if host.isascii() else host


def _connect_tcp(host: str, port: int, timeout: float | None) -> socket.socket:
    address = (_ascii(host), port)  # getaddrinfo takes bytes; typeshed's annotation says str
    sock = socket.create_connection(address, timeout)  # type: ignore[arg-type]
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = _connect_tcp(self.host, self.port, self.timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS with an optional TLS server name other than the host (`tls-server-name`)."""

    def __init__(self, host: str, port: int, *, timeout: float, context: ssl.SSLContext | None,
                 server_name: str | None) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._ctx = context or ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self._ctx.wrap_socket(_connect_tcp(self.host, self.port, self.timeout),
                                          server_hostname=_ascii(self._server_name or self.host))


def new_client(*, kubeconfig: str | None = None, in_cluster: bool = False) -> KubeClient:
    """In-cluster credentials, or a kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."""
    return KubeClient.in_cluster() if in_cluster else KubeClient.from_kubeconfig(kubeconfig)


def request_json(api: KubeClient, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """`api.request_json(...)`, as a function (the writers' call sites read better this way)."""
    return api.request_json(method, path, **kw)


# ---- kubeconfig -------------------------------------------------------------------------------


def _named(doc: Mapping[str, Any], kind: str, name: str) -> dict[str, Any]:
    for item in doc.get(f"{kind}s") or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(kind)
            return value if isinstance(value, dict) else {}
    raise KubeConfigError(f"{kind}s: no {kind} named {name!r}")


def _pem(entry: Mapping[str, Any], key: str, base: Path) -> bytes | None:
    """`key-data` (base64) or `key` (a file, relative to the kubeconfig)."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(str(entry[f"{key}-data"]), validate=True)
        except ValueError as e:
            raise KubeConfigError(f"{key}-data is not base64: {e}") from e
    if entry.get(key):
        try:
            return (base / str(entry[key])).read_bytes()
        except OSError as e:
            raise KubeConfigError(f"{key}: {e}") from e
    return None


def _from_kubeconfig_doc(doc: Mapping[str, Any], *, base: Path) -> KubeClient:
    current = doc.get("current-context")
    if not current:
        raise KubeConfigError("current-context is not set")
    context = _named(doc, "context", str(current))
    cluster = _named(doc, "cluster", str(context.get("cluster")))
    user = _named(doc, "user", str(context.get("user"))) if context.get("user") else {}
    if user.get("exec") or user.get("auth-provider"):
        raise KubeConfigError(f"users: {context.get('user')}: exec and auth-provider "
                              "credentials are not supported by the agent; use a token, "
                              "tokenFile or client certificate")
    server = str(cluster.get("server") or "")
    tls = None
    if server.startswith("https:"):
        ca = _pem(cluster, "certificate-authority", base)
        insecure = bool(cluster.get("insecure-skip-tls-verify"))
        # Given a CA, trust only it: the system's store (~150 certificates) stays out of memory.
        tls = ssl.create_default_context(
            cadata=ca.decode() if ca is not None and not insecure else None)
        if insecure:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        cert, key = _pem(user, "client-certificate", base), _pem(user, "client-key", base)
        if cert is not None and key is not None:
            _load_cert_chain(tls, cert, key)
    token = _Token(value=str(user.get("token") or ""))
    if user.get("tokenFile"):
        token = _Token(path=base / str(user["tokenFile"]))
    return KubeClient(server, tls=tls, token=token,
                      server_name=cluster.get("tls-server-name") or None)


def _load_cert_chain(tls: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads client certificates only from files: a private temp dir, removed at once."""
    with tempfile.TemporaryDirectory(prefix="nodeprobe-") as d:
        cert_path, key_path = Path(d) / "client.crt", Path(d) / "client.key"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        try:
            tls.load_cert_chain(str(cert_path), str(key_path))
        except ssl.SSLError as e:
            raise KubeConfigError(f"client-certificate/client-key: {e}") from e
