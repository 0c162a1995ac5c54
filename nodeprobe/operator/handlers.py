"""kopf registrations only: what kopf watches and which reconciler call each event leads to.

kopf does not watch Nodes at all: `NodeCache` keeps the view, so nothing is written onto Nodes and
a healthy cluster costs the operator zero writes. Policies get a timer; all progress lives in the
NodeRemediations, which kopf does not handle either (the reconciler reads them each pass).
Registration happens in `register()`, called by `run()`, never at import time.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes import client

from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.policy import GROUP, POLICY_PLURAL, VERSION
from nodeprobe.operator.reconcile import Reconciler

log = logging.getLogger(__name__)


def register(registry: kopf.OperatorRegistry, *, reconciler: Reconciler, nodes: NodeCache,
             api: client.ApiClient) -> None:
    """Attach the operator's handlers to `registry` (kopf's decorators with an explicit one)."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(api)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        # "Timer succeeded" every tick per policy is noise; failures still log as warnings.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        settings.watching.server_timeout = 60
        # Our own resources only: never store kopf progress annotations on Nodes.
        settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=f"kopf.{GROUP}")

    @kopf.timer(GROUP, VERSION, POLICY_PLURAL, id="reconcile", registry=registry,
                interval=reconciler.settings.tick_s, idle=None, sharp=False)
    def tick(name: str, **_: Any) -> None:
        views = nodes.snapshot()
        if views is None:
            log.info("policy %s: waiting for a live view of the nodes before reconciling", name)
            return
        try:
            reconciler.reconcile(name, nodes=views)
        except KubeError as e:
            log.warning("policy %s: reconcile pass failed, retrying next tick: %s", name, e)


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
