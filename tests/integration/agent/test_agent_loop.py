"""The agent loop against the real sandboxed runtimes, publishing into recording sinks.

Kubernetes is exercised separately (test_agent_kube.py); here the loop itself: scheduling under
deadlines, judgement, metrics and the hand-off to publishers, with real SIGSTOP/SIGKILL faults.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry, generate_latest

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

    def record(self, events: list[Event]) -> int:
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


def _status(sinks: RecordingSinks, kind: ConditionType, status: Status, reason: str | None = None):
    def check() -> bool:
        cond = sinks.condition(kind)
        return (cond is not None and cond.status is status
                and (reason is None or cond.reason == reason))
    return check


def test_sigstop_dockerd_raises_dockerd_hung_then_clears(runtimes):
    with running_agent(config_for(runtimes)) as (_, sinks, registry):
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="healthy start")
        with runtimes.dockerd.hung():
            took = wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.TRUE, "DockerdHung"),
                            timeout_s=10, what="DockerdHung")
            assert took < 5
            cond = sinks.condition(ConditionType.UNAVAILABLE)
            assert cond is not None and "dockerd" in cond.message
            scrape = generate_latest(registry).decode()
            assert ('nodeprobe_condition_status{condition="ContainerRuntimeUnavailable",'
                    'reason="DockerdHung"} 1.0') in scrape
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=10,
                 what="clear after SIGCONT")
        def raised_then_cleared() -> bool:
            reasons = [e.reason for e in sinks.events if e.reason != "ContainerRuntimeIsResponsive"
                       and not e.reason.endswith("Slow")]  # a loaded CI box may be slow too
            return (reasons[-2:] == ["DockerdHung", "ContainerRuntimeIsAvailable"]
                    and set(reasons) == {"DockerdHung", "ContainerRuntimeIsAvailable"})
        wait_for(raised_then_cleared, timeout_s=10, what="a raise Event, then a clear Event")


def test_sigkill_dockerd_is_down_and_clears_when_restarted(runtimes):
    with running_agent(config_for(runtimes)) as (_, sinks, _registry):
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="healthy start")
        runtimes.dockerd.crash()
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.TRUE, "DockerdDown"),
                 timeout_s=25, what="DockerdDown (after judge.restart.downGrace, 10s)")
        runtimes.heal()
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="clear after restart")


def test_sigstop_containerd_names_containerd_as_the_cause(runtimes):
    with running_agent(config_for(runtimes)) as (_, sinks, _registry):
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="healthy start")
        with runtimes.containerd.hung():
            wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.TRUE, "ContainerdHung"),
                     timeout_s=10, what="ContainerdHung")
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="clear after SIGCONT")


class AdoptedSinks(RecordingSinks):
    """The Node already states what the agent judges (a DaemonSet rollout's new pod adopted
    it): the writer has nothing to write, and says the Node's state holds."""

    def sync(self) -> bool:
        return False


def test_ready_without_a_write_when_the_node_already_states_the_first_round(runtimes):
    """Without it a rollout's new agent pod stayed unready until its heartbeat (up to 5 min),
    and every node of a DaemonSet rollout waited that long for the next."""
    with running_agent(config_for(runtimes), sinks=AdoptedSinks()) as (agent, _, _):
        wait_for(lambda: agent.metrics.health().round_done, timeout_s=15, what="a first round")
        wait_for(lambda: agent.metrics.health().node_status_written, timeout_s=5,
                 what="ready: the Node states the first round's judgement")
