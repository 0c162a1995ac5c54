"""A process that serves one of the two real /metrics endpoints, for flood tests.

`python -m tests.integration.publish.metrics_target agent|operator PORT [DEADLINE_S]` prints
`ready` once listening and serves until stdin closes. Run apart from the test so that its RSS
and thread count are the server's alone."""

from __future__ import annotations

import sys

from prometheus_client import CollectorRegistry


def main() -> None:
    which, port = sys.argv[1], int(sys.argv[2])
    if which == "agent":
        from nodeprobe.publish.bounded import Limits
        from nodeprobe.publish.metrics import Metrics
        from nodeprobe.publish.server import MetricsServer, ServerSettings

        registry = CollectorRegistry()
        deadline = float(sys.argv[3]) if len(sys.argv) > 3 else Limits().request_deadline_s
        server = MetricsServer(registry, Metrics(registry), settings=ServerSettings(
            host="127.0.0.1", port=port, limits=Limits(request_deadline_s=deadline)))
        server.start()
    else:
        from nodeprobe.operator import _start_metrics

        _start_metrics(port)
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
