"""Both operator replicas of a default install run from the project's image on the real node and
stay Ready without restarts for longer than their liveness probe needs to kill a replica that
does not answer it (3 x 20 s): the leader and the standby waiting for the Lease alike, and
kubelet never decided to kill one for its liveness probe."""

from __future__ import annotations

import calendar
import time

import pytest

from tests.harness.chart import Release
from tests.integration.node.pods import describe, is_ready, pods, restarts

pytestmark = pytest.mark.real_node
OPERATOR = "app.kubernetes.io/component=operator"
LIVENESS_WINDOW_S = 3 * 20 + 20
"""failureThreshold x periodSeconds of the chart's operator liveness probe, plus one period."""


def _running_since(pod: dict[str, object]) -> float:
    (status,) = pod["status"]["containerStatuses"]  # type: ignore[index]
    started = status["state"]["running"]["startedAt"]
    return float(calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")))


def test_both_operator_replicas_stay_ready_without_restarts(node_release: Release) -> None:
    cluster, namespace = node_release.cluster, node_release.namespace
    replicas = pods(cluster, namespace, OPERATOR)
    assert len(replicas) == 2, describe(replicas)
    deadline = max(_running_since(p) for p in replicas) + LIVENESS_WINDOW_S
    while True:
        replicas = pods(cluster, namespace, OPERATOR)
        assert len(replicas) == 2 and all(is_ready(p) and restarts(p) == 0 for p in replicas), \
            describe(replicas)
        if time.time() > deadline:
            break
        time.sleep(1)
    # A liveness kill can wait (a hung runtime holds it): kubelet's own Events say it decided one.
    names = {p["metadata"]["name"] for p in replicas}
    events = cluster.must("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    killed = [f"{e['involvedObject']['name']}: {e['message']}" for e in events
              if e["involvedObject"]["name"] in names and e.get("reason") == "Killing"
              and "liveness" in e["message"]]
    assert killed == [], killed
