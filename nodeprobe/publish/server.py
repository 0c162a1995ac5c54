"""The agent's HTTP endpoint: /metrics for Prometheus, /healthz for liveness, /readyz for readiness.

/healthz answers 503 when the agent loop has not finished an iteration within the staleness bound
(a wedged loop is what a liveness probe should restart); /readyz answers 503 until the first full
round of checks ran and, when Kubernetes publishing is on, the first node status write succeeded.
Both say why in the body. The decisions are the pure functions `healthz` and `readyz`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from nodeprobe.publish.bounded import BoundedHTTPServer, Limits
from nodeprobe.publish.metrics import Health, Metrics

log = logging.getLogger(__name__)

DEFAULT_PORT = 9103
"""The same default as `metrics.port` in nodeprobe/config; clear of kubelet, node-exporter (9100)
and NPD (20256/20257)."""


class MetricsServerError(Exception):
    """The endpoint could not start; the message names the address."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "0.0.0.0"
    """Listen address; 0.0.0.0 so Prometheus can scrape the pod IP."""
    port: int = DEFAULT_PORT
    """Listen port; 0 picks a free one (tests)."""
    stale_after_s: float = 60.0
    """/healthz fails when the loop's last iteration is older than this (s); well above one
    iteration (probes are cut at their deadlines) so a slow round is not a restart."""
    need_node_status: bool = True
    """/readyz also waits for the first successful node status write (Kubernetes publishing on)."""
    limits: Limits = field(default_factory=Limits)
    """Connection cap and per-request deadline (`publish/bounded.py`)."""


def healthz(
    health: Health, now: float, *, started_at: float, stale_after_s: float
) -> tuple[bool, str]:
    """Live while the loop ticks; before the first tick, the start time counts as one."""
    last = health.last_tick if health.last_tick is not None else started_at
    age = now - last
    if age > stale_after_s:
        what = "last finished an iteration" if health.last_tick is not None else "started"
        return False, (
            f"agent loop {what} {age:.0f}s ago (limit {stale_after_s:.0f}s): "
            "it is stuck; see the agent's log"
        )
    if health.last_tick is None:
        return True, "ok: starting, no loop iteration yet"
    return True, f"ok: last loop iteration {age:.1f}s ago"


def readyz(health: Health, *, need_node_status: bool) -> tuple[bool, str]:
    if not health.round_done:
        return False, "not ready: the first round of checks has not finished"
    if need_node_status and not health.node_status_written:
        return False, (
            "not ready: the Node does not state the first round's judgement yet (no node "
            "status write has succeeded); "
            "see nodeprobe_publish_errors_total and the agent's log"
        )
    return True, "ok"


class MetricsServer:
    """A small threaded HTTP server; start() binds, stop() releases the port. Reusable in tests."""

    def __init__(
        self,
        registry: CollectorRegistry,
        metrics: Metrics,
        *,
        settings: ServerSettings | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._settings = settings or ServerSettings()
        self._now = now
        self._started_at = 0.0
        self._httpd: BoundedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._httpd is None:
            raise RuntimeError("MetricsServer is not started")
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        s = self._settings
        try:
            httpd = BoundedHTTPServer((s.host, s.port), _handler_for(self), limits=s.limits)
        except OSError as e:
            raise MetricsServerError(
                f"cannot listen on {s.host}:{s.port} for /metrics: {e.strerror or e}; "
                "pick another port or stop what holds it"
            ) from e
        self._httpd = httpd
        self._started_at = self._now()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
            name="nodeprobe-metrics",
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        """Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def respond(self, path: str, accept: str | None) -> tuple[int, str, bytes]:
        """(status, content type, body) for one GET; pure apart from reading the registry."""
        route = path.split("?", 1)[0]
        if route == "/metrics":
            encoder, content_type = choose_encoder(accept or "")
            return 200, content_type, encoder(self._registry)
        if route in ("/healthz", "/readyz"):
            health = self._metrics.health()
            if route == "/healthz":
                ok, why = healthz(
                    health,
                    self._now(),
                    started_at=self._started_at,
                    stale_after_s=self._settings.stale_after_s,
                )
            else:
                ok, why = readyz(health, need_node_status=self._settings.need_node_status)
            return (200 if ok else 503), "text/plain; charset=utf-8", (why + "\n").encode()
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n"


def _handler_for(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if isinstance(self.server, BoundedHTTPServer) and not self.server.answering(
                    self.request):
                return
            status, content_type, body = server.respond(self.path, self.headers.get("Accept"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler
