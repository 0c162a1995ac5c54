"""The agent's own Kubernetes client against a real TLS server: CA, client certificate, token,
in-cluster files, and the errors a bad kubeconfig gives. Certificates are made by openssl."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.publish.kubeclient import (
    API_ERRORS,
    Backoff,
    ClientSettings,
    KubeClient,
    KubeConfigError,
    KubeError,
    ReplyTooLarge,
    RetrySettings,
    describe_error,
    new_client,
)
from tests.harness.runtimes import Sandbox
from tests.integration.publish.tcp_server import Listener


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"))
    return d


class _Seen:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []


@pytest.fixture
def server(pki: Path) -> Iterator[tuple[str, _Seen]]:
    """HTTPS on 127.0.0.1 that requires a client certificate and echoes what it got."""
    seen = _Seen()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            seen.requests.append({"method": self.command, "path": self.path,
                                  "auth": self.headers.get("Authorization"),
                                  "type": self.headers.get("Content-Type"),
                                  "body": body.decode(), "peer": peer})
            status = 404 if "missing" in self.path else 200
            reply = json.dumps({"kind": "Status" if status == 404 else "Node",
                                "path": self.path}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _kubeconfig(path: Path, *, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_kubeconfig_with_ca_data_client_cert_data_and_token(
        server: tuple[str, _Seen], pki: Path, tmp_path: Path) -> None:
    url, seen = server
    config = _kubeconfig(tmp_path / "kc", cluster={
        "server": url, "certificate-authority-data": _b64(pki / "ca.crt")}, user={
        "client-certificate-data": _b64(pki / "client.crt"),
        "client-key-data": _b64(pki / "client.key"), "token": "t0ken"})
    client = new_client(kubeconfig=str(config))
    try:
        got = client.request_json("PATCH", "/api/v1/nodes/n/status", body={"a": 1},
                                  content_type="application/strategic-merge-patch+json")
        again = client.request_json("GET", "/api/v1/nodes/n", query={"x": "1 2"})
    finally:
        client.close()
    assert got == {"kind": "Node", "path": "/api/v1/nodes/n/status"}
    assert again["path"] == "/api/v1/nodes/n?x=1+2"
    first = seen.requests[0]
    assert first["auth"] == "Bearer t0ken"
    assert first["type"] == "application/strategic-merge-patch+json"
    assert json.loads(first["body"]) == {"a": 1}
    assert dict(x[0] for x in first["peer"]["subject"])["commonName"] == "client"


IDNA_CHECK = """
import sys
from nodeprobe.publish.kubeclient import new_client
client = new_client(kubeconfig=sys.argv[1])
client.request_json("GET", "/api/v1/nodes/n")
print(len(client._tls.get_ca_certs()), "encodings.idna" in sys.modules)
"""


def test_a_kubeconfig_ca_is_the_only_trust_and_requests_skip_the_idna_codec(
        server: tuple[str, _Seen], pki: Path, tmp_path: Path) -> None:
    """Footprint (docs/performance.md): no system CA store beside the kubeconfig's CA, and no
    idna codec (~0.45 MiB) for an ASCII host; in a fresh interpreter."""
    url, _ = server
    config = _kubeconfig(tmp_path / "kc", cluster={
        "server": url, "certificate-authority-data": _b64(pki / "ca.crt")}, user={
        "client-certificate-data": _b64(pki / "client.crt"),
        "client-key-data": _b64(pki / "client.key")})
    out = subprocess.run([sys.executable, "-c", IDNA_CHECK, str(config)], check=True,
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["1", "False"]


def test_file_paths_are_relative_to_the_kubeconfig(server: tuple[str, _Seen], pki: Path,
                                                   tmp_path: Path) -> None:
    url, seen = server
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_bytes((pki / name).read_bytes())
    (tmp_path / "token").write_text("from-file\n")
    config = _kubeconfig(tmp_path / "kc",
                         cluster={"server": url, "certificate-authority": "ca.crt"},
                         user={"client-certificate": "client.crt", "client-key": "client.key",
                               "tokenFile": "token"})
    client = KubeClient.from_kubeconfig(str(config))
    with pytest.raises(KubeError) as e:
        client.request_json("GET", "/api/v1/nodes/missing")
    client.close()
    assert e.value.status == 404
    assert describe_error(e.value, what="GET node missing") == (
        "GET node missing: HTTP 404 Not Found (it does not exist; is NODE_NAME the node's name?)")
    assert seen.requests[0]["auth"] == "Bearer from-file"


def test_unknown_ca_is_a_tls_error_not_a_hang(server: tuple[str, _Seen], pki: Path,
                                             tmp_path: Path) -> None:
    url, _ = server
    config = _kubeconfig(tmp_path / "kc", cluster={"server": url},
                         user={"client-certificate-data": _b64(pki / "client.crt"),
                               "client-key-data": _b64(pki / "client.key")})
    client = new_client(kubeconfig=str(config))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.request_json("GET", "/api/v1/nodes/n", timeout=5)


def test_in_cluster_reads_env_token_and_ca(server: tuple[str, _Seen], pki: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = server
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", url.rsplit(":", 1)[1])
    client = KubeClient.in_cluster(root=tmp_path)
    # The server wants a client certificate; a pod has none, so the handshake is refused.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        client.request_json("GET", "/version")
    assert client.server == url
    assert seen.requests == []


@pytest.mark.parametrize(("user", "message"), [
    ({"exec": {"command": "aws"}}, "exec and auth-provider credentials are not supported"),
    ({"auth-provider": {"name": "gcp"}}, "exec and auth-provider credentials are not supported"),
    ({"client-key-data": "***"}, "client-key-data is not base64"),
])
def test_unsupported_or_broken_kubeconfig_says_where(tmp_path: Path, user: dict[str, Any],
                                                     message: str, pki: Path) -> None:
    config = _kubeconfig(tmp_path / "kc", cluster={"server": "https://127.0.0.1:1"},
                         user={"client-certificate-data": _b64(pki / "client.crt"), **user})
    with pytest.raises(KubeConfigError) as e:
        KubeClient.from_kubeconfig(str(config))
    assert str(e.value).startswith(f"{config}: ")
    assert message in str(e.value)


def test_missing_files_and_env_are_config_errors(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KubeConfigError, match="cannot load Kubernetes credentials from"):
        KubeClient.from_kubeconfig(str(tmp_path / "nope"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST is not set"):
        KubeClient.in_cluster(root=tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(KubeConfigError, match="token does not exist"):
        KubeClient.in_cluster(root=tmp_path)


# ---- limits: kubeconfig mistakes, one deadline, reply cap, 401, Retry-After, idle connections --


@pytest.mark.parametrize(("cluster", "user", "message"), [
    ({}, {"client-certificate-data": "CERT"},
     "users[u]: client-certificate[-data] is set but client-key[-data] is not"),
    ({}, {"client-key-data": "KEY"},
     "users[u]: client-key[-data] is set but client-certificate[-data] is not"),
    ({"certificate-authority-data": base64.b64encode(b"not a certificate").decode()}, {},
     "clusters[c].certificate-authority-data: not a PEM CA certificate"),
    ({"certificate-authority-data": "CA", "insecure-skip-tls-verify": True}, {},
     "clusters[c]: insecure-skip-tls-verify and certificate-authority[-data] exclude each other"),
    ({"insecure-skip-tls-verify": "yes"}, {},
     "clusters[c].insecure-skip-tls-verify: expected true or false"),
    ({}, {"tokenFile": "no-such-token"}, "users[u].tokenFile: "),
    ({"server": "ftp://x"}, {}, "clusters[c].server 'ftp://x' is not an http(s) URL"),
])
def test_every_kubeconfig_mistake_is_a_config_error_naming_the_field(
    tmp_path: Path, pki: Path, cluster: dict[str, Any], user: dict[str, Any], message: str,
) -> None:
    """issue 18: a certificate without a key went anonymous, bad CA data raised a raw SSLError,
    insecure-skip-tls-verify silently dropped the CA."""
    real = {"CERT": _b64(pki / "client.crt"), "KEY": _b64(pki / "client.key"),
            "CA": _b64(pki / "ca.crt")}
    cluster = {"server": "https://127.0.0.1:1",
               **{k: real.get(v, v) if isinstance(v, str) else v for k, v in cluster.items()}}
    user = {k: real.get(v, v) for k, v in user.items()}
    config = _kubeconfig(tmp_path / "kc", cluster=cluster, user=user)
    with pytest.raises(KubeConfigError) as e:
        KubeClient.from_kubeconfig(str(config))
    assert str(e.value).startswith(f"{config}: ")
    assert message in str(e.value)


class Scripted(Listener):
    """A real TCP server (optionally TLS) whose replies a test scripts per request.

    `reply(n, request_head)` returns what to send for the n-th request (bytes, or a list of
    (delay_s, bytes) to trickle). With `idle_close_s`, a kept-alive connection with no request
    for that long is closed, as kube-apiserver does after 90 s; `closed_idle` is set then."""

    def __init__(self, reply: Any, *, tls: ssl.SSLContext | None = None,
                 idle_close_s: float = 30.0) -> None:
        self.reply, self.tls, self.idle_close_s = reply, tls, idle_close_s
        self.requests: list[bytes] = []
        self.closed_idle = threading.Event()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), contextlib.closing(conn):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while not self._stop.is_set():
                conn.settimeout(self.idle_close_s)
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    self.closed_idle.set()
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, _, rest = buf.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1)) \
                        if re.search(rb"(?i)content-length", head) else 0
                    if len(rest) < length:
                        break
                    buf = rest[length:]
                    self.requests.append(head)
                    self._send(conn, self.reply(len(self.requests), head))

    def _send(self, conn: socket.socket, out: bytes | list[tuple[float, bytes]]) -> None:
        for delay, data in [(0.0, out)] if isinstance(out, bytes) else out:
            if delay and self._stop.wait(delay):
                return
            conn.sendall(data)



def ok(body: bytes = b"{}", *, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


@contextlib.contextmanager
def scripted(reply: Any, **kw: Any) -> Iterator[Scripted]:
    srv = Scripted(reply, **kw)
    try:
        yield srv
    finally:
        srv.close()


def _tls_server(pki: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    return ctx


@pytest.mark.parametrize("https", [False, True])
def test_one_deadline_for_the_whole_request_however_the_reply_trickles(
    pki: Path, https: bool,
) -> None:
    """issue 18: a body trickled at 1 byte per 0.5 s returned after 10 s with timeout 2 s."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    trickle = [(0.0, head), *[(0.2, b" ")] * 40]
    with scripted(lambda n, h: trickle, tls=_tls_server(pki) if https else None) as srv:
        tls = ssl.create_default_context(cafile=str(pki / "ca.crt")) if https else None
        api = KubeClient(f"{'https' if https else 'http'}://127.0.0.1:{srv.port}", tls=tls)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            api.send("GET", "/api/v1/nodes/n1", timeout=1.0)
        took = time.monotonic() - start
    # each byte came well within any per-read timeout; the whole trickle takes 8 s
    assert 1.0 <= took < 3.0, took


