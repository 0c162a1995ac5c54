"""The agent as users run it: the project's image, a default `helm install` (only the image set),
the DaemonSet's pod made into a container by a real kubelet under the chart's own
securityContext, mounts, limits, probes and projected token; `kubectl logs` and
`kubectl nodeprobe check NODE` (a real exec) reach it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodeprobe.model import ConditionType
from tests.harness.agent_process import wait_for
from tests.harness.chart import Release, kubectl
from tests.harness.gotools import tool
from tests.harness.kubecluster import KubeCluster
from tests.harness.kubecluster.node import RealNode
from tests.integration.node.pods import RELEASE_VALUES, is_ready, pods, restarts
from tools import helm

pytestmark = pytest.mark.real_node
AGENT = "app.kubernetes.io/component=agent"
BIN = Path(sys.executable).parent


def agent_pod(release: Release) -> dict[str, Any]:
    (pod,) = pods(release.cluster, release.namespace, AGENT)
    return pod


def kubectl_nodeprobe(cluster: KubeCluster, *args: str, timeout_s: float = 60
                      ) -> subprocess.CompletedProcess[str]:
    """The plugin as a user runs it: real kubectl finds `kubectl-nodeprobe` on PATH."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "KUBECONFIG": str(cluster.admin_kubeconfig)}
    return subprocess.run([str(tool("kubectl")), "nodeprobe", *args], capture_output=True,
                          text=True, timeout=timeout_s, env=env, check=False)


def test_the_agent_pod_runs_under_the_charts_own_spec(node_release: Release,
                                                       healthy_node: RealNode) -> None:
    pod = agent_pod(node_release)
    (ds,) = [o for o in helm.objects(helm.template(set_values=RELEASE_VALUES))
             if o["kind"] == "DaemonSet"]
    want, got = ds["spec"]["template"]["spec"], pod["spec"]
    assert got["nodeName"] == healthy_node.name and is_ready(pod) and restarts(pod) == 0
    (container,) = got["containers"]
    (chart,) = want["containers"]
    for key in ("image", "securityContext", "resources", "livenessProbe", "readinessProbe"):
        assert subset(chart[key], container[key]), (key, chart[key], container[key])
    assert subset(want["securityContext"], got["securityContext"])
    extra = [m for m in container["volumeMounts"] if m not in chart["volumeMounts"]]
    assert all(subset(m, n) for m, n in zip(chart["volumeMounts"], container["volumeMounts"],
                                             strict=False))
    assert [m["mountPath"] for m in extra] == ["/var/run/secrets/kubernetes.io/serviceaccount"]
    (token,) = [v for v in got["volumes"] if v["name"].startswith("kube-api-access-")]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token"
    state = pod["status"]["containerStatuses"][0]
    assert state["ready"] and "running" in state["state"], state


def test_the_agent_writes_all_four_conditions_on_its_node_with_its_own_token(
    node_release: Release, healthy_node: RealNode,
) -> None:
    """Through the service address relayed to the API server, with the pod's projected token
    (bound to the pod and so to the node the admission policy names)."""
    def all_false() -> bool:
        return all((c := healthy_node.condition(kind.value)) is not None
                   and c["status"] == "False" for kind in ConditionType)

    # A test before this one may have hung the node's containerd and resumed it: the agent says
    # so until its next rounds, so the healthy state is waited for, not sampled once.
    wait_for(all_false, timeout_s=60, what=lambda: "all four conditions False on a healthy "
             f"node: {[healthy_node.condition(k.value) for k in ConditionType]}")
    agent = node_release.username("agent")
    writes = [e for e in node_release.cluster.audit(agent)
              if e["objectRef"].get("resource") == "nodes"
              and e["objectRef"].get("subresource") == "status"]
    assert writes and {e["responseStatus"]["code"] for e in writes} == {200}, writes[-3:]
    claims = writes[-1]["user"]["extra"]
    assert claims["authentication.kubernetes.io/node-name"] == [healthy_node.name]


def test_kubectl_logs_shows_the_agent(node_release: Release) -> None:
    done = kubectl(node_release.cluster, "-n", node_release.namespace, "logs",
                   agent_pod(node_release)["metadata"]["name"])
    assert done.returncode == 0, done.stderr
    assert "agent running" in done.stdout and "first round of checks done" in done.stdout, \
        done.stdout[-2000:]


def test_kubectl_nodeprobe_check_goes_through_a_real_exec_and_passes_the_exit_code(
    node_release: Release, healthy_node: RealNode,
) -> None:
    done = kubectl_nodeprobe(node_release.cluster, "check", healthy_node.name, "--no-process")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "containerd" in done.stdout, done.stdout
    # `nodeprobe check` in the pod refuses an unknown flag with argparse's 2: passed through.
    done = kubectl_nodeprobe(node_release.cluster, "check", healthy_node.name, "--no-such-flag")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--no-such-flag" in done.stderr


def subset(want: Any, got: Any) -> bool:
    """`want` (the chart's) is in `got` (the API server's, with its defaults filled in)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(v, got[k])
                                             for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(
            subset(w, g) for w, g in zip(want, got, strict=True))
    return bool(want == got)
