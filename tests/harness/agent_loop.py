"""The agent loop in-process against the sandbox runtimes, publishing into recording sinks.

Shared by the agent-loop tests and benchmarks/judge_bench.py: fast check timings (FAST) or the
shipped ones (SHIPPED), a config reading only the sandbox, and sinks standing where the
Kubernetes writers stand.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry

from nodeprobe.agent import Agent, Publishers
from nodeprobe.commands.common import build_probes, resolve
from nodeprobe.config import Config, load
from nodeprobe.model import Condition, ConditionType, Event, Status
from nodeprobe.publish.metrics import Metrics
from tests.harness.runtimes import Sandbox

FAST = {
    "checks.dockerPing.interval": "200ms", "checks.dockerPing.deadline": "1s",
    "checks.dockerVersion.interval": "200ms", "checks.dockerVersion.deadline": "1s",
    "checks.dockerInfo.interval": "500ms", "checks.dockerInfo.deadline": "2s",
    "checks.criVersion.interval": "200ms", "checks.criVersion.deadline": "1s",
    "checks.criStatus.interval": "200ms", "checks.criStatus.deadline": "1s",
    "checks.criListPodSandbox.interval": "200ms", "checks.criListPodSandbox.deadline": "1s",
    "checks.criListContainers.interval": "200ms", "checks.criListContainers.deadline": "1s",
    "checks.criImageFsInfo.interval": "500ms", "checks.criImageFsInfo.deadline": "2s",
    "checks.process.interval": "500ms",
}


class RecordingSinks:
    """Stands where the Kubernetes writers stand; keeps what the loop handed over."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latest: dict[ConditionType, Condition] = {}
        self.events: list[Event] = []

    def update(self, conditions: dict[ConditionType, Condition]) -> None:
        with self.lock:
            self.latest = dict(conditions)

    def sync(self) -> bool:
        return True

    def holds(self) -> bool:
        return True

    def record(self, events: Sequence[Event]) -> int:
        with self.lock:
            self.events.extend(events)
        return len(events)

    def flush(self) -> int:
        return 0

    def condition(self, kind: ConditionType) -> Condition | None:
        with self.lock:
            return self.latest.get(kind)


def config_for(sandbox: Sandbox, **extra: object) -> Config:
    """The sandbox's sockets, fast intervals, and an empty host root: the agent reads only what
    the sandbox made, never this machine's /var/lib/containerd or journal."""
    host = sandbox.base / "empty-host"
    host.mkdir(exist_ok=True)
    return load(None, overrides={
        "docker.socket": str(sandbox.dockerd.socket),
        "containerd.socket": str(sandbox.containerd.socket),
        "paths.hostRoot": str(host),
        "metrics.port": 0, **FAST, **extra,
    })


@contextmanager
def running_agent(
    config: Config, *, sinks: RecordingSinks | None = None
) -> Iterator[tuple[Agent, RecordingSinks, CollectorRegistry]]:
    sinks = sinks or RecordingSinks()
    registry = CollectorRegistry()
    probes = build_probes(config, resolve(config))
    agent = Agent(config, probes=probes, metrics=Metrics(registry),
                  publishers=Publishers(conditions=sinks, events=sinks))
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield agent, sinks, registry
    finally:
        stop.set()
        thread.join(10)
        for probe in probes:
            probe.close()
        assert not thread.is_alive(), "agent loop did not stop"


def wait_for(predicate: Callable[[], object], *, timeout_s: float, what: str) -> float:
    """Poll a real state; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


def _shipped() -> dict[str, float]:
    """The shipped value of every check key FAST overrides: read from the
    config tree, where defaults are written once."""
    checks = Config.defaults().checks
    out = {}
    for key in FAST:
        _, check, leaf = key.split(".")
        settings = getattr(checks, re.sub(r"(?<!^)(?=[A-Z])", "_", check).lower())
        out[key] = float(getattr(settings, leaf))
    return out


SHIPPED = _shipped()
"""The shipped docker/CRI timing, undoing FAST's 200 ms / 1 s ones."""


class TransitionSinks(RecordingSinks):
    """Also keeps every (status, reason) ContainerRuntimeUnavailable went through."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[float, Status, str]] = []

    def update(self, conditions: dict[ConditionType, Condition]) -> None:
        cond = conditions[ConditionType.UNAVAILABLE]
        with self.lock:
            if not self.history or self.history[-1][1:] != (cond.status, cond.reason):
                self.history.append((time.monotonic(), cond.status, cond.reason))
        super().update(conditions)
