"""The agent's own Kubernetes client against a real TLS server: CA, client certificate, token,
in-cluster files, and the errors a bad kubeconfig gives. Certificates are made by openssl."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.publish.kubeclient import (
    KubeClient,
    KubeConfigError,
    KubeError,
    describe_error,
    new_client,
)


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
