"""The whole repair loop on the real node, as a user with repair on runs it: the chart's agent
and operator pods from the project's image, a RemediationPolicy, and a Deployment of two pods
behind a PodDisruptionBudget on the node.

containerd (the one kubelet uses and that runs every pod here) is SIGSTOPped; the agent raises
ContainerRuntimeUnavailable; the operator, a pod on that same node (its process keeps running
with the runtime hung, and the API server is off the node), opens a NodeRemediation, cordons,
evicts one workload pod (the PDB refuses the other, 429) and, the evicted pod stuck Terminating
because the runtime cannot kill it, moves on after the drain timeout; the agent pod's
repair-executor runs the node's `systemctl restart containerd` (tests/harness/kubecluster/
units.py: a real SIGKILL and start of the node's containerd); kubelet and the agent see the
runtime again; the operator verifies, uncordons, and both workload pods serve again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.chart import Release
from tests.harness.kubecluster import ClusterError, KubeCluster
from tests.harness.kubecluster.node import RealNode
from tests.harness.kubecluster.repairloop import (
    APPS,
    create_policy,
    create_workload,
    delete_policy,
    delete_workload,
    healthy,
    helm_upgrade,
    image_values,
    release_node,
    repair_values,
    run_once,
    wait,
)
from tests.integration.node.pods import describe, is_ready, pods

pytestmark = pytest.mark.real_node
AGENT = "app.kubernetes.io/component=agent"


@pytest.fixture(scope="module")
def repair_release(node_release: Release, node: RealNode) -> Iterator[Release]:
    """The session's release upgraded to repair on, a workload and a policy; put back after."""
    cluster = node_release.cluster
    helm_upgrade(cluster, repair_values(node), name=node_release.name,
                 namespace=node_release.namespace)
    try:
        _rolled_out(node_release, repair=True)
        create_workload(cluster)
        create_policy(cluster)
        yield node_release
    finally:
        delete_policy(cluster)
        delete_workload(cluster)
        release_node(cluster)
        helm_upgrade(cluster, image_values(), name=node_release.name,
                     namespace=node_release.namespace)
        _rolled_out(node_release, repair=False)


def _rolled_out(release: Release, *, repair: bool) -> None:
    """The agent DaemonSet's new pod (with or without repair-executor) and both operator
    replicas Ready, and nothing else: the old agent pod gone."""

    def done() -> bool:
        found = pods(release.cluster, release.namespace)
        agents = pods(release.cluster, release.namespace, AGENT)
        return len(found) == 3 and all(is_ready(p) for p in found) and len(agents) == 1 and \
            repair == any(c["name"] == "repair-executor"
                          for c in agents[0]["spec"]["containers"])

    try:
        wait(done, timeout_s=120, what="the rollout")
    except ClusterError as e:
        raise ClusterError(f"{e}\n{describe(pods(release.cluster, release.namespace))}") from e


def _evictions(cluster: KubeCluster, username: str, since: int) -> list[tuple[str, int]]:
    return [(e["objectRef"]["name"], e["responseStatus"]["code"])
            for e in cluster.audit(username)[since:]
            if e["objectRef"].get("subresource") == "eviction"
            and e["objectRef"].get("namespace") == APPS]


@pytest.mark.timeout(600)  # the release's rollout there and back, and one loop of ~1 min
def test_a_hung_containerd_is_repaired_by_the_pods_on_its_own_node(
    repair_release: Release, healthy_node: RealNode,
) -> None:
    cluster, operator = repair_release.cluster, repair_release.username("operator")
    wait(lambda: healthy(cluster), timeout_s=180, what="a healthy node with the workload")
    assert healthy_node.containerd is not None
    hung_pid = healthy_node.containerd.pid
    (agent,) = pods(cluster, repair_release.namespace, AGENT)
    audited = len(cluster.audit(operator))

    loop = run_once(cluster, healthy_node)

    print(f"repair loop: {loop.seen}")
    status = loop.remediation["status"]
    assert status["phase"] == "Succeeded" and status["agent"]["state"] == "Done", status
    # The restart the agent pod asked for: the node's real containerd, killed and started again.
    (restart,) = healthy_node.units.restarts
    assert restart.unit == "containerd" and restart.old_pid == hung_pid
    assert healthy_node.containerd.pid == restart.new_pid != hung_pid
    assert agent["metadata"]["uid"].replace("-", "_") in restart.caller_cgroup.replace("-", "_"), \
        restart.caller_cgroup
    assert "restarted containerd" in status["agent"]["message"], status["agent"]
    # Cordoned, drained through the Eviction API with the PDB holding, never a pod delete.
    assert loop.cordoned and loop.min_serving >= 1, loop
    codes = {code for _, code in _evictions(cluster, operator, audited)}
    assert {201, 429} <= codes, _evictions(cluster, operator, audited)
    deletes = [e["requestURI"] for e in cluster.audit(operator)[audited:]
               if e["verb"] == "delete" and e["objectRef"].get("resource") == "pods"]
    assert deletes == []
    # The evicted pod, which the hung runtime could not stop, did not hold the restart back.
    assert loop.terminating_at_action, loop
    # In order, and the node back: Ready, schedulable, nodeprobe's condition clear, both pods.
    order = ["condition", "opened", "evicted", "ActionRequested", "Verifying", "repaired"]
    assert sorted(order, key=lambda k: loop.seen.get(k, float("inf"))) == order, loop.seen
    wait(lambda: healthy(cluster), timeout_s=60, what="the node healthy after the repair")
