"""The liveness endpoint of a replica that waits for the leader Lease.

kopf serves `/healthz` only once it runs, and kopf runs only while this replica leads. A
standby replica must still answer its liveness probe, or the kubelet kills it every minute
(CrashLoopBackOff) while it is doing exactly what it should: waiting. It answers 200 while its
election loop has tried the Lease recently, and 503 when that loop is stuck (then a restart is
what helps). Closed before kopf starts, which then binds the same address.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer

log = logging.getLogger(__name__)

HANDLER_TIMEOUT_S = 2.0
"""A client that sends nothing for this long is dropped: the one serving thread stays free."""


class StandbyHealth:
    """Serves `GET <path>` on the liveness endpoint until `close()`."""

    def __init__(self, endpoint: str, *, fresh: Callable[[], bool]) -> None:
        url = urllib.parse.urlsplit(endpoint)
        self.path = url.path or "/healthz"
        fresh_now = fresh
        path = self.path

        class Handler(BaseHTTPRequestHandler):
            timeout = HANDLER_TIMEOUT_S

            def do_GET(self) -> None:
                known = self.path.split("?", 1)[0] == path
                ok = known and fresh_now()
                body = b"standby: waiting for the leader Lease\n" if ok else b"not ok\n"
                self.send_response(200 if ok else 503 if known else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        HTTPServer.allow_reuse_address = True
        self.server = HTTPServer((url.hostname or "0.0.0.0", url.port or 8080), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="standby-health",
                                       daemon=True)

    def start(self) -> StandbyHealth:
        self.thread.start()
        log.info("standby: answering liveness on %s while waiting to lead", self.path)
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def freshness(last: Callable[[], float | None], *, within_s: float,
              monotonic: Callable[[], float] = time.monotonic) -> Callable[[], bool]:
    """True while `last()` (a monotonic time) is no older than `within_s`."""
    def fresh() -> bool:
        t = last()
        return t is not None and monotonic() - t <= within_s
    return fresh
