"""Entry point: `nodeprobe check | agent | operator | repair-executor`; parsing and wiring.

Flags and environment are read here and nowhere else (house rule 6). Imports are lazy per
subcommand so `nodeprobe check` never pays for the Kubernetes client or kopf at start-up.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import TypeAlias

_Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `add_subparsers` returns; each subcommand adds its own parser to it."""


def _runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config file (docs/configuration.md)")
    parser.add_argument("--docker-socket", metavar="PATH",
                        help="dockerd's API socket (default: auto-discover)")
    parser.add_argument("--containerd-socket", metavar="PATH",
                        help="containerd's CRI socket (default: auto-discover)")
    parser.add_argument("--no-docker", action="store_true", help="do not probe dockerd")
    parser.add_argument("--no-containerd", action="store_true", help="do not probe containerd")
    parser.add_argument("--proc-root", metavar="DIR",
                        help="the host's /proc (in a pod: /host/proc)")
    parser.add_argument("--cgroup-root", metavar="DIR",
                        help="the host's cgroup fs (in a pod: /host/sys/fs/cgroup)")


def _node_flags(parser: argparse.ArgumentParser) -> None:
    """The node this process serves and how it reaches the API server (agent, repair-executor)."""
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME"),
                        help="this node's name (default: $NODE_NAME)")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                        help="kubeconfig file (default: $KUBECONFIG, else in-cluster config)")


def _add_check(sub: _Subcommands) -> None:
    check = sub.add_parser(
        "check", help="probe the local runtimes once and say what is wrong",
        description="Probe dockerd and containerd once. Exit 0 healthy, 1 problem, 2 unknown "
        "(node-problem-detector's custom-plugin convention). The first line is a summary.",
    )
    _runtime_flags(check)
    out = check.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument("--summary", action="store_true",
                     help="print only the one-line summary (for node-problem-detector)")
    check.add_argument("--deadline", type=float, metavar="SECONDS",
                       help="one deadline for every call, overriding the config")
    check.add_argument("--no-process", action="store_true",
                       help="skip reading the runtimes' memory and fds from /proc")


def _add_agent(sub: _Subcommands) -> None:
    agent = sub.add_parser("agent", help="probe continuously; publish conditions, events, metrics")
    _runtime_flags(agent)
    _node_flags(agent)
    agent.add_argument("--standalone", action="store_true",
                       help="no Kubernetes: log transitions and serve metrics only")
    agent.add_argument("--metrics-address", metavar="ADDR")
    agent.add_argument("--metrics-port", type=int, metavar="PORT")


def _add_operator(sub: _Subcommands) -> None:
    operator = sub.add_parser("operator", help="run the remediation operator (kopf)")
    operator.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    operator.add_argument("--standalone", action="store_true",
                          help="no leader election: act even if another replica runs (local runs)")
    operator.add_argument("--max-concurrent", type=int,
                          default=int(os.environ.get("NODEPROBE_MAX_CONCURRENT", "1")),
                          help="cluster budget: nodes held at once under all policies (default 1)")
    operator.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                          help="kopf liveness endpoint")
    operator.add_argument("--metrics-port", type=int, default=9104)
    operator.add_argument("--lease-namespace",
                          default=os.environ.get("NODEPROBE_LEASE_NAMESPACE"),
                          help="namespace of the per-node Leases `node-<name>` (default: the "
                          "operator's own; medik8s-leases interlocks with medik8s)")


def _add_repair_executor(sub: _Subcommands) -> None:
    executor = sub.add_parser(
        "repair-executor", help="the privileged half of repair mode: restart or reboot, only "
        "for a verified order from the agent over a unix socket")
    executor.add_argument("--config", metavar="FILE", help="the agent's YAML config file")
    executor.add_argument("--socket", metavar="PATH",
                          help="listen here (default: repair.executorSocket)")
    _node_flags(executor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodeprobe",
        description="Keeps Kubernetes nodes healthy when their container runtime goes bad.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(sub)
    _add_agent(sub)
    _add_operator(sub)
    _add_repair_executor(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from nodeprobe.commands import check

        return check.run(args)
    if args.command == "agent":
        from nodeprobe.commands import agent

        return agent.run(args)
    if args.command == "repair-executor":
        from nodeprobe.commands import repair_executor

        return repair_executor.run(args)
    if importlib.util.find_spec("kopf") is None:
        print("nodeprobe operator: kopf is not installed; the operator's dependencies come "
              "with an extra: pip install 'kube-nodeprobe[operator]'", file=sys.stderr)
        return 2
    from nodeprobe.commands import operator

    return operator.run(args)


if __name__ == "__main__":
    sys.exit(main())
