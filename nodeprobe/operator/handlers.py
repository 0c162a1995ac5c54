"""kopf registrations only: what kopf watches and which reconciler call each event leads to.

Nodes are watched through an index (an in-memory view): kopf writes nothing onto Nodes, so a
healthy cluster costs the operator zero writes. Policies get a timer; all progress lives in the
NodeRemediations, which kopf does not handle at all (the reconciler reads them each pass).
Registration happens in `register()`, called by `run()`, never at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client

from nodeprobe.operator.kube import KubeError
from nodeprobe.operator.policy import GROUP, POLICY_PLURAL, VERSION
from nodeprobe.operator.reconcile import Reconciler

log = logging.getLogger(__name__)


def register(registry: kopf.OperatorRegistry, *, reconciler: Reconciler,
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

    @kopf.index("nodes", id="nodes", registry=registry)
    def nodes(name: str, body: kopf.Body, **_: Any) -> dict[str, Mapping[str, Any]]:
        return {name: slim_node(body)}

    @kopf.timer(GROUP, VERSION, POLICY_PLURAL, id="reconcile", registry=registry,
                interval=reconciler.settings.tick_s, idle=None, sharp=False)
    def tick(name: str, **kwargs: Any) -> None:
        index: kopf.Index[str, Mapping[str, Any]] = kwargs["nodes"]  # the index above, by name
        views = [obj for key in index for obj in index[key]]
        try:
            reconciler.reconcile(name, nodes=views)
        except KubeError as e:
            log.warning("policy %s: reconcile pass failed, retrying next tick: %s", name, e)


def slim_node(body: Mapping[str, Any]) -> dict[str, Any]:
    """Only what `reconcile.node_view` reads: a real Node is ~10 KB (images, addresses, ...);
    keeping all of it for every node cost ~140 MB more at 5,000 nodes."""
    meta, spec, status = (body.get(k) or {} for k in ("metadata", "spec", "status"))
    return {
        "metadata": {"name": meta.get("name"), "uid": meta.get("uid"),
                     "labels": dict(meta.get("labels") or {})},
        "spec": {"unschedulable": spec.get("unschedulable")},
        "status": {
            "conditions": [{k: c.get(k) for k in ("type", "status", "lastTransitionTime")}
                           for c in status.get("conditions") or []],
            "nodeInfo": {"bootID": (status.get("nodeInfo") or {}).get("bootID")},
        },
    }


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
