"""A real Kubernetes control plane on loopback, the way envtest runs one, plus a test kubelet.

etcd, kube-apiserver and kube-controller-manager are built from their Go modules (tools/go/build)
and started here with TLS, RBAC, service-account token issuing, the default admission chain and
an audit log of every request a ServiceAccount makes. Tests get an admin kubeconfig, tokens minted
for a ServiceAccount (bound to a Pod when they need the node claim), and `TestKubelet`, which
registers Nodes, marks their pods Running and Ready, and finishes the deletion of pods that were
evicted or deleted (no real kubelet runs here), unless a test holds a node's pods Terminating.

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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.gotools import tool

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


# --- certificates -------------------------------------------------------------------------------


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


def make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "3", "-subj", "/CN=nodeprobe-test-ca", "-keyout", "ca.key", "-out", "ca.crt",
        cwd=pki,
    )
    _cert(
        pki, "apiserver", "/CN=kube-apiserver",
        ["subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc,IP:10.96.0.1",
         "extendedKeyUsage=serverAuth"],
    )
    _cert(pki, "admin", "/O=system:masters/CN=nodeprobe-test-admin",
          ["extendedKeyUsage=clientAuth"])
    # The controller manager acts for every controller under one identity in this test cluster.
    _cert(pki, "controller-manager", "/O=system:masters/CN=system:kube-controller-manager",
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

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pki = base / "pki"
        self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.audit_log = base / "audit.log"
        self.admin_kubeconfig = base / "admin.kubeconfig"
        self._etcd = Process("etcd", [], base / "etcd.log")
        self._apiserver = Process("kube-apiserver", [], base / "kube-apiserver.log")
        self._kcm = Process("kube-controller-manager", [], base / "kube-controller-manager.log")
        self._tls = ssl.create_default_context(cafile=None)

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
            "--service-cluster-ip-range=10.96.0.0/24",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--authorization-mode=RBAC",
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
            f"--controllers={CONTROLLERS}",
            "--concurrent-gc-syncs=5",
            "--v=0",
        ]

    # lifecycle

    def start(self, *, controllers: bool = True) -> KubeCluster:
        self._etcd.argv, self._apiserver.argv = self._etcd_argv(), self._apiserver_argv()
        make_pki(self.pki)
        (self.base / "audit-policy.yaml").write_text(self.audit_policy)
        self._write_kubeconfig(self.admin_kubeconfig, {
            "client-certificate": str(self.pki / "admin.crt"),
            "client-key": str(self.pki / "admin.key")})
        self._write_kubeconfig(self.base / "controller-manager.kubeconfig", {
            "client-certificate": str(self.pki / "controller-manager.crt"),
            "client-key": str(self.pki / "controller-manager.key")})
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
        for process in (self._kcm, self._apiserver, self._etcd):
            process.stop()

    def _write_kubeconfig(self, path: Path, user: dict[str, str]) -> None:
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
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self._tls, timeout=30)
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
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
        self._write_kubeconfig(path, {"token": token})
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


# --- the test's kubelet -------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pinned_nodes(spec: dict[str, Any]) -> set[str] | None:
    """Node names a pod's required node affinity allows by `metadata.name`, or None if any."""
    required = (spec.get("affinity", {}).get("nodeAffinity", {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    names: set[str] | None = None
    for term in required.get("nodeSelectorTerms") or []:
        for match in term.get("matchFields") or []:
            if match.get("key") == "metadata.name" and match.get("operator") == "In":
                names = (names or set()) | set(match.get("values") or [])
    return names


class TestKubelet:
    """Plays kubelet (and a naive scheduler) for the Nodes a test registers.

    Nodes are Ready; a pending pod without a node is bound to the first registered node that is
    schedulable and matches its nodeSelector; pods on our nodes turn Running and Ready; deleted or
    evicted pods finish their deletion. A node in `held` keeps its pods Terminating, as a hung
    runtime does (the kubelet cannot stop their containers); releasing it lets them finish.
    """

    __test__ = False  # not a pytest class

    def __init__(self, cluster: KubeCluster) -> None:
        self.cluster = cluster
        self.nodes: set[str] = set()
        self.held: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-kubelet", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> TestKubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def register(self, name: str, *, labels: dict[str, str] | None = None,
                 boot_id: str | None = None, memory: str = "8Gi") -> None:
        node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       **(labels or {})}
        self.cluster.must("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": node_labels},
        })
        self.set_status(name, boot_id=boot_id or str(uuid.uuid4()), memory=memory)
        with self._lock:
            self.nodes.add(name)

    def set_status(self, name: str, *, boot_id: str, memory: str = "8Gi",
                   ready: bool = True) -> None:
        now = _now()
        self.cluster.must("PATCH", f"/api/v1/nodes/{name}/status", {"status": {
            "capacity": {"cpu": "2", "memory": memory, "pods": "110"},
            "allocatable": {"cpu": "2", "memory": memory, "pods": "110"},
            "conditions": [{
                "type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "test kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "bootID": boot_id, "machineID": "test", "systemUUID": "test",
                "kernelVersion": "test", "osImage": "test", "containerRuntimeVersion": "test",
                "kubeletVersion": "v1.37.2", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }}, content_type="application/strategic-merge-patch+json")

    def forget(self, name: str) -> None:
        """Stop playing kubelet for `name` (the test deletes the Node itself)."""
        with self._lock:
            self.nodes.discard(name)
            self.held.discard(name)

    def hold(self, node: str) -> None:
        with self._lock:
            self.held.add(node)

    def release(self, node: str) -> None:
        with self._lock:
            self.held.discard(node)
        for pod in self._pods():
            self._handle(pod)

    def _pods(self) -> list[dict[str, Any]]:
        reply = self.cluster.must("GET", "/api/v1/pods")
        return list(reply.get("items", []))

    def _schedule(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        if meta.get("deletionTimestamp"):
            return
        wanted = spec.get("nodeSelector") or {}
        pinned = _pinned_nodes(spec)  # a DaemonSet pod names its node (and tolerates a cordon)
        with self._lock:
            candidates = sorted(self.nodes if pinned is None else self.nodes & pinned)
        for name in candidates:
            status, node = self.cluster.request("GET", f"/api/v1/nodes/{name}")
            if status != 200 or (pinned is None and node.get("spec", {}).get("unschedulable")):
                continue
            labels = node["metadata"].get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                self.cluster.request(
                    "POST", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"]},
                     "target": {"apiVersion": "v1", "kind": "Node", "name": name}})
                return

    def _handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        node = spec.get("nodeName")
        if not node and spec.get("schedulerName", "default-scheduler") == "default-scheduler":
            self._schedule(pod)
            return
        with self._lock:
            ours, held = node in self.nodes, node in self.held
        if not ours:
            return
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if meta.get("deletionTimestamp"):
            if not held:
                self.cluster.request("DELETE", path, {
                    "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta["uid"]}})
            return
        if pod.get("status", {}).get("phase") in (None, "Pending"):
            now = _now()
            self.cluster.request("PATCH", path + "/status", {"status": {
                "phase": "Running", "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }}, content_type="application/strategic-merge-patch+json")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply = self.cluster.must("GET", "/api/v1/pods")
                for pod in reply.get("items", []):
                    self._handle(pod)
                version = reply["metadata"]["resourceVersion"]
                self._watch(version)
            except (OSError, ClusterError, http.client.HTTPException, ValueError):
                self._stop.wait(0.5)

    def _watch(self, version: str) -> None:
        c = self.cluster
        # The server ends the watch every few seconds, so stop() never waits long.
        conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=c._tls, timeout=30)
        conn.request("GET", f"/api/v1/pods?watch=1&resourceVersion={version}&timeoutSeconds=3")
        resp = conn.getresponse()
        if resp.status != 200:
            raise ClusterError(f"watch pods: {resp.status}")
        while not self._stop.is_set():
            line = resp.readline()
            if not line:
                return
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED"):
                self._handle(event["object"])
            elif event.get("type") == "ERROR":
                return


@contextlib.contextmanager
def running_cluster(base: Path) -> Iterator[KubeCluster]:
    cluster = KubeCluster(base)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
