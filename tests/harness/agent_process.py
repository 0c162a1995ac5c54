"""Runs the real `nodeprobe agent` process against the sandbox runtimes (and a kubeconfig)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.harness.runtimes import Sandbox

NODE = "node-a"

FAST_CHECKS: dict[str, dict[str, str]] = {
    # Deadlines with room for a loaded 2-core CI box; /info is the slowest call (~10 ms idle).
    name: {"interval": interval, "deadline": "2s" if interval == "1s" else "1s", "slow": "900ms"}
    for name, interval in (
        ("dockerPing", "200ms"), ("dockerVersion", "200ms"), ("dockerInfo", "1s"),
        ("criVersion", "200ms"), ("criStatus", "200ms"), ("criListPodSandbox", "200ms"),
        ("criListContainers", "200ms"), ("criImageFsInfo", "1s"), ("process", "1s"),
    )
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Why = str | Callable[[], str]
"""What a wait is for. A callable is asked only when the wait times out, so a process's log in
it is the log as it was then, not when the wait began."""


def timed_out(timeout_s: float, what: Why) -> AssertionError:
    return AssertionError(f"timed out after {timeout_s:.0f}s waiting for "
                          f"{what() if callable(what) else what}")


def wait_for(predicate: Callable[[], Any], *, timeout_s: float, what: Why) -> Any:
    """Poll a real state until it is truthy; returns it. Fails the test with `what` on timeout."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise timed_out(timeout_s, what)


def gauge(port: int, name: str) -> float | None:
    """The unlabelled sample `name` on 127.0.0.1:`port`/metrics; None when absent or no answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.startswith(f"{name} ")]
    return values[0] if values else None


def terminate(proc: subprocess.Popen[bytes], *, timeout_s: float = 15) -> None:
    """SIGTERM (the agent's clean stop), then SIGKILL if it has not exited in `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class AgentProcess:
    """`nodeprobe agent` as a DaemonSet would run it, with a config file and a kubeconfig."""

    def __init__(self, sandbox: Sandbox, workdir: Path, *, kubeconfig: Path | None,
                 config: Mapping[str, Any] | None = None, node: str = NODE,
                 fast: bool = True) -> None:
        self.port = free_port()
        body: dict[str, Any] = {
            "docker": {"socket": str(sandbox.dockerd.socket)},
            "containerd": {"socket": str(sandbox.containerd.socket)},
            "checks": FAST_CHECKS if fast else {},
            "metrics": {"address": "127.0.0.1", "port": self.port},
        }
        for key, value in (config or {}).items():
            body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
        self.config_path = workdir / "agent.yaml"
        self.config_path.write_text(yaml.safe_dump(body))
        self.log_path = workdir / f"agent-{free_port()}.log"
        argv = [str(Path(sys.executable).with_name("nodeprobe")), "agent",
                "--config", str(self.config_path), "--node-name", node]
        if kubeconfig is not None:
            argv += ["--kubeconfig", str(kubeconfig)]
        else:
            argv += ["--standalone"]
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(self.healthy, timeout_s=20, what="the agent's /healthz")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")
        return self.get("/healthz")[0] == 200

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        _, body = self.get("/metrics")
        total = 0.0
        for line in body.splitlines():
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
        return total

    def probe_calls(self) -> float:
        return self.metric("nodeprobe_probe_outcomes_total")

    def condition_flag(self, condition: str, reason: str) -> bool:
        return self.metric("nodeprobe_condition_status", condition=condition, reason=reason) == 1

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def usage(self) -> dict[str, int]:
        """Threads, open fds and RSS of the agent process, from /proc."""
        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024  # type: ignore[union-attr]
        return {"threads": len(os.listdir(f"/proc/{pid}/task")),
                "fds": len(os.listdir(f"/proc/{pid}/fd")), "rss": rss}

    def stop(self) -> None:
        terminate(self.proc)
