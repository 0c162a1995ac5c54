"""`kubectl nodeprobe check`: `nodeprobe check` in the node's agent pod, through `kubectl exec`.

exec needs the node's container runtime, so exactly when the runtime hangs exec hangs too. The
exec therefore runs under a deadline (--exec-timeout); when it does not answer, or kubectl fails
before the check ran, the plugin says so on stderr and shows the Node's nodeprobe conditions
instead, which the agent wrote without needing the runtime.
"""

from __future__ import annotations

import enum
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodeprobe.model import COMPONENT, ConditionType, Status
from nodeprobe.operator.kube import Kube

AGENT_SELECTOR = "app.kubernetes.io/part-of=nodeprobe,app.kubernetes.io/component=agent"
"""The chart's labels that no value renames (`app.kubernetes.io/name` follows nameOverride)."""
AGENT_CONTAINER = "agent"
AGENT_CONFIG = "/etc/nodeprobe/config.yaml"
"""Where the chart mounts the agent's config; `check` uses the same file as the agent."""
OWN_CONDITIONS = frozenset(str(t) for t in ConditionType)
REMOTE_EXIT = re.compile(r"^command terminated with exit code (\d+)$", re.MULTILINE)
"""What kubectl exec prints when the remote command (not kubectl) exited non-zero."""


class Exit(enum.IntEnum):
    """The plugin's exit codes; 0-2 are `nodeprobe check`'s own (NPD's plugin convention)."""

    HEALTHY = 0
    PROBLEM = 1
    UNKNOWN = 2
    NOT_CHECKED = 3
    """check could not run in the agent (exec hung or failed); no nodeprobe condition is True."""
    ERROR = 4
    """The plugin could not ask: kubeconfig, API unreachable or forbidden, node or agent pod not
    found, no kubectl, bad arguments."""


def worst(codes: Sequence[int]) -> int:
    """One exit code for several nodes: could-not-check beats problem beats unknown."""
    for code in (Exit.ERROR, Exit.NOT_CHECKED, Exit.PROBLEM, Exit.UNKNOWN):
        if code in codes:
            return int(code)
    return max(codes, default=int(Exit.HEALTHY))


def agent_pod(kube: Kube, node_name: str, namespace: str | None) -> tuple[str, str]:
    """(namespace, name) of the running agent pod on `node_name`."""
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    pods = kube.items(path, query={"labelSelector": AGENT_SELECTOR,
                                   "fieldSelector": f"spec.nodeName={node_name}"})
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        where = f"namespace {namespace}" if namespace else "any namespace"
        found = ", ".join(f"{p['metadata']['name']} ({(p.get('status') or {}).get('phase')})"
                          for p in pods) or "none"
        raise LookupError(f"no running nodeprobe agent pod on node {node_name} in {where} "
                          f"(pods labelled {AGENT_SELECTOR}: {found}); is the DaemonSet "
                          "scheduled there?")
    pod = running[0]["metadata"]
    return pod["namespace"], pod["name"]


def check_argv(*, kubeconfig: str | None, context: str | None, namespace: str, pod: str,
               check_args: Sequence[str]) -> list[str]:
    argv = [shutil.which("kubectl") or "kubectl"]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if context:
        argv += ["--context", context]
    return [*argv, "exec", "-n", namespace, pod, "-c", AGENT_CONTAINER, "--",
            COMPONENT, "check", "--config", AGENT_CONFIG, *check_args]


@dataclass(frozen=True)
class ExecResult:
    """What `kubectl exec` did: the remote check's exit code, or None when it never ran."""

    code: int | None
    stdout: str
    stderr: str
    why: str = ""
    """When code is None: why the check did not run, for the user."""


def run_exec(argv: Sequence[str], *, timeout_s: float) -> ExecResult:
    """Run kubectl exec under a deadline; tell the remote check's exit code from kubectl's."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    except FileNotFoundError as e:
        raise LookupError(f"check runs `kubectl exec`, and no kubectl is on PATH ({e})") from e
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return ExecResult(None, out, err, f"kubectl exec did not answer within {timeout_s:g}s "
                          "(exec needs the node's container runtime: it may be hung)")
    remote = REMOTE_EXIT.search(err)
    err = REMOTE_EXIT.sub("", err).strip("\n")
    if proc.returncode == 0 or (remote and int(remote.group(1)) == proc.returncode):
        return ExecResult(proc.returncode, out, err)
    return ExecResult(None, out, err, f"kubectl exec failed (exit {proc.returncode}) before "
                      "`nodeprobe check` ran")


def own_conditions(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    return sorted((c for c in (node.get("status") or {}).get("conditions") or []
                   if c.get("type") in OWN_CONDITIONS), key=lambda c: str(c["type"]))


def fallback_code(conditions: Sequence[Mapping[str, Any]]) -> int:
    """Exit code when only the Node's conditions are known: a True one is a problem."""
    if any(c.get("status") == Status.TRUE for c in conditions):
        return int(Exit.PROBLEM)
    return int(Exit.NOT_CHECKED)
