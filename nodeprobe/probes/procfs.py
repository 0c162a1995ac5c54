"""Pure parsing of /proc and cgroup files for the process probe: text in, values out, so each
rule is unit-tested on fake trees and the probe only reads files."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

from nodeprobe.model import Value

_SHIM_PREFIX = "containerd-shim"


def parse_status(text: str) -> dict[str, int]:
    """`RssAnon` and `VmRSS` from /proc/<pid>/status, in bytes (the kernel writes kB)."""
    wanted = {"RssAnon": Value.RSS_ANON_BYTES, "VmRSS": Value.RSS_BYTES}
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        name = wanted.get(key)
        if name is None:
            continue
        parts = rest.split()
        if parts and parts[0].isdigit():
            unit = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
            found[str(name)] = int(parts[0]) * unit
    return found


@dataclass(frozen=True, slots=True)
class CgroupRef:
    """Where a process's memory cgroup is: the v1 memory hierarchy or the v2 unified one."""

    version: int
    path: str


def parse_max_open_files(text: str) -> int | None:
    """The soft `Max open files` limit from /proc/<pid>/limits; None when unlimited or absent."""
    for line in text.splitlines():
        if line.startswith("Max open files"):
            parts = line[len("Max open files"):].split()
            return int(parts[0]) if parts and parts[0].isdigit() else None
    return None


def parse_cgroup(text: str) -> CgroupRef | None:
    """The memory cgroup from /proc/<pid>/cgroup; v1's memory line wins on hybrid hosts."""
    unified: CgroupRef | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "memory" in controllers.split(","):
            return CgroupRef(version=1, path=path)
        if hierarchy == "0" and controllers == "":
            unified = CgroupRef(version=2, path=path)
    return unified


def memory_stat_path(ref: CgroupRef, *, cgroup_root: str) -> str | None:
    """The memory.stat file for `ref`; None for the root cgroup, which is the whole machine."""
    rel = ref.path.strip("/")
    if not rel:
        return None
    if ref.version == 1:
        return os.path.join(cgroup_root, "memory", rel, "memory.stat")
    return os.path.join(cgroup_root, rel, "memory.stat")


def parse_memory_stat(text: str, *, version: int) -> int | None:
    """Anonymous memory in bytes: v2 `anon`; v1 `total_rss` (hierarchical), else `rss`."""
    stats: dict[str, int] = {}
    for line in text.splitlines():
        key, _, num = line.partition(" ")
        if num.strip().isdigit():
            stats[key] = int(num)
    keys = ("anon",) if version == 2 else ("total_rss", "rss")
    for key in keys:
        if key in stats:
            return stats[key]
    return None


def parse_cmdline(raw: bytes) -> list[str]:
    """argv from /proc/<pid>/cmdline (NUL-separated, usually NUL-terminated)."""
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def parse_stat_fields(stat_text: str) -> tuple[str, int] | None:
    """(state, ppid) from /proc/<pid>/stat: `Z` is a zombie (exited, not reaped)."""
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 2 or not fields[1].isdigit():
        return None
    return fields[0], int(fields[1])


POD_CGROUPS = ("kubepods", "/docker/", "/docker-", "/libpod-")
"""Cgroup path parts of pods' and containers' processes: a shim never runs there (it lives in
the runtime's service cgroup), a tenant's process does."""


def in_pod_cgroup(cgroup_text: str) -> bool:
    """True when any line of /proc/<pid>/cgroup puts the process in a pod's or container's
    cgroup."""
    return any(part in line.split(":", 2)[-1] for line in cgroup_text.splitlines()
               for part in POD_CGROUPS)


def parse_start_ticks(stat_text: str) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); comm may contain spaces or ')'."""
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 20 or not fields[19].isdigit():
        return None
    return int(fields[19])


def under_run(path: str) -> str:
    """`path` with /var/run spelled /run: the same directory on every current distribution (a
    link), and the chart mounts only /run."""
    return "/run/" + path.removeprefix("/var/run/") if path.startswith("/var/run/") else path


def same_socket(addr: str, socket_path: str) -> bool:
    """True when a command-line address names `socket_path`.

    Also true for a path seen from the host while we see it under a mount prefix (the shim says
    /run/containerd/containerd.sock, we read /host/run/containerd/containerd.sock), and for
    /var/run against /run.
    """
    if not addr.startswith("/") or addr.count("/") < 2:
        return False
    addr, socket_path = under_run(addr), under_run(socket_path)
    return addr == socket_path or socket_path.endswith(addr)


_ADDRESS_FLAGS = ("-H", "--host", "-a", "--address", "-address")


def listen_addresses(argv: list[str]) -> list[str]:
    """The unix socket paths a command line names with -H/--host/-a/--address (either form)."""
    found: list[str] = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if eq and flag in _ADDRESS_FLAGS:
            found.append(value)
        elif arg in _ADDRESS_FLAGS and i + 1 < len(argv):
            found.append(argv[i + 1])
    return [a.removeprefix("unix://") for a in found if a.startswith(("/", "unix:///"))]


def socket_match(argv: list[str], socket_path: str) -> bool | None:
    """True: the command line names `socket_path`; False: it names only other unix sockets
    (so it is someone else's daemon); None: it names none (defaults, fd://, a config file)."""
    addresses = listen_addresses(argv)
    if not addresses:
        return None
    return any(same_socket(a, socket_path) for a in addresses)


CONTAINERD_DEFAULT_SOCKET = "/run/containerd/containerd.sock"
"""Where containerd listens when neither its argv nor its config names an address."""
CONTAINERD_DEFAULT_CONFIG = "/etc/containerd/config.toml"
"""The config containerd reads when its argv names none; a missing one means the defaults."""
_CONFIG_FLAGS = ("-c", "--config")


def config_file(argv: list[str]) -> str:
    """The config file a containerd command line names with -c/--config (either form), else
    the one containerd reads by default."""
    for i, arg in enumerate(argv[1:], start=1):
        flag, eq, value = arg.partition("=")
        if eq and flag in _CONFIG_FLAGS:
            return value
        if arg in _CONFIG_FLAGS and i + 1 < len(argv):
            return argv[i + 1]
    return CONTAINERD_DEFAULT_CONFIG


def grpc_address(config_text: str) -> str | None:
    """The socket containerd's config serves (`[grpc] address`, else the default); None when the
    text is not TOML or the address is not a unix path. Every config version keeps `[grpc]` at
    the top level."""
    try:
        grpc = tomllib.loads(config_text).get("grpc", {})
    except tomllib.TOMLDecodeError:
        return None
    address = grpc.get("address", CONTAINERD_DEFAULT_SOCKET) if isinstance(grpc, dict) else None
    if not isinstance(address, str):
        return None
    address = address.removeprefix("unix://")
    return address if address.startswith("/") else None


def is_shim_of(argv: list[str], socket_path: str | None) -> bool:
    """A containerd shim whose `-address` is `socket_path` (any shim when the socket is unknown)."""
    if not argv or not os.path.basename(argv[0]).startswith(_SHIM_PREFIX):
        return False
    return socket_path is None or socket_match(argv, socket_path) is True


def shim_namespace(argv: list[str]) -> str:
    """The containerd namespace a shim serves (`-namespace k8s.io`); "" when it names none."""
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-namespace", "--namespace"):
            return argv[i + 1]
    return ""
