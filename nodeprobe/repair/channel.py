"""The privileged half of repairs: a small process that only restarts a runtime or reboots.

In repair mode the agent (probing, HTTP serving, API parsing) keeps every capability dropped; the
one thing that needs privilege runs in its own container of the agent pod (`nodeprobe
repair-executor`), reached over a unix socket in an emptyDir the two containers share. It takes
one JSON order per connection, `{"name", "uid", "rung", "action", "runtime"}`, and before acting
verifies it again on its own (`verify.refusal` on the NodeRemediation it reads itself, with the
Node's conditions for the trigger rule and its own on-disk ledger), so a compromised agent can
ask for nothing the operator did not. It answers `{"ok", "message", "dumpPath"}`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nodeprobe.deadline import Budget, DeadlineSocket
from nodeprobe.model import RemediationAction, Runtime, Status
from nodeprobe.repair import actions
from nodeprobe.repair.actions import ActionResult, ActionSettings
from nodeprobe.repair.verify import Ledger, Request, parse, parse_time, refusal

log = logging.getLogger(__name__)

MAX_ORDER_BYTES = 4096
ORDER_DEADLINE_S = 5.0
"""Reading an order: the agent writes it at once."""


@dataclass(frozen=True, slots=True)
class Order:
    name: str
    uid: str
    rung: int
    action: str
    runtime: str | None

    def to_json(self) -> bytes:
        return json.dumps({"name": self.name, "uid": self.uid, "rung": self.rung,
                           "action": self.action, "runtime": self.runtime}).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Order:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not isinstance(doc.get("rung"), int):
            raise ValueError("an order is {name, uid, rung, action, runtime}")
        return cls(name=str(doc["name"]), uid=str(doc["uid"]), rung=doc["rung"],
                   action=str(doc["action"]), runtime=doc.get("runtime"))


class Lookup(Protocol):
    """What the executor reads itself (the API server, with the pod's token)."""

    def remediation(self, name: str) -> Mapping[str, Any]: ...

    def node_conditions(self) -> list[Mapping[str, Any]]: ...


def sick_by_node(conditions: list[Mapping[str, Any]], req: Request, *, now: float) -> bool:
    """The trigger rule from the Node's own conditions: one of the plan's types is True, or
    turned False within the settle window."""
    for cond in conditions:
        if cond.get("type") not in req.triggers:
            continue
        if cond.get("status") == Status.TRUE.value:
            return True
        changed = parse_time(cond.get("lastTransitionTime"))
        if changed is not None and now - changed <= req.settle_s:
            return True
    return False


def carry_out(order: Order, settings: ActionSettings, *, dry_run: bool) -> ActionResult:
    """The action itself: for dockerd a goroutine dump first, then the restart; or a reboot."""
    if order.action == RemediationAction.REBOOT:
        log.warning("rebooting the node for %s", order.name)
        return actions.reboot(settings, dry_run=dry_run)
    runtime = Runtime(order.runtime or Runtime.CONTAINERD.value)
    notes, dump_path = [], None
    since = time.time()
    if runtime is Runtime.DOCKERD:
        dump = actions.dump_goroutines(settings, dry_run=dry_run)
        notes.append(dump.message)
        dump_path = dump.dump_path
    log.warning("restarting %s for %s", runtime.value, order.name)
    result = actions.restart_runtime(runtime, settings, dry_run=dry_run)
    if runtime is Runtime.DOCKERD and not dry_run and not dump_path:
        dump_path = actions.late_dump(settings, since)
        if dump_path:
            notes.append(f"goroutine stacks written to {dump_path} once dockerd resumed")
    return ActionResult(result.ok, "; ".join([*notes, result.message]), dump_path)


class ExecutorServer:
    """Serves orders on `path`, one at a time (a repair is never concurrent with another)."""

    def __init__(self, path: Path, settings: ActionSettings, lookup: Lookup, *,
                 ledger: Ledger, guard: Callable[[], str | None], dry_run: bool = False,
                 now: Callable[[], float] = time.time) -> None:
        self.path, self.settings, self.lookup, self.guard = path, settings, lookup, guard
        self.ledger, self.dry_run, self.now = ledger, dry_run, now
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock.bind(str(path))
        os.chmod(path, 0o600)  # the agent runs as the same user; nobody else
        self._sock.listen(4)
        self._stop = threading.Event()

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with contextlib.closing(conn):
                self._one(conn)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def _one(self, conn: socket.socket) -> None:
        budget = Budget()
        budget.start(ORDER_DEADLINE_S)
        armed = DeadlineSocket(budget, conn.family, conn.type, fileno=conn.detach())
        with contextlib.closing(armed):
            try:
                raw = armed.makefile("rb").readline(MAX_ORDER_BYTES)
                result = self.handle(Order.from_json(raw))
            except (OSError, ValueError, KeyError) as e:
                result = ActionResult(False, f"refused: unreadable order: {e}")
            budget.start(ORDER_DEADLINE_S)
            with contextlib.suppress(OSError):
                armed.sendall(json.dumps({"ok": result.ok, "message": result.message,
                                          "dumpPath": result.dump_path}).encode() + b"\n")

    def handle(self, order: Order) -> ActionResult:
        """Verify the order against what this process reads itself, then act once."""
        try:
            req = parse(self.lookup.remediation(order.name))
            conditions = self.lookup.node_conditions()
        except (OSError, ValueError) as e:
            return ActionResult(False, f"refused: cannot read {order.name} to verify it: {e}")
        if (req.uid, req.rung, req.action, req.runtime if order.action != "reboot" else None) \
                != (order.uid, order.rung, order.action,
                    order.runtime if order.action != "reboot" else None):
            return ActionResult(False, f"refused: the order does not match {order.name} as "
                                       "the API server has it")
        why = refusal(req, unguarded=self.guard(),
                      sick=sick_by_node(conditions, req, now=self.now()),
                      done=self.ledger.done, seen_terminal=self.ledger.terminal)
        if why is not None:
            log.warning("refused %s for %s: %s", order.action, order.name, why)
            return ActionResult(False, f"refused by the repair executor: {why}")
        self.ledger.mark_done(req.key)
        return carry_out(order, self.settings, dry_run=self.dry_run)


def send_order(path: Path, order: Order, *, timeout_s: float) -> ActionResult:
    """The agent's side: one order, one answer, within `timeout_s` (a restart takes minutes)."""
    budget = Budget()
    budget.start(timeout_s)
    try:
        with DeadlineSocket(budget) as sock:
            sock.connect(str(path))
            sock.sendall(order.to_json())
            raw = sock.makefile("rb").readline(64 * 1024)
        doc = json.loads(raw)
        return ActionResult(bool(doc["ok"]), str(doc["message"]), doc.get("dumpPath"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        return ActionResult(False, f"the repair executor at {path} did not answer: {e}")
