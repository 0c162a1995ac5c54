"""The runtime's process as the kernel sees it: anonymous memory, open fds, shims, cgroup memory.

These are the leak signals that keep working when the runtime's API is hung: /proc answers for a
SIGSTOPped daemon too. Parsing is pure functions over text (unit-tested on fake trees);
`ProcessProbe` only reads files under `proc_root` and `cgroup_root`, which may be the host's
mounted into a pod.

The service cgroup's `anon` is reported beside the process's `RssAnon` because it also counts
children: containerd's cgroup holds every shim it started, so it is not containerd's heap alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.unixpeer import peer_pid

PEERCRED_TIMEOUT_S = 1.0
"""Upper bound on the SO_PEERCRED connect; connect blocks only when the listen backlog is full."""

_COMM = {Runtime.DOCKERD: "dockerd", Runtime.CONTAINERD: "containerd"}
_SHIM_PREFIX = "containerd-shim"
FD_ADVICE = ("/proc/<pid>/fd needs CAP_SYS_PTRACE over the daemon: memory is still judged, fd "
             "leaks are not")


# ---- pure parsing ------------------------------------------------------------------------------


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


def parse_start_ticks(stat_text: str) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); comm may contain spaces or ')'."""
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 20 or not fields[19].isdigit():
        return None
    return int(fields[19])


def same_socket(addr: str, socket_path: str) -> bool:
    """True when a command-line address names `socket_path`.

    Also true for a path seen from the host while we see it under a mount prefix (the shim says
    /run/containerd/containerd.sock, we read /host/run/containerd/containerd.sock).
    """
    if not addr.startswith("/") or addr.count("/") < 2:
        return False
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


SHIM_NAMESPACES = {"k8s.io": Value.SHIMS_K8S, "moby": Value.SHIMS_MOBY}
"""Namespaces whose shims are counted apart: the CRI's pods and dockerd's containers."""
PIDS_KEPT = 20
"""At most this many shim pids per namespace go into `info` (oldest first), for messages."""
SHIM_SETTLE_S = 60.0
"""A shim counts in its namespace once it has lived this long. A younger one belongs to a
container still starting or stopping, which the pod and container counts (read at other moments;
`GET /info` only every 30 s) may not show yet or any more: under `docker run --rm` churn there is
nearly always one. An orphan outlives any such race, so only settled shims are compared."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def permission_advice(path: str) -> str:
    """What to do when /proc refuses us: reading another user's fds needs ptrace rights."""
    return (f"permission denied reading {path}: run as root (or with CAP_SYS_PTRACE); in a pod "
            "use hostPID: true and mount the host's /proc")


# ---- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Found:
    pid: int
    found_by: str


