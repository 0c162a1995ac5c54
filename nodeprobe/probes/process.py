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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.listener import listener_pid
from nodeprobe.probes.procfs import (
    CONTAINERD_DEFAULT_CONFIG,
    CONTAINERD_DEFAULT_SOCKET,
    config_file,
    grpc_address,
    in_pod_cgroup,
    is_shim_of,
    memory_stat_path,
    parse_cgroup,
    parse_cmdline,
    parse_max_open_files,
    parse_memory_stat,
    parse_start_ticks,
    parse_stat_fields,
    parse_status,
    same_socket,
    shim_namespace,
    socket_match,
    under_run,
)
from nodeprobe.probes.unixpeer import peer_pid

PEERCRED_TIMEOUT_S = 1.0
"""Upper bound on the SO_PEERCRED connect; connect blocks only when the listen backlog is full."""

_COMM = {Runtime.DOCKERD: "dockerd", Runtime.CONTAINERD: "containerd"}
FD_ADVICE = ("/proc/<pid>/fd needs CAP_SYS_PTRACE over the daemon: memory is still judged, fd "
             "leaks are not")


# ---- reading -----------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class _Found:
    pid: int
    found_by: str
    zombie_of: int | None = None
    """Set for a zombie (the only process of that name left): its parent's pid."""


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
        host_root: str = "/",
        shim_settle_s: float = SHIM_SETTLE_S,
        peer: Callable[..., int | None] = peer_pid,
    ) -> None:
        """`peer` finds the socket's listener by SO_PEERCRED (a test passes one that sees pid
        0, as an agent without hostPID does). A containerd's config file is read under
        `host_root`."""
        self.runtime = runtime
        self._peer = peer
        self.socket_path = socket_path
        self.proc_root = proc_root
        self.cgroup_root = cgroup_root
        self.host_root = host_root
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
        if found.zombie_of is not None:
            return (Outcome.DOWN, f"{self._comm} pid {found.pid} is a zombie: it exited and its "
                    f"parent (pid {found.zombie_of}) has not reaped it; no {self._comm} runs",
                    {}, {})
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
        """The daemon behind our socket: its listener by SO_PEERCRED (exact, when its pid is
        visible), else by the socket's inode in /proc (probes/listener.py: works without
        hostPID, but needs ptrace access to the daemon's fd links), else the one whose argv (or
        containerd's config file) names our socket, else the oldest of that name. A zombie is
        never the daemon: it is returned only when nothing else has that name."""
        candidates, zombies = self._candidates()
        if self.socket_path is not None:
            pid = self._peer(self.socket_path, timeout_s=timeout_s)
            if pid is not None and pid in candidates:
                return _Found(pid, "peercred")
            pid = listener_pid(self.proc_root, self.socket_path, sorted(candidates))
            if pid is not None:
                return _Found(pid, "socket inode")
        best: tuple[bool, int, int] | None = None
        for pid, (argv, ticks) in candidates.items():
            match = self._serves(argv)
            if match is False:
                continue  # it serves another socket: another daemon, not ours
            # the one naming our socket first, then the oldest (start time), then the lowest pid
            key = (match is not True, ticks if ticks is not None else 2**62, pid)
            if best is None or key < best:
                best = key
        if best is not None:
            return _Found(best[2], "scan")
        if zombies:
            pid, parent = min(zombies.items())
            return _Found(pid, "scan", zombie_of=parent)
        return None

    def _serves(self, argv: list[str]) -> bool | None:
        """Whether this command line serves our socket (None: cannot tell). A containerd naming
        no address takes it from its config file (`[grpc] address`): the systemd unit's
        containerd reads /etc/containerd/config.toml, dockerd's managed one `--config
        /var/run/docker/containerd/containerd.toml`, and argv alone cannot tell them from other
        containerds. Without ptrace access to the daemons (the chart drops every capability)
        the socket's inode is no help, so this is what finds the node's own."""
        if self.socket_path is None:
            return None
        match = socket_match(argv, self.socket_path)
        if match is not None or self.runtime is not Runtime.CONTAINERD:
            return match
        address = self._config_address(config_file(argv))
        return None if address is None else same_socket(address, self.socket_path)

    def _config_address(self, path: str) -> str | None:
        """`[grpc] address` of a containerd config file as the host names it, read under
        host_root; None when it is relative, unreadable or unparseable here. A missing default
        config means containerd's defaults; a missing named one only that it is not mounted
        here (containerd refuses to start without it)."""
        if not path.startswith("/"):
            return None
        try:
            text = _read_text(os.path.join(self.host_root, under_run(path).lstrip("/")))
        except FileNotFoundError:
            return CONTAINERD_DEFAULT_SOCKET if path == CONTAINERD_DEFAULT_CONFIG else None
        except OSError:
            return None
        return grpc_address(text)

    def _candidates(self) -> tuple[dict[int, tuple[list[str], int | None]], dict[int, int]]:
        """Live processes named like our daemon (argv, start ticks), and zombies (ppid)."""
        live: dict[int, tuple[list[str], int | None]] = {}
        zombies: dict[int, int] = {}
        for pid in self._pids():
            if self._comm_of(pid) != self._comm:
                continue
            try:
                stat = _read_text(self._path(pid, "stat"))
                argv = parse_cmdline(_read_bytes(self._path(pid, "cmdline")))
            except OSError:
                continue
            fields = parse_stat_fields(stat)
            if fields is not None and fields[0] == "Z":
                zombies[pid] = fields[1]
            else:
                live[pid] = (argv, parse_start_ticks(stat))
        return live, zombies

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
        shims = list(self._shims(daemon=int(values[str(Value.PID)])))
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

    def _shims(self, *, daemon: int) -> Iterator[tuple[int, str, int]]:
        """(pid, namespace, start ticks) of each shim of our socket: argv names the socket, and
        (so a tenant's process named containerd-shim... never counts) its parent is the init
        process or the daemon, and its cgroup is no pod's or container's. A shim in another
        mount namespace than the daemon's names a socket path of that namespace: another
        containerd's (a nested node's), not ours."""
        home = self._mount_ns(daemon)
        for pid in self._pids():
            try:
                argv = parse_cmdline(_read_bytes(self._path(pid, "cmdline")))
                if not is_shim_of(argv, self.socket_path):
                    continue
                if home is not None and self._mount_ns(pid) not in (home, None):
                    continue
                stat = _read_text(self._path(pid, "stat"))
                cgroup = _read_text(self._path(pid, "cgroup"))
            except OSError:
                continue
            fields = parse_stat_fields(stat)
            if fields is None or fields[1] not in (1, daemon) or in_pod_cgroup(cgroup):
                continue
            ticks = parse_start_ticks(stat)
            yield pid, shim_namespace(argv), ticks if ticks is not None else 0

    def _pids(self) -> Iterator[int]:
        try:
            names = os.listdir(self.proc_root)
        except FileNotFoundError:
            return
        for name in names:
            if name.isdigit():
                yield int(name)

    def _mount_ns(self, pid: int) -> str | None:
        """The process's mount namespace (`mnt:[inode]`), None where it cannot be read."""
        try:
            return os.readlink(self._path(pid, "ns/mnt"))
        except OSError:
            return None

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
