"""What the agent can see from its pod on a real node, under the chart's defaults: uid 0, every
capability dropped, no new privileges, the RuntimeDefault seccomp profile, the pod's own PID
namespace, read-only root, /proc and the cgroup fs under /host. `nodeprobe check` in the pod
(the in-pod command docs/install.md gives) with the process check on: what it reads is the
table in docs/probes.md ("Under the chart's securityContext, measured on a real node")."""

from __future__ import annotations

import json

import pytest

from nodeprobe.model import Check, Outcome, Value
from tests.harness.chart import Release, kubectl
from tests.harness.kubecluster.node import RealNode
from tests.integration.node.test_agent_pod import agent_pod

pytestmark = pytest.mark.real_node


def test_what_the_chart_defaults_let_the_agent_read(node_release: Release,
                                                     healthy_node: RealNode) -> None:
    pod = agent_pod(node_release)["metadata"]["name"]
    done = kubectl(node_release.cluster, "-n", node_release.namespace, "exec", pod, "--",
                   "nodeprobe", "check", "--config", "/etc/nodeprobe/config.yaml", "--json")
    report = json.loads(done.stdout)
    rows = {(o["runtime"], o["check"]): o for o in report["observations"]}
    print("\n".join(f"{r} {c} {o['outcome']} values={sorted(o['values'])} "
                    f"detail={o['detail'][:160]!r}" for (r, c), o in sorted(rows.items())))
    for check in (Check.CRI_VERSION, Check.CRI_STATUS, Check.CRI_LIST_POD_SANDBOX,
                  Check.CRI_LIST_CONTAINERS, Check.CRI_IMAGE_FS_INFO):
        assert rows[("containerd", check)]["outcome"] == Outcome.OK, rows[("containerd", check)]
    process = rows[("containerd", Check.PROCESS)]
    assert process["outcome"] == Outcome.OK, process
    # The daemon behind the socket kubelet uses, not another containerd of the host (this one
    # runs the tests' private containerds beside it).
    assert healthy_node.containerd is not None
    assert process["values"][Value.PID] == healthy_node.containerd.pid, process["detail"]
    assert {Value.RSS_ANON_BYTES, Value.CGROUP_ANON_BYTES, Value.SHIMS} <= set(process["values"])
    assert process["values"][Value.SHIMS] >= 3, process  # agent + 2 operator pods, at least
