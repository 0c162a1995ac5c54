"""Test-side helpers for the operator on the real control plane (tests/harness/kubecluster.py).

A test gets a `Fleet`: Nodes the test kubelet registers under names and a label of its own
(`np-op=<uuid>`), policies that select only that label, namespaces of its own, and operator
processes (`nodeprobe.operator.run` in a subprocess, so SIGKILL is a real SIGKILL) that
authenticate only with a token of the chart's operator ServiceAccount (the session's `release`),
so the chart's RBAC is what the operator meets. What the operator did is read from the API
server's audit log; what held at every instant (cordons) from a watch on the test's Nodes.
Everything the test created is deleted afterwards, so tests share the session's cluster.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.harness.agent_process import Why, timed_out
from tests.harness.chart import Release
from tests.harness.kubecluster import KubeCluster, TestKubelet
from tests.integration.kube.nodes import WRITE_VERBS, remove_node

ROOT = Path(__file__).resolve().parents[3]
GROUP = "nodeprobe.io"
API = f"/apis/{GROUP}/v1alpha1"
UNHEALTHY = "ContainerRuntimeUnavailable"
LABEL = "np-op"
"""The label every Node of one test carries (value: the test's id); its policies select it."""
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(sick: bool) -> dict[str, Any]:
    return {"type": UNHEALTHY, "status": "True" if sick else "False",
            "lastTransitionTime": now_iso(), "lastHeartbeatTime": now_iso(),
            "reason": "DockerdHung" if sick else "ContainerRuntimeIsAvailable",
            "message": "dockerd did not answer" if sick else "ok"}


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: Why,
             every: Callable[[], None] | None = None) -> None:
    """Poll a real state until true; `every` runs on each round (e.g. the simulated agent)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise timed_out(timeout_s, what)
        if every is not None:
            every()
        time.sleep(0.2)  # pacing of the poll, not synchronisation


class Fleet:
    """One test's Nodes, namespaces and policies on the shared cluster (short names in, full
    names on the server: `<short>-<id>`)."""

    def __init__(self, cluster: KubeCluster, kubelet: TestKubelet, release: Release,
                 tmp: Path) -> None:
        self.cluster, self.kubelet, self.release, self.tmp = cluster, kubelet, release, tmp
        self.id = uuid.uuid4().hex[:8]
        self.nodes: dict[str, str] = {}
        self.namespaces: dict[str, str] = {}
        self.policies: dict[str, str] = {}

    # names

    def node(self, short: str) -> str:
        return self.nodes.get(short) or f"{short}-{self.id}"

    def short(self, full: str) -> str:
        return {v: k for k, v in self.nodes.items()}.get(full, full)

    def ns(self, short: str) -> str:
        if short not in self.namespaces:
            full = f"{short}-{self.id}"
            self.cluster.must("POST", "/api/v1/namespaces", {"metadata": {"name": full}})
            self.namespaces[short] = full
        return self.namespaces[short]

    def policy(self, short: str = "p") -> str:
        return self.policies.get(short) or f"{short}-{self.id}"

    # arranging state (as the admin, not counted: the audit log records ServiceAccounts only)

    def add_node(self, short: str, *, sick: bool = False) -> str:
        full = self.node(short)
        self.kubelet.register(full, labels={LABEL: self.id}, boot_id="boot-1")
        self.nodes[short] = full
        self.cluster.must("PATCH", f"/api/v1/nodes/{full}/status",
                          {"status": {"conditions": [_condition(sick)]}}, SMP)
        return full

    def adopt(self, short: str, full: str) -> str:
        """A Node registered elsewhere (e.g. by `agent_on_node`, with a live agent writing its
        condition) joins the fleet: it gets our label, and is deleted with the fleet."""
        self.cluster.must("PATCH", f"/api/v1/nodes/{full}",
                          {"metadata": {"labels": {LABEL: self.id}}}, MERGE)
        self.nodes[short] = full
        return full

    def get_node(self, short: str) -> dict[str, Any]:
        return dict(self.cluster.must("GET", f"/api/v1/nodes/{self.node(short)}"))

    def set_sick(self, short: str, sick: bool) -> None:
        """What the agent's condition publisher does: a transition only on change."""
        conds = self.get_node(short)["status"].get("conditions") or []
        cond = next((c for c in conds if c["type"] == UNHEALTHY), None)
        if cond is None or (cond["status"] == "True") != sick:
            self.cluster.must("PATCH", f"/api/v1/nodes/{self.node(short)}/status",
                              {"status": {"conditions": [_condition(sick)]}}, SMP)

    def set_boot_id(self, short: str, boot_id: str) -> None:
        self.kubelet.set_status(self.node(short), boot_id=boot_id)

    def add_pod(self, short: str, ns: str, name: str, *,
                labels: dict[str, str] | None = None) -> None:
        """A pod bound to the node (no scheduler); the test kubelet makes it Running."""
        namespace = self.ns(ns)
        self.cluster.must("POST", f"/api/v1/namespaces/{namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"nodeName": self.node(short), "terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "c", "image": "busybox"}]}})
        wait_for(lambda: self.pod_phase(ns, name) == "Running", timeout_s=60,
                 what=f"pod {namespace}/{name} Running")

    def pod_phase(self, ns: str, name: str) -> str | None:
        status, pod = self.cluster.request(
            "GET", f"/api/v1/namespaces/{self.ns(ns)}/pods/{name}")
        return str(pod.get("status", {}).get("phase")) if status == 200 else None

    def add_pdb(self, ns: str, app: str) -> None:
        """minAvailable 1 over `app`; returns once the disruption controller has computed it."""
        namespace = self.ns(ns)
        base = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
        self.cluster.must("POST", base, {
            "metadata": {"name": app},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}})
        wait_for(lambda: (self.cluster.must("GET", f"{base}/{app}").get("status") or {})
                 .get("observedGeneration") == 1, timeout_s=60,
                 what="the disruption controller to compute the PDB")

    def delete_pdb(self, ns: str, app: str) -> None:
        self.cluster.must("DELETE", f"/apis/policy/v1/namespaces/{self.ns(ns)}/"
                                    f"poddisruptionbudgets/{app}")

    def add_policy(self, short: str = "p", **over: Any) -> str:
        full = self.policy(short)
        spec: dict[str, Any] = {
            "nodeSelector": {"matchLabels": {LABEL: self.id}},
            "triggers": [{"type": UNHEALTHY, "status": "True", "for": "1s"}],
            "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "60s"},
                       {"action": "escalate"}],
            "maxConcurrent": 1, "minHealthy": "0%", "coolDown": "0s", "settleWindow": "0s",
            # Our test pods have no controller: evict them too (kubectl drain --force).
            "drain": {"timeout": "60s", "gracePeriodSeconds": 1,
                      "evict": {"unreplicated": True}},
        }
        spec["drain"].update(over.pop("drain", {}))
        spec.update(over)
        self.cluster.must("POST", f"{API}/remediationpolicies", {
            "apiVersion": f"{GROUP}/v1alpha1", "kind": "RemediationPolicy",
            "metadata": {"name": full}, "spec": spec})
        self.policies[short] = full
        return full

    # reading back (admin)

    def guard_enforced(self) -> bool:
        """The release's NodeRemediation guard refuses a dry-run create by the cluster admin.
        After an API server restart or a re-bind, its admission cache has the binding only a
        moment later; an operator started before that acts on nothing for a minute."""
        status, reply = self.cluster.request(
            "POST", f"{API}/noderemediations?dryRun=All",
            {"apiVersion": "nodeprobe.io/v1alpha1", "kind": "NodeRemediation",
             "metadata": {"name": "binding-check"}, "spec": {"nodeName": "x", "policy": "x"}})
        return status == 403 and \
            f"binding '{self.release.name}-noderemediations'" in str(reply)

    def policy_status(self, short: str = "p") -> dict[str, Any]:
        status, obj = self.cluster.request("GET", f"{API}/remediationpolicies/"
                                                  f"{self.policy(short)}")
        return dict((obj.get("status") or {}) if status == 200 else {})

    def remediations(self) -> list[dict[str, Any]]:
        """NodeRemediations of this test's Nodes."""
        mine = set(self.nodes.values())
        items = self.cluster.must("GET", f"{API}/noderemediations")["items"]
        return [nr for nr in items if nr["spec"]["nodeName"] in mine]

    def phases(self) -> dict[str, str]:
        return {self.short(nr["spec"]["nodeName"]): (nr.get("status") or {}).get("phase", "")
                for nr in self.remediations()}

    def events(self) -> list[dict[str, Any]]:
        """Events in `default` about this test's Nodes and policies."""
        mine = set(self.nodes.values()) | set(self.policies.values())
        items = self.cluster.must("GET", "/api/v1/namespaces/default/events")["items"]
        return [e for e in items if e["involvedObject"].get("name") in mine]

    def cordoned(self) -> set[str]:
        return {short for short in self.nodes
                if self.get_node(short)["spec"].get("unschedulable")}

    def operator_calls(self, *, verbs: frozenset[str] | None = None,
                       resource: str | None = None) -> list[dict[str, Any]]:
        """Audit events of the chart's operator identity about this test's objects."""
        mine = set(self.nodes.values()) | set(self.policies.values()) | \
            set(self.namespaces.values())
        out = []
        for e in self.cluster.audit(self.release.username("operator")):
            ref = e.get("objectRef") or {}
            res = ref.get("resource", "") + (f"/{ref['subresource']}"
                                             if ref.get("subresource") else "")
            if resource is not None and res != resource:
                continue
            if verbs is not None and e["verb"] not in verbs:
                continue
            name = str(ref.get("name") or "")
            if ref.get("namespace") in mine or any(  # Events, NodeRemediations: `<node>.`/`-`
                    name == m or name.startswith((f"{m}.", f"{m}-")) for m in mine):
                out.append(e)
        return out

    def node_writes(self) -> int:
        return len(self.operator_calls(verbs=WRITE_VERBS, resource="nodes"))

    def writers(self) -> set[str]:
        """fieldManager of every operator write about this test: which replica wrote."""
        out = set()
        for e in self.operator_calls(verbs=WRITE_VERBS):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(e["requestURI"]).query)
            out.update(query.get("fieldManager", []))
        return out

    def fake_agent(self) -> None:
        """The node agents' part without a runtime: report Done and clear the condition."""
        for nr in self.remediations():
            st = nr.get("status") or {}
            if st.get("phase") == "ActionRequested" and "agent" not in st:
                self.report_done(nr)
                self.set_sick(self.short(nr["spec"]["nodeName"]), False)

    def report_done(self, nr: dict[str, Any], message: str = "restarted") -> None:
        self.cluster.must(
            "PATCH", f"{API}/noderemediations/{nr['metadata']['name']}/status",
            {"status": {"agent": {"rung": nr["status"].get("rung", 0), "state": "Done",
                                  "message": message}}}, MERGE)

    # cleanup

    def delete(self) -> None:
        # After an outage the restarted server serves our CRDs again only once their storage is
        # initialised (429 until then).
        wait_for(lambda: self.cluster.request("GET", f"{API}/noderemediations")[0] == 200,
                 timeout_s=60, what="the API server to serve noderemediations")
        for full in self.policies.values():  # kopf's finalizer: its operator may be gone
            path = f"{API}/remediationpolicies/{full}"
            self.cluster.request("PATCH", path, {"metadata": {"finalizers": None}}, MERGE)
            self.cluster.request("DELETE", path)
        for nr in self.remediations():
            self.cluster.request("DELETE", f"{API}/noderemediations/{nr['metadata']['name']}")
        for full in self.nodes.values():
            remove_node(self.cluster, self.kubelet, self.release.namespace, full)
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{self.release.namespace}/leases"
        for lease in self.cluster.must("GET", leases)["items"]:  # the operator's node Leases
            if self.id in lease["metadata"]["name"]:
                self.cluster.request("DELETE", f"{leases}/{lease['metadata']['name']}")
        for full in self.namespaces.values():
            self.cluster.request("DELETE", f"/api/v1/namespaces/{full}")


