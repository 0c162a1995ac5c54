"""Faster than the kubelet, on the kubelet's own runtime: the containerd that kubelet uses and
that runs the agent's own pod SIGSTOPped; nodeprobe's condition is on the Node in under 10 s
while kubelet still says Ready (it needs its 2-minute runtimeRequestTimeout), the agent pod is
not restarted by its liveness probe, and `kubectl nodeprobe check NODE`, whose exec cannot work
now, says so within its exec timeout and shows the Node's conditions instead."""

from __future__ import annotations

import subprocess
import time

import pytest

from nodeprobe.model import ConditionType
from tests.harness.chart import Release
from tests.harness.kubecluster.node import RealNode
from tests.integration.node.pods import pods, restarts
from tests.integration.node.test_agent_pod import AGENT, kubectl_nodeprobe

pytestmark = pytest.mark.real_node
DETECT_S = 10.0
EXEC_TIMEOUT_S = 15.0
"""`kubectl nodeprobe check`'s default --exec-timeout."""


def _raised(node: RealNode) -> dict[str, str] | None:
    cond = node.condition(ConditionType.UNAVAILABLE.value)
    return cond if cond is not None and cond["status"] == "True" else None


def test_a_hung_containerd_is_on_the_node_in_seconds_while_kubelet_says_ready(
    node_release: Release, healthy_node: RealNode,
) -> None:
    assert healthy_node.containerd is not None and _raised(healthy_node) is None
    before = {p["metadata"]["name"]: restarts(p)
              for p in pods(node_release.cluster, node_release.namespace, AGENT)}
    with healthy_node.containerd.hung():
        hung_at = time.monotonic()
        while (raised := _raised(healthy_node)) is None and \
                time.monotonic() - hung_at < 3 * DETECT_S:
            time.sleep(0.2)
        detected_s = time.monotonic() - hung_at
        ready = healthy_node.condition("Ready")
        print(f"nodeprobe condition after {detected_s:.1f}s; kubelet Ready: {ready}")
        assert raised is not None and raised["reason"] == "ContainerdHung", raised
        assert detected_s < DETECT_S
        assert ready is not None and ready["status"] == "True", ready
    after = {p["metadata"]["name"]: restarts(p)
             for p in pods(node_release.cluster, node_release.namespace, AGENT)}
    assert after == before, "the agent pod was restarted during the hang"


def test_kubectl_nodeprobe_check_says_exec_did_not_answer_and_shows_the_conditions(
    node_release: Release, healthy_node: RealNode,
) -> None:
    """The contract of `--exec-timeout` (default 15 s): on stderr that exec did not answer (the
    runtime may be hung), the Node's nodeprobe conditions printed, exit 1 as one is True."""
    assert healthy_node.containerd is not None
    with healthy_node.containerd.hung():
        hung_at = time.monotonic()
        while _raised(healthy_node) is None and time.monotonic() - hung_at < 3 * DETECT_S:
            time.sleep(0.2)
        assert _raised(healthy_node) is not None
        check = _check_while_hung(node_release, healthy_node)
    assert check.returncode == 1, check.stdout + check.stderr
    assert "exec did not answer" in check.stderr, check.stderr
    assert ConditionType.UNAVAILABLE.value in check.stdout, check.stdout


def _check_while_hung(release: Release, node: RealNode) -> subprocess.CompletedProcess[str]:
    """`kubectl nodeprobe check NODE` against the hung runtime: it must answer by itself within
    its exec timeout (plus the API round trips), not hang with the exec."""
    started = time.monotonic()
    try:
        done = kubectl_nodeprobe(release.cluster, "check", node.name,
                                 timeout_s=EXEC_TIMEOUT_S + 20)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"kubectl nodeprobe check hung with the runtime for {e.timeout:.0f}s "
                    f"(no exec timeout, no fallback to the Node's conditions)")
    took = time.monotonic() - started
    assert took < EXEC_TIMEOUT_S + 10, took
    return done
