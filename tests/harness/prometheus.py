"""A real Prometheus (Debian `prometheus`) on loopback, scraping given targets, queried over HTTP.

    with Prometheus(tmp, jobs={"nodeprobe-agent": [("127.0.0.1:9103", {"node": "node-a"})]},
                    scrape_interval_s=1) as prom:
        prom.wait_up(timeout_s=30)
        prom.query("up")                        # the HTTP API's data.result
        prom.query_range("up", start=t0, end=time.time(), step_s=1)
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.harness.runtimes import which

Target = tuple[str, Mapping[str, str]]
"""host:port and the labels Prometheus adds (what a ServiceMonitor's relabeling would)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, workdir: Path, *, jobs: Mapping[str, Sequence[Target]],
                 scrape_interval_s: float = 1.0) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.scrape_interval_s = scrape_interval_s
        interval = f"{int(scrape_interval_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [
                    {"targets": [address], "labels": dict(labels)} for address, labels in targets]}
                for job, targets in jobs.items()],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        argv = [which("prometheus"), f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._wait(self._ready, timeout_s=60, what="/-/ready")
        return self

    def _ready(self) -> bool:
        """200 from /-/ready; 503 while the TSDB opens, refused before the port is bound."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=10):
                return True
        except OSError:  # HTTPError (503) and URLError (refused) are both OSErrors
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.port}{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as e:
            raise AssertionError(f"GET {path} {dict(params or {})}: {e.code} {e.read()!r}") from e
        except OSError:
            return None
        return json.loads(body) if path.startswith("/api/") else body

    def _api(self, path: str, params: Mapping[str, str]) -> Any:
        body = self._get(path, params)
        if body is None:
            raise AssertionError(f"prometheus did not answer {path}")
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        return list(self._api("/api/v1/query", params)["result"])

    def query_range(self, expr: str, *, start: float, end: float,
                    step_s: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step_s}"}
        return list(self._api("/api/v1/query_range", params)["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self._api("/api/v1/targets", {"state": "active"})["activeTargets"])

    def wait_up(self, *, timeout_s: float) -> None:
        """Every target scraped successfully at least once."""
        def all_up() -> bool:
            ts = self.targets()
            return bool(ts) and all(t["health"] == "up" for t in ts)
        self._wait(all_up, timeout_s=timeout_s, what="every target up")

    def wait_for(self, expr: str, *, timeout_s: float, what: str) -> list[dict[str, Any]]:
        """Poll an instant query until it returns a non-empty result; returns it."""
        found: list[dict[str, Any]] = []

        def has() -> bool:
            found[:] = self.query(expr)
            return bool(found)
        self._wait(has, timeout_s=timeout_s, what=f"{what} ({expr})")
        return found

    def _wait(self, predicate: Any, *, timeout_s: float, what: str) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.1)  # pacing of the poll, not synchronisation
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}:\n{self.log()}")