class CordonWatch(threading.Thread):
    """Follows a watch on the test's Nodes: the most cordoned at one instant, and which ever
    were (every change of `spec.unschedulable` the server made, none sampled away)."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(name="cordon-watch", daemon=True)
        self.fleet = fleet
        self.state: dict[str, bool] = {}
        self.peak = 0
        self.ever: set[str] = set()
        self.done = threading.Event()
        self.selector = urllib.parse.quote(f"{LABEL}={fleet.id}")

    def run(self) -> None:
        c = self.fleet.cluster
        listed = c.must("GET", f"/api/v1/nodes?labelSelector={self.selector}")
        for obj in listed["items"]:
            self._see("ADDED", obj)
        rv = listed["metadata"]["resourceVersion"]
        while not self.done.is_set():
            with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
                rv = self._watch(rv)

    def _watch(self, rv: str) -> str:
        c = self.fleet.cluster
        conn = http.client.HTTPSConnection("127.0.0.1", c.port, context=c._tls, timeout=30)
        conn.request("GET", f"/api/v1/nodes?watch=1&labelSelector={self.selector}"
                            f"&resourceVersion={rv}&timeoutSeconds=2")
        resp = conn.getresponse()
        while not self.done.is_set():
            line = resp.readline()
            if not line:
                break
            event = json.loads(line)
            obj = event["object"]
            if event["type"] == "ERROR":
                raise ValueError(obj)
            rv = obj["metadata"]["resourceVersion"]
            self._see(event["type"], obj)
        return rv

    def _see(self, kind: str, obj: dict[str, Any]) -> None:
        name = self.fleet.short(obj["metadata"]["name"])
        self.state[name] = bool(obj["spec"].get("unschedulable")) and kind != "DELETED"
        if self.state[name]:
            self.ever.add(name)
        self.peak = max(self.peak, sum(self.state.values()))

    def stop(self) -> tuple[int, set[str]]:
        self.done.set()
        self.join(10)
        return self.peak, self.ever


class Operator:
    """`nodeprobe.operator.run()` in its own process as the chart's operator ServiceAccount,
    its Leases in the release's namespace, logging to a file."""

    def __init__(self, fleet: Fleet, *, name: str = "op", standalone: bool = True,
                 tick_s: float = 0.3, max_concurrent: int = 1,
                 lease: tuple[float, float, float] = (4, 3, 0.5),
                 metrics_port: int = 0, liveness_port: int = 0,
                 lease_namespace: str | None = None) -> None:
        tmp, release = fleet.tmp, fleet.release
        self.port = metrics_port
        self.liveness_port = liveness_port
        liveness = f"http://127.0.0.1:{liveness_port}/healthz" if liveness_port else None
        self.log = tmp / f"{name}.log"
        kubeconfig = fleet.cluster.token_kubeconfig(
            tmp / f"{name}.kubeconfig", release.namespace, release.service_account("operator"))
        code = (
            "import logging; logging.basicConfig(level=logging.INFO, "
            "format='%(asctime)s %(name)s %(message)s'); "
            "from nodeprobe.operator import run; "
            f"run(kubeconfig={str(kubeconfig)!r}, namespace={release.namespace!r}, "
            f"standalone={standalone}, tick_s={tick_s}, max_concurrent={max_concurrent}, "
            f"lease_s={lease[0]}, renew_deadline_s={lease[1]}, retry_s={lease[2]}, "
            f"metrics_port={metrics_port}, liveness_endpoint={liveness!r}, "
            f"lease_namespace={lease_namespace!r})")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-c", code], stdout=out,
                stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)

    @property
    def field_manager_prefix(self) -> str:
        return f"nodeprobe-operator-{os.uname().nodename}-{self.proc.pid}"

    def kill(self) -> None:
        """SIGKILL, as the kubelet does after a failed liveness probe or an OOM."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM; a process still there after 30 s (a Pod's default grace period) gets
        SIGABRT, so faulthandler writes every thread's stack to the log, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]
