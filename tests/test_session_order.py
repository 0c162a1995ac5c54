"""`make test` builds the Go tools while the tests that need none run: the session's order
(tests/harness/ordering.py) and the build's locks (tools/go/build, tests/harness/gotools.py)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

import tests.deploy.test_chart
import tests.integration.probes.test_docker
from tests.harness import gotools
from tests.harness.ordering import Needs, module_needs_go, stage
from tests.harness.runtimes import CONTAINERD_2, CONTAINERD_16


def test_stages_run_what_needs_no_go_tool_first_and_keep_each_sandbox_together() -> None:
    order = [
        Needs(None, go_tools=False, cluster=False, node=False),
        Needs(CONTAINERD_2, go_tools=False, cluster=False, node=False),
        Needs(CONTAINERD_16, go_tools=False, cluster=False, node=False),
        Needs(CONTAINERD_16, go_tools=True, cluster=False, node=False),
        Needs(None, go_tools=True, cluster=True, node=False),
        Needs(CONTAINERD_16, go_tools=True, cluster=True, node=True),
        Needs(CONTAINERD_2, go_tools=True, cluster=True, node=False),
    ]
    stages = [stage(needs, CONTAINERD_2) for needs in order]
    assert stages == sorted(stages) and len(set(stages)) == len(stages)


def test_a_module_that_reaches_a_go_tool_through_another_needs_go() -> None:
    assert module_needs_go(tests.deploy.test_chart.__name__)  # through tools.helm
    assert not module_needs_go(tests.integration.probes.test_docker.__name__)


def test_finding_a_tool_waits_for_the_build_that_makes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, gate, log = tmp_path / "cache", tmp_path / "gate", tmp_path / "tools.log"
    subprocess.run(["mkfifo", str(gate)], check=True)
    go = tmp_path / "go"
    go.write_text(f"#!/bin/sh\nread line < {gate}\nexit 3\n")  # a build that fails when let go
    go.chmod(0o755)
    env = {"NODEPROBE_TOOLS_CACHE": str(cache), "GO": str(go), "PATH": "/usr/bin:/bin"}
    subprocess.run([str(gotools.BUILD), "--background", str(log), "etcd"], env=env, check=True)
    monkeypatch.setenv("NODEPROBE_TOOLS_CACHE", str(cache))
    monkeypatch.setattr(gotools, "WAITED", {})  # the session's own report stays the session's
    found: list[BaseException] = []
    finder = threading.Thread(target=lambda: _find("etcd", found))
    finder.start()
    try:
        finder.join(timeout=1)
        assert finder.is_alive(), "tool() returned while the build was still running"
    finally:
        _release(gate)
    finder.join(timeout=30)
    assert isinstance(found[0], gotools.ToolMissing), found
    waited = subprocess.run([str(gotools.BUILD), "--wait", str(log)], env=env, check=False,
                            capture_output=True, text=True)
    assert waited.returncode != 0 and "building etcd" in waited.stderr


def _find(name: str, found: list[BaseException]) -> None:
    try:
        gotools.tool(name)
    except gotools.ToolMissing as e:
        found.append(e)


def _release(gate: Path) -> None:
    """Let the fake build go on (it reads the fifo); nothing to do when it is not reading."""
    try:
        fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "w") as f:
        f.write("go\n")
