"""`kubectl nodeprobe`: the fleet as the API server sees it, without PromQL or jsonpath.

Installed as the `kubectl-nodeprobe` console script, so kubectl finds it as a plugin:

    kubectl nodeprobe status           sick nodes (reason, since, message), open remediations,
                                       the remediation budget in use per policy
    kubectl nodeprobe describe NODE    nodeprobe's conditions, recent Events, remediation history
    kubectl nodeprobe check NODE       `nodeprobe check` in the node's agent pod (kubectl exec)

Credentials follow kubectl's rules: --kubeconfig, else $KUBECONFIG (a `:`-separated list is
merged), else ~/.kube/config; --context picks a context. Read-only: nothing here writes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nodeprobe.model import (
    COMPONENT,
    NODE_REMEDIATIONS,
    REMEDIATION_GROUP,
    REMEDIATION_NODE_LABEL,
    REMEDIATION_VERSION,
    ConditionType,
    RemediationPhase,
    Status,
)
from nodeprobe.operator.episodes import holds_slot
from nodeprobe.operator.gates import TERMINAL
from nodeprobe.operator.grammar import parse_iso
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.policy import PolicyError, parse_policy

API = f"/apis/{REMEDIATION_GROUP}/{REMEDIATION_VERSION}"
AGENT_SELECTOR = "app.kubernetes.io/name=nodeprobe,app.kubernetes.io/component=agent"
AGENT_CONTAINER = "agent"
AGENT_CONFIG = "/etc/nodeprobe/config.yaml"
"""Where the chart mounts the agent's config; `check` uses the same file as the agent."""
OWN_CONDITIONS = frozenset(str(t) for t in ConditionType)
RECENT_EVENTS = 20


def now() -> float:
    return time.time()


def age(seconds: float) -> str:
    """kubectl's short durations: 45s, 3m12s, 5h4m, 2d3h."""
    s = max(0, int(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit}{rest}{sub}" if rest else f"{s // size}{unit}"
    return f"{s}s"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """kubectl's column layout: left-aligned, three spaces between columns."""
    cells = [list(header)] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header) - 1)]
    lines = ["   ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]])
             for r in cells]
    return "\n".join(line.rstrip() for line in lines)


# ---- reading the cluster -------------------------------------------------------------------


