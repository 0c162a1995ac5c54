"""Who listens on a unix socket: the listener's pid from SO_PEERCRED.

Linux records the credentials of the process that called listen() on the socket, and hands them
to any client that connects. The kernel completes the connection from the listen backlog, so this
works for a SIGSTOPped daemon too. The pid is translated into our pid namespace: 0 when the
listener lives in a namespace we cannot see. With systemd socket activation the listener is pid 1,
which is why callers verify the pid's `comm` before trusting it.
"""

from __future__ import annotations

import socket
import struct

_UCRED = struct.Struct("3i")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }


def peer_pid(socket_path: str, *, timeout_s: float) -> int | None:
    """The listener's pid, or None when the socket cannot be reached or the pid is not visible.

    `timeout_s` bounds connect(): on a unix socket it blocks when the listen backlog is full,
    which happens to a daemon that has been hung for long enough.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(socket_path)
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, _uid, _gid = _UCRED.unpack(raw)
    return pid if pid > 0 else None
