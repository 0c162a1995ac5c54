"""The agent's side of a remediation: carry out what a NodeRemediation asks of this node.

The operator never runs commands on nodes; it sets phase ActionRequested and waits. This executor,
inside the node's agent, sees that, verifies the request (`verify.py`: refused ones get a Warning
Event and nothing runs), writes `status.agent.state = Started` before acting (so a restarted agent
never repeats a half-done action blindly), has it carried out (in-process, or by the privileged
`repair-executor` container over its socket, `channel.py`), and reports Done or Failed for the
same rung. A reboot is reported Done after the node comes back with a new bootID.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from nodeprobe.config import Config
from nodeprobe.model import (
    NODE_REMEDIATIONS,
    REMEDIATION_GROUP,
    REMEDIATION_NODE_LABEL,
    REMEDIATION_VERSION,
    RemediationAction,
    RemediationPhase,
    RepairState,
)
from nodeprobe.publish.kubeclient import (
    API_ERRORS,
    ClientSettings,
    KubeClient,
    new_client,
    request_json,
    rfc3339,
)
from nodeprobe.repair import actions
from nodeprobe.repair.actions import ActionResult, ActionSettings
from nodeprobe.repair.channel import Order, carry_out, send_order
from nodeprobe.repair.guard import AdmissionGuard, kube_fetch
from nodeprobe.repair.verify import TERMINAL, Ledger, Request, TriggerMemory, parse, refusal

log = logging.getLogger(__name__)

MERGE = "application/merge-patch+json"
_PATH = f"/apis/{REMEDIATION_GROUP}/{REMEDIATION_VERSION}/{NODE_REMEDIATIONS}"
EVENT_NAMESPACE = "default"
"""Events about cluster-scoped objects go to `default`, as kubectl looks for them there."""


class RemediationStore(Protocol):
    """Where the executor reads and reports NodeRemediations (the API server in production)."""

    def for_node(self, node: str) -> list[dict[str, Any]]: ...

    def patch_status(self, name: str, status: Mapping[str, Any]) -> None: ...

    def warn(self, req: Request, reason: str, message: str) -> None: ...


class KubeRemediationStore:
    """NodeRemediations through the Kubernetes API, listed by the node label."""

    def __init__(self, api: KubeClient) -> None:
        self._api = api

    def for_node(self, node: str) -> list[dict[str, Any]]:
        reply = request_json(self._api, "GET", _PATH,
                             query={"labelSelector": f"{REMEDIATION_NODE_LABEL}={node}"})
        items: list[dict[str, Any]] = reply.get("items") or []
        return items

    def patch_status(self, name: str, status: Mapping[str, Any]) -> None:
        request_json(self._api, "PATCH", f"{_PATH}/{name}/status", body={"status": dict(status)},
                     content_type=MERGE)

    def warn(self, req: Request, reason: str, message: str) -> None:
        now = rfc3339(time.time())
        request_json(self._api, "POST", f"/api/v1/namespaces/{EVENT_NAMESPACE}/events", body={
            "metadata": {"generateName": f"{req.name}."[:200], "namespace": EVENT_NAMESPACE},
            "involvedObject": {"apiVersion": f"{REMEDIATION_GROUP}/{REMEDIATION_VERSION}",
                               "kind": "NodeRemediation", "name": req.name, "uid": req.uid},
            "reason": reason, "message": message[:1024], "type": "Warning",
            "source": {"component": "nodeprobe-agent", "host": req.node},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1})


class KubeLookup:
    """What the privileged repair executor reads itself to verify an order (channel.Lookup)."""

    def __init__(self, api: KubeClient, node: str) -> None:
        self._api, self._node = api, node

    def remediation(self, name: str) -> Mapping[str, Any]:
        return request_json(self._api, "GET", f"{_PATH}/{name}")

    def node_conditions(self) -> list[Mapping[str, Any]]:
        node = request_json(self._api, "GET", f"/api/v1/nodes/{self._node}")
        conditions: list[Mapping[str, Any]] = (node.get("status") or {}).get("conditions") or []
        return conditions


class RepairExecutor:
    """Polls NodeRemediations labelled for `node_name` and carries out requested actions."""

    def __init__(
        self,
        node_name: str,
        api: KubeClient | None,
        settings: ActionSettings,
        *,
        dry_run: bool = False,
        now: Callable[[], float] = time.time,
        store: RemediationStore | None = None,
        triggers: TriggerMemory | None = None,
        ledger: Ledger | None = None,
        hands: Callable[[Order], ActionResult] | None = None,
        guard: Callable[[], str | None],
    ) -> None:
        self.node_name = node_name
        self.settings = settings
        self.dry_run = dry_run
        self.now = now
        if store is None:
            if api is None:
                raise ValueError("RepairExecutor needs a KubeClient or a RemediationStore")
            store = KubeRemediationStore(api)
        self._store = store
        self.triggers = triggers or TriggerMemory()
        """The agent's own judgement; an empty memory (no loop feeding it) refuses everything."""
        self.ledger = ledger or Ledger()
        self.hands = hands or self._local
        """Who carries out a verified request: this process, or the privileged repair executor
        container over its socket (`channel.send_order`), which verifies it again."""
        self.guard = guard
        """Why the admission guard is not in place (`AdmissionGuard.check`), None when it is."""
        self._warned: set[tuple[str, int, float | None, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Poll in a daemon thread until `stop()`; API errors are logged and retried."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nodeprobe-repair", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except API_ERRORS as e:
                log.warning("repair executor: could not read NodeRemediations: %s", e)
            self._stop.wait(self.settings.poll_interval_s)

    # ---- one pass ----------------------------------------------------------------------------

    def poll_once(self) -> list[str]:
        """Handle every NodeRemediation in ActionRequested for this node; return their names.

        The guard is asked every pass, not only when a request arrives, so its log and metric
        say from the start whether a repair could run (it asks the API at most once a minute)."""
        unguarded = self.guard()
        handled = []
        for obj in self._store.for_node(self.node_name):
            req = parse(obj)
            if req.node != self.node_name:
                continue
            if req.phase in TERMINAL:
                self.ledger.mark_terminal(req.uid)
                continue
            if req.phase != RemediationPhase.ACTION_REQUESTED:
                continue
            if self._handle(req, unguarded=unguarded):
                handled.append(req.name)
        return handled

    def _handle(self, req: Request, *, unguarded: str | None) -> bool:
        if req.agent.get("rung") == req.rung:
            return self._reported(req)
        sick = self.triggers.sick(req.triggers, within_s=req.settle_s, now=self.now())
        why = refusal(req, unguarded=unguarded, sick=sick, done=self.ledger.done,
                      seen_terminal=self.ledger.terminal)
        if why is not None:
            self._refuse(req, why)
            return False
        self.ledger.mark_done(req.key)  # before acting: a crash mid-action never repeats it
        action = RemediationAction(req.action)
        boot = actions.boot_id(self.settings)
        self._report(req.name, req.rung, RepairState.STARTED, f"{action.value} started",
                     bootID=boot)
        result = self._act(req)
        self._report(req.name, req.rung, RepairState.DONE if result.ok else RepairState.FAILED,
                     result.message, bootID=boot)
        return True

    def _reported(self, req: Request) -> bool:
        """This rung was started before: report what happened, never act again."""
        if req.agent.get("state") != RepairState.STARTED:
            return False  # already reported for this rung
        if req.action == RemediationAction.REBOOT:
            current = actions.boot_id(self.settings)
            if current and current != req.agent.get("bootID"):
                self._report(req.name, req.rung, RepairState.DONE,
                             f"node rebooted (bootID {current})")
                return True
            return False
        self._report(req.name, req.rung, RepairState.FAILED,
                     "the agent restarted while the action ran; not repeating it blindly")
        return True

    def _refuse(self, req: Request, why: str) -> None:
        """Log and tell once per request: a refused request is someone to look at, not retry."""
        key = (req.uid, req.rung, req.requested_at, why)
        if key in self._warned:
            return
        self._warned.add(key)
        message = f"refused {req.action or 'an action'} on {self.node_name}: {why}"
        log.warning("%s: %s", req.name, message)
        try:
            self._store.warn(req, "RepairRefused", message)
        except API_ERRORS as e:
            log.warning("could not record the refusal of %s: %s", req.name, e)

    def _act(self, req: Request) -> ActionResult:
        order = Order(name=req.name, uid=req.uid, rung=req.rung, action=req.action,
                      runtime=req.runtime)
        result = self.hands(order)
        if result.dump_path:
            self._patch(req.name, {"goroutineDumpPath": result.dump_path})
        return result

    def _local(self, order: Order) -> ActionResult:
        return carry_out(order, self.settings, dry_run=self.dry_run)

    def _report(self, name: str, rung: int, state: RepairState, message: str,
                **extra: str) -> None:
        log.info("%s rung %d: %s: %s", name, rung, state.value, message)
        self._patch(name, {"agent": {"rung": rung, "state": state.value, "message": message,
                                     "at": rfc3339(self.now()), "node": self.node_name, **extra}})

    def _patch(self, name: str, status: Mapping[str, Any]) -> None:
        self._store.patch_status(name, status)


def start_executor(config: Config, *, triggers: TriggerMemory, kubeconfig: str | None = None,
                   dry_run: bool = False, settings: ActionSettings | None = None,
                   on_guard: Callable[[bool], None] = lambda _: None) -> RepairExecutor:
    """Build and start the executor from the agent's config tree (`config.repair`, sockets).

    `triggers` is the agent loop's judgement (verify.py rule 4). Credentials: `kubeconfig` when
    given, else the pod's service account. `settings` replaces what the config gives (tests:
    sandbox paths, short timings). `on_guard` is told whether the admission guard is in place
    (the agent's metric).
    """
    settings = settings or ActionSettings.from_config(config)
    api = new_client(kubeconfig=kubeconfig, in_cluster=kubeconfig is None,
                     settings=ClientSettings(max_idle_s=config.kubernetes.connection_max_idle))
    remote = config.repair.executor_socket
    # With a separate executor, the ledger on disk is the executor's; this container has none.
    ledger = Ledger(Path(config.repair.ledger) if config.repair.ledger and not remote else None)
    hands = None
    if remote:
        wait = settings.command_timeout_s + settings.answer_wait_s + settings.dump_wait_s + 30

        def hands(order: Order) -> ActionResult:
            return send_order(Path(remote), order, timeout_s=wait)

    guard = AdmissionGuard(kube_fetch(api), name=config.repair.admission_guard,
                           on_change=on_guard)
    executor = RepairExecutor(config.node_name, api, settings,
                              dry_run=dry_run or config.repair.dry_run, triggers=triggers,
                              ledger=ledger, hands=hands, guard=guard.check)
    executor.start()
    return executor
