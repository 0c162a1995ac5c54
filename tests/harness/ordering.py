"""The order a test session runs in, so the Go tools can be built while it runs.

On a fresh machine `make test` builds the Go tools (tools/go/build, 15-30 minutes cold) in the
background while pytest runs; finding a tool waits for it (tests/harness/gotools.py). Tests run
in stages: first what needs no Go tool, then containerd 2.x (the first tool built), then the
control plane and the real node. Each containerd's session sandbox stays one contiguous run but
for 2.x, which starts once more for its few tests that also need the control plane.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

GO_TOOLS_MODULE = "tests.harness.gotools"
PROJECT = ("tests.", "tools.", "benchmarks.")
NEUTRAL = frozenset({"tests.harness.runtimes"})
"""Modules every runtime test uses that reach a Go tool only for containerd 2.x (the param)."""
CLUSTER_FIXTURES = frozenset({"kube_cluster"})
NODE_FIXTURES = frozenset({"node_cluster"})
CONTAINERD_2_TOKEN = "CONTAINERD_2"


@dataclass(frozen=True)
class Needs:
    """What one test needs, as far as the order goes."""

    containerd: str | None  # the session sandbox's containerd param, if any
    go_tools: bool  # its module reaches tests.harness.gotools or names containerd 2.x
    cluster: bool  # the session's control plane
    node: bool  # the real node


def stage(needs: Needs, containerd_2: str) -> int:
    """The stage a test runs in (stable sort: within a stage, pytest's own order)."""
    if needs.node:
        return 5
    if needs.containerd == containerd_2:
        return 6 if needs.cluster or needs.go_tools else 1
    if needs.cluster:
        return 4
    if needs.go_tools:
        return 3
    return 2 if needs.containerd else 0


def needs_of(fixturenames: Iterable[str], containerd: str | None,
             module: ModuleType | None) -> Needs:
    names = set(fixturenames)
    return Needs(containerd=containerd,
                 go_tools=module is not None and module_needs_go(module.__name__),
                 cluster=bool(names & CLUSTER_FIXTURES),
                 node=bool(names & NODE_FIXTURES))


@functools.cache
def module_needs_go(name: str) -> bool:
    """Whether a test module (pytest may import it by its bare name) names containerd 2.x or
    reaches the Go tools through the project modules it uses."""
    module = sys.modules.get(name)
    if module is None:
        return False
    seen = {name}
    return CONTAINERD_2_TOKEN in vars(module) or any(
        _reaches_go(dep, seen) for dep in _deps(module))


def _reaches_go(name: str, seen: set[str]) -> bool:
    if name == GO_TOOLS_MODULE:
        return True
    module = sys.modules.get(name)
    if module is None or name in NEUTRAL or name in seen or not name.startswith(PROJECT):
        return False
    seen.add(name)
    return any(_reaches_go(dep, seen) for dep in _deps(module))


def _deps(module: ModuleType) -> set[str]:
    deps = set()
    for value in vars(module).values():
        dep = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(dep, str) and dep != module.__name__:
            deps.add(dep)
    return deps
