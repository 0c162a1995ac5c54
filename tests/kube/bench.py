"""Requests/s the double serves for GET node and PATCH node status: `python -m tests.kube.bench`.

Loads N nodes, then for each client count runs R rounds of M requests over keep-alive HTTP
connections (http.client, one per thread) and prints the median and range of requests/s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import threading
import time
from collections.abc import Sequence

from tests.kube.fixtures import kube_double
from tests.kube.objects import kubelet_node


def _worker(port: int, method: str, paths: list[str], body: bytes, errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/strategic-merge-patch+json", "Accept":
               "application/json"}
    for path in paths:
        conn.request(method, path, body=body if method == "PATCH" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            errors.append(response.status)
    conn.close()


def measure(port: int, *, method: str, nodes: int, requests: int, clients: int) -> float:
    """Requests/s for `requests` spread over `clients` threads, each on its own connection."""
    suffix = "/status" if method == "PATCH" else ""
    body = json.dumps({"status": {"conditions": [{
        "type": "ContainerRuntimeUnavailable", "status": "False", "reason": "RuntimeHealthy",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}}).encode()
    per = requests // clients
    errors: list[int] = []
    threads = [threading.Thread(target=_worker, args=(
        port, method, [f"/api/v1/nodes/node-{(c * per + i) % nodes}{suffix}" for i in range(per)],
        body, errors)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {sorted(set(errors))}")
    return per * clients / took


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    with kube_double() as kube:
        started = time.perf_counter()
        for i in range(args.nodes):
            kube.put_object(kubelet_node(f"node-{i}"))
        print(f"loaded {args.nodes} nodes in {time.perf_counter() - started:.2f}s")
        for method in ("GET", "PATCH"):
            for clients in args.clients:
                rates = [measure(kube.port, method=method, nodes=args.nodes,
                                 requests=args.requests, clients=clients)
                         for _ in range(args.rounds)]
                print(f"{method:5} node{'/status' if method == 'PATCH' else '':7} "
                      f"clients={clients}: median {statistics.median(rates):7.0f} req/s "
                      f"(min {min(rates):.0f}, max {max(rates):.0f}, {args.rounds} rounds of "
                      f"{args.requests})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
