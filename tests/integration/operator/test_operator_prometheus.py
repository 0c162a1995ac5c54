"""Prometheus alert blockers against a real Prometheus (Debian's `prometheus`) on loopback,
serving a rule that fires: no episode starts while it fires, and the policy says why; a
Prometheus that cannot be asked blocks too (kured's behaviour)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeprobe.operator.blockers import firing_alerts
from nodeprobe.operator.grammar import iso, parse_iso
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.harness.agent_process import terminate
from tests.unit.operator.fake_kube import FakeKube

RULES = """groups:
  - name: maintenance
    interval: 1s
    rules:
      - alert: NodeMaintenance
        expr: vector(1)
        labels: {severity: critical}
"""
FIRING = 'ALERTS{alertstate="firing",alertname="NodeMaintenance"}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(url: str, q: str) -> list[object]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': q})}",
                                timeout=5) as resp:
        return list(json.loads(resp.read())["data"]["result"])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is needed (make deps installs it)"
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "prometheus.yml").write_text(
        "global: {evaluation_interval: 1s}\nrule_files: [rules.yml]\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 90
        while True:  # wait on the real state: the rule has fired
            try:
                if _query(url, FIRING):
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus did not fire NodeMaintenance in 90 s"
            time.sleep(0.2)  # pacing of the poll
        yield url, proc
    finally:
        terminate(proc)


def test_firing_alert_blocks_new_episodes_until_the_query_finds_nothing(
        prometheus: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = prometheus
    why = firing_alerts(url, FIRING)
    assert why is not None and "1 firing alert(s)" in why and "NodeMaintenance" in why
    assert firing_alerts(url, 'ALERTS{alertname="NoSuchAlert"}') is None

    kube = FakeKube()
    t0 = parse_iso("2027-01-15T08:00:00Z") or 0.0
    kube.policies["p"] = {"metadata": {"name": "p"}, "spec": {
        "triggers": [{"type": "ContainerRuntimeUnavailable", "for": "1m"}],
        "ladder": [{"action": "restart-runtime", "runtime": "docker"}],
        "minHealthy": "0%", "blockers": {"prometheus": {"url": url, "query": FIRING}}}}
    kube.add_node("a", sick_since=iso(t0 - 600), heartbeat=iso(t0))
    rec = Reconciler(kube, clock=lambda: t0, settings=OperatorSettings())
    for _ in range(3):
        rec.reconcile()
    assert kube.nrs == {} and kube.node_writes() == 0
    status = kube.policies["p"]["status"]
    assert "firing alert(s) match" in status["message"] and "NodeMaintenance" in status["message"]
    assert [e["reason"] for e in kube.events] == ["RemediationBlocked"]

    terminate(proc)  # Prometheus gone: asking fails, and that blocks too
    rec.reconcile()
    assert kube.nrs == {}
    assert "cannot ask Prometheus" in kube.policies["p"]["status"]["message"]

    kube.policies["p"]["spec"]["blockers"] = {"prometheus": {"url": url,
                                                             "query": 'ALERTS{alertname="x"}'}}
    kube.policies["p"]["spec"]["blockers"]["prometheus"]["url"] = "http://127.0.0.1:1"
    rec.reconcile()
    assert kube.nrs == {}
    kube.policies["p"]["spec"].pop("blockers")
    rec.reconcile()
    assert len(kube.nrs) == 1  # without the blocker the episode starts
