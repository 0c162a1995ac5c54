"""Pure parsing of /proc and cgroup files, and ProcessProbe over fake trees under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeprobe.model import Check, Outcome, Runtime, Value
from nodeprobe.probes.process import SHIM_SETTLE_S, ProcessProbe, permission_advice
from nodeprobe.probes.procfs import (
    CgroupRef,
    is_shim_of,
    listen_addresses,
    memory_stat_path,
    parse_cgroup,
    parse_cmdline,
    parse_memory_stat,
    parse_start_ticks,
    parse_status,
    shim_namespace,
    socket_match,
)

STATUS = """Name:\tdockerd
Umask:\t0022
State:\tS (sleeping)
Pid:\t812
VmPeak:\t 2069372 kB
VmRSS:\t   81236 kB
RssAnon:\t   30124 kB
RssFile:\t   51112 kB
Threads:\t14
"""

CGROUP_V1 = """12:pids:/system.slice/docker.service
5:memory:/system.slice/docker.service
4:cpu,cpuacct:/system.slice/docker.service
1:name=systemd:/system.slice/docker.service
0::/system.slice/docker.service
"""

CGROUP_V2 = "0::/system.slice/containerd.service\n"

MEMORY_STAT_V1 = "cache 4096\nrss 1000\nrss_huge 0\ntotal_cache 8192\ntotal_rss 5000\n"
MEMORY_STAT_V2 = "anon 123456789\nfile 2048\nkernel 100\nanon_thp 0\n"


def test_parse_status_in_bytes() -> None:
    assert parse_status(STATUS) == {
        Value.RSS_ANON_BYTES: 30124 * 1024,
        Value.RSS_BYTES: 81236 * 1024,
    }


def test_parse_status_old_kernel_without_rss_anon() -> None:
    assert parse_status("VmRSS:\t 10 kB\n") == {Value.RSS_BYTES: 10240}
    assert parse_status("") == {}


def test_parse_cgroup_prefers_v1_memory_on_hybrid_hosts() -> None:
    assert parse_cgroup(CGROUP_V1) == CgroupRef(1, "/system.slice/docker.service")


def test_parse_cgroup_v2() -> None:
    assert parse_cgroup(CGROUP_V2) == CgroupRef(2, "/system.slice/containerd.service")
    assert parse_cgroup("garbage\n") is None


def test_memory_stat_paths() -> None:
    root = "/host/sys/fs/cgroup"
    assert memory_stat_path(CgroupRef(1, "/a.slice/b.service"), cgroup_root=root) == \
        "/host/sys/fs/cgroup/memory/a.slice/b.service/memory.stat"
    assert memory_stat_path(CgroupRef(2, "/a.slice/b.service"), cgroup_root=root) == \
        "/host/sys/fs/cgroup/a.slice/b.service/memory.stat"
    # the root cgroup is the whole machine, not the service
    assert memory_stat_path(CgroupRef(2, "/"), cgroup_root=root) is None


def test_parse_memory_stat() -> None:
    assert parse_memory_stat(MEMORY_STAT_V1, version=1) == 5000
    assert parse_memory_stat("rss 1000\n", version=1) == 1000
    assert parse_memory_stat(MEMORY_STAT_V2, version=2) == 123456789
    assert parse_memory_stat("file 1\n", version=2) is None


def test_parse_cmdline_and_start_ticks() -> None:
    assert parse_cmdline(b"/usr/bin/dockerd\0-H\0fd://\0") == ["/usr/bin/dockerd", "-H", "fd://"]
    stat = "812 (odd) name)) S 1 812 812 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 14 0 4242 2069372"
    assert parse_start_ticks(stat) == 4242
    assert parse_start_ticks("nonsense") is None


def test_listen_addresses_and_socket_match() -> None:
    argv = ["dockerd", "-H", "unix:///tmp/x/docker.sock", "--host=tcp://0.0.0.0:2375"]
    assert listen_addresses(argv) == ["/tmp/x/docker.sock"]
    assert socket_match(argv, "/tmp/x/docker.sock") is True
    assert socket_match(argv, "/run/docker.sock") is False
    assert socket_match(["dockerd", "-H", "fd://"], "/run/docker.sock") is None
    assert socket_match(["containerd", "--config", "/etc/c.toml"], "/run/c.sock") is None
    # seen from a pod with the host's / under /host
    argv = ["containerd", "--address=/run/containerd/containerd.sock"]
    assert socket_match(argv, "/host/run/containerd/containerd.sock") is True


def test_is_shim_of() -> None:
    shim = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id", "abc",
            "-address", "/tmp/np-1/containerd/containerd.sock"]
    assert is_shim_of(shim, "/tmp/np-1/containerd/containerd.sock")
    assert not is_shim_of(shim, "/tmp/np-2/containerd/containerd.sock")
    assert is_shim_of(shim, None)
    assert not is_shim_of(["/usr/bin/containerd", "--address", "/x/y.sock"], None)
    assert not is_shim_of([], None)


def test_shim_namespace() -> None:
    assert shim_namespace(["containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "a"]) \
        == "k8s.io"
    assert shim_namespace(["containerd-shim-runc-v2", "--namespace", "moby"]) == "moby"
    assert shim_namespace(["containerd-shim-runc-v2", "-id", "a", "-namespace"]) == ""


def test_permission_advice_says_what_to_do() -> None:
    msg = permission_advice("/proc/812/fd")
    assert msg.startswith("permission denied reading /proc/812/fd: run as root")
    assert "hostPID" in msg


# ---- ProcessProbe over a fake /proc and a fake cgroup v2 tree ------------------------------


def fake_process(proc: Path, pid: int, *, comm: str, argv: list[str], start: int,
                 cgroup: str = CGROUP_V2, fds: int = 3, ppid: int = 1,
                 state: str = "S") -> None:
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    fields = [state, str(ppid)] + ["0"] * 17 + [str(start), "0"]
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields))
    (d / "status").write_text(STATUS)
    (d / "cgroup").write_text(cgroup)
    for i in range(fds):
        (d / "fd" / str(i)).write_text("")


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    svc = cgroup / "system.slice" / "containerd.service"
    svc.mkdir(parents=True)
    (svc / "memory.stat").write_text(MEMORY_STAT_V2)
    proc.mkdir()
    (proc / "self").mkdir()  # non-numeric entries are skipped
    (proc / "uptime").write_text("1000.00 1900.00\n")  # every fake start tick is long settled
    return proc, cgroup


def run(probe: ProcessProbe) -> tuple[Outcome, dict[str, float], dict[str, str], str]:
    obs = probe.run(Check.PROCESS, deadline_s=1, slow_s=1)
    return obs.outcome, dict(obs.values), dict(obs.info), obs.detail


def test_scan_prefers_the_one_naming_our_socket_then_the_oldest(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    proc, cgroup = trees
    ours = str(tmp_path / "missing" / "containerd.sock")  # no socket: peercred fails, scan runs
    # its config is not readable here (not under host_root): it may serve any socket
    fake_process(proc, 10, comm="containerd", argv=["containerd", "-c", "/elsewhere.toml"],
                 start=50)
    fake_process(proc, 11, comm="containerd", argv=["containerd", "-a", "/other/c.sock"],
                 start=10)
    fake_process(proc, 12, comm="containerd", argv=["containerd", "--address", ours], start=90,
                 fds=7)
    fake_process(proc, 20, comm="containerd-shim", start=95,
                 argv=["/usr/bin/containerd-shim-runc-v2", "-address", ours])
    for pid, start, namespace in ((30, 99, "k8s.io"), (31, 97, "k8s.io"), (32, 98, "moby")):
        fake_process(proc, pid, comm="containerd-shim", start=start,
                     argv=["/usr/bin/containerd-shim-runc-v2", "-namespace", namespace,
                           "-id", f"c{pid}", "-address", ours])
    fake_process(proc, 21, comm="containerd-shim", start=96,
                 argv=["/usr/bin/containerd-shim-runc-v2", "-address", "/other/c.sock"])
    probe = ProcessProbe(Runtime.CONTAINERD, socket_path=ours, proc_root=str(proc),
                         cgroup_root=str(cgroup), host_root=str(tmp_path))
    outcome, values, info, detail = run(probe)
    assert outcome is Outcome.OK, detail
    assert values == {
        Value.PID: 12,
        Value.PROCESS_START_TICKS: 90,  # its incarnation: a restart changes pid or start time
        Value.FDS: 7,
        Value.RSS_ANON_BYTES: 30124 * 1024,
        Value.RSS_BYTES: 81236 * 1024,
        Value.CGROUP_ANON_BYTES: 123456789,
        Value.SHIMS: 4,
        Value.SHIMS_K8S: 2,
        Value.SHIMS_MOBY: 1,
    }
    assert info == {"found_by": "scan", "cgroup": "/system.slice/containerd.service",
                    "shim_pids_k8s.io": "31,30", "shim_pids_moby": "32"}  # oldest first
    assert detail == "containerd pid 12 (scan): RssAnon 29.4 MiB, 7 open fds"

    # without the one naming our socket: the oldest that names no other socket
    (proc / "12" / "comm").write_text("bash\n")
    _, values, _, _ = run(probe)
    assert values[Value.PID] == 10
    # socket unknown: every shim counts, and the oldest containerd wins
    _, values, _, _ = run(ProcessProbe(Runtime.CONTAINERD, socket_path=None,
                                       proc_root=str(proc), cgroup_root=str(cgroup)))
    assert values[Value.PID] == 11
    assert values[Value.SHIMS] == 5


def test_scan_follows_containerds_config_file_under_host_root(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    """Without hostPID or ptrace rights only the config says which containerd is the node's:
    the oldest here serves the default socket (no argv, no /etc/containerd/config.toml), another
    names an unreadable config, and ours (the youngest) a config under the host's /var/run."""
    proc, cgroup = trees
    host = tmp_path / "host"
    (host / "run" / "docker" / "containerd").mkdir(parents=True)
    (host / "run" / "docker" / "containerd" / "containerd.toml").write_text(
        'version = 2\n[grpc]\n  address = "/var/run/docker/containerd/containerd.sock"\n')
    ours = str(host / "run" / "docker" / "containerd" / "containerd.sock")  # as the pod sees it
    fake_process(proc, 10, comm="containerd", argv=["/usr/bin/containerd"], start=10)
    fake_process(proc, 11, comm="containerd", argv=["containerd", "--config=/tmp/x.toml"],
                 start=20)
    fake_process(proc, 12, comm="containerd", start=30, argv=[
        "containerd", "--config", "/var/run/docker/containerd/containerd.toml"])
    probe = ProcessProbe(Runtime.CONTAINERD, socket_path=ours, proc_root=str(proc),
                         cgroup_root=str(cgroup), host_root=str(host))
    outcome, values, info, detail = run(probe)
    assert (outcome, values[Value.PID], info["found_by"]) == (Outcome.OK, 12, "scan"), detail
    # the default socket is the argv-less one's, not the older unknown one's
    default = str(host / "run" / "containerd" / "containerd.sock")
    _, values, _, _ = run(ProcessProbe(Runtime.CONTAINERD, socket_path=default,
                                       proc_root=str(proc), cgroup_root=str(cgroup),
                                       host_root=str(host)))
    assert values[Value.PID] == 10


