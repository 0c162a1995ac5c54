"""Reading a kubeconfig the way kubectl does, for the agent's client (`kubeclient.py`).

Every mistake is a `KubeConfigError` naming the file and the field (`clusters[c].certificate-
authority-data: ...`), raised when the agent starts, never a raw `ssl.SSLError` later or a
silently different client (a certificate without its key going anonymous, a CA dropped because
insecure-skip-tls-verify was also set).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nodeprobe.publish.kubeclient import ClientSettings, KubeClient, KubeConfigError, _Token


def load_kubeconfig(path: str | None, *, settings: ClientSettings | None) -> KubeClient:
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
                                    base=Path(where).parent, settings=settings)
    except KubeConfigError as e:
        raise KubeConfigError(f"{where}: {e}") from e


def _named(doc: Mapping[str, Any], kind: str, name: str) -> dict[str, Any]:
    for item in doc.get(f"{kind}s") or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(kind)
            return value if isinstance(value, dict) else {}
    raise KubeConfigError(f"{kind}s: no {kind} named {name!r}")


def _pem(entry: Mapping[str, Any], key: str, base: Path, *, where: str) -> bytes | None:
    """`key-data` (base64) or `key` (a file, relative to the kubeconfig)."""
    if entry.get(f"{key}-data"):
        try:
            return base64.b64decode(str(entry[f"{key}-data"]), validate=True)
        except ValueError as e:
            raise KubeConfigError(f"{where}.{key}-data is not base64: {e}") from e
    if entry.get(key):
        try:
            return (base / str(entry[key])).read_bytes()
        except OSError as e:
            raise KubeConfigError(f"{where}.{key}: {e}") from e
    return None


def _tls(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path, *,
         at: str, user_at: str) -> ssl.SSLContext:
    """The TLS context kubectl would build, or a KubeConfigError naming the field at fault."""
    ca = _pem(cluster, "certificate-authority", base, where=at)
    insecure = cluster.get("insecure-skip-tls-verify")
    if insecure not in (None, True, False):
        raise KubeConfigError(f"{at}.insecure-skip-tls-verify: expected true or false, got "
                              f"{insecure!r}")
    if insecure and ca is not None:
        raise KubeConfigError(f"{at}: insecure-skip-tls-verify and certificate-authority"
                              "[-data] exclude each other (kubectl refuses them together too); "
                              "keep the CA and drop insecure-skip-tls-verify")
    try:
        # Given a CA, trust only it: the system's store (~150 certificates) stays out of memory.
        tls = ssl.create_default_context(cadata=ca.decode(errors="replace") if ca else None)
    except (ssl.SSLError, ValueError) as e:
        field = ("certificate-authority-data" if cluster.get("certificate-authority-data")
                 else "certificate-authority")
        raise KubeConfigError(f"{at}.{field}: not a PEM CA certificate: {e}") from e
    if insecure:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    cert = _pem(user, "client-certificate", base, where=user_at)
    key = _pem(user, "client-key", base, where=user_at)
    if (cert is None) != (key is None):
        given, missing = (("client-certificate", "client-key") if key is None
                          else ("client-key", "client-certificate"))
        raise KubeConfigError(f"{user_at}: {given}[-data] is set but {missing}[-data] is not; "
                              "a client certificate needs its key")
    if cert is not None and key is not None:
        _load_cert_chain(tls, cert, key, where=user_at)
    return tls


def _from_kubeconfig_doc(doc: Mapping[str, Any], *, base: Path,
                         settings: ClientSettings | None) -> KubeClient:
    current = doc.get("current-context")
    if not current:
        raise KubeConfigError("current-context is not set")
    context = _named(doc, "context", str(current))
    cluster = _named(doc, "cluster", str(context.get("cluster")))
    user = _named(doc, "user", str(context.get("user"))) if context.get("user") else {}
    at, user_at = f"clusters[{context.get('cluster')}]", f"users[{context.get('user')}]"
    if user.get("exec") or user.get("auth-provider"):
        raise KubeConfigError(f"{user_at}: exec and auth-provider credentials are not "
                              "supported by the agent; use a token, tokenFile or client "
                              "certificate")
    server = str(cluster.get("server") or "")
    tls = _tls(cluster, user, base, at=at, user_at=user_at) if server.startswith("https:") \
        else None
    token = _Token(value=str(user.get("token") or ""))
    if user.get("tokenFile"):
        path = base / str(user["tokenFile"])
        if not path.is_file():
            raise KubeConfigError(f"{user_at}.tokenFile: {path} does not exist")
        token = _Token(path=path)
    try:
        return KubeClient(server, tls=tls, token=token,
                          server_name=cluster.get("tls-server-name") or None, settings=settings)
    except KubeConfigError as e:
        raise KubeConfigError(f"{at}.{e}") from e


def _load_cert_chain(tls: ssl.SSLContext, cert: bytes, key: bytes, *, where: str) -> None:
    """ssl loads client certificates only from files: a private temp dir, removed at once."""
    with tempfile.TemporaryDirectory(prefix="nodeprobe-") as d:
        cert_path, key_path = Path(d) / "client.crt", Path(d) / "client.key"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key)
        try:
            tls.load_cert_chain(str(cert_path), str(key_path))
        except ssl.SSLError as e:
            raise KubeConfigError(f"{where}.client-certificate/client-key: {e}") from e
