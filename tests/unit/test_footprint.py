"""What the agent imports: no `kubernetes`, docker SDK or requests at all, and grpc only when
containerd is probed. Each case runs in a fresh interpreter (sys.modules is global)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("kubernetes", "pydantic", "docker", "requests", "urllib3", "grpc")

AGENT_IMPORTS = """
import json, sys
import nodeprobe.cli, nodeprobe.commands.agent, nodeprobe.publish.conditions
import nodeprobe.publish.events, nodeprobe.publish.kubeclient, nodeprobe.repair.executor
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy})))
"""

BUILD_PROBES = """
import json, sys
from nodeprobe.commands.common import Endpoints, build_probes
from nodeprobe.config import load
from nodeprobe.model import Runtime
endpoints = Endpoints(sockets={{Runtime[name]: '/nonexistent/' + name for name in {names}}})
probes = build_probes(load(None), endpoints)
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy}))))
"""


def _imported(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    result: list[str] = json.loads(out)
    return result


def test_agent_modules_import_no_client_library() -> None:
    assert _imported(AGENT_IMPORTS.format(heavy=set(HEAVY))) == []


@pytest.mark.parametrize(("runtimes", "expected"), [
    (["CONTAINERD"], ["grpc"]),
    (["DOCKERD"], []),  # the Docker probe is http.client on the unix socket
    (["DOCKERD", "CONTAINERD"], ["grpc"]),
])
def test_build_probes_imports_only_the_probed_runtimes_clients(runtimes: list[str],
                                                               expected: list[str]) -> None:
    assert _imported(BUILD_PROBES.format(names=runtimes, heavy=HEAVY)) == expected
