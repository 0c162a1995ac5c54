"""The live HTTP endpoint on a real loopback socket: scrape, promtool, health flips."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from nodeprobe.model import Check, Condition, ConditionType, Observation, Outcome, Reason, Runtime
from nodeprobe.model import Status as CStatus
from nodeprobe.publish.metrics import Metrics
from nodeprobe.publish.server import MetricsServer, MetricsServerError, ServerSettings

T0 = 1_800_000_000.0
PROMTOOL = "/usr/bin/promtool"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(clock: Clock) -> Iterator[tuple[Metrics, MetricsServer]]:
    reg = CollectorRegistry()
    metrics = Metrics(reg, version="0.1.0")
    settings = ServerSettings(host="127.0.0.1", port=0, stale_after_s=60, need_node_status=True)
    with MetricsServer(reg, metrics, settings=settings, now=clock) as server:
        yield metrics, server


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


def test_fresh_scrape_passes_promtool_and_has_series_before_any_event(
    served: tuple[Metrics, MetricsServer],
) -> None:
    _, server = served
    status, ctype, body = get(server.port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    checked = promtool_check(body)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (
        'nodeprobe_condition_status{condition="ContainerRuntimeUnavailable",'
        'reason="DockerdHung"} 0.0'
        in body
    )
    assert 'nodeprobe_publish_errors_total{target="node_status"} 0.0' in body


def test_busy_scrape_passes_promtool(served: tuple[Metrics, MetricsServer]) -> None:
    metrics, server = served
    for outcome in Outcome:
        metrics.observe(
            Observation(
                Runtime.DOCKERD,
                Check.DOCKER_INFO,
                outcome,
                0.01,
                T0,
                values={"goroutines": 120, "fds": 40, "images": 1, "containers": 0},
                info={"version": "20.10.24", "api_version": "1.41"},
            )
        )
    metrics.observe(
        Observation(
            Runtime.CONTAINERD,
            Check.PROCESS,
            Outcome.OK,
            0.001,
            T0,
            values={"rss_anon_bytes": 3e7, "rss_bytes": 5e7, "cgroup_anon_bytes": 6e7, "shims": 2},
        )
    )
    metrics.set_conditions(
        [Condition(ConditionType.UNAVAILABLE, CStatus.TRUE, Reason.DOCKERD_HUNG, "m", T0)]
    )
    metrics.publish_error("event")
    metrics.loop_tick(T0)
    _, _, body = get(server.port, "/metrics")
    checked = promtool_check(body)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'nodeprobe_runtime_shims{runtime="containerd"} 2.0' in body
    # OpenMetrics negotiation works too (Prometheus asks for it first).
    status, ctype, om = get(server.port, "/metrics", "application/openmetrics-text; version=1.0.0")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert om.rstrip().endswith("# EOF")


def test_healthz_flips_to_503_when_the_loop_tick_is_stale(
    served: tuple[Metrics, MetricsServer], clock: Clock
) -> None:
    metrics, server = served
    assert get(server.port, "/healthz")[0] == 200  # starting grace
    metrics.loop_tick(clock.t)
    clock.t += 59
    status, _, body = get(server.port, "/healthz")
    assert status == 200 and body.startswith("ok")
    clock.t += 2
    status, _, body = get(server.port, "/healthz")
    assert status == 503 and "61s ago" in body
    metrics.loop_tick(clock.t)
    assert get(server.port, "/healthz")[0] == 200


def test_readyz_says_why_until_ready(served: tuple[Metrics, MetricsServer]) -> None:
    metrics, server = served
    status, _, body = get(server.port, "/readyz")
    assert status == 503 and "round of checks" in body
    metrics.mark_round_done()
    status, _, body = get(server.port, "/readyz")
    assert status == 503 and "node status" in body
    metrics.mark_node_status_written()
    assert get(server.port, "/readyz")[:1] == (200,)


def test_unknown_path_is_404(served: tuple[Metrics, MetricsServer]) -> None:
    _, server = served
    status, _, body = get(server.port, "/nope")
    assert status == 404 and "/metrics" in body


def test_stop_releases_the_port_and_is_idempotent() -> None:
    reg = CollectorRegistry()
    server = MetricsServer(reg, Metrics(reg), settings=ServerSettings(host="127.0.0.1", port=0))
    server.start()
    port = server.port
    assert get(port, "/metrics")[0] == 200
    server.stop()
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    again = MetricsServer(
        reg, Metrics(CollectorRegistry()), settings=ServerSettings("127.0.0.1", port)
    )
    again.start()
    again.stop()


def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        reg = CollectorRegistry()
        server = MetricsServer(reg, Metrics(reg), settings=ServerSettings("127.0.0.1", port))
        with pytest.raises(MetricsServerError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()


START_CHECK = """
import sys
from prometheus_client import CollectorRegistry
from nodeprobe.publish.metrics import Metrics
from nodeprobe.publish.server import MetricsServer, ServerSettings
reg = CollectorRegistry()
with MetricsServer(reg, Metrics(reg), settings=ServerSettings(host="127.0.0.1", port=0)) as s:
    print(s.port > 0, "encodings.idna" in sys.modules)
"""


def test_start_skips_the_reverse_lookup_and_its_idna_codec() -> None:
    """http.server's getfqdn would load the idna codec (~0.45 MiB); in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", START_CHECK], check=True, capture_output=True,
                         text=True, timeout=60).stdout.split()
    assert out == ["True", "False"]
