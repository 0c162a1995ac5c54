"""`kubectl nodeprobe`: the fleet as the API server sees it, without PromQL or jsonpath.

Installed as the `kubectl-nodeprobe` console script, so kubectl finds it as a plugin:

    kubectl nodeprobe status           sick nodes (reason, since, message), open remediations,
                                       the remediation budget in use per policy
    kubectl nodeprobe describe NODE    nodeprobe's conditions, recent Events, remediation history
    kubectl nodeprobe check NODE       `nodeprobe check` in the node's agent pod (kubectl exec)

Credentials follow kubectl's rules: --kubeconfig, else $KUBECONFIG (a `:`-separated list is
merged), else ~/.kube/config; --context picks a context. Read-only: nothing here writes.
Exit codes: see `kubectl_check.Exit` (0 healthy, 1 problem, 2 unknown, 3+ could not check).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import yaml

from nodeprobe import __version__
from nodeprobe.kubectl_check import (
    OWN_CONDITIONS,
    Exit,
    agent_pod,
    check_argv,
    fallback_code,
    own_conditions,
    run_exec,
    worst,
)
from nodeprobe.model import (
    COMPONENT,
    NODE_REMEDIATIONS,
    REMEDIATION_GROUP,
    REMEDIATION_NODE_LABEL,
    REMEDIATION_VERSION,
    RemediationPhase,
    Status,
)
from nodeprobe.operator.edge import remediation
from nodeprobe.operator.gates import TERMINAL
from nodeprobe.operator.grammar import PolicyError, parse_iso
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.parse import parse_policy

API = f"/apis/{REMEDIATION_GROUP}/{REMEDIATION_VERSION}"
RECENT_EVENTS = 20
OUTPUTS = ("table", "wide", "json", "yaml")
EXEC_TIMEOUT_S = 15.0
Out = Callable[[str], None]


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


def _ago(text: object, at: float) -> str:
    t = parse_iso(text)
    return "-" if t is None else age(at - t)


def _phase(nr: Mapping[str, Any]) -> str:
    return str((nr.get("status") or {}).get("phase") or RemediationPhase.PENDING)


def _remediation_rows(items: Iterable[Mapping[str, Any]], at: float, *, wide: bool = False
                      ) -> list[list[object]]:
    rows = []
    for nr in sorted(items, key=lambda n: n["metadata"].get("creationTimestamp", "")):
        meta, spec, st = nr["metadata"], nr.get("spec") or {}, nr.get("status") or {}
        row = [meta["name"], spec.get("nodeName", ""), spec.get("policy", ""), _phase(nr),
               st.get("rung", spec.get("rung", 0)), _ago(meta.get("creationTimestamp"), at)]
        if wide:
            row.append(bool(st.get("cordonedByUs")))
        rows.append([*row, st.get("message", "")])
    return rows


def remediation_header(wide: bool) -> tuple[str, ...]:
    return ("REMEDIATION", "NODE", "POLICY", "PHASE", "RUNG", "AGE",
            *(("CORDONED",) if wide else ()), "MESSAGE")


def condition_rows(node: str | None, conditions: Iterable[Mapping[str, Any]], at: float, *,
                   wide: bool) -> list[list[object]]:
    """One row per condition; the node column when listing many nodes; HEARTBEAT when wide (how
    long ago the agent last wrote it: a silent agent shows here)."""
    return [[*([node] if node is not None else []), c["type"], c.get("status", ""),
             c.get("reason", ""), _since(c.get("lastTransitionTime"), at),
             *([_ago(c.get("lastHeartbeatTime"), at)] if wide else []), c.get("message", "")]
            for c in conditions]


def condition_header(*, node: bool, wide: bool) -> tuple[str, ...]:
    return (*(("NODE",) if node else ()), "CONDITION" if node else "TYPE", "STATUS", "REASON",
            "SINCE", *(("HEARTBEAT",) if wide else ()), "MESSAGE")


def policy_budget(policy: Mapping[str, Any], remediations: Sequence[Mapping[str, Any]]
                  ) -> dict[str, Any]:
    """Nodes held (live, or Escalated and not released) against maxConcurrent, and the policy's
    own sentence on why nothing happens when something waits."""
    name, st = policy["metadata"]["name"], policy.get("status") or {}
    matched = int(st.get("matchedNodes") or 0)
    try:
        budget: object = parse_policy(name, policy.get("spec") or {}).budget(matched)
    except PolicyError:
        budget = "invalid"
    held = sum(1 for nr in remediations if (nr.get("spec") or {}).get("policy") == name
               and remediation(nr).holds)
    return {"name": name, "held": held, "budget": budget, "sickNodes": st.get("sickNodes", 0),
            "matchedNodes": matched, "message": st.get("message", "")}


def budget_rows(policies: Iterable[Mapping[str, Any]],
                remediations: Sequence[Mapping[str, Any]]) -> list[list[object]]:
    rows = []
    for p in sorted(policies, key=lambda p: p["metadata"]["name"]):
        b = policy_budget(p, remediations)
        rows.append([b["name"], f"{b['held']}/{b['budget']}",
                     f"{b['sickNodes']}/{b['matchedNodes']}", b["message"]])
    return rows


# ---- commands ------------------------------------------------------------------------------


def emit(fmt: str, data: Mapping[str, Any], out: Out) -> None:
    """-o json|yaml: the data the table is made of, for scripts."""
    out(json.dumps(data, indent=2, sort_keys=True) if fmt == "json"
        else yaml.safe_dump(dict(data), sort_keys=True).rstrip("\n"))


def nodes(kube: Kube, selector: str | None) -> list[dict[str, Any]]:
    query = {"labelSelector": selector} if selector else None
    return sorted(kube.items("/api/v1/nodes", query=query), key=lambda n: n["metadata"]["name"])


def status(kube: Kube, out: Out, at: float, *, fmt: str = "table",
           selector: str | None = None) -> int:
    wide = fmt == "wide"
    sick = {n["metadata"]["name"]: sick_conditions(n) for n in nodes(kube, selector)}
    remediations = _optional(kube, f"{API}/{NODE_REMEDIATIONS}")
    open_ = [nr for nr in remediations or [] if _phase(nr) not in TERMINAL
             and (selector is None or (nr.get("spec") or {}).get("nodeName") in sick)]
    policies = (_optional(kube, f"{API}/remediationpolicies") or []) if remediations is not None \
        else []
    if fmt in ("json", "yaml"):
        emit(fmt, {"nodes": [{"name": n, "conditions": c} for n, c in sick.items() if c],
                   "remediations": None if remediations is None else open_,
                   "policies": [policy_budget(p, remediations or []) for p in policies]}, out)
        return int(Exit.HEALTHY)
    rows = [row for name, conds in sick.items()
            for row in condition_rows(name, conds, at, wide=wide)]
    out(table(condition_header(node=True, wide=wide), rows) if rows
        else "No node has a nodeprobe condition that is not healthy.")
    if remediations is None:
        out("\nNodeRemediations: not installed (is the nodeprobe operator deployed?)")
        return int(Exit.HEALTHY)
    out("\n" + (table(remediation_header(wide), _remediation_rows(open_, at, wide=wide))
                if open_ else "No open NodeRemediations."))
    out("\n" + (table(("POLICY", "BUDGET IN USE", "SICK/MATCHED", "STATUS"),
                      budget_rows(policies, remediations)) if policies
                else "No RemediationPolicies: nothing is remediated automatically."))
    return int(Exit.HEALTHY)


def describe(kube: Kube, node_name: str, out: Out, at: float, *, fmt: str = "table") -> int:
    try:
        node = kube.request("GET", f"/api/v1/nodes/{node_name}")
    except KubeError as e:
        if e.status == 404:
            raise LookupError(f'node "{node_name}" not found') from e
        raise
    conds = own_conditions(node)
    events = [e for e in kube.items("/api/v1/events", query={
        "fieldSelector": f"involvedObject.kind=Node,involvedObject.name={node_name}"})
        if str((e.get("source") or {}).get("component", "")).startswith(COMPONENT)]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    events = events[-RECENT_EVENTS:]
    history = _optional(kube, f"{API}/{NODE_REMEDIATIONS}",
                        {"labelSelector": f"{REMEDIATION_NODE_LABEL}={node_name}"})
    unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
    if fmt in ("json", "yaml"):
        emit(fmt, {"node": node_name, "unschedulable": unschedulable, "conditions": conds,
                   "events": events, "remediations": history}, out)
        return int(Exit.HEALTHY)
    wide = fmt == "wide"
    out(f"Node: {node_name}   Unschedulable: {unschedulable}")
    out("\nConditions:")
    out(table(condition_header(node=False, wide=wide),
              condition_rows(None, conds, at, wide=wide))
        if conds else "  none: no nodeprobe agent has reported on this node")
    out("\nEvents (nodeprobe):")
    out(table(("LAST SEEN", "TYPE", "REASON", "FROM", "COUNT", "MESSAGE"),
              [[_since(e.get("lastTimestamp") or e.get("eventTime"), at), e.get("type", ""),
                e.get("reason", ""), (e.get("source") or {}).get("component", ""),
                e.get("count") or 1, e.get("message", "")] for e in events])
        if events else "  none")
    out("\nRemediations:")
    if history is None:
        out("  not installed (is the nodeprobe operator deployed?)")
    else:
        out(table(remediation_header(wide), _remediation_rows(history, at, wide=wide))
            if history else "  none")
    return int(Exit.HEALTHY)


def check(kube: Kube, args: argparse.Namespace, node_name: str, out: Out, err: Out) -> int:
    """`nodeprobe check` in the agent; when exec cannot run it, the Node's conditions instead."""
    namespace, pod = agent_pod(kube, node_name, args.namespace)
    extra = ["--json"] if args.output in ("json", "yaml") else []
    result = run_exec(check_argv(kubeconfig=args.kubeconfig, context=args.context,
                                 namespace=namespace, pod=pod,
                                 check_args=[*extra, *args.check_args]),
                      timeout_s=args.exec_timeout)
    if result.stderr:
        err(result.stderr)
    if result.code is not None:
        text = result.stdout.rstrip("\n")
        if args.output == "yaml" and text:
            emit("yaml", json.loads(text), out)
        elif text:
            out(text)
        return result.code
    err(f"Error: {result.why}; showing node {node_name}'s nodeprobe conditions instead")
    conds = own_conditions(kube.request("GET", f"/api/v1/nodes/{node_name}"))
    code = fallback_code(conds)
    if args.output in ("json", "yaml"):
        emit(args.output, {"node": node_name, "checked": False, "reason": result.why,
                           "conditions": conds}, out)
    else:
        wide = args.output == "wide"
        out(table(condition_header(node=False, wide=wide),
                  condition_rows(None, conds, now(), wide=wide))
            if conds else "none: no nodeprobe agent has reported on this node")
    return code


