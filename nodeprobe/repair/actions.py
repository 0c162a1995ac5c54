"""Node-local repairs the agent carries out for a NodeRemediation: forensics, restart, reboot.

Every action takes `dry_run` and then only logs what it would have done. Commands are argv lists
(never shell strings); `{unit}` in an argument is replaced by the runtime's systemd unit.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from nodeprobe.model import Runtime

log = logging.getLogger(__name__)

MTIME_SLACK_S = 0.05
"""File mtimes are ns-precise here; a dump older than the signal must not count."""
_HOST = ("nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--")


@dataclass(frozen=True, slots=True)
class RepairSettings:
    restart_command: tuple[str, ...] = (*_HOST, "systemctl", "restart", "{unit}")
    """Run in the host's namespaces (the agent runs with hostPID), as NPD's health-checker does."""
    restart_commands: Mapping[Runtime, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    """Per-runtime argv that replaces `restart_command` (the agent config's restart_command)."""
    reboot_command: tuple[str, ...] = (*_HOST, "systemctl", "reboot")
    units: Mapping[Runtime, str] = field(default_factory=lambda: MappingProxyType(
        {Runtime.DOCKERD: "docker", Runtime.CONTAINERD: "containerd"}))
    """systemd unit per runtime (Debian/Ubuntu names)."""
    command_timeout_s: float = 120.0
    """systemctl restart waits for the unit's stop timeout (docker: up to 60 s + start)."""
    dockerd_pidfile: Path = Path("/var/run/docker.pid")
    dockerd_exec_root: Path = Path("/var/run/docker")
    """dockerd writes goroutine-stacks-<time>.log here on SIGUSR1 (its --exec-root)."""
    dump_wait_s: float = 10.0
    """A deadlocked dockerd still dumps within milliseconds; a stopped one never does."""
    dump_dir: Path | None = None
    """Copy dumps here (exec-root is a tmpfs a reboot empties); None keeps them in place."""
    dockerd_socket: Path = Path("/var/run/docker.sock")
    containerd_socket: Path = Path("/run/containerd/containerd.sock")
    answer_wait_s: float = 60.0
    """After a restart, how long to wait for the runtime to answer before reporting failure."""
    boot_id_path: Path = Path("/proc/sys/kernel/random/boot_id")
    poll_interval_s: float = 5.0
    """How often the executor looks for NodeRemediations addressed to its node."""


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str
    dump_path: str | None = None


def _poll(predicate: Callable[[], object], *, timeout_s: float, every_s: float = 0.1) -> object:
    """Poll a real state until it is truthy or the deadline passes; return the last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every_s)


def _dumps_since(exec_root: Path, since: float) -> list[Path]:
    try:
        found = [p for p in exec_root.glob("goroutine-stacks-*.log")
                 if p.stat().st_mtime >= since - MTIME_SLACK_S]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime)


def dump_goroutines(settings: RepairSettings, *, dry_run: bool) -> ActionResult:
    """SIGUSR1 makes dockerd write its goroutine stacks even when its API is hung."""
    try:
        pid = int(settings.dockerd_pidfile.read_text().strip())
    except (OSError, ValueError) as e:
        return ActionResult(False, f"no goroutine dump: cannot read dockerd's pid from "
                                   f"{settings.dockerd_pidfile}: {e}")
    if dry_run:
        log.info("dry run: would send SIGUSR1 to dockerd (pid %d)", pid)
        return ActionResult(True, f"dry run: would send SIGUSR1 to dockerd (pid {pid})")
    sent = time.time()
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as e:
        return ActionResult(False, f"no goroutine dump: SIGUSR1 to dockerd pid {pid} failed: {e}")
    found = _poll(lambda: _dumps_since(settings.dockerd_exec_root, sent),
                  timeout_s=settings.dump_wait_s)
    if isinstance(found, list) and found:
        path = keep(settings, found[-1])
        return ActionResult(True, f"goroutine stacks written to {path}", str(path))
    return ActionResult(False, f"sent SIGUSR1 to dockerd pid {pid}; no goroutine dump in "
                               f"{settings.dockerd_exec_root} within {settings.dump_wait_s:.0f}s")


def late_dump(settings: RepairSettings, since: float) -> str | None:
    """A dump a stopped dockerd wrote only once it was resumed (found after the restart)."""
    found = _dumps_since(settings.dockerd_exec_root, since)
    return str(keep(settings, found[-1])) if found else None


def keep(settings: RepairSettings, dump: Path) -> Path:
    """Copy a dump to `dump_dir` when set; on failure the original path is still worth having."""
    if settings.dump_dir is None:
        return dump
    try:
        settings.dump_dir.mkdir(parents=True, exist_ok=True)
        target = settings.dump_dir / dump.name
        shutil.copyfile(dump, target)
    except OSError as e:
        log.warning("could not copy %s to %s: %s", dump, settings.dump_dir, e)
        return dump
    return target


def _run(argv: list[str], *, timeout_s: float) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        return False, f"{argv[0]} not found: {e}"
    except subprocess.TimeoutExpired:
        return False, f"{' '.join(argv)} did not finish within {timeout_s:.0f}s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return False, f"{' '.join(argv)} exited {proc.returncode}: {' | '.join(tail)}"
    return True, f"{' '.join(argv)} succeeded"


def answers(runtime: Runtime, settings: RepairSettings) -> bool:
    """The runtime's socket accepts and (dockerd) answers /_ping: enough to call it back up."""
    path = settings.dockerd_socket if runtime is Runtime.DOCKERD else settings.containerd_socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(path))
            if runtime is not Runtime.DOCKERD:
                return True
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(64)
    except OSError:
        return False


def restart_runtime(runtime: Runtime, settings: RepairSettings, *, dry_run: bool) -> ActionResult:
    unit = settings.units.get(runtime, runtime.value)
    template = settings.restart_commands.get(runtime, settings.restart_command)
    argv = [a.replace("{unit}", unit) for a in template]
    if dry_run:
        log.info("dry run: would run %s", argv)
        return ActionResult(False, f"dry run: would run {' '.join(argv)}; nothing was done")
    start = time.monotonic()
    ok, message = _run(argv, timeout_s=settings.command_timeout_s)
    if not ok:
        return ActionResult(False, message)
    if not _poll(lambda: answers(runtime, settings), timeout_s=settings.answer_wait_s,
                 every_s=0.2):
        return ActionResult(False, f"{message}, but {runtime.value} did not answer within "
                                   f"{settings.answer_wait_s:.0f}s")
    return ActionResult(True, f"restarted {runtime.value}; it answers again after "
                              f"{time.monotonic() - start:.1f}s")


def reboot(settings: RepairSettings, *, dry_run: bool) -> ActionResult:
    argv = list(settings.reboot_command)
    if dry_run:
        log.info("dry run: would run %s", argv)
        return ActionResult(False, f"dry run: would run {' '.join(argv)}; nothing was done")
    ok, message = _run(argv, timeout_s=settings.command_timeout_s)
    return ActionResult(ok, message)


def boot_id(settings: RepairSettings) -> str:
    try:
        return settings.boot_id_path.read_text().strip()
    except OSError:
        return ""
