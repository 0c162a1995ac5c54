"""The operator's view of every Node: a paginated list, then a watch, kept in memory.

Why not kopf (`kopf.index` or a Node handler): measured with `benchmarks/operator_bench.py` at
5,000 Nodes (docs/performance.md, "The operator at 5,000 nodes"), kopf's index took 157 s from
start to the first reconcile pass (after every start and leader change) and 306 MiB steady, as
kopf readies an index by making every object's worker wait on one shared toggle set (~n²
wake-ups) and keeps per-object state; this list+watch is ready when the list returns (0.8 s)
and the whole operator stays near 83 MiB. kopf does watch the RemediationPolicies (`handlers`).
Only what the reconciler reads is kept, and nothing is ever written to Nodes.

The view is offered only while it is live: from the first complete list until the watch or a
relist fails. A pass skipped for a stale view is cheaper than a cordon decided on one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

from nodeprobe.operator.kube import Kube, KubeError

log = logging.getLogger(__name__)

NODES = "/api/v1/nodes"
PAGE = 500
"""Nodes per list page: a page of real Nodes (~10 KB each) stays near 5 MB."""
WATCH_S = 300
"""The server ends each watch after this; the next one resumes from the last resourceVersion."""
OUR_ANNOTATIONS = "nodeprobe.io/"
"""Only nodeprobe's own annotations are kept (the cordoned-by mark)."""
RETRY_S = (1.0, 30.0)
"""Back-off after a failed list or watch, first and longest."""


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): only a new list can resume."""


def slim_node(body: Mapping[str, Any]) -> dict[str, Any]:
    """Only what `reconcile.node_view` reads: a real Node is ~10 KB (images, addresses, ...)."""
    meta, spec, status = (body.get(k) or {} for k in ("metadata", "spec", "status"))
    return {
        "metadata": {"name": meta.get("name"), "uid": meta.get("uid"),
                     "labels": dict(meta.get("labels") or {}),
                     "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                     if k.startswith(OUR_ANNOTATIONS)},
                     # Who owns the cordon (spec.unschedulable) only: a person's or ours.
                     "managedFields": [
                         {"manager": m.get("manager"), "fieldsV1": {"f:spec": {
                             "f:unschedulable": {}}}}
                         for m in meta.get("managedFields") or []
                         if "f:unschedulable" in ((m.get("fieldsV1") or {}).get("f:spec")
                                                  or {})]},
        "spec": {"unschedulable": spec.get("unschedulable")},
        "status": {
            "conditions": [{k: c.get(k) for k in ("type", "status", "lastTransitionTime",
                                                  "lastHeartbeatTime")}
                           for c in status.get("conditions") or []],
            "nodeInfo": {"bootID": (status.get("nodeInfo") or {}).get("bootID")},
        },
    }


def apply_event(nodes: dict[str, dict[str, Any]], event: Mapping[str, Any]) -> str | None:
    """Fold one watch event into `nodes`; returns the resourceVersion to resume from, if any.

    Raises `Gone` for a 410 and `KubeError` for any other ERROR event.
    """
    kind, obj = event.get("type"), event.get("object")
    if not isinstance(obj, Mapping):
        raise KubeError(0, f"watch {NODES}: event without an object: {str(event)[:200]}")
    if kind == "ERROR":
        code = int(obj.get("code") or 0)
        if code == 410:
            raise Gone(obj.get("message", "resourceVersion too old"))
        raise KubeError(code, f"watch {NODES}: {obj.get('reason')}: {obj.get('message')}")
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if kind in ("ADDED", "MODIFIED") and name:
        nodes[name] = slim_node(obj)
    elif kind == "DELETED" and name:
        nodes.pop(name, None)
    elif kind != "BOOKMARK":
        raise KubeError(0, f"watch {NODES}: unknown event type {kind!r}")
    rv = meta.get("resourceVersion")
    return str(rv) if rv else None


class NodeCache:
    """All Nodes, slimmed, kept current by one thread; `snapshot()` is what a pass reads."""

    def __init__(self, kube: Kube, *, page: int = PAGE, watch_s: int = WATCH_S,
                 retry_s: tuple[float, float] = RETRY_S) -> None:
        self.kube = kube
        self.page = page
        self.watch_s = watch_s
        self.retry_s = retry_s
        self._nodes: dict[str, dict[str, Any]] = {}
        self._live = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread: threading.Thread | None = None

    def snapshot(self) -> list[dict[str, Any]] | None:
        """Every Node as last seen, or None while the view is not live (not yet listed, or the
        watch broke and the relist has not succeeded)."""
        with self._lock:
            return list(self._nodes.values()) if self._live else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="node-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread promptly, even in the middle of a watch."""
        self._stop.set()
        resp = self._resp
        if resp is not None:
            resp.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run(self) -> None:
        delay = self.retry_s[0]
        while not self._stop.is_set():
            try:
                rv = self._relist()
                delay = self.retry_s[0]
                while not self._stop.is_set():
                    rv = self._watch(rv)
            except Gone as e:
                log.info("node watch expired (%s); listing again", e)
                continue
            except (KubeError, ApiException, HTTPError, OSError, ValueError) as e:
                if self._stop.is_set():
                    break
                self._set_live(False)
                log.warning("node list/watch failed, reconcile passes wait until it is back; "
                            "retrying in %.0f s: %s", delay, e)
            self._stop.wait(delay)
            delay = min(delay * 2, self.retry_s[1])

    def _set_live(self, live: bool, nodes: dict[str, dict[str, Any]] | None = None) -> None:
        with self._lock:
            self._live = live
            if nodes is not None:
                self._nodes = nodes

    def _relist(self) -> str:
        """Every Node, page by page; the view switches to the new list only when it is whole."""
        nodes: dict[str, dict[str, Any]] = {}
        query = {"limit": str(self.page)}
        rv = ""
        while True:
            reply = self.kube.request("GET", NODES, query=query)
            for item in reply.get("items") or []:
                nodes[(item.get("metadata") or {}).get("name", "")] = slim_node(item)
            meta = reply.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion") or "")
            if not meta.get("continue"):
                break
            query = {"limit": str(self.page), "continue": str(meta["continue"])}
        self._set_live(True, nodes)
        log.info("node view live: %d nodes at resourceVersion %s", len(nodes), rv)
        return rv

    def _watch(self, rv: str) -> str:
        """One watch from `rv` until the server ends it; returns where to resume."""
        for event in self._events(rv):
            with self._lock:
                rv = apply_event(self._nodes, event) or rv
        return rv

    def _events(self, rv: str) -> Iterator[dict[str, Any]]:
        query = {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(self.watch_s)}
        try:
            resp = self.kube.stream(NODES, query=query, read_timeout_s=self.watch_s + 30)
        except KubeError as e:
            if e.status == 410:
                raise Gone(str(e)) from e
            raise
        self._resp = resp
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if line.strip():
                    yield json.loads(line)
        finally:
            self._resp = None
            resp.release_conn()
