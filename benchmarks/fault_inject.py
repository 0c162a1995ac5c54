"""Injections for benchmarks/fault_matrix.py: one real fault at a random phase, timed to the raise.

Every injection runs a fresh `nodeprobe agent --standalone` (benchmarks/agent_load.py's
DefaultAgent: shipped intervals unless a row says otherwise) against a private sandbox, waits for
its first healthy round, waits a random 0..interval (the interval of the check that sees the
fault), injects, and polls /metrics every 0.1 s until the reason is flagged. A fresh agent each
time, because a raised condition is held (a restart loop for 10 quiet minutes).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.agent_load import DefaultAgent
from nodeprobe.model import Reason
from tests.harness.agent_process import wait_for
from tests.harness.delay_proxy import DelayProxy
from tests.harness.journal import BENIGN, CORRUPT, write_journal
from tests.harness.loopfs import fill_to, loop_mount
from tests.harness.runtimes import BUSYBOX_IMAGE, Sandbox, slow_runc

POLL_S = 0.1


@dataclass
class Measured:
    """Seconds from injection to the raise, per injection; misses; free-form counts."""

    times: list[float] = field(default_factory=list)
    missed: int = 0
    counts: dict[str, Any] = field(default_factory=dict)


class Watch:
    """Polls the agent's /metrics every 0.1 s in a thread; remembers when each reason first
    showed as flagged (nodeprobe_condition_status 1) and every change of the flagged set."""

    def __init__(self, agent: DefaultAgent) -> None:
        self.agent = agent
        self.first: dict[str, float] = {}
        self.changes: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def flagged(self) -> frozenset[str]:
        return frozenset(dict(labels)["reason"] for labels, v in
                         self.agent.samples("nodeprobe_condition_status").items() if v == 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.flagged()
            at = time.monotonic()
            if not self.changes or self.changes[-1][1] != now:
                self.changes.append((at, now))
            for reason in now:
                self.first.setdefault(reason, at)
            self._stop.wait(POLL_S)

    def until(self, reason: str, timeout_s: float) -> float | None:
        """Monotonic time the reason was first seen, waiting up to `timeout_s`."""
        end = time.monotonic() + timeout_s
        while reason not in self.first and time.monotonic() < end:
            time.sleep(POLL_S)
        return self.first.get(reason)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextlib.contextmanager
def healthy_agent(sandbox: Sandbox, base: Path, config: dict[str, dict[str, Any]] | None = None
                  ) -> Iterator[Watch]:
    """A fresh standalone agent, yielded once its first round is done and nothing is flagged."""
    agent = DefaultAgent(sandbox, base, kubeconfig=None, config=config)
    watch = Watch(agent)
    try:
        wait_for(lambda: "first round of checks done" in agent.log_path.read_text(errors="replace")
                 and not watch.flagged(), timeout_s=120, what="the agent's first healthy round")
        yield watch
    finally:
        watch.stop()
        agent.stop()


def _phase(interval_s: float) -> None:
    time.sleep(random.uniform(0.0, interval_s))


def _record(out: Measured, watch: Watch, reason: str, start: float, timeout_s: float) -> None:
    seen = watch.until(reason, timeout_s)
    if seen is None:
        out.missed += 1
        print(f"  missed {reason}; flagged: {watch.changes[-1:]}", flush=True)
    else:
        out.times.append(seen - start)
        print(f"  {reason} after {seen - start:.1f} s", flush=True)


# ---- the faults ------------------------------------------------------------------------------


def restart_loop(base: Path, n: int, *, daemon: str, cycle_s: float = 30.0) -> Measured:
    """SIGKILL + restart every `cycle_s` until the loop is raised; from the first kill."""
    reason = Reason.DOCKERD_RESTART_LOOP if daemon == "dockerd" else Reason.CONTAINERD_RESTART_LOOP
    out = Measured(counts={"kills": []})
    with Sandbox(base) as sandbox:
        target = sandbox.dockerd if daemon == "dockerd" else sandbox.containerd
        for _ in range(n):
            with healthy_agent(sandbox, base) as watch:
                _phase(15.0)  # checks.process.interval: pid and start time
                start = time.monotonic()
                kills = 0
                while kills < 8 and reason not in watch.first:
                    target.crash()
                    target.start()
                    kills += 1
                    watch.until(reason, max(0.0, start + kills * cycle_s - time.monotonic()))
                out.counts["kills"].append(kills)
                _record(out, watch, reason, start, 0.0)
            sandbox.heal()
    return out


def _proxy_agent_config(proxy: Path, *, ping_only: bool) -> dict[str, dict[str, Any]]:
    checks: dict[str, Any] = {"process": {"enabled": False}}  # the proxy is not dockerd
    if ping_only:  # /_ping alone through the proxy, so its calls strictly alternate
        checks |= {"dockerVersion": {"enabled": False}, "dockerInfo": {"enabled": False}}
    return {"docker": {"socket": str(proxy)}, "checks": checks}


def intermittent(base: Path, n: int) -> Measured:
    """A proxy starts holding every second /_ping reply (600 s): time to DockerdHung."""
    out = Measured()
    with Sandbox(base) as sandbox, DelayProxy(base / "flaky.sock", sandbox.dockerd.socket,
                                              delay_s=0.0, every=2) as proxy:
        for _ in range(n):
            with healthy_agent(sandbox, base,
                               _proxy_agent_config(proxy.listen, ping_only=True)) as watch:
                _phase(2.0)  # checks.dockerPing.interval
                start = time.monotonic()
                proxy.delay_s = 600.0
                _record(out, watch, Reason.DOCKERD_HUNG, start, 120)
                proxy.delay_s = 0.0
    return out


def slow_daemon(base: Path, n: int, *, delay_s: float = 8.0, watch_s: float = 60.0) -> Measured:
    """Every dockerd reply held `delay_s` from the injection on: time to DockerdAPISlow; how
    long it looked hung first; Unavailable raises in the `watch_s` after the Slow raise."""
    out = Measured(counts={"hung_first_s": [], "hung_after_slow": 0})
    with Sandbox(base) as sandbox, DelayProxy(base / "slow.sock", sandbox.dockerd.socket,
                                              delay_s=0.0) as proxy:
        for _ in range(n):
            with healthy_agent(sandbox, base,
                               _proxy_agent_config(proxy.listen, ping_only=False)) as watch:
                _phase(2.0)
                start = time.monotonic()
                proxy.delay_s = delay_s
                _record(out, watch, Reason.DOCKERD_API_SLOW, start, 180)
                slow_at = watch.first.get(Reason.DOCKERD_API_SLOW)
                if slow_at is not None:
                    time.sleep(watch_s)
                    hung = [(t, r) for t, r in watch.changes if Reason.DOCKERD_HUNG in r]
                    if hung:
                        ends = [t for t, r in watch.changes
                                if t > hung[0][0] and Reason.DOCKERD_HUNG not in r]
                        out.counts["hung_first_s"].append(
                            (ends[0] if ends else time.monotonic()) - hung[0][0])
                    out.counts["hung_after_slow"] += sum(
                        1 for (_, a), (t, b) in zip(watch.changes, watch.changes[1:], strict=False)
                        if t > slow_at and Reason.DOCKERD_HUNG in b - a)
                proxy.delay_s = 0.0
    return out


def canary(base: Path, n: int, *, interval_s: float = 20.0) -> Measured:
    """The runc under dockerd starts sleeping 15 s before `runc start`: time to
    ContainerStartSlow, with the Docker canary every `interval_s` (shipped: 300 s)."""
    out = Measured()
    runc = slow_runc(base / "runc", delay_s=0.0)
    config = {"checks": {"canary": {"enabled": True, "image": BUSYBOX_IMAGE,
                                    "interval": f"{interval_s:g}s"}},
              "containerd": {"enabled": False}}  # as test_canary.py: the Docker canary alone
    with Sandbox(base, runc=runc) as sandbox:
        sandbox.import_busybox()
        for _ in range(n):
            with healthy_agent(sandbox, base, config) as watch:
                _phase(interval_s)
                start = time.monotonic()
                os.replace(slow_runc(base / "runc.new", delay_s=15.0), runc)
                _record(out, watch, Reason.CONTAINER_START_SLOW, start, 400)
            os.replace(slow_runc(base / "runc.new", delay_s=0.0), runc)
    return out


def disk(base: Path, n: int) -> Measured:
    """The dockerd data-root's filesystem filled to 95 %: time to DockerRootDiskLow."""
    out = Measured()
    with loop_mount("npfm-disk-") as mount, Sandbox(mount) as sandbox:
        config = {"paths": {"hostRoot": "/"},
                  "disk": {"dockerRoot": str(mount / "docker" / "root")}}
        for _ in range(n):
            with healthy_agent(sandbox, base, config) as watch:
                _phase(60.0)  # checks.disk.interval
                start = time.monotonic()
                fill_to(mount, 0.95)
                _record(out, watch, Reason.DOCKER_ROOT_DISK_LOW, start, 200)
            (mount / "filler").unlink()
    return out


