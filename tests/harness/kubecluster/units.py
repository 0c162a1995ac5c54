"""The real node's service manager, as far as `systemctl restart <unit>` needs one.

On a systemd node the repair executor runs `nsenter -t 1 -m -u -i -n -p -- systemctl restart
containerd`: systemctl, in the host's namespaces, asks systemd (PID 1) over its private socket to
restart the unit; systemd stops the unit's main process (SIGTERM + SIGCONT, SIGKILL after
TimeoutStopSec; containerd.service's KillMode=process leaves the shims and their containers
running), starts it again and answers once it runs. This VM has no systemd, and the node's "PID 1"
is the holder of its mount namespace, so in the node:

- the executor runs the same command with `-t <holder>` (`node_command`); it enters the node's
  mount namespace (the other namespaces are the host's, as the holder's are);
- `systemctl` there is `standin_script`: a tmpfs over the node's /usr/local/sbin holds it, and
  it is bind-mounted over the host's /usr/bin/systemctl in the node's namespace, so the host's
  own systemctl is never reached from the node (on this VM it would talk to no systemd at all);
- it asks `UnitManager`, a thread of the process that owns the node's daemons (the harness's
  `Daemon`), over a unix socket; the manager SIGKILLs the unit's main process (a hang that
  SIGCONT would undo is not a hang: a deadlocked runtime ignores SIGTERM until TimeoutStopSec)
  and starts it again with the same argv and config, and answers once its socket serves;
- anything but `restart <known unit>` is refused with exit 1, `reboot` first of all.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.harness.runtimes import Daemon

log = logging.getLogger(__name__)

NSENTER_NODE = ("-m", "-u", "-i", "-n", "-p")
"""The namespaces of the default restart command (`nsenter -t 1 -m -u -i -n -p`)."""
SBIN = "/usr/local/sbin"
HOST_SYSTEMCTL = "/usr/bin/systemctl"
ANSWER_WAIT_S = 110.0
"""How long the stand-in waits for the manager: below the executor's command timeout (120 s)."""


@dataclass(frozen=True, slots=True)
class Restart:
    unit: str
    old_pid: int | None
    new_pid: int
    at: float
    """time.time() when the new process served."""
    took_s: float
    caller_cgroup: str
    """/proc/<pid>/cgroup of the stand-in that asked (SO_PEERCRED): whose container ran it."""


def node_command(holder_pid: int, *argv: str) -> list[str]:
    """`nsenter -t 1 -m -u -i -n -p -- argv` with the node's PID 1: its namespace holder."""
    return ["nsenter", "-t", str(holder_pid), *NSENTER_NODE, "--", *argv]


def standin_script(sock: Path) -> str:
    """`systemctl` for the node: one request line to the manager, its answer, its exit code."""
    return "\n".join([
        f"#!{sys.executable} -I",
        '"""systemctl stand-in of the nodeprobe test node (tests/harness/kubecluster/units.py)."""',
        "import socket, sys",
        "with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:",
        f"    s.settimeout({ANSWER_WAIT_S})",
        f"    s.connect({str(sock)!r})",
        "    s.sendall((' '.join(sys.argv[1:]) + '\\n').encode())",
        "    answer = s.makefile().readline().strip()",
        "status, _, message = answer.partition(' ')",
        "print(message or 'no answer', file=sys.stdout if status == 'ok' else sys.stderr)",
        "sys.exit(0 if status == 'ok' else 1)",
        "",
    ])


def mount_script(standin: Path) -> list[str]:
    """Shell lines, run in the node's mount namespace, that make `standin` its `systemctl`."""
    return [f"mount -t tmpfs -o mode=755 np-sbin {SBIN}", f"touch {SBIN}/systemctl",
            f"mount --bind {standin} {SBIN}/systemctl",
            f"if [ -e {HOST_SYSTEMCTL} ]; then mount --bind {standin} {HOST_SYSTEMCTL}; fi"]


class UnitManager:
    """Restarts the node's units on request from the stand-in; remembers every restart."""

    def __init__(self, sock: Path, units: Mapping[str, Callable[[], Daemon | None]]) -> None:
        self.sock_path = sock
        self.units = units
        self.restarts: list[Restart] = []
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> UnitManager:
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o600)
        self._sock.listen(4)
        self._thread = threading.Thread(target=self._serve, name="node-units", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _serve(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with contextlib.closing(conn):
                conn.settimeout(5)
                try:
                    request = conn.makefile().readline().split()
                    answer = self.handle(request, caller=_cgroup_of(conn))
                    conn.settimeout(5)
                    conn.sendall(f"{answer}\n".encode())
                except OSError as e:
                    log.warning("systemctl stand-in: %s", e)

    def handle(self, argv: list[str], *, caller: str = "") -> str:
        """`ok <message>` or `error <why>` for one `systemctl` argv."""
        if len(argv) != 2 or argv[0] != "restart":
            return f"error refused: the test node runs only `systemctl restart <unit>`, not {argv}"
        unit = argv[1].removesuffix(".service")
        daemon = self.units[unit]() if unit in self.units else None
        if daemon is None:
            return f"error Unit {unit}.service not found."
        with self._lock:
            try:
                done = self._restart(unit, daemon, caller)
            except Exception as e:  # the stand-in's exit code carries it to the executor
                return f"error restart of {unit} failed: {e}"
        return f"ok restarted {unit}: pid {done.old_pid} -> {done.new_pid} in {done.took_s:.1f}s"

    def _restart(self, unit: str, daemon: Daemon, caller: str) -> Restart:
        started = time.monotonic()
        old = daemon.proc.pid if daemon.proc is not None else None
        daemon.crash()  # SIGKILL: what systemd does once a hung main process outlives its stop
        daemon.start()  # the same argv and config; returns once its socket serves
        done = Restart(unit, old, daemon.pid, time.time(), time.monotonic() - started, caller)
        self.restarts.append(done)
        log.info("node unit %s restarted: pid %s -> %s", unit, old, done.new_pid)
        return done


def _cgroup_of(conn: socket.socket) -> str:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", creds)[0]
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""
