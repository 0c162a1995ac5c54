"""kopf registrations: the RemediationPolicy lifecycle, the pass timer, liveness and settings.

What kopf does here, and why each part:
- policies are watched by kopf: create/update/resume handlers validate a spec into its status
  (`lifecycle.validation`); the delete handler, behind kopf's finalizer (named
  `nodeprobe.io/live-episodes`), holds a deletion while the policy has live episodes;
- Events about policies go through kopf's poster (`kopf.event`), in namespace `default`;
- the reconcile pass runs from a kopf timer on each policy. One budget for all policies means one
  pass decides for all of them, so the timers share it: a timer that fires while a pass runs,
  or within a tick of the last one, does nothing (`PassLoop.tick`). Without any policy there is
  nothing to start; finished episodes and escalations are looked at again by the next policy's
  first pass. A per-cluster daemon would need a resource to hang on, and would keep running
  under a deleted last policy's finalizer just the same;
- kopf's liveness endpoint reports the pass (`probe`), its settings are set in `configure`.
Nodes are not watched by kopf: `NodeCache` says why (a measured start-up cost). So kopf writes
nothing to Nodes. kopf runs only while this replica leads (see `nodeprobe.operator.run`); its own
writes (finalizer, annotations, the validity and deletion status of a policy) do not pass the
write fence, but a replica that loses the Lease stops kopf at once, and none of them touches a
Node or a NodeRemediation.
Registration happens in `register()`, never at import time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes import client

from nodeprobe.model import EventType
from nodeprobe.operator import lifecycle
from nodeprobe.operator.guard import Guard
from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.names import FINALIZER, GROUP, LABEL_POLICY, POLICY_PLURAL, VERSION
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.reconcile import Reconciler

log = logging.getLogger(__name__)

KOPF_PREFIX = f"kopf.{GROUP}"
"""kopf's own annotations on policies (handler progress, the last handled spec)."""
STUCK_PASS_S = 600.0
"""A pass running longer than this is stuck (every request has a 15 s deadline): the liveness
probe fails so the kubelet restarts the replica."""


