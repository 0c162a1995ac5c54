"""Issue 9: the issue-10 budget scenario (benchmarks/operator_budget.py) on the real API server.

`python -m benchmarks.operator_real [--nodes N] [--images I] [--sick S] [--budget B] [--reps R]
[--idle-s T]`: starts the test control plane (tests/harness/kubecluster.py: etcd with
--unsafe-no-fsync, kube-apiserver and kube-controller-manager v1.37.2), installs the chart with
real helm (defaults), creates N Nodes through the admin API (concurrent keep-alive connections,
I status.images each, no `kubernetes.io/os` label so the agent DaemonSet makes no pods), then runs
`nodeprobe operator` as the chart's Deployment runs it (`--max-concurrent B`, POD_NAMESPACE) with
a kubeconfig holding a token of the chart's operator ServiceAccount (not bound to a pod: no
operator pod runs here). The scenario, the three policies and the report are operator_budget's;
this file only supplies the backend. The operator's requests come from the API server's audit
log (level Request for ServiceAccounts, so cordon and Lease bodies can be replayed), stamped with
the time each answer completed. Writes benchmarks/out/operator_real.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.apidouble.server import Request
from benchmarks.operator_bench import condition, iso, loadavg, make_node, proc_status, wait_for
from benchmarks.operator_budget import OUT, run_scenario
from tests.harness.chart import install
from tests.harness.kubecluster import AUDIT_POLICY, KubeCluster, free_port

GROUP = "/apis/nodeprobe.io/v1alpha1"
REAL_OUT = OUT.with_name("operator_real.md")
CREATE_THREADS = 8


class AuditedCluster(KubeCluster):
    """The test control plane, keeping ServiceAccounts' request bodies in the audit log."""

    audit_policy = AUDIT_POLICY.replace("level: Metadata", "level: Request")


class Api:
    """Admin JSON calls on one keep-alive connection per thread (the harness opens one per call)."""

    def __init__(self, cluster: KubeCluster) -> None:
        self.port = cluster.port
        self.tls = ssl.create_default_context(cafile=str(cluster.pki / "ca.crt"))
        self.tls.load_cert_chain(cluster.pki / "admin.crt", cluster.pki / "admin.key")
        self.local = threading.local()

    def __call__(self, method: str, path: str, body: Any = None,
                 content_type: str = "application/json") -> Any:
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls,
                                                   timeout=60)
                self.local.conn = conn
            try:
                conn.request(method, path, body=None if body is None else json.dumps(body),
                             headers={"Content-Type": content_type})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
                continue
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path}: {resp.status} {data[:400]!r}")
            return json.loads(data) if data else None
        raise AssertionError("unreachable")