# ---- entry point ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors exit ERROR (4), not argparse's 2, which means 'unknown' here."""
        self.print_usage(sys.stderr)
        self.exit(int(Exit.ERROR), f"{self.prog}: error: {message}\n")


def _common() -> _Parser:
    common = _Parser(add_help=False)
    for flags, help_ in (
            (("--kubeconfig",), "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)"),
            (("--context",), "kubeconfig context"),
            (("-n", "--namespace"), "the agents' namespace (check; default: all namespaces)"),
            (("-o", "--output"), "table (default), wide, json or yaml"),
            (("-l", "--selector"), "node label selector (status, describe, check)"),
            (("--exec-timeout",), f"check: seconds kubectl exec may take (default "
                                  f"{EXEC_TIMEOUT_S:g}); then the Node's conditions instead")):
        common.add_argument(*flags, default=argparse.SUPPRESS, help=help_)
    common.add_argument("-A", "--all-namespaces", action="store_true", default=argparse.SUPPRESS,
                        help="look for agents in every namespace (the default)")
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    ap = _Parser(prog="kubectl nodeprobe", parents=[common],
                 description="nodeprobe's view of the cluster's nodes. Exit codes: 0 healthy, "
                 "1 problem, 2 unknown, 3 check could not run in the agent (the Node's "
                 "conditions shown instead, none True), 4 the plugin could not ask (kubeconfig, "
                 "API, node or agent pod not found, usage).")
    ap.add_argument("--version", action="version", version=f"kubectl-nodeprobe {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("status", parents=[common], help="sick nodes, open remediations, budget")
    d = sub.add_parser("describe", parents=[common], help="nodes: conditions, Events, history")
    d.add_argument("node", nargs="?")
    c = sub.add_parser("check", parents=[common], help="run `nodeprobe check` in the node's agent")
    c.add_argument("node", nargs="?")
    return ap


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The plugin's own flags anywhere (kubectl users put --context last); whatever else follows
    `check NODE` is for `nodeprobe check` (e.g. --deadline)."""
    ap = _parser()
    args, extra = ap.parse_known_args(argv)
    defaults = {"kubeconfig": None, "context": None, "namespace": None, "output": "table",
                "selector": None, "exec_timeout": EXEC_TIMEOUT_S, "all_namespaces": False}
    for name, default in defaults.items():
        setattr(args, name, getattr(args, name, default))
    if extra and args.command != "check":
        ap.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.output not in OUTPUTS:
        ap.error(f"--output {args.output}: expected one of {', '.join(OUTPUTS)}")
    if args.namespace and args.all_namespaces:
        ap.error("-n/--namespace and -A/--all-namespaces exclude each other")
    try:
        args.exec_timeout = float(args.exec_timeout)
    except ValueError:
        ap.error(f"--exec-timeout {args.exec_timeout}: expected seconds")
    if args.command != "status" and (args.node is None) == (args.selector is None):
        ap.error(f"{args.command}: name one NODE or select nodes with -l, not both")
    args.check_args = [a for a in extra if a != "--"]
    return args


def connect(kubeconfig: str | None, context: str | None) -> Kube:
    from kubernetes import config

    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context)
    except (config.ConfigException, OSError) as e:
        raise LookupError(f"cannot load kubeconfig {path}"
                          f"{f' (context {context})' if context else ''}: {e}") from e
    return Kube(api)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _run(kube: Kube, args: argparse.Namespace) -> int:
    if args.command == "status":
        return status(kube, print, now(), fmt=args.output, selector=args.selector)
    names = [args.node] if args.node else [n["metadata"]["name"]
                                           for n in nodes(kube, args.selector)]
    if not names:
        raise LookupError(f"no node matches -l {args.selector}")
    codes = []
    for i, name in enumerate(names):
        if len(names) > 1 and args.output in ("table", "wide"):
            print(f"{'' if i == 0 else chr(10)}== {name}")
        if args.command == "describe":
            codes.append(describe(kube, name, print, now(), fmt=args.output))
        else:
            codes.append(check(kube, args, name, print, _stderr))
    return worst(codes)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    kube = None
    try:
        kube = connect(args.kubeconfig, args.context)
        return _run(kube, args)
    except LookupError as e:
        _stderr(f"Error: {e}")
    except KubeError as e:
        host = kube.api.configuration.host if kube else "?"
        what = "cannot reach" if e.status == 0 else f"{e.status} from"
        _stderr(f"Error: {what} the Kubernetes API at {host}: {e}")
    return int(Exit.ERROR)