def journal(base: Path, n: int, *, gap_s: float = 1.0) -> Measured:
    """10 overlay2 corruption lines of docker.service, one journal file each `gap_s` apart:
    time from the 10th written to RuntimeStorageCorrupt."""
    out = Measured()
    with Sandbox(base) as sandbox:
        for i in range(n):
            directory = base / f"journal-{i}"
            write_journal(directory, [(time.time() - 30, "docker.service", BENIGN)])
            config = {"paths": {"hostRoot": "/"}, "runtimeLog": {"journalDirs": [str(directory)]}}
            with healthy_agent(sandbox, base, config) as watch:
                _phase(60.0)  # checks.runtimeLog.interval
                for _ in range(10):
                    write_journal(directory, [(time.time(), "docker.service", CORRUPT)])
                    start = time.monotonic()
                    time.sleep(gap_s)
                _record(out, watch, Reason.RUNTIME_STORAGE_CORRUPT, start, 200)
    return out


def containerd_down(base: Path, n: int) -> Measured:
    """containerd SIGKILLed and left down: time to ContainerdDown."""
    out = Measured()
    with Sandbox(base) as sandbox:
        for _ in range(n):
            with healthy_agent(sandbox, base) as watch:
                _phase(2.0)  # checks.criListPodSandbox.interval
                start = time.monotonic()
                sandbox.containerd.crash()
                _record(out, watch, Reason.CONTAINERD_DOWN, start, 120)
            sandbox.heal()
    return out


FAULTS: dict[str, Callable[[Path, int], Measured]] = {
    "containerd-loop": lambda b, n: restart_loop(b, n, daemon="containerd"),
    "dockerd-loop": lambda b, n: restart_loop(b, n, daemon="dockerd"),
    "intermittent": intermittent,
    "slow": slow_daemon,
    "canary": canary,
    "disk": disk,
    "journal": journal,
    "containerd-down": containerd_down,
}
