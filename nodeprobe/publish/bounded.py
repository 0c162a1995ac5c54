"""An HTTP server that a slow or idle client cannot exhaust: the agent's and the operator's
/metrics endpoints both run on it.

The standard library's ThreadingHTTPServer (what prometheus_client's `start_http_server` runs)
waits forever for a request and starts a thread per connection: 1,000 half-sent requests were
1,002 threads and +26 MiB. Here:
- every connection has one absolute deadline (`request_deadline_s`) for reading the request and
  writing the answer (`nodeprobe.deadline` sockets), so a client that trickles bytes is cut off;
- at most `max_connections` are open; a new connection over the cap closes the oldest one that
  is still sending its request (a slow client is always the oldest such), so a scrape that
  arrives during a flood is still answered, and memory stays bounded by the cap.

Why not a library: waitress, cheroot and gunicorn cap connections by leaving the next ones in
the kernel's backlog, so 1,000 slow clients delay a scrape until their timeouts drain the queue;
none closes the oldest unfinished request. The stdlib server plus these ~80 lines does, and adds
nothing to the agent's memory.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from nodeprobe.deadline import Budget, DeadlineSocket

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 64
    """Open connections at most; Prometheus needs one or two per scrape."""
    request_deadline_s: float = 10.0
    """Read the request and write the answer within this (s): Prometheus' default scrape
    timeout, and /metrics renders in milliseconds."""


class BoundedHTTPServer(ThreadingHTTPServer):
    """One thread per connection, at most `limits.max_connections`, each under a deadline."""

    daemon_threads = True
    request_queue_size = 128  # a flood must not fill the backlog faster than we evict

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 limits: Limits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[socket.socket, tuple[float, bool]] = {}
        """Each open connection: when it was accepted, and whether its request is complete."""
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Binds without http.server's `socket.getfqdn`: a reverse DNS lookup at start (slow
        where DNS is) and the idna codec's import (~0.45 MiB resident) for a name unused here."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = self.socket.accept()
        budget = Budget()
        budget.start(self.limits.request_deadline_s)
        armed = DeadlineSocket(budget, conn.family, conn.type, fileno=conn.detach())
        return armed, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._open) >= self.limits.max_connections and not self._evict_one()
            if not full:
                self._open[request] = (time.monotonic(), False)
        if full:
            self.shutdown_request(request)  # every slot is answering: this one is refused
            return
        super().process_request(request, client_address)

    def _evict_one(self) -> bool:
        """Close the oldest connection still sending its request; False if there is none."""
        reading = [(at, sock) for sock, (at, answering) in self._open.items() if not answering]
        if not reading:
            return False
        _, victim = min(reading, key=lambda item: item[0])
        del self._open[victim]
        with contextlib.suppress(OSError):
            victim.shutdown(socket.SHUT_RDWR)  # its thread sees EOF and ends
        return True

    def answering(self, request: Any) -> bool:
        """The handler read a whole request: this connection is no longer evictable. False when
        it was evicted meanwhile (the request it read may be cut short): do not answer."""
        with self._lock:
            if request not in self._open:
                return False
            self._open[request] = (self._open[request][0], True)
            return True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or ran out its deadline is routine, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("metrics client %s: %s", client_address, error)
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)


def serve_registry(registry: CollectorRegistry, *, host: str, port: int,
                   limits: Limits | None = None) -> BoundedHTTPServer:
    """`prometheus_client.start_http_server` on the bounded server (the operator's /metrics):
    /metrics only, in a daemon thread; `server_address` has the bound port."""
    from prometheus_client.exposition import choose_encoder

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert isinstance(self.server, BoundedHTTPServer)
            if not self.server.answering(self.request):
                return
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "try /metrics")
                return
            encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
            body = encoder(registry)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes are not news."""

    httpd = BoundedHTTPServer((host, port), Handler, limits=limits or Limits())
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True,
                     name="metrics").start()
    return httpd
