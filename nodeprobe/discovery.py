"""Where runtime sockets usually live, and picking the one that is there.

The candidate lists are data; `find_socket` takes the stat function as a parameter so it is tested
without touching the host's own sockets.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence

DOCKER_SOCKETS: tuple[str, ...] = ("/var/run/docker.sock", "/run/docker.sock")
"""dockerd's default socket; /var/run is a link to /run on every current distribution."""

CONTAINERD_SOCKETS: tuple[str, ...] = (
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/docker/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
)
"""Standalone containerd, docker's own managed containerd (Docker < 23), k3s, microk8s."""

AUTO = "auto"


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def find_socket(
    candidates: Sequence[str], *, root: str = "/", exists: Callable[[str], bool] = is_socket
) -> str | None:
    """The first candidate that is a socket, looked up under `root` (e.g. a mounted host /)."""
    for candidate in candidates:
        path = os.path.join(root, candidate.lstrip("/"))
        if exists(path):
            return path
    return None
