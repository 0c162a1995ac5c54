"""Whether a NodeRemediation's request is one this node's agent may carry out.

A restart or a reboot is the most harmful thing nodeprobe does, and the request for it arrives as
status fields that more identities than the operator can write (anyone granted `patch` on
`noderemediations/status`, every agent). So the executor acts only on a request that passes every
rule in `refusal`; each rule closes one way to forge or replay a request, and a rule that could
be forged on its own is backed by one that cannot:

1. Operator-written: the managedFields entry that owns `status.phase` and `status.action` names
   a manager starting with `nodeprobe-operator` (the operator sends it with every write). The API
   server records the manager of each write, so a `kubectl patch`, a GitOps tool or a controller
   that set the phase is refused. Manager names are chosen by the client, so this alone does not
   stop someone who sends `fieldManager=nodeprobe-operator` on purpose; rules 3-5 do.
2. The action is the plan's: `status.action` (and runtime) must be what `spec.plan.ladder[rung]`
   says. The spec is written only by the operator and immutable (the admission policy the chart
   ships), so a status edit cannot ask for a rung the episode's plan does not have.
3. Newer than any terminal state: a NodeRemediation that carries `finishedAt`/`releasedAt` later
   than its request, or that this agent has seen Succeeded, Failed or Escalated, never acts again
   (the operator opens a new NodeRemediation per episode; it never reopens one).
4. The node is sick by the agent's own judgement: one of the plan's trigger conditions is bad in
   this agent's memory now, or was within the plan's settle window. This is the rule no API write
   can forge: it comes from the agent's probes, not from anything it reads.
5. At most once: a (uid, rung) the agent has carried out is never carried out again, even if its
   status is reset (the ledger can be kept on disk so an agent restart keeps it).

Before all of them: the admission guard that keeps NodeRemediations to the operator (rule 2
relies on it) must be in place (`guard.py` asks; `refusal` is told why not).

Parsing (`parse`) is the edge; `refusal` is pure.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeprobe.durations import parse_duration
from nodeprobe.model import Condition, ConditionType, RemediationPhase, Status
from nodeprobe.publish.kubeclient import parse_rfc3339

log = logging.getLogger(__name__)

OPERATOR_MANAGER_PREFIX = "nodeprobe-operator"
"""The operator's field manager is `nodeprobe-operator-<replica>` (operator/__init__.py)."""

TERMINAL = frozenset({RemediationPhase.SUCCEEDED.value, RemediationPhase.FAILED.value,
                      RemediationPhase.ESCALATED.value})
NODE_LOCAL = frozenset({"restart-runtime", "reboot"})
DEFAULT_SETTLE_S = 120.0
"""The operator's default settle window, for a plan that does not name one."""
_RUNTIMES = {"docker": "dockerd", "dockerd": "dockerd", "containerd": "containerd"}


@dataclass(frozen=True, slots=True)
class Request:
    """One NodeRemediation as the executor sees it, parsed once from the API's dict."""

    name: str
    uid: str
    node: str
    phase: str
    rung: int
    action: str
    runtime: str | None
    requested_at: float | None
    terminal_at: float | None
    """The latest of finishedAt and releasedAt, when either is set."""
    planned_action: str | None
    planned_runtime: str | None
    triggers: frozenset[str]
    settle_s: float
    writers: frozenset[str]
    """Managers that own status.phase or status.action (managedFields)."""
    agent: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, int]:
        return (self.uid, self.rung)


