"""1,000 half-sent requests against each /metrics server: the server process's added threads
and RSS, and how long a scrape takes meanwhile (issue 18).

    .venv/bin/python -m benchmarks.metrics_flood [--runs 5] [--flood 1000]

Each run starts the server in a fresh process (the agent's MetricsServer, or the operator's
`_start_metrics`), scrapes once, opens the slow connections, scrapes again and reads
/proc/<pid>/status. Prints median and spread per server.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.stats import summarize

SERVER = {
    "agent": ("from prometheus_client import CollectorRegistry as R\n"
              "from nodeprobe.publish.metrics import Metrics\n"
              "from nodeprobe.publish.server import MetricsServer, ServerSettings\n"
              "r = R(); s = MetricsServer(r, Metrics(r), settings=ServerSettings("
              "host='127.0.0.1', port=0)); s.start(); print(s.port, flush=True)\n"
              "import sys; sys.stdin.read()\n"),
    "operator": ("import socket; p = socket.socket(); p.bind(('127.0.0.1', 0)); "
                 "port = p.getsockname()[1]; p.close()\n"
                 "from nodeprobe.operator import _start_metrics\n"
                 "_start_metrics(port); print(port, flush=True)\n"
                 "import sys; sys.stdin.read()\n"),
}


def _status(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())
    return int(fields["VmRSS"].split()[0]), int(fields["Threads"])


def _scrape(port: int) -> float:
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 200
    conn.close()
    return time.monotonic() - start


def one_run(which: str, flood: int) -> tuple[float, float, float]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER[which]], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        _scrape(port)
        rss0, threads0 = _status(proc.pid)
        slow = []
        for _ in range(flood):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        took = _scrape(port)
        rss1, threads1 = _status(proc.pid)
        for s in slow:
            s.close()
        return (rss1 - rss0) / 1024, float(threads1 - threads0), took
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--flood", type=int, default=1000)
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.flood} slow connections per run")
    for which in SERVER:
        runs = [one_run(which, args.flood) for _ in range(args.runs)]
        print(f"{which}: +RSS {summarize([r[0] for r in runs]).row('MiB')}")
        print(f"{which}: +threads {summarize([r[1] for r in runs]).row('')}")
        print(f"{which}: scrape during the flood "
              f"{summarize([r[2] for r in runs]).row('ms', 1000)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
