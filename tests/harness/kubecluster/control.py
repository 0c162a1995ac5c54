"""A real Kubernetes control plane on loopback, the way envtest runs one.

etcd, kube-apiserver and kube-controller-manager are built from their Go modules (tools/go/build)
and started here with TLS, RBAC, service-account token issuing, the default admission chain and
an audit log of every request a ServiceAccount makes. Tests get an admin kubeconfig and tokens
minted for a ServiceAccount (bound to a Pod when they need the node claim). A cluster made
`for_node=True` also runs the controllers and the scheduler a real kubelet needs
(tests/harness/kubecluster/node.py).

Everything lives under the directory the caller passes in; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.gotools import tool
from tests.harness.kubecluster.pki import kubeconfig, make_pki
from tests.harness.kubecluster.slots import HeldSlot, Slot, take_slot

START_TIMEOUT_S = 120.0
OUTAGE_STOP_S = 3.0
"""How long an outage waits for kube-apiserver to exit after SIGTERM before SIGKILL (s)."""
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = ",".join(
    [
        "garbage-collector-controller",  # ownerReferences: a Node takes its NodeRemediations
        "disruption-controller",  # PDB status: what the Eviction API allows
        "namespace-controller",
        "serviceaccount-controller",
        "replicaset-controller",
        "deployment-controller",
        "daemonset-controller",
        "root-ca-certificate-publisher-controller",
        "pod-garbage-collector-controller",
    ]
)
NODE_CONTROLLERS = "node-lifecycle-controller,taint-eviction-controller"
"""What a cluster with a real kubelet adds: Ready from the Lease and status, the not-ready and
unreachable taints, and eviction by NoExecute taints."""
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # Only what ServiceAccounts do: the components under test authenticate as one.
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


class ClusterError(RuntimeError):
    """A control-plane process did not start or stopped answering."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(predicate: Callable[[], bool], *, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise ClusterError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tail}")