def test_no_process_is_down(trees: tuple[Path, Path]) -> None:
    proc, cgroup = trees
    fake_process(proc, 10, comm="containerd", argv=["containerd"], start=1)
    probe = ProcessProbe(Runtime.DOCKERD, socket_path=None, proc_root=str(proc),
                         cgroup_root=str(cgroup))
    outcome, values, _, detail = run(probe)
    assert outcome is Outcome.DOWN
    assert detail == f"no dockerd process found under {proc}"
    assert values == {}


def test_unreadable_cgroup_is_left_out(trees: tuple[Path, Path], tmp_path: Path) -> None:
    proc, _ = trees
    fake_process(proc, 10, comm="dockerd", argv=["dockerd"], start=1, cgroup=CGROUP_V1)
    probe = ProcessProbe(Runtime.DOCKERD, socket_path=None, proc_root=str(proc),
                         cgroup_root=str(tmp_path / "nowhere"))
    outcome, values, info, _ = run(probe)
    assert outcome is Outcome.OK
    assert Value.CGROUP_ANON_BYTES not in values and "cgroup" not in info
    assert Value.SHIMS not in values  # only containerd has shims


def test_missing_proc_root_says_what_to_mount(tmp_path: Path) -> None:
    probe = ProcessProbe(Runtime.DOCKERD, socket_path=None, proc_root=str(tmp_path / "host"))
    outcome, _, _, detail = run(probe)
    assert outcome is Outcome.ERROR
    assert detail.startswith(f"{tmp_path / 'host'} is not a directory: mount the host's /proc")


