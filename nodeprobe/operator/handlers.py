"""kopf registrations only: what runs while kopf runs.

kopf watches no resource at all: `NodeCache` keeps the view of Nodes, and one pass loop
(started on kopf's startup, stopped on its cleanup) reconciles the whole cluster every tick, since
one budget means one pass. So kopf writes nothing anywhere: no bookkeeping annotations on Nodes,
no finalizers or `status.kopf` on our resources. kopf is run only while this replica leads (see
`nodeprobe.operator.run`). Registration happens in `register()`, never at import time.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf
from kubernetes import client

from nodeprobe.operator.guard import Guard
from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.reconcile import Reconciler

log = logging.getLogger(__name__)


class PassLoop:
    """Calls `reconciler.reconcile()` every tick while the node view is live and the admission
    guard on NodeRemediations is in place (`guard`; None only in tests of the loop itself)."""

    def __init__(self, reconciler: Reconciler, nodes: NodeCache, *,
                 guard: Guard | None = None) -> None:
        self.reconciler = reconciler
        self.nodes = nodes
        self.guard = guard
        self.stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="reconcile", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def run(self) -> None:
        while not self.stop.wait(self.reconciler.settings.tick_s):
            self.once()

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


def register(registry: kopf.OperatorRegistry, *, reconciler: Reconciler, nodes: NodeCache,
             api: client.ApiClient, stop: threading.Event,
             guard: Guard | None = None) -> PassLoop:
    """Attach the operator's handlers to `registry` (kopf's decorators with an explicit one).

    `stop` is kopf's stop flag: kopf waits on it in an executor thread, which its own shutdown
    then joins. A SIGTERM stops kopf without setting it, so cleanup sets it, or the process
    would hang until the kubelet's SIGKILL.
    """
    loop = PassLoop(reconciler, nodes, guard=guard)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(api)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 60
        loop.start()

    @kopf.on.cleanup(registry=registry)
    def cleanup(**_: Any) -> None:
        loop.close()
        stop.set()

    return loop


def connection_info(api: client.ApiClient) -> kopf.ConnectionInfo:
    """kopf's credentials from the same client configuration the reconciler uses."""
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
        password=config.password or None)
