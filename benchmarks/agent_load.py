"""Helpers for benchmarks/agent_bench.py: the agent at DEFAULT intervals, /proc readings, load.

`DefaultAgent` runs `.venv/bin/nodeprobe agent` with a config that sets only the sockets and the
metrics endpoint, so every check keeps its shipped interval, deadline and hysteresis (unlike the
test suite's AgentProcess, which uses fast test intervals).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.agent_process import NODE, free_port, terminate, wait_for
from tests.harness.runtimes import BUSYBOX_IMAGE, Sandbox, busybox_rootfs_tar

CLK_TCK = os.sysconf("SC_CLK_TCK")
LOAD_IMAGE_REPO = "nodeprobe-test/busybox-load"


class DefaultAgent:
    """`nodeprobe agent --config FILE --node-name NODE --kubeconfig K`, default intervals.

    `kubeconfig=None` runs it `--standalone` (metrics only); `config` adds top-level sections
    (merged one level deep over the sockets), for the few settings a benchmark must change.
    """

    def __init__(self, sandbox: Sandbox, workdir: Path, *, kubeconfig: Path | None,
                 env: dict[str, str] | None = None,
                 config: dict[str, dict[str, Any]] | None = None, node: str = NODE) -> None:
        self.port = free_port()
        body: dict[str, dict[str, Any]] = {
            "docker": {"socket": str(sandbox.dockerd.socket)},
            "containerd": {"socket": str(sandbox.containerd.socket)},
            "metrics": {"address": "127.0.0.1", "port": self.port},
        }
        for key, section in (config or {}).items():
            body[key] = {**body.get(key, {}), **section}
        path = workdir / f"agent-{self.port}.yaml"
        path.write_text(yaml.safe_dump(body))
        self.log_path = workdir / f"agent-{self.port}.log"
        argv = [str(Path(sys.executable).with_name("nodeprobe")), "agent", "--config", str(path),
                "--node-name", node]
        argv += ["--standalone"] if kubeconfig is None else ["--kubeconfig", str(kubeconfig)]
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"} | (env or {})
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(self.healthy, timeout_s=30, what="the agent's /healthz")

    def get(self, path: str) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def cpu_s(self) -> float:
        """utime + stime of the agent process (all its threads), seconds."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status(self) -> dict[str, int]:
        """VmRSS, VmHWM (bytes), threads, fds."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()

        def kib(key: str) -> int:
            m = re.search(rf"{key}:\s+(\d+)", text)
            return int(m.group(1)) * 1024 if m else 0

        return {"rss": kib("VmRSS"), "hwm": kib("VmHWM"), "anon": kib("RssAnon"),
                "threads": len(os.listdir(f"/proc/{self.proc.pid}/task")),
                "fds": len(os.listdir(f"/proc/{self.proc.pid}/fd"))}

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample of metric `name` keyed by its sorted label pairs."""
        out: dict[tuple[tuple[str, str], ...], float] = {}
        for line in self.get("/metrics").splitlines():
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$", line)
            if m and m.group(1) == name:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")))
                out[labels] = float(m.group(4))
        return out

    def stop(self) -> None:
        terminate(self.proc)


def histogram_p95(before: dict[tuple[tuple[str, str], ...], float],
                  after: dict[tuple[tuple[str, str], ...], float]) -> dict[str, tuple[int, str]]:
    """Per "runtime/check": (calls, upper bound of the bucket holding the 95th percentile)."""
    per: dict[str, list[tuple[float, float]]] = {}
    for labels, value in after.items():
        d = dict(labels)
        key = f"{d['runtime']}/{d['check']}"
        le = float("inf") if d["le"] == "+Inf" else float(d["le"])
        per.setdefault(key, []).append((le, value - before.get(labels, 0.0)))
    result = {}
    for key, buckets in per.items():
        buckets.sort()
        total = buckets[-1][1]
        if total <= 0:
            continue
        bound = next(le for le, count in buckets if count >= 0.95 * total)
        result[key] = (int(total), "> 30 s" if bound == float("inf") else f"<= {bound * 1000:g} ms")
    return result


@dataclass
class Load:
    """Parallel `docker run --rm --network none busybox true` workers plus one image importer."""

    sandbox: Sandbox
    workers: int = 3
    runs: int = 0
    imports: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    run_latencies: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=f"unix://{self.sandbox.dockerd.socket}",
                                   version="auto", timeout=120)

    def _runner(self) -> None:
        client = self._client()
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    client.containers.run(BUSYBOX_IMAGE, ["true"], remove=True,
                                          network_mode="none")
                except Exception as e:
                    with self._lock:
                        self.errors[type(e).__name__] += 1
                    time.sleep(0.5)
                    continue
                with self._lock:
                    self.runs += 1
                    self.run_latencies.append(time.monotonic() - t0)
        finally:
            client.close()

    def _importer(self) -> None:
        client = self._client()
        tar = busybox_rootfs_tar()
        try:
            while not self._stop.is_set():
                try:
                    client.api.import_image_from_data(tar, repository=LOAD_IMAGE_REPO,
                                                      tag="latest")
                    if self.imports % 20 == 19:
                        client.images.prune(filters={"dangling": True})
                except Exception as e:
                    with self._lock:
                        self.errors[f"import {type(e).__name__}"] += 1
                    time.sleep(0.5)
                    continue
                with self._lock:
                    self.imports += 1
        finally:
            client.close()

    def start(self) -> None:
        targets = [self._runner] * self.workers + [self._importer]
        for target in targets:
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=150)