def test_a_reply_over_the_size_cap_is_not_read() -> None:
    """issue 18: a 300 MiB body cost +599 MiB RSS. Announced or chunked, the cap holds."""
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 314572800\r\n\r\n" + b"x" * 65536
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    chunked = [(0.0, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
               *[(0.0, chunk)] * 40]
    with scripted(lambda n, h: big if n == 1 else chunked) as srv:
        api = KubeClient(f"http://127.0.0.1:{srv.port}",
                         settings=ClientSettings(max_reply_bytes=1024 * 1024))
        with pytest.raises(ReplyTooLarge, match="314572800 bytes is over the 1048576-byte"):
            api.send("GET", "/api/v1/nodes/n1")
        with pytest.raises(ReplyTooLarge, match="over the 1048576-byte limit"):
            api.send("GET", "/api/v1/nodes/n1")
        assert isinstance(ReplyTooLarge("x"), API_ERRORS)  # writers log and back off


def test_401_rereads_the_token_file_and_retries_once(tmp_path: Path) -> None:
    """kubelet rotated the token and the server already refuses the old one: the 401 re-reads
    the file at once (not at the next 60 s re-read) and tries once more."""
    token = tmp_path / "token"
    token.write_text("old\n")
    refuse_all = threading.Event()

    def reply(n: int, head: bytes) -> bytes:
        sent = re.search(rb"Authorization: Bearer (\w+)", head)
        good = sent is not None and sent.group(1).decode() == token.read_text().strip()
        good = good and not refuse_all.is_set()
        return ok() if good else ok(status="401 Unauthorized")

    with scripted(reply) as srv:
        config = _kubeconfig(tmp_path / "kc", cluster={"server": f"http://127.0.0.1:{srv.port}"},
                             user={"tokenFile": "token"})
        api = KubeClient.from_kubeconfig(str(config))
        assert api.send("GET", "/a").status == 200
        token.write_text("new\n")  # rotated; the server takes only the new one
        assert api.send("GET", "/b").status == 200
        refuse_all.set()  # the file did not change: no second try, the 401 is the answer
        assert api.send("GET", "/c").status == 401
    auths = [re.search(rb"Bearer (\w+)", h).group(1) for h in srv.requests]  # type: ignore
    assert auths == [b"old", b"old", b"new", b"new"]


def test_retry_after_is_honoured() -> None:
    """A 429 whose Retry-After fits the deadline is waited out and tried once more; one that
    does not fit reaches the writer's back-off, which waits at least that long."""
    def reply(n: int, head: bytes) -> bytes:
        if n == 1:
            return ok(status="429 Too Many Requests", extra="Retry-After: 1\r\n")
        if n == 2:
            return ok()
        return ok(status="429 Too Many Requests", extra="Retry-After: 20\r\n")

    with scripted(reply) as srv:
        api = KubeClient(f"http://127.0.0.1:{srv.port}")
        start = time.monotonic()
        assert api.send("PATCH", "/a", body={}, timeout=5.0).status == 200
        assert time.monotonic() - start >= 1.0
        with pytest.raises(KubeError) as e:
            api.request_json("PATCH", "/b", body={}, timeout=5.0)
    assert e.value.status == 429 and e.value.retry_after_s == 20.0
    assert len(srv.requests) == 3  # 20 s does not fit in 5: not waited here
    assert Backoff(RetrySettings(initial_s=1.0, max_s=30.0)).failed(0.0, e.value) == 20.0


@pytest.mark.parametrize("max_idle_s", [0.2, 3600.0])
def test_no_failed_write_on_a_connection_the_server_closed_while_idle(
    max_idle_s: float, caplog: pytest.LogCaptureFixture,
) -> None:
    """issue 17: kube-apiserver closes idle connections after 90 s and every 5-minute heartbeat
    failed once with SSLEOFError. Here the server closes them after 0.5 s. A connection idle
    past `max_idle_s` is not reused (0.2); and a reused one found closed is retried at once on
    a fresh connection (3600: the idle limit never applies)."""
    with scripted(lambda n, h: ok(), idle_close_s=0.5) as srv:
        api = KubeClient(f"http://127.0.0.1:{srv.port}",
                         settings=ClientSettings(max_idle_s=max_idle_s))
        assert api.request_json("PATCH", "/api/v1/nodes/n1/status", body={}) == {}
        assert srv.closed_idle.wait(10)
        with caplog.at_level("WARNING"):
            assert api.request_json("PATCH", "/api/v1/nodes/n1/status", body={}) == {}
    assert len(srv.requests) == 2 and srv.connections == 2
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_agent_stops_at_start_up_on_a_kubeconfig_mistake(runtimes: Sandbox, tmp_path: Path,
                                                            pki: Path) -> None:
    """issue 18: bad CA data raised a raw ssl.SSLError that start-up did not catch."""
    config = _kubeconfig(tmp_path / "kc", cluster={
        "server": "https://127.0.0.1:1",
        "certificate-authority-data": base64.b64encode(b"junk").decode()}, user={})
    done = subprocess.run(
        [str(Path(sys.executable).with_name("nodeprobe")), "agent", "--node-name", "n1",
         "--docker-socket", str(runtimes.dockerd.socket), "--no-containerd",
         "--metrics-port", "0", "--kubeconfig", str(config)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "clusters[c].certificate-authority-data: not a PEM CA certificate" in done.stderr
    assert "Traceback" not in done.stderr
