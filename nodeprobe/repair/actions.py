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

from nodeprobe.config import Config
from nodeprobe.model import Runtime
from nodeprobe.probes.unixpeer import peer_pid

log = logging.getLogger(__name__)

MTIME_SLACK_S = 0.05
"""File mtimes are ns-precise here; a dump older than the signal must not count."""


@dataclass(frozen=True, slots=True)
class ActionSettings:
    """What the actions need: the agent config's `repair` section made concrete (`from_config`),
    plus timings the config does not expose. Config-backed fields have no default here, so each
    default is written once, in the config tree."""

    restart_commands: Mapping[Runtime, tuple[str, ...]]
    """argv per runtime (`repair.restartCommand`); `{unit}` in an argument becomes the unit."""
    reboot_command: tuple[str, ...]
    dockerd_pidfile: Path
    dockerd_exec_root: Path
    """dockerd writes goroutine-stacks-<time>.log here on SIGUSR1 (its --exec-root)."""
    dump_dir: Path | None
    """Copy dumps here (exec-root is a tmpfs a reboot empties); None keeps them in place."""
    dockerd_socket: Path
    containerd_socket: Path
    units: Mapping[Runtime, str] = field(default_factory=lambda: MappingProxyType(
        {Runtime.DOCKERD: "docker", Runtime.CONTAINERD: "containerd"}))
    """systemd unit per runtime (Debian/Ubuntu names), for `{unit}`."""
    command_timeout_s: float = 120.0
    """systemctl restart waits for the unit's stop timeout (docker: up to 60 s + start)."""
    dump_wait_s: float = 10.0
    """A deadlocked dockerd still dumps within milliseconds; a stopped one never does."""
    answer_wait_s: float = 60.0
    """After a restart, how long to wait for the runtime to answer before reporting failure."""
    boot_id_path: Path = Path("/proc/sys/kernel/random/boot_id")
    proc_root: Path = Path("/proc")
    """Where dockerd's `comm` is read (the host's /proc with hostPID)."""
    poll_interval_s: float = 5.0
    """How often the executor looks for NodeRemediations addressed to its node."""

    @classmethod
    def from_config(cls, config: Config) -> ActionSettings:
        """From the agent's config tree: `repair` and the runtimes' sockets, `auto` resolved
        under `paths.hostRoot` as the probes resolve it (in the chart's pod the host's
        /run/containerd is /host/run/containerd: looked up at /run, a restarted runtime was
        never seen answering and every restart was reported failed)."""
        from nodeprobe.discovery import AUTO, CONTAINERD_SOCKETS, DOCKER_SOCKETS, find_socket

        repair = config.repair
        root = config.paths.host_root

        def sock(value: str, candidates: tuple[str, ...]) -> Path:
            if value != AUTO:
                return Path(value)
            found = find_socket(candidates, root=root)
            return Path(found or os.path.join(root, candidates[0].lstrip("/")))

        return cls(
            restart_commands=MappingProxyType({
                Runtime.DOCKERD: tuple(repair.restart_command.docker),
                Runtime.CONTAINERD: tuple(repair.restart_command.containerd)}),
            reboot_command=tuple(repair.reboot_command),
            dump_dir=Path(repair.dump_dir) if repair.dump_dir else None,
            dockerd_pidfile=Path(repair.dockerd_pidfile),
            dockerd_exec_root=Path(repair.dockerd_exec_root),
            dockerd_socket=sock(config.docker.socket, DOCKER_SOCKETS),
            containerd_socket=sock(config.containerd.socket, CONTAINERD_SOCKETS),
            proc_root=Path(config.paths.proc_root),
        )


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