def test_unknown_check_is_an_error(tmp_path: Path) -> None:
    probe = ProcessProbe(Runtime.DOCKERD, socket_path=None, proc_root=str(tmp_path))
    obs = probe.run(Check.DOCKER_PING, deadline_s=1, slow_s=1)
    assert obs.outcome is Outcome.ERROR


def test_max_open_files_soft_limit() -> None:
    from nodeprobe.probes.procfs import parse_max_open_files

    text = ("Limit                     Soft Limit           Hard Limit           Units\n"
            "Max processes             63471                63471                processes\n"
            "Max open files            1048576              1048576              files\n")
    assert parse_max_open_files(text) == 1048576
    assert parse_max_open_files(text.replace("1048576              1048576",
                                             "unlimited            unlimited")) is None
    assert parse_max_open_files("") is None


def test_only_settled_shims_count_in_their_namespace(trees: tuple[Path, Path]) -> None:
    """Shims younger than SHIM_SETTLE_S (containers starting or stopping) are not compared."""
    proc, cgroup = trees
    ours = "/run/c/containerd.sock"
    tick = os.sysconf("SC_CLK_TCK")
    fake_process(proc, 12, comm="containerd", argv=["containerd", "--address", ours], start=1)
    for pid, age_s in ((30, 900), (31, SHIM_SETTLE_S + 1), (32, SHIM_SETTLE_S - 1), (33, 2)):
        fake_process(proc, pid, comm="containerd-shim", start=int((1000 - age_s) * tick),
                     argv=["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby",
                           "-id", f"c{pid}", "-address", ours])
    probe = ProcessProbe(Runtime.CONTAINERD, socket_path=ours, proc_root=str(proc),
                         cgroup_root=str(cgroup))
    _, values, info, _ = run(probe)
    assert values[Value.SHIMS] == 4
    assert values[Value.SHIMS_MOBY] == 2
    assert info["shim_pids_moby"] == "30,31"
    # with no clock to age them by, the namespace counts are unknown, not guessed
    (proc / "uptime").unlink()
    _, values, info, _ = run(probe)
    assert values[Value.SHIMS] == 4
    assert Value.SHIMS_MOBY not in values and Value.SHIMS_K8S not in values


