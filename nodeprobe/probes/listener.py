"""Which process listens on a unix socket, read from /proc alone.

The socket's inode comes from <proc>/<pid>/net/unix (the listening entry whose path is the
socket), and the listener is the process holding `socket:[inode]` among its <proc>/<pid>/fd
links. Why this and not the daemon's command line: containerd names its socket in a config file
as often as with `--address`, dockerd in daemon.json or as fd:// (socket activation), so argv
often names nothing. Why not SO_PEERCRED alone: without hostPID the listener lives in a pid
namespace we cannot see and the kernel hands us pid 0. The inode works from any pid namespace,
as long as procRoot is the host's /proc and the daemon's fd links are readable to us (root).
Pure parsing over text plus small reads, so it is tested on real daemons and fake trees alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

LISTENING = 0x00010000
"""__SO_ACCEPTCON in the Flags column: the socket called listen()."""


def parse_net_unix(text: str) -> Iterator[tuple[int, str]]:
    """(inode, path) of every listening unix socket bound to a path in a /proc/net/unix text."""
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue  # unbound: no path column
        try:
            flags, inode = int(parts[3], 16), int(parts[6])
        except ValueError:
            continue
        if flags & LISTENING:
            yield inode, parts[7]


def names_socket(bound: str, socket_path: str) -> bool:
    """The path a daemon bound (in its own mount namespace) is `socket_path` as we see it,
    possibly under a mount prefix (it says /run/x.sock, we read /host/run/x.sock)."""
    return bound.startswith("/") and (bound == socket_path or socket_path.endswith(bound))


def listener_pid(proc_root: str, socket_path: str, candidates: Iterable[int]) -> int | None:
    """The candidate holding the listening socket bound at `socket_path`; None when none does
    or their fd links are closed to us."""
    for pid in candidates:
        base = os.path.join(proc_root, str(pid))
        try:
            with open(os.path.join(base, "net", "unix"), encoding="utf-8",
                      errors="replace") as f:
                inodes = {i for i, path in parse_net_unix(f.read())
                          if names_socket(path, socket_path)}
        except OSError:
            continue
        if inodes and _holds(os.path.join(base, "fd"), {f"socket:[{i}]" for i in inodes}):
            return pid
    return None


def _holds(fd_dir: str, targets: set[str]) -> bool:
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(os.path.join(fd_dir, fd)) in targets:
                return True
        except OSError:
            continue
    return False