class ProcessProbe:
    """Memory, fds and shims of one runtime's process, read from /proc and the cgroup fs."""

    checks: tuple[Check, ...] = (Check.PROCESS,)

    def __init__(
        self,
        runtime: Runtime,
        *,
        socket_path: str | None,
        proc_root: str = "/proc",
        cgroup_root: str = "/sys/fs/cgroup",
        shim_settle_s: float = SHIM_SETTLE_S,
    ) -> None:
        self.runtime = runtime
        self.socket_path = socket_path
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.shim_settle_s = shim_settle_s
        self._comm = _COMM[runtime]

    def close(self) -> None:
        """Nothing is held between calls."""

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        """Find the process and read its numbers; never raises."""
        at = time.time()
        start = time.monotonic()
        if check not in self.checks:
            return self._obs(check, Outcome.ERROR, start, at, f"{check} is not a process check")
        try:
            timeout_s = min(deadline_s, PEERCRED_TIMEOUT_S)
            outcome, detail, values, info = self._read(timeout_s=timeout_s)
        except PermissionError as e:
            outcome, detail, values, info = Outcome.ERROR, permission_advice(
                e.filename or self.proc_root), {}, {}
        except OSError as e:
            outcome, values, info = Outcome.ERROR, {}, {}
            detail = f"reading {self._comm}'s process under {self.proc_root} failed: {e}"
        return self._obs(check, outcome, start, at, detail, values, info)

    def _obs(
        self,
        check: Check,
        outcome: Outcome,
        start: float,
        at: float,
        detail: str,
        values: Mapping[str, float] | None = None,
        info: Mapping[str, str] | None = None,
    ) -> Observation:
        return Observation(
            runtime=self.runtime, check=check, outcome=outcome,
            latency_s=time.monotonic() - start, at=at, detail=detail,
            values=dict(values or {}), info=dict(info or {}),
        )

    def _read(
        self, *, timeout_s: float
    ) -> tuple[Outcome, str, dict[str, float], dict[str, str]]:
        if not os.path.isdir(self.proc_root):
            return (Outcome.ERROR, f"{self.proc_root} is not a directory: mount the host's /proc "
                    "there (in a pod: a hostPath volume and hostPID: true)", {}, {})
        found = self._find(timeout_s=timeout_s)
        if found is None:
            return Outcome.DOWN, f"no {self._comm} process found under {self.proc_root}", {}, {}
        pid_dir = os.path.join(self.proc_root, str(found.pid))
        try:
            status = parse_status(_read_text(os.path.join(pid_dir, "status")))
            fds = self._fds(pid_dir)
        except (FileNotFoundError, ProcessLookupError):
            return (Outcome.DOWN, f"{self._comm} (pid {found.pid}) exited while being read",
                    {}, {})
        values: dict[str, float] = {str(Value.PID): found.pid}
        ticks = self._start_ticks(found.pid)
        if ticks is not None:
            values[str(Value.PROCESS_START_TICKS)] = ticks
        info = {"found_by": found.found_by}
        if fds is not None:
            values[str(Value.FDS)] = fds
        else:
            info["fds"] = "unknown"
        values.update(status)
        limit = self._fd_limit(pid_dir)
        if limit is not None:
            values[str(Value.FD_LIMIT)] = limit
        cgroup = self._cgroup_anon(pid_dir)
        if cgroup is not None:
            info["cgroup"], values[str(Value.CGROUP_ANON_BYTES)] = cgroup
        if self.runtime is Runtime.CONTAINERD:
            self._count_shims(values, info)
        anon = status.get(Value.RSS_ANON_BYTES)
        mem = f"RssAnon {anon / 2**20:.1f} MiB" if anon is not None else "RssAnon unknown"
        of_limit = f" of {limit}" if limit is not None else ""
        fd_text = f"{fds}{of_limit} open fds" if fds is not None else (
            f"fd count unknown ({FD_ADVICE})")
        detail = f"{self._comm} pid {found.pid} ({found.found_by}): {mem}, {fd_text}"
        return Outcome.OK, detail, values, info

    @staticmethod
    def _fds(pid_dir: str) -> int | None:
        """Open fds, or None when /proc/<pid>/fd is closed to us (no CAP_SYS_PTRACE)."""
        try:
            return len(os.listdir(os.path.join(pid_dir, "fd")))
        except PermissionError:
            return None

    @staticmethod
    def _fd_limit(pid_dir: str) -> int | None:
        try:
            return parse_max_open_files(_read_text(os.path.join(pid_dir, "limits")))
        except OSError:
            return None

    def _find(self, *, timeout_s: float) -> _Found | None:
        """Prefer the socket's listener (exact); fall back to scanning comm names."""
        if self.socket_path is not None:
            pid = peer_pid(self.socket_path, timeout_s=timeout_s)
            if pid is not None and self._comm_of(pid) == self._comm:
                return _Found(pid, "peercred")
        best: tuple[bool, int, int] | None = None
        for pid in self._pids():
            if self._comm_of(pid) != self._comm:
                continue
            try:
                argv = parse_cmdline(_read_bytes(self._path(pid, "cmdline")))
                ticks = parse_start_ticks(_read_text(self._path(pid, "stat")))
            except OSError:
                continue
            match = None if self.socket_path is None else socket_match(argv, self.socket_path)
            if match is False:
                continue  # it serves another socket: another daemon, not ours
            # the one naming our socket first, then the oldest (start time), then the lowest pid
            key = (match is not True, ticks if ticks is not None else 2**62, pid)
            if best is None or key < best:
                best = key
        return None if best is None else _Found(best[2], "scan")

    def _start_ticks(self, pid: int) -> int | None:
        """When this pid's process started (with the pid, one incarnation: restarts show)."""
        try:
            return parse_start_ticks(_read_text(self._path(pid, "stat")))
        except OSError:
            return None

    def _cgroup_anon(self, pid_dir: str) -> tuple[str, int] | None:
        """The service cgroup's anonymous memory, when the cgroup fs is there and readable."""
        try:
            ref = parse_cgroup(_read_text(os.path.join(pid_dir, "cgroup")))
            if ref is None:
                return None
            path = memory_stat_path(ref, cgroup_root=self.cgroup_root)
            if path is None:
                return None
            anon = parse_memory_stat(_read_text(path), version=ref.version)
        except OSError:
            return None
        return None if anon is None else (ref.path, anon)

    def _count_shims(self, values: dict[str, float], info: dict[str, str]) -> None:
        """All shims of our socket; the settled ones of k8s.io and moby apart with their pids.

        Without the kernel's uptime a shim's age is unknown, and so are the namespace counts.
        """
        shims = list(self._shims())
        values[str(Value.SHIMS)] = len(shims)
        uptime = self._uptime()
        if uptime is None:
            return
        born_before = (uptime - self.shim_settle_s) * _CLK_TCK
        for namespace, value in SHIM_NAMESPACES.items():
            mine = sorted((ticks, pid) for pid, ns, ticks in shims
                          if ns == namespace and ticks <= born_before)
            values[str(value)] = len(mine)
            if mine:
                info[f"shim_pids_{namespace}"] = ",".join(str(p) for _, p in mine[:PIDS_KEPT])

    def _uptime(self) -> float | None:
        """Seconds since boot (/proc/uptime), the clock of a process's start ticks."""
        try:
            return float(_read_text(os.path.join(self.proc_root, "uptime")).split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _shims(self) -> Iterator[tuple[int, str, int]]:
        """(pid, namespace, start ticks) of each shim of our socket."""
        for pid in self._pids():
            try:
                argv = parse_cmdline(_read_bytes(self._path(pid, "cmdline")))
            except OSError:
                continue
            if is_shim_of(argv, self.socket_path):
                ticks = self._start_ticks(pid)
                yield pid, shim_namespace(argv), ticks if ticks is not None else 0

    def _pids(self) -> Iterator[int]:
        try:
            names = os.listdir(self.proc_root)
        except FileNotFoundError:
            return
        for name in names:
            if name.isdigit():
                yield int(name)

    def _comm_of(self, pid: int) -> str | None:
        try:
            return _read_text(self._path(pid, "comm")).strip()
        except OSError:
            return None

    def _path(self, pid: int, name: str) -> str:
        return os.path.join(self.proc_root, str(pid), name)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