def test_a_zombie_is_never_the_daemon_but_named_when_it_is_all_there_is(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    proc, cgroup = trees
    ours = str(tmp_path / "missing" / "docker.sock")
    fake_process(proc, 40, comm="dockerd", argv=[], start=10, state="Z", ppid=7)
    probe = ProcessProbe(Runtime.DOCKERD, socket_path=ours, proc_root=str(proc),
                         cgroup_root=str(cgroup))
    outcome, values, _, detail = run(probe)
    assert outcome is Outcome.DOWN and values == {}  # no pid, no start time: no restart seen
    assert "pid 40 is a zombie" in detail and "pid 7" in detail, detail
    fake_process(proc, 41, comm="dockerd", argv=["dockerd"], start=20)
    outcome, values, _, detail = run(probe)
    assert outcome is Outcome.OK and values[Value.PID] == 41, detail


def test_only_shims_of_init_or_the_daemon_outside_pod_cgroups_count(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    proc, cgroup = trees
    ours = str(tmp_path / "missing" / "containerd.sock")
    fake_process(proc, 12, comm="containerd", argv=["containerd", "--address", ours], start=9)
    shim = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", ours]
    fake_process(proc, 30, comm="containerd-shim", argv=shim, start=10)  # parent: init
    fake_process(proc, 31, comm="containerd-shim", argv=shim, start=10, ppid=12)  # the daemon
    # a tenant's processes named like a shim: a container's child, and one reparented to init
    # but in its pod's cgroup
    fake_process(proc, 50, comm="containerd-shim", argv=shim, start=10, ppid=31)
    fake_process(proc, 51, comm="containerd-shim", argv=shim, start=10,
                 cgroup="0::/kubepods/burstable/pod1234/abcd\n")
    probe = ProcessProbe(Runtime.CONTAINERD, socket_path=ours, proc_root=str(proc),
                         cgroup_root=str(cgroup))
    outcome, values, info, detail = run(probe)
    assert outcome is Outcome.OK, detail
    assert values[Value.SHIMS] == 2 and info["shim_pids_k8s.io"] == "30,31"