def sick_conditions(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """nodeprobe's conditions on a Node whose status is not False (True = problem, Unknown)."""
    return [c for c in (node.get("status") or {}).get("conditions") or []
            if c.get("type") in OWN_CONDITIONS and c.get("status") != Status.FALSE]


def _optional(kube: Kube, path: str, query: Mapping[str, str] | None = None
              ) -> list[dict[str, Any]] | None:
    """Items, or None when the resource type is not installed (operator not deployed)."""
    try:
        return kube.items(path, query=query)
    except KubeError as e:
        if e.status == 404:
            return None
        raise


def _since(text: object, at: float) -> str:
    t = parse_iso(text)
    return "-" if t is None else f"{text} ({age(at - t)})"


def _phase(nr: Mapping[str, Any]) -> str:
    return str((nr.get("status") or {}).get("phase") or RemediationPhase.PENDING)


def _remediation_rows(items: Iterable[Mapping[str, Any]], at: float) -> list[list[object]]:
    rows = []
    for nr in sorted(items, key=lambda n: n["metadata"].get("creationTimestamp", "")):
        meta, spec, st = nr["metadata"], nr.get("spec") or {}, nr.get("status") or {}
        created = parse_iso(meta.get("creationTimestamp"))
        rows.append([meta["name"], spec.get("nodeName", ""), spec.get("policy", ""),
                     _phase(nr), st.get("rung", spec.get("rung", 0)),
                     "-" if created is None else age(at - created), st.get("message", "")])
    return rows


REMEDIATION_HEADER = ("REMEDIATION", "NODE", "POLICY", "PHASE", "RUNG", "AGE", "MESSAGE")


def budget_rows(policies: Iterable[Mapping[str, Any]],
                remediations: Sequence[Mapping[str, Any]]) -> list[list[object]]:
    """Per policy: nodes held (live, or Escalated and not released) against maxConcurrent, and the
    policy's own sentence on why nothing happens when something waits."""
    rows = []
    for p in sorted(policies, key=lambda p: p["metadata"]["name"]):
        name, st = p["metadata"]["name"], p.get("status") or {}
        matched = int(st.get("matchedNodes") or 0)
        try:
            budget: object = parse_policy(name, p.get("spec") or {}).budget(matched)
        except PolicyError:
            budget = "invalid"
        held = sum(1 for nr in remediations if (nr.get("spec") or {}).get("policy") == name
                   and holds_slot(nr))
        rows.append([name, f"{held}/{budget}", f"{st.get('sickNodes', 0)}/{matched}",
                     st.get("message", "")])
    return rows


# ---- commands ------------------------------------------------------------------------------


def status(kube: Kube, out: Callable[[str], None], at: float) -> int:
    rows = []
    for node in sorted(kube.items("/api/v1/nodes"), key=lambda n: n["metadata"]["name"]):
        for c in sick_conditions(node):
            rows.append([node["metadata"]["name"], c["type"], c.get("status", ""),
                         c.get("reason", ""), _since(c.get("lastTransitionTime"), at),
                         c.get("message", "")])
    out(table(("NODE", "CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"), rows) if rows
        else "No node has a nodeprobe condition that is not healthy.")
    remediations = _optional(kube, f"{API}/{NODE_REMEDIATIONS}")
    if remediations is None:
        out("\nNodeRemediations: not installed (is the nodeprobe operator deployed?)")
        return 0
    open_ = [nr for nr in remediations if _phase(nr) not in TERMINAL]
    out("\n" + (table(REMEDIATION_HEADER, _remediation_rows(open_, at)) if open_
                else "No open NodeRemediations."))
    policies = _optional(kube, f"{API}/remediationpolicies") or []
    out("\n" + (table(("POLICY", "BUDGET IN USE", "SICK/MATCHED", "STATUS"),
                      budget_rows(policies, remediations)) if policies
                else "No RemediationPolicies: nothing is remediated automatically."))
    return 0


def describe(kube: Kube, node_name: str, out: Callable[[str], None], at: float) -> int:
    try:
        node = kube.request("GET", f"/api/v1/nodes/{node_name}")
    except KubeError as e:
        if e.status == 404:
            out(f'Error: node "{node_name}" not found')
            return 1
        raise
    conds = [c for c in (node.get("status") or {}).get("conditions") or []
             if c.get("type") in OWN_CONDITIONS]
    out(f"Node: {node_name}   Unschedulable: {bool((node.get('spec') or {}).get('unschedulable'))}")
    out("\nConditions:")
    out(table(("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"),
              [[c["type"], c.get("status", ""), c.get("reason", ""),
                _since(c.get("lastTransitionTime"), at), c.get("message", "")]
               for c in sorted(conds, key=lambda c: str(c["type"]))])
        if conds else "  none: no nodeprobe agent has reported on this node")
    events = [e for e in kube.items("/api/v1/events", query={
        "fieldSelector": f"involvedObject.kind=Node,involvedObject.name={node_name}"})
        if str((e.get("source") or {}).get("component", "")).startswith(COMPONENT)]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    out("\nEvents (nodeprobe):")
    out(table(("LAST SEEN", "TYPE", "REASON", "FROM", "COUNT", "MESSAGE"),
              [[_since(e.get("lastTimestamp") or e.get("eventTime"), at), e.get("type", ""),
                e.get("reason", ""), (e.get("source") or {}).get("component", ""),
                e.get("count") or 1, e.get("message", "")] for e in events[-RECENT_EVENTS:]])
        if events else "  none")
    history = _optional(kube, f"{API}/{NODE_REMEDIATIONS}",
                        {"labelSelector": f"{REMEDIATION_NODE_LABEL}={node_name}"})
    out("\nRemediations:")
    if history is None:
        out("  not installed (is the nodeprobe operator deployed?)")
    else:
        out(table(REMEDIATION_HEADER, _remediation_rows(history, at)) if history else "  none")
    return 0


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


def check_argv(args: argparse.Namespace, namespace: str, pod: str) -> list[str]:
    kubectl = shutil.which("kubectl") or "kubectl"
    argv = [kubectl]
    if args.kubeconfig:
        argv += ["--kubeconfig", args.kubeconfig]
    if args.context:
        argv += ["--context", args.context]
    return [*argv, "exec", "-n", namespace, pod, "-c", AGENT_CONTAINER, "--",
            COMPONENT, "check", "--config", AGENT_CONFIG, *args.check_args]


# ---- entry point ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for flags, help_ in ((("--kubeconfig",), "kubeconfig file (default: $KUBECONFIG, "
                          "then ~/.kube/config)"), (("--context",), "kubeconfig context"),
                         (("-n", "--namespace"), "the agents' namespace (check; default: any)")):
        common.add_argument(*flags, default=argparse.SUPPRESS, help=help_)
    ap = argparse.ArgumentParser(prog="kubectl nodeprobe", parents=[common],
                                 description="nodeprobe's view of the cluster's nodes.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("status", parents=[common], help="sick nodes, open remediations, budget")
    d = sub.add_parser("describe", parents=[common], help="one node: conditions, Events, history")
    d.add_argument("node")
    c = sub.add_parser("check", parents=[common], help="run `nodeprobe check` in the node's agent")
    c.add_argument("node")
    return ap


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The plugin's own flags anywhere (kubectl users put --context last); whatever else follows
    `check NODE` is for `nodeprobe check` (e.g. --json)."""
    ap = _parser()
    args, extra = ap.parse_known_args(argv)
    for name in ("kubeconfig", "context", "namespace"):
        setattr(args, name, getattr(args, name, None))
    if extra and args.command != "check":
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    args.check_args = [a for a in extra if a != "--"]
    return args


def connect(kubeconfig: str | None, context: str | None) -> Kube:
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context)
    except (config.ConfigException, OSError) as e:
        raise SystemExit(f"kubectl nodeprobe: cannot load kubeconfig {path}"
                         f"{f' (context {context})' if context else ''}: {e}") from e
    return Kube(api)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    kube = connect(args.kubeconfig, args.context)
    try:
        if args.command == "status":
            return status(kube, print, now())
        if args.command == "describe":
            return describe(kube, args.node, print, now())
        namespace, pod = agent_pod(kube, args.node, args.namespace)
        argv_ = check_argv(args, namespace, pod)
        sys.stdout.flush()
        try:
            return subprocess.run(argv_, check=False).returncode
        except FileNotFoundError as e:
            raise LookupError(f"check runs `kubectl exec`, and no kubectl is on PATH ({e})") from e
    except LookupError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except KubeError as e:
        host = kube.api.configuration.host
        what = "cannot reach" if e.status == 0 else f"{e.status} from"
        print(f"Error: {what} the Kubernetes API at {host}: {e}", file=sys.stderr)
        return 1