class PassLoop:
    """One reconcile pass at a time, at most one per tick, while the node view is live and the
    admission guard on NodeRemediations is in place (`guard`; None only in tests of the loop)."""

    def __init__(self, reconciler: Reconciler, nodes: NodeCache, *,
                 guard: Guard | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reconciler = reconciler
        self.nodes = nodes
        self.guard = guard
        self.clock = clock
        self._lock = threading.Lock()
        self.started: float | None = None
        """When the last pass began (monotonic seconds)."""
        self.running_since: float | None = None

    def tick(self) -> bool:
        """A pass, unless one runs now or began less than 90 % of a tick ago (timers of several
        policies fire at their own offsets). True when this call ran it."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            now = self.clock()
            if self.started is not None and \
                    now - self.started < 0.9 * self.reconciler.settings.tick_s:
                return False
            self.started = self.running_since = now
            self.once()
            return True
        finally:
            self.running_since = None
            self._lock.release()

    def once(self) -> None:
        views = self.nodes.snapshot()
        if views is None:
            log.info("waiting for a live view of the nodes before reconciling")
            return
        if self.guard is not None:
            missing = self.guard.check()
            self.reconciler.sink.guarded(missing is None)
            if missing is not None:
                return
        try:
            self.reconciler.reconcile(nodes=views)
        except KubeError as e:
            log.warning("reconcile pass failed, retrying next tick: %s", e)
        except Exception:
            log.exception("reconcile pass crashed, retrying next tick")

    def health(self) -> dict[str, Any]:
        """What the liveness endpoint shows; raises when a pass is stuck."""
        now = self.clock()
        if self.running_since is not None and now - self.running_since > STUCK_PASS_S:
            raise RuntimeError(f"a reconcile pass has run for {now - self.running_since:.0f} s")
        return {"nodeViewLive": self.nodes.snapshot() is not None,
                "lastPassAgoSeconds": None if self.started is None
                else round(now - self.started, 1)}


def kopf_announce(ref: Mapping[str, Any], kind: EventType, reason: str, message: str) -> None:
    """An Event through kopf's poster (only inside kopf's handlers and timers)."""
    body = kopf.Body(cast(kopf.RawBody, dict(ref)))
    kopf.event(body, type=kind.value, reason=reason, message=message)


def register(registry: kopf.OperatorRegistry, *, reconciler: Reconciler, nodes: NodeCache,
             api: client.ApiClient, stop: threading.Event,
             guard: Guard | None = None) -> PassLoop:
    """Attach the operator's handlers to `registry` (kopf's decorators with an explicit one)."""
    loop = PassLoop(reconciler, nodes, guard=guard)
    _register_process(registry, loop, api=api, stop=stop)
    _register_policies(registry, loop)
    return loop


def _register_process(registry: kopf.OperatorRegistry, loop: PassLoop, *,
                      api: client.ApiClient, stop: threading.Event) -> None:
    """Credentials, settings, shutdown and liveness.

    `stop` is kopf's stop flag: kopf waits on it in an executor thread, which its own shutdown
    then joins. A SIGTERM stops kopf without setting it, so cleanup sets it, or the process
    would hang until the kubelet's SIGKILL.
    """
    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(api, namespace=loop.reconciler.settings.event_namespace)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        stop.set()

    @kopf.on.probe(registry=registry, id="pass")
    def probe(**_: Any) -> dict[str, Any]:
        return loop.health()


def _register_policies(registry: kopf.OperatorRegistry, loop: PassLoop) -> None:
    """The RemediationPolicy lifecycle (`lifecycle`) and the pass timer."""
    on = (GROUP, VERSION, POLICY_PLURAL)
    tick_s = loop.reconciler.settings.tick_s

    @kopf.on.resume(*on, registry=registry, id="validate-resume")
    @kopf.on.create(*on, registry=registry, id="validate-create")
    @kopf.on.update(*on, registry=registry, id="validate-update", field="spec")
    def validate(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(lifecycle.validation(body, kopf_announce))

    @kopf.on.delete(*on, registry=registry, id="wait-for-episodes")
    def hold(body: kopf.Body, name: str, patch: kopf.Patch, **_: Any) -> None:
        loop.tick()  # kopf stopped this policy's timer: passes go on from here meanwhile
        nrs = loop.reconciler.kube.items(lifecycle.REMEDIATIONS, query={
            "labelSelector": f"{LABEL_POLICY}={name}"})
        wait = lifecycle.deletion_wait(body, lifecycle.live_episodes(nrs, name), kopf_announce)
        if wait is not None:
            patch.status.update(wait)
            raise kopf.TemporaryError(wait["message"], delay=tick_s)

    # sharp: passes start on a grid of tick_s, however long a pass takes (not tick_s after it)
    @kopf.timer(*on, registry=registry, id="pass", interval=tick_s, sharp=True)
    def reconcile(**_: Any) -> None:
        loop.tick()


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's settings, each chosen for this operator (defaults in comments where they differ).

    Peering is off (`kopf.run(standalone=True)`): our own leader Lease elects the one replica
    that runs kopf at all. Only explicit Events are posted (not kopf's log lines), from INFO.
    """
    settings.posting.level = logging.INFO
    settings.posting.loggers = False
    settings.persistence.finalizer = FINALIZER  # kopf's default is kopf.zalando.org/...
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-spec")
    # The API server ends each policy watch after 60 s (spread by its own jitter); the client
    # gives up on a silent connection a little later, so a dead TCP link is noticed in ~90 s.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # Handlers and the timer are sync functions in kopf's thread pool; passes take a lock, so a
    # few threads are enough and bound the memory.
    settings.execution.max_workers = 4


def connection_info(api: client.ApiClient, *, namespace: str = "default") -> kopf.ConnectionInfo:
    """kopf's credentials from the same client configuration the reconciler uses; `namespace`
    is where kopf posts Events about cluster-scoped objects."""
    config = api.configuration
    header = (config.get_api_key_with_prefix("BearerToken")
              or config.get_api_key_with_prefix("authorization"))
    parts = header.split(" ", 1) if header else []
    scheme, token = ((None, None) if not parts else (None, parts[0]) if len(parts) == 1
                     else (parts[0], parts[1]))
    return kopf.ConnectionInfo(
        server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
        scheme=scheme, token=token, certificate_path=config.cert_file,
        private_key_path=config.key_file, username=config.username or None,
        password=config.password or None, default_namespace=namespace)
