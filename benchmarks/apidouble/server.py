"""HTTP in front of Api: routing, content negotiation, watch streaming, bookkeeping.

stdlib ThreadingHTTPServer with HTTP/1.1 keep-alive: starts in milliseconds, and each response
goes out in one write (with TCP_NODELAY) so clients do not stall on delayed ACKs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from benchmarks.apidouble import discovery, eviction, watch
from benchmarks.apidouble.api import JSON_PATCH, MERGE, STRATEGIC
from benchmarks.apidouble.errors import ApiError, bad_request, resource_not_found
from benchmarks.apidouble.resources import ResourceType
from benchmarks.apidouble.selectors import SelectorError, field_selector, label_selector
from benchmarks.apidouble.store import Obj

if TYPE_CHECKING:
    from benchmarks.apidouble.double import KubeDouble

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
            405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict",
            410: "Gone", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
            429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Request:
    """One request as the double saw it; `body` is the parsed JSON of writes."""

    method: str
    path: str
    query: str
    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    code: int = 0
    seconds: float = 0.0
    content_type: str = ""
    body: Any = None

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass
class Route:
    group: str
    version: str
    resource: str
    namespace: str | None
    name: str
    sub: str
    watch_prefix: bool


class Server(ThreadingHTTPServer):
    """Tracks open connections so pause() can cut them like a dying API server."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], double: KubeDouble) -> None:
        self.double = double
        self.closing = False
        self.conns: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(address, Handler)

    def cut(self) -> None:
        self.closing = True
        with self.conns_lock:
            for conn in list(self.conns):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def parse_route(path: str, double: KubeDouble) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_prefix = rest[:1] == ["watch"]
    rest = rest[1:] if watch_prefix else rest
    ns = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = double.registry.find(group, version, rest[2])
        if rt is not None and rt.namespaced:
            ns, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    rest += [""] * (3 - len(rest))
    return Route(group, version, rest[0], ns, rest[1], rest[2], watch_prefix)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server
    _record: dict[str, Any] | None = None
    _started = 0.0

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conns_lock:
            self.server.conns.add(self.connection)

    def finish(self) -> None:
        with self.server.conns_lock:
            self.server.conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request log is kept as data in KubeDouble."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, code: int, payload: Obj | bytes, ctype: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = (f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Cache-Control: no-cache, private\r\n\r\n").encode()
        self.log_answer(code)
        self.wfile.write(head + body)

    def log_answer(self, code: int) -> None:
        """Log the request as answered, before the client can see the answer and look."""
        record, self._record = self._record, None
        if record is not None:
            record["code"], record["seconds"] = code, time.perf_counter() - self._started
            self.server.double.record(Request(**record))

    def _handle(self, method: str) -> None:
        double = self.server.double
        self._started = time.perf_counter()
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        record: dict[str, Any] = {"method": method, "path": url.path, "query": url.query,
                                  "verb": method.lower(), "content_type": ctype}
        self._record = record
        try:
            code = self._dispatch(method, url.path, parse_qs(url.query), raw, ctype, record)
        except ApiError as e:
            code = e.code
            self._send(code, e.status())
        except (ConnectionError, OSError):
            code = 0
        except Exception as e:  # a bug in the double: answer like a server, keep serving
            code = 500
            self._send(500, ApiError(500, "InternalError", f"kube double: {e!r}").status())
            double.errors.append(e)
        self.log_answer(code)

    def _dispatch(self, method: str, path: str, q: dict[str, list[str]], raw: bytes,
                  ctype: str, record: dict[str, Any]) -> int:
        double = self.server.double
        doc = self._discovery(path)
        if doc is not None:
            record["verb"] = "get"
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            self._send(200, doc)
            return 200
        route = parse_route(path, double)
        if route is None:
            raise resource_not_found()
        rt = double.registry.find(route.group, route.version, route.resource)
        verb = _verb(method, route, q)
        record.update(verb=verb, group=route.group, version=route.version,
                      resource=route.resource, subresource=route.sub,
                      namespace=route.namespace or "", name=route.name)
        if raw and verb in WRITE_VERBS | {"create"}:
            try:
                record["body"] = json.loads(raw)
            except ValueError:
                record["body"] = raw.decode(errors="replace")
        if rt is None or (route.namespace is not None and not rt.namespaced):
            raise resource_not_found()
        if route.sub and route.sub not in rt.subresources:
            raise resource_not_found()
        accept = self.headers.get("Accept") or "*/*"
        if "json" not in accept and "*/*" not in accept:
            raise ApiError(406, "NotAcceptable", "only the following media types are accepted: "
                           "application/json, application/json;stream=watch", details={})
        if "protobuf" in ctype:
            raise ApiError(415, "UnsupportedMediaType",
                           'the body of the request was in an unknown format - accepted media '
                           'types include: application/json', details={})
        return self._verb(verb, rt, route, q, raw, ctype)

    def _discovery(self, path: str) -> Obj | None:
        double = self.server.double
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return discovery.VERSION
        if parts == ["api"]:
            return discovery.api_versions(f"127.0.0.1:{double.port}")
        if parts == ["apis"]:
            return discovery.api_group_list(double.registry)
        if parts == ["api", "v1"]:
            return discovery.resource_list(double.registry, "", "v1")
        if len(parts) == 2 and parts[0] == "apis":
            return discovery.api_group(double.registry, parts[1]) or {}
        if len(parts) == 3 and parts[0] == "apis":
            return discovery.resource_list(double.registry, parts[1], parts[2]) or {}
        if parts == ["openapi", "v3"]:
            return discovery.openapi_v3_index(double.registry)
        if parts[:2] == ["openapi", "v3"] and len(parts) > 2:
            spec = discovery.openapi_v3_spec(double.registry, "/".join(parts[2:]))
            if spec is None:
                raise resource_not_found()
            return spec
        return None

    def _verb(self, verb: str, rt: ResourceType, route: Route, q: dict[str, list[str]],
              raw: bytes, ctype: str) -> int:
        api = self.server.double.api
        ns = route.namespace or ""
        dry = "All" in q.get("dryRun", [])
        if verb in ("list", "watch", "deletecollection") and not route.sub:
            try:
                labels = label_selector(_q(q, "labelSelector"))
                fields = field_selector(_q(q, "fieldSelector"))
            except SelectorError as e:
                raise bad_request(str(e)) from e

            def match(o: Mapping[str, Any]) -> bool:
                named = not route.name or o["metadata"].get("name") == route.name
                return named and labels(o) and fields(o)

            if verb == "watch":
                watch.serve(self, rt=rt, ns=route.namespace, match=match,
                            query={k: v[0] for k, v in q.items() if v})
                return 200
            if verb == "deletecollection":
                for item in api.list(rt, route.namespace, match=match)["items"]:
                    api.delete(rt, ns, item["metadata"]["name"], _body(raw), dry_run=dry)
                self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                 "status": "Success"})
                return 200
            result = api.list(rt, route.namespace, match=match,
                              limit=int(_q(q, "limit") or 0), cont=_q(q, "continue"))
            return self._answer(200, result, rt=rt, q=q, items=result["items"])
        if not route.name:
            if verb == "create":
                return self._answer(201, api.create(rt, ns, _body(raw), dry_run=dry))
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method "
                                                    "on the requested resource")
        if verb == "get":
            obj = api.get(rt, ns, route.name)
            return self._answer(200, obj, rt=rt, q=q, items=[obj])
        if verb == "create" and route.sub == "eviction":
            pdbs = self.server.double.registry.find("policy", "v1", "poddisruptionbudgets")
            assert pdbs is not None
            body = _body(raw)
            grace = (body.get("deleteOptions") or {}).get("gracePeriodSeconds")
            result = eviction.evict(api, pods=rt, pdbs=pdbs, ns=ns, name=route.name, body=body)
            self.server.double.evictions.append((ns, route.name, grace))
            return self._answer(201, result)
        if verb == "update":
            return self._answer(200, api.update(rt, ns, route.name, _body(raw), sub=route.sub,
                                                dry_run=dry))
        if verb == "patch":
            if ctype not in (MERGE, JSON_PATCH, STRATEGIC) or (ctype == STRATEGIC
                                                                and not rt.strategic):
                kinds = [JSON_PATCH, MERGE] + ([STRATEGIC] if rt.strategic else [])
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - accepted "
                               f"media types include: {', '.join(kinds)}", details={})
            return self._answer(200, api.patch(rt, ns, route.name, raw, ctype, sub=route.sub,
                                               dry_run=dry))
        if verb == "delete":
            return self._answer(200, api.delete(rt, ns, route.name, _body(raw) if raw else None,
                                                dry_run=dry))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    def _answer(self, code: int, obj: Obj, *, rt: ResourceType | None = None,
                q: dict[str, list[str]] | None = None, items: list[Obj] | None = None) -> int:
        accept = self.headers.get("Accept") or ""
        if rt is not None and "as=Table" in accept and items is not None:
            meta = obj["metadata"] if obj.get("kind", "").endswith("List") else {
                "resourceVersion": obj["metadata"].get("resourceVersion", "")}
            include = _q(q or {}, "includeObject") or "Metadata"
            obj = discovery.table(rt, items, meta, include=include,
                                  now=self.server.double.clock())
        self._send(code, obj)
        return code


def _q(q: dict[str, list[str]], key: str) -> str:
    return (q.get(key) or [""])[0]


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError as e:
        raise bad_request(f"the request body is not valid JSON: {e}") from e


def _verb(method: str, route: Route, q: dict[str, list[str]]) -> str:
    if method == "GET":
        if route.name:
            return "watch" if route.watch_prefix else "get"
        return "watch" if route.watch_prefix or _q(q, "watch") in ("true", "1") else "list"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