def verified_dockerd(settings: ActionSettings) -> tuple[int | None, str]:
    """dockerd's pid, only when three witnesses agree: the process listening on the docker
    socket (SO_PEERCRED), its `comm` in /proc, and the pidfile. A pidfile alone is not enough:
    a crashed dockerd leaves it behind and its pid may belong to anything by now."""
    socket_path = str(settings.dockerd_socket)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(socket_path)
    except OSError as e:
        return None, f"dockerd is DOWN ({socket_path} refuses: {e})"
    listener = peer_pid(socket_path, timeout_s=2.0)
    if listener is None:
        return None, f"the listener on {socket_path} is not visible in this PID namespace"
    try:
        comm = (settings.proc_root / str(listener) / "comm").read_text().strip()
    except OSError as e:
        return None, f"cannot read the comm of pid {listener}: {e}"
    if comm != "dockerd":
        return None, f"pid {listener} listens on {socket_path} but is {comm!r}, not dockerd"
    try:
        named = int(settings.dockerd_pidfile.read_text().strip())
    except (OSError, ValueError) as e:
        return None, f"cannot read dockerd's pid from {settings.dockerd_pidfile}: {e}"
    if named != listener:
        return None, (f"{settings.dockerd_pidfile} names pid {named}, but dockerd pid {listener} "
                      f"listens on {socket_path}: a stale pidfile")
    return listener, ""


def _signal_verified(settings: ActionSettings) -> tuple[int | None, str]:
    """SIGUSR1 through a pidfd, verified again after opening it: if the pid was reused between
    the first check and the pidfd, the second check fails; after it, the pidfd pins the process,
    so a reuse can only make the send fail (ESRCH), never reach another process."""
    pid, why = verified_dockerd(settings)
    if pid is None:
        return None, why
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:
        return None, f"dockerd pid {pid} is gone: {e}"
    try:
        again, why = verified_dockerd(settings)
        if again != pid:
            return None, why or f"dockerd pid {pid} changed while it was verified"
        signal.pidfd_send_signal(pidfd, signal.SIGUSR1)
    except OSError as e:
        return None, f"SIGUSR1 to dockerd pid {pid} failed: {e}"
    finally:
        os.close(pidfd)
    return pid, ""


def dump_goroutines(settings: ActionSettings, *, dry_run: bool) -> ActionResult:
    """SIGUSR1 makes dockerd write its goroutine stacks even when its API is hung; sent only to
    a verified dockerd (`verified_dockerd`), and skipped while dockerd is DOWN."""
    if dry_run:
        pid, why = verified_dockerd(settings)
        if pid is None:
            return ActionResult(False, f"dry run: no goroutine dump: {why}")
        log.info("dry run: would send SIGUSR1 to dockerd (pid %d)", pid)
        return ActionResult(True, f"dry run: would send SIGUSR1 to dockerd (pid {pid})")
    sent = time.time()
    pid, why = _signal_verified(settings)
    if pid is None:
        log.warning("no goroutine dump: %s", why)
        return ActionResult(False, f"no goroutine dump: {why}")
    found = _poll(lambda: _dumps_since(settings.dockerd_exec_root, sent),
                  timeout_s=settings.dump_wait_s)
    if isinstance(found, list) and found:
        path = keep(settings, found[-1])
        return ActionResult(True, f"goroutine stacks written to {path}", str(path))
    return ActionResult(False, f"sent SIGUSR1 to dockerd pid {pid}; no goroutine dump in "
                               f"{settings.dockerd_exec_root} within {settings.dump_wait_s:.0f}s")


def late_dump(settings: ActionSettings, since: float) -> str | None:
    """A dump a stopped dockerd wrote only once it was resumed (found after the restart)."""
    found = _dumps_since(settings.dockerd_exec_root, since)
    return str(keep(settings, found[-1])) if found else None


def keep(settings: ActionSettings, dump: Path) -> Path:
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


def answers(runtime: Runtime, settings: ActionSettings) -> bool:
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


def restart_runtime(runtime: Runtime, settings: ActionSettings, *, dry_run: bool) -> ActionResult:
    unit = settings.units.get(runtime, runtime.value)
    template = settings.restart_commands[runtime]
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


def reboot(settings: ActionSettings, *, dry_run: bool) -> ActionResult:
    argv = list(settings.reboot_command)
    if dry_run:
        log.info("dry run: would run %s", argv)
        return ActionResult(False, f"dry run: would run {' '.join(argv)}; nothing was done")
    ok, message = _run(argv, timeout_s=settings.command_timeout_s)
    return ActionResult(ok, message)


def boot_id(settings: ActionSettings) -> str:
    try:
        return settings.boot_id_path.read_text().strip()
    except OSError:
        return ""
