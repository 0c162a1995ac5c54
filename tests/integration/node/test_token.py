"""Token rotation, the CI part: kubelet rewrites the agent pod's projected token file (a restarted
kubelet has no cached token, so it requests a new one and writes it, as it does at 80 % of a
token's life), and the agent picks the new token up without a single 401: the API server's
audit log names the token of each request (its credential id, the token's JTI)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from nodeprobe.model import ConditionType
from tests.harness.chart import Release
from tests.harness.kubecluster.node import RealNode
from tests.integration.node.test_agent_pod import agent_pod

pytestmark = pytest.mark.real_node
CREDENTIAL = "authentication.kubernetes.io/credential-id"
PICKUP_S = 240.0
"""The agent re-reads its token file every 60 s, at its next request (kubeclient.TOKEN_REREAD_S);
a request needs a change to write: each hang-and-recover below makes two."""


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    return "JTI=" + str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                        ["jti"])


def _token_file(node: RealNode, pod: dict[str, Any]) -> Path:
    volume = next(v["name"] for v in pod["spec"]["volumes"]
                  if v["name"].startswith("kube-api-access-"))
    return node.host_path(f"/var/lib/kubelet/pods/{pod['metadata']['uid']}/volumes/"
                          f"kubernetes.io~projected/{volume}/token")


def _unavailable(node: RealNode) -> bool:
    cond = node.condition(ConditionType.UNAVAILABLE.value)
    return cond is not None and cond["status"] == "True"


def _until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_the_agent_picks_up_the_token_kubelet_rewrote_without_a_401(
    node_release: Release, healthy_node: RealNode,
) -> None:
    cluster, agent = node_release.cluster, node_release.username("agent")
    token = _token_file(healthy_node, agent_pod(node_release))
    old = token.read_text()
    healthy_node.restart_kubelet()
    assert _until(lambda: token.read_text() != old, 60), "kubelet did not rewrite the token"
    new = _jti(token.read_text())
    seen = len(cluster.audit(agent))
    assert healthy_node.containerd is not None
    deadline = time.monotonic() + PICKUP_S
    while time.monotonic() < deadline and not any(
            e["user"].get("extra", {}).get(CREDENTIAL) == [new]
            for e in cluster.audit(agent)[seen:]):
        # A change for the agent to write: containerd hung until raised, then recovered.
        if not _unavailable(healthy_node):
            with healthy_node.containerd.hung():
                _until(lambda: _unavailable(healthy_node), 30)
        _until(lambda: not _unavailable(healthy_node), 120)
    events = cluster.audit(agent)[seen:]
    assert [e["user"]["extra"].get(CREDENTIAL) for e in events][-1:] == [[new]], events[-3:]
    assert [e for e in events if e["responseStatus"]["code"] == 401] == []