# --- processes ----------------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log.open("ab") as logf:
            self.proc = subprocess.Popen(
                self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager under `base`, on loopback ports."""

    audit_policy = AUDIT_POLICY
    """What the audit log keeps (a benchmark that needs request bodies raises the level)."""

    def __init__(self, base: Path, *, for_node: bool = False) -> None:
        self.base = base
        self.for_node = for_node
        """Run what a real kubelet needs too: the Node authorizer, the API server's kubelet
        client certificate, the node controllers and kube-scheduler."""
        self.pki = base / "pki"
        self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.audit_log = base / "audit.log"
        self.admin_kubeconfig = base / "admin.kubeconfig"
        self._etcd = Process("etcd", [], base / "etcd.log")
        self._apiserver = Process("kube-apiserver", [], base / "kube-apiserver.log")
        self._kcm = Process("kube-controller-manager", [], base / "kube-controller-manager.log")
        self._scheduler = Process("kube-scheduler", [], base / "kube-scheduler.log")
        self._tls = ssl.create_default_context(cafile=None)
        self._slot: HeldSlot | None = None

    @property
    def slot(self) -> Slot:
        """The real-node slot this control plane holds (its service range is the slot's);
        slot 0, held by nobody, for a cluster without a real node."""
        return self._slot.slot if self._slot is not None else Slot(0)

    # argv

    def _etcd_argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            str(tool("etcd")), "--name", "default", "--data-dir", str(self.base / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}", "--unsafe-no-fsync",
            "--log-level", "warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        p = self.pki
        return [
            str(tool("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}", f"--cert-dir={self.base / 'certs'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--service-cluster-ip-range={self.slot.service_range}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--authorization-mode=" + ("Node,RBAC" if self.for_node else "RBAC"),
            *([f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
               f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}"]
              if self.for_node else []),
            "--allow-privileged=true",
            f"--audit-policy-file={self.base / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}", "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--endpoint-reconciler-type=none",
            "--v=0",
        ]

    def _kcm_argv(self) -> list[str]:
        return [
            str(tool("kube-controller-manager")),
            f"--kubeconfig={self.base / 'controller-manager.kubeconfig'}",
            "--leader-elect=false", "--secure-port=0",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--controllers={CONTROLLERS}" + (f",{NODE_CONTROLLERS}" if self.for_node else ""),
            "--concurrent-gc-syncs=5",
            "--v=0",
        ]

    def _scheduler_argv(self) -> list[str]:
        return [
            str(tool("kube-scheduler")),
            f"--kubeconfig={self.base / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--secure-port=0", "--v=0",
        ]

    # lifecycle

    def start(self, *, controllers: bool = True) -> KubeCluster:
        if self.for_node and self._slot is None:
            self._slot = take_slot()  # waits while every slot is taken
        self._etcd.argv, self._apiserver.argv = self._etcd_argv(), self._apiserver_argv()
        make_pki(self.pki, service_ip=self.slot.service_ip)
        (self.base / "audit-policy.yaml").write_text(self.audit_policy)
        self.write_kubeconfig(self.admin_kubeconfig, {
            "client-certificate": str(self.pki / "admin.crt"),
            "client-key": str(self.pki / "admin.key")})
        for name in ("controller-manager", "scheduler"):
            self.write_kubeconfig(self.base / f"{name}.kubeconfig", {
                "client-certificate": str(self.pki / f"{name}.crt"),
                "client-key": str(self.pki / f"{name}.key")})
        tls = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        tls.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        self._tls = tls
        self._etcd.start()
        _wait_until(self._etcd_healthy, timeout_s=START_TIMEOUT_S, what="etcd",
                    log=self._etcd.log)
        self.start_apiserver()
        if not controllers:
            return self
        self._kcm.argv = self._kcm_argv()
        self._kcm.start()
        _wait_until(self._default_service_account, timeout_s=START_TIMEOUT_S,
                    what="the controller manager (default ServiceAccount)", log=self._kcm.log)
        if self.for_node:
            self._scheduler.argv = self._scheduler_argv()
            self._scheduler.start()
        return self

    def start_apiserver(self) -> None:
        self._apiserver.start()
        _wait_until(self.ready, timeout_s=START_TIMEOUT_S, what="kube-apiserver /readyz",
                    log=self._apiserver.log)

    def stop_apiserver(self, timeout_s: float = 20.0) -> None:
        """An API outage: the real server stopped (connections refused until it starts again).

        SIGTERM first; SIGKILL after `timeout_s`. kube-apiserver stops listening at once but,
        with the controller manager's watches open, does not exit for well over 20 s.
        """
        self._apiserver.stop(timeout_s)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The API server stopped for the block, then started again on the same port and etcd.

        Afterwards the server is ready and the controller manager is restarted: after an outage
        of a minute, kube-controller-manager 1.37's pod informer stayed at its old
        resourceVersion (the DaemonSet controller then fails every sync with "read version ...
        is not as new as written version ..." and creates no pod), which would break the tests
        after this one. Ours is a test of clients of the API server, not of the controllers.
        """
        self.stop_apiserver(OUTAGE_STOP_S)
        try:
            yield
        finally:
            self.start_apiserver()
            if self._kcm.argv:
                self._kcm.stop()
                self._kcm.start()

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """The API server SIGSTOPped for the block: connections are accepted, nothing answers."""
        proc = self._apiserver.proc
        if proc is None or proc.poll() is not None:
            raise ClusterError("kube-apiserver is not running")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        _wait_until(self.ready, timeout_s=START_TIMEOUT_S, what="kube-apiserver after SIGCONT",
                    log=self._apiserver.log)

    def stop(self) -> None:
        for process in (self._scheduler, self._kcm, self._apiserver, self._etcd):
            process.stop()
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    def write_kubeconfig(self, path: Path, user: dict[str, str]) -> None:
        """A kubeconfig for this server with `user`'s credentials (e.g. a client certificate)."""
        path.write_text(json.dumps(kubeconfig(self.server, self.pki / "ca.crt", user)))

    # health

    def _etcd_healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.etcd_port, timeout=2)
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def ready(self) -> bool:
        if not self._apiserver.running():
            raise ClusterError(f"kube-apiserver exited\n{self._apiserver.log.read_text()[-4000:]}")
        try:
            return self.request("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def _default_service_account(self) -> bool:
        status, _ = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return status == 200

    # admin API access without the kubernetes client (the tests also use that one)

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        """One call; a 429 with Retry-After (e.g. "storage is (re)initializing" right after a
        CRD is created) is retried after the time the server asks for, as client-go does."""
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if payload is not None else {}
        for _ in range(10):
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self._tls,
                                               timeout=30)
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            retry_after = resp.getheader("Retry-After")
            if resp.status != 429 or retry_after is None or not retry_after.isdigit():
                break
            time.sleep(min(int(retry_after), 5))  # the server's own backoff, not a guess
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = data.decode(errors="replace")
        return resp.status, decoded

    def must(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> Any:
        status, decoded = self.request(method, path, body, content_type)
        if status >= 300:
            raise ClusterError(f"{method} {path}: {status} {decoded}")
        return decoded

    # identities

    def token(self, namespace: str, service_account: str, *, pod: str | None = None,
              seconds: int = 3600) -> str:
        """A TokenRequest token for a ServiceAccount; bound to `pod` (and so to its node)."""
        spec: dict[str, Any] = {"expirationSeconds": seconds}
        if pod is not None:
            obj = self.must("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
            spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod,
                                      "uid": obj["metadata"]["uid"]}
        reply = self.must(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(reply["status"]["token"])

    def token_kubeconfig(self, path: Path, namespace: str, service_account: str, *,
                         pod: str | None = None, seconds: int = 3600) -> Path:
        """A kubeconfig that authenticates only as that ServiceAccount."""
        token = self.token(namespace, service_account, pod=pod, seconds=seconds)
        self.write_kubeconfig(path, {"token": token})
        return path

    def audit(self, username: str) -> list[dict[str, Any]]:
        """Every request `username` made (ResponseComplete stage), from the audit log."""
        out: list[dict[str, Any]] = []
        if not self.audit_log.exists():
            return out
        for line in self.audit_log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the last line of a server killed mid-write
            if event.get("stage") == "ResponseComplete" and \
                    event.get("user", {}).get("username") == username:
                out.append(event)
        return out


@contextlib.contextmanager
def running_cluster(base: Path, *, for_node: bool = False) -> Iterator[KubeCluster]:
    cluster = KubeCluster(base, for_node=for_node)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
