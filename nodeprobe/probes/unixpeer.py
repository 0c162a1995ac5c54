"""Who listens on a unix socket: the listener's pid from SO_PEERCRED.

Linux records the credentials of the process that called listen() on the socket, and hands them
to any client that connects. The kernel completes the connection from the listen backlog, so this
works for a SIGSTOPped daemon too. The pid is translated into our pid namespace: 0 when the
listener lives in a namespace we cannot see. With systemd socket activation the listener is pid 1,
which is why callers verify the pid's `comm` before trusting it.
"""

from __future__ import annotations

import os
import socket
import stat
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


def not_a_socket(path: str, *, daemon: str) -> str | None:
    """A sentence when `path` exists but is not a socket; None when it is one, or is missing.

    The usual cause is kubelet: a hostPath volume whose path did not exist when the pod started
    (type unset or DirectoryOrCreate) is created as an empty directory, and the daemon that
    starts later cannot bind its socket there.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISSOCK(mode):
        return None
    if stat.S_ISDIR(mode):
        return (f"{path} is a directory, not a socket (kubelet creates one for a hostPath that "
                f"was missing when a pod started): remove it (rmdir), restart {daemon}, and "
                "give that hostPath `type: Socket`")
    kind = "a regular file" if stat.S_ISREG(mode) else "not a socket"
    return (f"{path} is {kind}, not a socket: {daemon} cannot listen there; remove it, restart "
            f"{daemon}, and check what wrote it (a hostPath of type File, a copy)")
