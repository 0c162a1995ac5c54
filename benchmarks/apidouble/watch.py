"""Watch streams: which events a change means for one watcher, and the streaming loop.

A watcher with a selector sees an object that stops matching as DELETED and one that starts
matching as ADDED, as from the real server's watch cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from benchmarks.apidouble.errors import bad_request
from benchmarks.apidouble.resources import ResourceType
from benchmarks.apidouble.store import Change, Obj

if TYPE_CHECKING:
    from benchmarks.apidouble.server import Handler

Match = Callable[[Mapping[str, Any]], bool]
DEFAULT_TIMEOUT = 1800.0


def events_for(change: Change, *, rt: ResourceType, ns: str | None, match: Match,
               view: Callable[[ResourceType, Obj], Obj]) -> list[tuple[str, Obj]]:
    """The (type, object) events one watcher gets for one committed change."""
    if change.storage != rt.storage:
        return []
    if ns is not None and (change.new["metadata"].get("namespace") or "") != ns:
        return []
    new = view(rt, change.new)
    was = change.old is not None and change.type != "ADDED" and match(view(rt, change.old))
    now = match(new)
    if change.type == "DELETED":
        return [("DELETED", new)] if now or was else []
    if now:
        return [("MODIFIED" if was else "ADDED", new)]
    return [("DELETED", new)] if was else []


def serve(handler: Handler, *, rt: ResourceType, ns: str | None, match: Match,
          query: Mapping[str, str]) -> None:
    """Stream chunked newline-delimited events until timeoutSeconds, a cut, or a 410."""
    rv = query.get("resourceVersion", "")
    if rv not in ("", "0") and not rv.isdigit():
        raise bad_request(f"invalid resource version: {rv!r}")
    try:
        timeout = float(query.get("timeoutSeconds") or DEFAULT_TIMEOUT)
    except ValueError as e:
        raise bad_request(f"invalid timeoutSeconds: {e}") from e
    double = handler.server.double
    double.watch_opened(rt.plural, +1)
    try:
        handler.log_answer(200)
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n"
                            b"Cache-Control: no-cache, private\r\n\r\n")
        last = _stream(handler, rt=rt, ns=ns, match=match, rv=rv,
                       deadline=time.monotonic() + timeout)
        if query.get("allowWatchBookmarks") == "true" and not handler.server.closing:
            _send(handler, "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version,
                                        "metadata": {"resourceVersion": str(last)}})
        handler.wfile.write(b"0\r\n\r\n")
    finally:
        double.watch_opened(rt.plural, -1)


def _stream(handler: Handler, *, rt: ResourceType, ns: str | None, match: Match, rv: str,
            deadline: float) -> int:
    api, store = handler.server.double.api, handler.server.double.store
    with store.cond:
        last = store.rv if rv in ("", "0") else int(rv)
        initial = ([api.view(rt, o) for o in store.items(rt.storage, ns)]
                   if rv in ("", "0") else [])
    for obj in initial:
        if match(obj):
            _send(handler, "ADDED", obj)
    while not handler.server.closing:
        with store.cond:
            changes = store.changes_since(last)
            remaining = deadline - time.monotonic()
            if changes == [] and remaining > 0:
                store.cond.wait(min(remaining, 0.5))
                continue
        if changes is None:
            _send(handler, "ERROR", {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "Expired", "code": 410,
                "message": f"too old resource version: {last} ({store.compacted_rv})"})
            break
        for change in changes:
            for kind, obj in events_for(change, rt=rt, ns=ns, match=match, view=api.view):
                _send(handler, kind, obj)
            last = change.rv
        if remaining <= 0:
            break
    return last


def _send(handler: Handler, kind: str, obj: Obj) -> None:
    data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