def parse_time(value: object) -> float | None:
    """A Kubernetes time, or None when absent or not one (a forged status may hold anything)."""
    try:
        return parse_rfc3339(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _writers(managed: object) -> frozenset[str]:
    owners = set()
    for entry in managed if isinstance(managed, list) else []:
        if not isinstance(entry, Mapping):
            continue
        status = (entry.get("fieldsV1") or {}).get("f:status") or {}
        if "f:phase" in status or "f:action" in status:
            owners.add(str(entry.get("manager", "")))
    return frozenset(owners)


def _planned(plan: Mapping[str, Any], rung: int) -> tuple[str | None, str | None]:
    ladder = plan.get("ladder")
    if not isinstance(ladder, list) or not 0 <= rung < len(ladder):
        return None, None
    step = ladder[rung] if isinstance(ladder[rung], Mapping) else {}
    action = step.get("action")
    runtime = _RUNTIMES.get(str(step.get("runtime", "containerd")))
    return (str(action) if action else None), runtime


def _settle(plan: Mapping[str, Any]) -> float:
    try:
        return parse_duration(plan.get("settleWindow", DEFAULT_SETTLE_S))
    except ValueError:
        return DEFAULT_SETTLE_S


def parse(obj: Mapping[str, Any]) -> Request:
    """The executor's view of a NodeRemediation; missing parts become values `refusal` refuses."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    raw_plan = spec.get("plan")
    plan: Mapping[str, Any] = raw_plan if isinstance(raw_plan, Mapping) else {}
    raw_rung = status.get("rung", spec.get("rung", 0))
    rung = raw_rung if isinstance(raw_rung, int) else -1
    planned_action, planned_runtime = _planned(plan, rung)
    terminal = [t for t in (parse_time(status.get(k)) for k in ("finishedAt", "releasedAt"))
                if t is not None]
    raw_triggers = plan.get("triggers")
    triggers: list[Any] = raw_triggers if isinstance(raw_triggers, list) else []
    agent = status.get("agent")
    return Request(
        name=str(meta.get("name", "")), uid=str(meta.get("uid", "")),
        node=str(spec.get("nodeName", "")), phase=str(status.get("phase", "")), rung=rung,
        action=str(status.get("action", "")),
        runtime=_RUNTIMES.get(str(status.get("runtime") or "containerd")),
        requested_at=parse_time(status.get("actionRequestedAt")),
        terminal_at=max(terminal) if terminal else None,
        planned_action=planned_action, planned_runtime=planned_runtime,
        triggers=frozenset(str(t.get("type")) for t in triggers if isinstance(t, Mapping)),
        settle_s=_settle(plan), writers=_writers(meta.get("managedFields")),
        agent=agent if isinstance(agent, Mapping) else {})


def refusal(req: Request, *, unguarded: str | None, sick: bool,
            done: Collection[tuple[str, int]], seen_terminal: Collection[str]) -> str | None:
    """Why `req` must not be carried out, or None when every rule of the module holds.

    `unguarded`: why the admission guard is not in place (`AdmissionGuard.check`), None when it
    is. `sick`: a trigger condition of the plan is bad now or was within its settle window, by
    this agent's own judgement (`TriggerMemory.sick`).
    """
    if unguarded is not None:
        return (f"the admission guard on NodeRemediations is not in place ({unguarded}); "
                "without it anyone who may write NodeRemediations could ask for a repair")
    strangers = sorted(w for w in req.writers if not w.startswith(OPERATOR_MANAGER_PREFIX))
    if not req.writers or strangers:
        return (f"the request was not written by the operator (status.phase/action set by "
                f"{', '.join(strangers) or 'no recorded manager'})")
    if req.action not in NODE_LOCAL:
        return f"status.action {req.action!r} is not an action an agent carries out"
    if req.planned_action is None:
        return f"spec.plan has no ladder rung {req.rung} to check the request against"
    if req.action != req.planned_action:
        return (f"status.action {req.action!r} is not rung {req.rung} of the episode's plan "
                f"({req.planned_action!r})")
    if req.action == "restart-runtime" and req.runtime != req.planned_runtime:
        return (f"status.runtime {req.runtime!r} is not the plan's {req.planned_runtime!r} "
                f"for rung {req.rung}")
    if req.uid in seen_terminal:
        return "this NodeRemediation already finished; a finished episode never acts again"
    if req.terminal_at is not None and (req.requested_at is None
                                        or req.requested_at <= req.terminal_at):
        return "the request is not newer than the NodeRemediation's finishedAt/releasedAt"
    if req.key in done:
        return f"rung {req.rung} of this NodeRemediation was already carried out once"
    if not sick:
        return (f"none of the plan's trigger conditions ({', '.join(sorted(req.triggers))}) "
                f"is bad on this node by the agent's own probes, now or within the "
                f"{req.settle_s:.0f}s settle window")
    return None


class TriggerMemory:
    """Which condition types are bad, and when each last stopped being bad, by this agent's
    own judgement. The loop hands it every change (`update`); the executor asks `sick`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bad: set[str] = set()
        self._cleared_at: dict[str, float] = {}

    def update(self, conditions: Mapping[ConditionType, Condition], *, now: float) -> None:
        with self._lock:
            for kind, cond in conditions.items():
                if cond.status is Status.TRUE:
                    self._bad.add(kind.value)
                elif kind.value in self._bad:
                    self._bad.discard(kind.value)
                    self._cleared_at[kind.value] = now

    def sick(self, types: Iterable[str], *, within_s: float, now: float) -> bool:
        with self._lock:
            for t in types:
                cleared = self._cleared_at.get(t)
                if t in self._bad or (cleared is not None and now - cleared <= within_s):
                    return True
            return False


class Ledger:
    """Requests carried out and NodeRemediations seen finished; optionally kept in a file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.done: set[tuple[str, int]] = set()
        self.terminal: set[str] = set()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            self.done = {(str(u), int(r)) for u, r in raw.get("done", [])}
            self.terminal = {str(u) for u in raw.get("terminal", [])}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.warning("repair ledger %s unreadable (%s); starting empty", path, e)

    def mark_done(self, key: tuple[str, int]) -> None:
        self.done.add(key)
        self._save()

    def mark_terminal(self, uid: str) -> None:
        if uid and uid not in self.terminal:
            self.terminal.add(uid)
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"done": sorted(self.done),
                                       "terminal": sorted(self.terminal)}))
            tmp.replace(self.path)
        except OSError as e:
            log.warning("could not write the repair ledger %s: %s", self.path, e)