def _stamp(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _request(event: dict[str, Any]) -> Request:
    ref = event.get("objectRef") or {}
    body = event.get("requestObject")
    return Request(method="", path=event.get("requestURI", ""), query="", verb=event["verb"],
                   group=ref.get("apiGroup", ""), version=ref.get("apiVersion", ""),
                   resource=ref.get("resource", ""), subresource=ref.get("subresource", ""),
                   namespace=ref.get("namespace", ""), name=ref.get("name", ""),
                   code=int((event.get("responseStatus") or {}).get("code", 0)), body=body)


class RealBackend:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="np-opreal-", dir="/tmp"))
        self.cluster = AuditedCluster(self.base / "k8s").start()
        self.api = Api(self.cluster)
        self.release = install(self.cluster)
        self.user = self.release.username("operator")
        wait_for(self._crds_served, timeout_s=60, what="the chart's CRDs served")
        self.where = (f"the real API server (kube-apiserver v1.37.2, etcd v3.7.3 "
                      f"--unsafe-no-fsync, helm v3.22.0 default install), `nodeprobe operator` "
                      f"authenticated with a token of the chart's operator ServiceAccount "
                      f"({self.user}); requests from the audit log")
        self.proc: subprocess.Popen[bytes] | None = None
        self._events: list[tuple[float, Request]] = []
        self._offset = 0
        self._lock = threading.Lock()

    def _crds_served(self) -> bool:
        try:
            self.api("GET", f"{GROUP}/remediationpolicies")
            self.api("GET", f"{GROUP}/noderemediations")
            return True
        except RuntimeError:
            return False

    def load(self, nodes: list[dict[str, Any]]) -> None:
        def create(node: dict[str, Any]) -> None:
            self.api("POST", "/api/v1/nodes", node)

        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(create, nodes))
        first = self.api("GET", f"/api/v1/nodes/{nodes[0]['metadata']['name']}")
        kept = len(first["status"].get("images") or []), len(first["status"]["conditions"])
        want = len(nodes[0]["status"].get("images") or []), len(nodes[0]["status"]["conditions"])
        assert kept == want, f"status not kept on create: {kept} != {want}"

    def add_policy(self, name: str, spec: dict[str, Any]) -> None:
        self.api("POST", f"{GROUP}/remediationpolicies", {
            "apiVersion": "nodeprobe.io/v1alpha1", "kind": "RemediationPolicy",
            "metadata": {"name": name}, "spec": spec})

    def start_operator(self, budget: int, tick_s: float) -> int:
        if tick_s != 2.0:
            raise SystemExit("the real operator runs at its shipped tick (2 s): drop --tick-s")
        kubeconfig = self.cluster.token_kubeconfig(
            self.base / "operator.kubeconfig", self.release.namespace,
            self.release.service_account("operator"))
        argv = [str(Path(sys.executable).with_name("nodeprobe")), "operator",
                "--max-concurrent", str(budget),
                "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
                "--metrics-port", str(free_port()), "--kubeconfig", str(kubeconfig)]
        with (self.base / "operator.log").open("wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "POD_NAMESPACE": self.release.namespace})
        return self.proc.pid

    def operator_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def matched(self, policy: str) -> bool:
        obj = self.api("GET", f"{GROUP}/remediationpolicies/{policy}")
        return bool((obj.get("status") or {}).get("matchedNodes"))

    def remediations(self) -> list[dict[str, Any]]:
        return list(self.api("GET", f"{GROUP}/noderemediations")["items"])

    def set_condition(self, node: str, sick: bool, since: str) -> None:
        self.api("PATCH", f"/api/v1/nodes/{node}/status",
                 {"status": {"conditions": [condition(sick, since)]}},
                 "application/strategic-merge-patch+json")

    def agent_done(self, nr: dict[str, Any]) -> None:
        self.api("PATCH", f"{GROUP}/noderemediations/{nr['metadata']['name']}/status",
                 {"status": {"agent": {"rung": nr["spec"].get("rung", 0), "state": "Done",
                                       "message": "restarted"}}},
                 "application/merge-patch+json")

    def log(self, start: float, end: float) -> list[tuple[float, Request]]:
        with self._lock:
            if self.cluster.audit_log.exists():
                with self.cluster.audit_log.open("rb") as f:
                    f.seek(self._offset)
                    chunk = f.read()
                complete = chunk.rfind(b"\n") + 1
                self._offset += complete
                for line in chunk[:complete].splitlines():
                    event = json.loads(line)
                    if event.get("stage") == "ResponseComplete" and \
                            event.get("user", {}).get("username") == self.user:
                        self._events.append((_stamp(event["stageTimestamp"]), _request(event)))
            return [(t, r) for t, r in self._events if start <= t <= end]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        tail = (self.base / "operator.log").read_text(errors="replace")[-3000:] \
            if (self.base / "operator.log").exists() else ""
        warnings = sum(1 for line in tail.splitlines() if "WARNING" in line or "ERROR" in line)
        print(f"operator log tail ({warnings} warning/error lines in the last 3000 chars):\n"
              f"{tail}", flush=True)
        self.cluster.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--sick", type=int, default=50)
    p.add_argument("--budget", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--for-s", type=int, default=10)
    p.add_argument("--tick-s", type=float, default=2.0)
    p.add_argument("--idle-s", type=float, default=120.0)
    p.add_argument("--startup-timeout-s", type=float, default=900.0)
    args = p.parse_args(argv if argv is not None else [])
    started = time.monotonic()
    backend = RealBackend()
    print(f"control plane and chart up in {time.monotonic() - started:.1f} s", flush=True)
    print(run_scenario(backend, args, make_node=make_node, proc_status=proc_status,
                       wait_for=wait_for, iso=iso, loadavg=loadavg, out=REAL_OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
