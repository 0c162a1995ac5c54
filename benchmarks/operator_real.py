"""The real API server the operator benchmarks run against, and the issue-10 budget scenario on it.

`python -m benchmarks.operator_real [--nodes N] [--images I] [--sick S] [--budget B] [--reps R]
[--idle-s T]` runs the budget scenario (benchmarks/operator_budget.py) and writes
benchmarks/out/operator_real.md; benchmarks/operator_bench.py uses the same backend.

`RealBackend` starts the test control plane (tests/harness/kubecluster: etcd with
--unsafe-no-fsync, kube-apiserver and kube-controller-manager), installs the chart with real helm
(defaults), creates Nodes through the admin API (concurrent keep-alive connections), then runs
`nodeprobe operator` as the chart's Deployment runs it (POD_NAMESPACE) with a kubeconfig holding
a token of the chart's operator ServiceAccount (not bound to a pod: no operator pod runs here).
The operator's requests come from the API server's audit log (benchmarks/audit.py).
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
from pathlib import Path
from typing import Any

from benchmarks.audit import AuditedCluster, AuditTail, Stamped
from benchmarks.operator_budget import OUT, run_scenario
from benchmarks.operator_nodes import condition
from benchmarks.stats import wait_for
from tests.harness.chart import install
from tests.harness.kubecluster import KubeCluster, free_port

GROUP = "/apis/nodeprobe.io/v1alpha1"
REAL_OUT = OUT.with_name("operator_real.md")
CREATE_THREADS = 8
"""Concurrent Node creations: ~270 Nodes/s with 50 images each on 2 shared cores."""


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


class RealBackend:
    """One control plane with the chart installed; the operator started on demand."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="np-opreal-", dir="/tmp"))
        self.cluster = AuditedCluster(self.base / "k8s").start()
        self.api = Api(self.cluster)
        self.release = install(self.cluster)
        self.user = self.release.username("operator")
        wait_for(self._crds_served, timeout_s=60, what="the chart's CRDs served")
        self.where = (f"the real API server (kube-apiserver and etcd of tests/harness/kubecluster, "
                      f"etcd --unsafe-no-fsync, the chart installed with real helm, defaults), "
                      f"`nodeprobe operator` authenticated with a token of the chart's operator "
                      f"ServiceAccount ({self.user}); requests from the audit log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.audit = AuditTail(self.cluster.audit_log, self.user)

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

    def start_operator(self, budget: int, tick_s: float, *, standalone: bool = False) -> int:
        if tick_s != 2.0:
            raise SystemExit("the real operator runs at its shipped tick (2 s): drop --tick-s")
        kubeconfig = self.cluster.token_kubeconfig(
            self.base / "operator.kubeconfig", self.release.namespace,
            self.release.service_account("operator"), seconds=4 * 3600)
        argv = [str(Path(sys.executable).with_name("nodeprobe")), "operator",
                "--max-concurrent", str(budget),
                "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
                "--metrics-port", str(free_port()), "--kubeconfig", str(kubeconfig)]
        with (self.base / "operator.log").open("wb") as log:
            self.proc = subprocess.Popen(
                argv + (["--standalone"] if standalone else []), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "POD_NAMESPACE": self.release.namespace})
        return self.proc.pid

    def operator_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def policy_status(self, policy: str) -> dict[str, Any]:
        return dict(self.api("GET", f"{GROUP}/remediationpolicies/{policy}").get("status") or {})

    def matched(self, policy: str) -> bool:
        return bool(self.policy_status(policy).get("matchedNodes"))

    def remediations(self) -> list[dict[str, Any]]:
        return list(self.api("GET", f"{GROUP}/noderemediations")["items"])

    def node(self, name: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/v1/nodes/{name}"))

    def set_condition(self, node: str, sick: bool, since: str) -> None:
        self.api("PATCH", f"/api/v1/nodes/{node}/status",
                 {"status": {"conditions": [condition(sick, since)]}},
                 "application/strategic-merge-patch+json")

    def agent_done(self, nr: dict[str, Any]) -> None:
        self.api("PATCH", f"{GROUP}/noderemediations/{nr['metadata']['name']}/status",
                 {"status": {"agent": {"rung": nr["spec"].get("rung", 0), "state": "Done",
                                       "message": "restarted"}}},
                 "application/merge-patch+json")

    def log(self, start: float, end: float) -> list[Stamped]:
        """The operator's requests answered in [start, end], stamped with the answer's time."""
        return self.audit.between(start, end)

    def operator_log(self) -> str:
        path = self.base / "operator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        tail = self.operator_log()[-3000:]
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
    print(run_scenario(backend, args, out=REAL_OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
