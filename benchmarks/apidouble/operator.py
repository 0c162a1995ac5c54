"""The operator benchmarks' helpers on the API double: our CRDs, nodes with nodeprobe's condition,
policies, and real operator processes (`nodeprobe.operator.run` in a subprocess).

Kept only until the operator benchmarks run on the real control plane (issue 9, branch
issue9-bench); the tests' helpers on the real server are tests/integration/operator/cluster.py.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.apidouble.double import KubeDouble
from benchmarks.apidouble.objects import KUBELET_TIME, kubelet_node, running_pod
from nodeprobe.operator import CRD_DIR

ROOT = Path(__file__).resolve().parents[3]
GROUP = "nodeprobe.io"
UNHEALTHY = "ContainerRuntimeUnavailable"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def kube_double() -> Iterator[KubeDouble]:
    """A started double in a fresh /tmp/np-kube-* directory; stopped and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="np-kube-", dir="/tmp"))
    double = KubeDouble(directory=directory).start()
    try:
        yield double
        assert not double.errors, f"the kube double failed internally: {double.errors!r}"
    finally:
        double.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def cluster() -> Iterator[KubeDouble]:
    """A fresh double with nodeprobe's CRDs applied."""
    with kube_double() as kube:
        for f in sorted(CRD_DIR.glob("*.yaml")):
            kube.put_object(yaml.safe_load(f.read_text()))
        yield kube


def add_node(kube: KubeDouble, name: str, *, sick: bool = False,
             labels: dict[str, str] | None = None) -> None:
    node = kubelet_node(name)
    node["metadata"]["labels"].update(labels or {})
    node["status"]["conditions"].append(_condition(sick, KUBELET_TIME))
    kube.put_object(node)


def _condition(sick: bool, since: str) -> dict[str, Any]:
    return {"type": UNHEALTHY, "status": "True" if sick else "False", "lastTransitionTime": since,
            "lastHeartbeatTime": now_iso(), "reason": "DockerdHung" if sick else
            "ContainerRuntimeIsAvailable", "message": "dockerd did not answer" if sick else "ok"}


def set_sick(kube: KubeDouble, name: str, sick: bool) -> None:
    """What the agent's condition publisher does, written as the agent would (uncounted)."""
    node = kube.get("nodes", name)
    assert node is not None
    conds = node["status"]["conditions"]
    cond = next(c for c in conds if c["type"] == UNHEALTHY)
    if (cond["status"] == "True") != sick:
        node["status"]["conditions"] = [c for c in conds if c["type"] != UNHEALTHY] + [
            _condition(sick, now_iso())]
        kube.put_object(node)


def set_boot_id(kube: KubeDouble, name: str, boot_id: str) -> None:
    node = kube.get("nodes", name)
    assert node is not None
    node["status"]["nodeInfo"]["bootID"] = boot_id
    kube.put_object(node)


def add_pod(kube: KubeDouble, node: str, ns: str, name: str, *,
            daemonset: bool = False, labels: dict[str, str] | None = None) -> None:
    pod = running_pod(name, node=node, namespace=ns, labels=labels)
    if daemonset:
        pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                               "name": name, "uid": "ds", "controller": True}]
    kube.put_object(pod)


def add_policy(kube: KubeDouble, name: str = "p", **over: Any) -> None:
    spec: dict[str, Any] = {
        "triggers": [{"type": UNHEALTHY, "status": "True", "for": "1s"}],
        "ladder": [{"action": "restart-runtime", "runtime": "docker", "timeout": "60s"},
                   {"action": "escalate"}],
        "maxConcurrent": 1, "minHealthy": "0%", "coolDown": "0s", "settleWindow": "0s",
        "drain": {"timeout": "60s"},
    }
    spec.update(over)
    kube.put_object({"apiVersion": f"{GROUP}/v1alpha1", "kind": "RemediationPolicy",
                     "metadata": {"name": name}, "spec": spec})


def policy_status(kube: KubeDouble, name: str = "p") -> dict[str, Any]:
    return dict((kube.get("remediationpolicies", name, group=GROUP) or {}).get("status") or {})


def remediations(kube: KubeDouble) -> list[dict[str, Any]]:
    return kube.list("noderemediations", group=GROUP)


def phases(kube: KubeDouble) -> dict[str, str]:
    return {nr["spec"]["nodeName"]: (nr.get("status") or {}).get("phase", "")
            for nr in remediations(kube)}


def events(kube: KubeDouble) -> list[dict[str, Any]]:
    return kube.list("events")


def cordoned(kube: KubeDouble) -> set[str]:
    return {n["metadata"]["name"] for n in kube.list("nodes") if n["spec"].get("unschedulable")}


def cordon_peak(kube: KubeDouble) -> tuple[int, set[str]]:
    """Replay every node write the double received: most nodes unschedulable at one instant."""
    state: dict[str, bool] = {}
    peak, ever = 0, set()
    for r in kube.log(resource="nodes", writes_only=True):
        spec = (r.body or {}).get("spec") if isinstance(r.body, dict) else None
        if spec is None or "unschedulable" not in spec or r.code >= 300:
            continue
        state[r.name] = bool(spec["unschedulable"])
        if state[r.name]:
            ever.add(r.name)
        peak = max(peak, sum(state.values()))
    return peak, ever


def writers(kube: KubeDouble, resource: str) -> set[str]:
    """fieldManager of every write to `resource`: which operator replica wrote."""
    out = set()
    for r in kube.log(resource=resource, writes_only=True):
        for part in r.query.split("&"):
            if part.startswith("fieldManager="):
                out.add(part.split("=", 1)[1])
    return out


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: str,
             every: Callable[[], None] | None = None) -> None:
    """Poll a real state until true; `every` runs on each round (e.g. the simulated agent)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        if every is not None:
            every()
        time.sleep(0.1)  # pacing of the poll, not synchronisation


def fake_agent(kube: KubeDouble) -> None:
    """The node agents' part without a runtime: report Done and clear the condition."""
    for nr in remediations(kube):
        st = nr.get("status") or {}
        if st.get("phase") == "ActionRequested" and "agent" not in st:
            done = copy.deepcopy(nr)
            done["status"]["agent"] = {"rung": nr["spec"].get("rung", 0), "state": "Done",
                                       "message": "restarted"}
            kube.put_object(done)
            set_sick(kube, nr["spec"]["nodeName"], False)


class Operator:
    """`nodeprobe.operator.run()` in its own process, logging to a file."""

    def __init__(self, kube: KubeDouble, tmp: Path, *, name: str = "op",
                 standalone: bool = True, tick_s: float = 0.3, max_concurrent: int = 1,
                 lease: tuple[float, float, float] = (4, 3, 0.5)) -> None:
        self.log = tmp / f"{name}.log"
        code = (
            "import logging; logging.basicConfig(level=logging.INFO, "
            "format='%(asctime)s %(name)s %(message)s'); "
            "from nodeprobe.operator import run; "
            f"run(kubeconfig={str(kube.kubeconfig)!r}, standalone={standalone}, "
            f"tick_s={tick_s}, max_concurrent={max_concurrent}, lease_s={lease[0]}, "
            f"renew_deadline_s={lease[1]}, retry_s={lease[2]})")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def text(self) -> str:
        return self.log.read_text(errors="replace")
