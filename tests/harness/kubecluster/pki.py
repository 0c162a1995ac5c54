"""The test cluster's certificates: one CA, a key and certificate per identity, kubeconfigs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _cert(pki: Path, name: str, subject: str, extensions: list[str]) -> None:
    """An EC key and a certificate signed by the test CA (pki/ca.{crt,key})."""
    addext: list[str] = []
    for ext in extensions:
        addext += ["-addext", ext]
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "3", "-subj", subject,
        "-keyout", f"{name}.key", "-out", f"{name}.crt",
        "-addext", "basicConstraints=critical,CA:FALSE", *addext,
        cwd=pki,
    )


def make_pki(pki: Path, *, service_ip: str = "10.96.0.1") -> None:
    """The CA and every identity's certificate; the API server's names `service_ip` too (the
    address pods reach it by)."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "3", "-subj", "/CN=nodeprobe-test-ca", "-keyout", "ca.key", "-out", "ca.crt",
        cwd=pki,
    )
    _cert(
        pki, "apiserver", "/CN=kube-apiserver",
        [f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:{service_ip}",
         "extendedKeyUsage=serverAuth"],
    )
    _cert(pki, "admin", "/O=system:masters/CN=nodeprobe-test-admin",
          ["extendedKeyUsage=clientAuth"])
    # The controller manager acts for every controller under one identity in this test cluster.
    _cert(pki, "controller-manager", "/O=system:masters/CN=system:kube-controller-manager",
          ["extendedKeyUsage=clientAuth"])
    # The real node: kube-scheduler, the kubelet (the Node authorizer's identity for `localhost`)
    # and the API server's client certificate for kubelet's logs and exec.
    _cert(pki, "scheduler", "/CN=system:kube-scheduler", ["extendedKeyUsage=clientAuth"])
    _cert(pki, "kubelet", "/O=system:nodes/CN=system:node:localhost",
          ["extendedKeyUsage=clientAuth"])
    _cert(pki, "apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
          ["extendedKeyUsage=clientAuth"])
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig(server: str, ca: Path, user: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server,
                                                  "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
        "current-context": "test",
    }


