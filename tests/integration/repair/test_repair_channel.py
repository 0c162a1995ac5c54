"""The privileged repair executor on a real unix socket: it acts only on an order it verifies
again itself, and once; the agent's side gets an answer or a clear failure, never a hang."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nodeprobe.repair.channel import ExecutorServer, Order, send_order
from nodeprobe.repair.verify import Ledger
from tests.harness.runtimes import Sandbox
from tests.integration.repair.test_repair_actions import settings_for
from tests.integration.repair.test_repair_executor import nr


class Lookup:
    """What the API server would answer the executor (its own reads, not the agent's)."""

    def __init__(self, obj: dict[str, Any], *, bad: bool) -> None:
        self.obj, self.bad = obj, bad
        self.unguarded: str | None = None
        """What the executor's own admission-guard check says (None: in place)."""

    def remediation(self, name: str) -> Mapping[str, Any]:
        assert name == self.obj["metadata"]["name"]
        return copy.deepcopy(self.obj)

    def node_conditions(self) -> list[Mapping[str, Any]]:
        return [{"type": "ContainerRuntimeUnavailable", "status": "True" if self.bad else "False",
                 "lastTransitionTime": "2020-01-01T00:00:00Z"}]


@pytest.fixture
def served(runtimes: Sandbox, tmp_path: Path) -> Iterator[tuple[Path, Lookup, Path]]:
    marker = tmp_path / "rebooted"
    lookup = Lookup(nr("a-1", "node-a", action="reboot"), bad=True)
    path = tmp_path / "executor.sock"
    server = ExecutorServer(path, settings_for(runtimes, tmp_path,
                                               reboot_command=("touch", str(marker))),
                            lookup, ledger=Ledger(tmp_path / "ledger.json"),
                            guard=lambda: lookup.unguarded)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield path, lookup, marker
    finally:
        server.stop()
        thread.join(5)


ORDER = Order(name="a-1", uid="uid-a-1", rung=0, action="reboot", runtime="dockerd")


def test_a_verified_order_runs_once(served: tuple[Path, Lookup, Path]) -> None:
    path, _lookup, marker = served
    result = send_order(path, ORDER, timeout_s=10)
    assert result.ok and marker.exists(), result.message
    marker.unlink()
    again = send_order(path, ORDER, timeout_s=10)
    assert not again.ok and "already carried out once" in again.message
    assert not marker.exists()


def test_the_executor_refuses_every_order_without_the_admission_guard(
    served: tuple[Path, Lookup, Path],
) -> None:
    """issue 18 item 1: the privileged process checks the guard itself, as the agent does."""
    path, lookup, marker = served
    lookup.unguarded = "ValidatingAdmissionPolicy nodeprobe-noderemediations is not there"
    refused = send_order(path, ORDER, timeout_s=10)
    assert not refused.ok and "admission guard on NodeRemediations is not in place" in \
        refused.message, refused.message
    assert not marker.exists()
    lookup.unguarded = None
    assert send_order(path, ORDER, timeout_s=10).ok and marker.exists()


def test_the_executor_verifies_again_what_the_agent_asks(
    served: tuple[Path, Lookup, Path],
) -> None:
    """A compromised agent cannot ask for more than the operator did."""
    path, lookup, marker = served
    restart = Order(name="a-1", uid="uid-a-1", rung=0, action="restart-runtime",
                    runtime="dockerd")
    assert "does not match a-1 as the API server has it" in send_order(
        path, restart, timeout_s=10).message
    lookup.bad = False  # the Node says healthy
    healthy = send_order(path, ORDER, timeout_s=10)
    assert not healthy.ok and "none of the plan's trigger conditions" in healthy.message
    lookup.bad = True
    lookup.obj["metadata"]["managedFields"] = []
    assert "not written by the operator" in send_order(path, ORDER, timeout_s=10).message
    assert not marker.exists()


def test_junk_and_silence_are_refused_within_the_deadline(
    served: tuple[Path, Lookup, Path],
) -> None:
    path, _lookup, marker = served
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"not json\n")
        assert b"refused: unreadable order" in s.recv(4096)
    start = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:  # says nothing: cut at the order deadline
        s.settimeout(10)
        s.connect(str(path))
        assert b"refused" in s.recv(4096)
    assert time.monotonic() - start < 7
    assert not marker.exists()
    gone = send_order(path.with_name("nothing.sock"), ORDER, timeout_s=1)
    assert not gone.ok and "did not answer" in gone.message
