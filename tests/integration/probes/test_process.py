"""ProcessProbe against the harness's real dockerd and containerd, in /proc as it is."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from nodeprobe.config import Config
from nodeprobe.judge.continuous import Judge
from nodeprobe.model import (
    Check,
    ConditionType,
    Observation,
    Outcome,
    Reason,
    Runtime,
    Status,
    Value,
)
from nodeprobe.probes.process import ProcessProbe
from tests.harness.runtimes import BUSYBOX_IMAGE, Daemon, Sandbox

DEADLINE_S = 3.0


def probe(runtime: Runtime, daemon: Daemon) -> ProcessProbe:
    return ProcessProbe(runtime, socket_path=str(daemon.socket))


def run(p: ProcessProbe) -> tuple[Outcome, dict[str, float], str]:
    obs = p.run(Check.PROCESS, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.check is Check.PROCESS and obs.runtime is p.runtime
    assert 0 <= obs.latency_s < DEADLINE_S
    return obs.outcome, dict(obs.values), obs.detail


@pytest.mark.parametrize("runtime", [Runtime.DOCKERD, Runtime.CONTAINERD])
def test_finds_the_exact_sandbox_daemon(runtimes: Sandbox, runtime: Runtime) -> None:
    daemon = runtimes.dockerd if runtime is Runtime.DOCKERD else runtimes.containerd
    p = probe(runtime, daemon)
    assert p.checks == (Check.PROCESS,)
    obs = p.run(Check.PROCESS, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.outcome is Outcome.OK, obs.detail
    assert obs.values[Value.PID] == daemon.pid
    assert obs.info["found_by"] == "peercred"
    assert 1 << 20 < obs.values[Value.RSS_ANON_BYTES] < obs.values[Value.RSS_BYTES]
    assert obs.values[Value.FDS] > 3
    # this host is cgroup v1 and the daemons share the test's memory cgroup
    assert obs.values[Value.CGROUP_ANON_BYTES] >= obs.values[Value.RSS_ANON_BYTES]
    assert (Value.SHIMS in obs.values) is (runtime is Runtime.CONTAINERD)


def test_hung_dockerd_is_still_found(runtimes: Sandbox) -> None:
    p = probe(Runtime.DOCKERD, runtimes.dockerd)
    with runtimes.dockerd.hung():
        outcome, values, detail = run(p)
    assert outcome is Outcome.OK, detail
    assert values[Value.PID] == runtimes.dockerd.pid


def test_crashed_dockerd_is_down(runtimes: Sandbox) -> None:
    p = probe(Runtime.DOCKERD, runtimes.dockerd)
    runtimes.dockerd.crash()
    outcome, _, detail = run(p)
    # other dockerds on this machine (other sandboxes) name other sockets: they are not ours
    assert outcome is Outcome.DOWN, detail
    assert detail == "no dockerd process found under /proc"


def test_start_time_names_the_incarnation_and_changes_on_restart(runtimes: Sandbox) -> None:
    p = probe(Runtime.DOCKERD, runtimes.dockerd)
    outcome, before, detail = run(p)
    assert outcome is Outcome.OK, detail
    stat = Path(f"/proc/{runtimes.dockerd.pid}/stat").read_text()
    assert before[Value.PROCESS_START_TICKS] == int(stat.rsplit(")", 1)[1].split()[19])
    runtimes.dockerd.crash()
    runtimes.heal()
    outcome, after, detail = run(p)
    assert outcome is Outcome.OK, detail
    assert after[Value.PID] == runtimes.dockerd.pid
    assert after[Value.PROCESS_START_TICKS] >= before[Value.PROCESS_START_TICKS]
    assert (after[Value.PID], after[Value.PROCESS_START_TICKS]) != (
        before[Value.PID], before[Value.PROCESS_START_TICKS])


def test_scan_without_a_socket_finds_a_dockerd(runtimes: Sandbox) -> None:
    obs = ProcessProbe(Runtime.DOCKERD, socket_path=None).run(
        Check.PROCESS, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.outcome is Outcome.OK, obs.detail
    assert obs.info["found_by"] == "scan"
    pid = int(obs.values[Value.PID])
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd"


@pytest.fixture
def running_container(runtimes: Sandbox) -> Iterator[str]:
    client = docker.APIClient(base_url=f"unix://{runtimes.dockerd.socket}", version="1.41",
                              timeout=60)
    host = client.create_host_config(network_mode="none")
    ctr = client.create_container(BUSYBOX_IMAGE, command=["sleep", "300"], host_config=host)
    try:
        client.start(ctr["Id"])
        yield str(ctr["Id"])
    finally:
        client.remove_container(ctr["Id"], force=True)
        client.close()


def test_counts_the_shims_of_its_containerd(runtimes: Sandbox, running_container: str) -> None:
    p = probe(Runtime.CONTAINERD, runtimes.containerd)
    end = time.monotonic() + 10
    shims = 0.0
    while time.monotonic() < end:
        outcome, values, detail = run(p)
        assert outcome is Outcome.OK, detail
        shims = values[Value.SHIMS]
        if shims >= 1:
            break
        time.sleep(0.05)
    assert shims == 1  # one container, one shim; other sandboxes' shims are not ours


AS_NOBODY_ARGV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
"""util-linux's setpriv; subprocess(user=...) cannot exec the venv's python on this VM."""
PROBE_ONCE = """
import json, sys
from nodeprobe.model import Check, Runtime
from nodeprobe.probes.process import ProcessProbe
obs = ProcessProbe(Runtime.DOCKERD, socket_path=sys.argv[1]).run(
    Check.PROCESS, deadline_s=3, slow_s=3)
print(json.dumps({"outcome": obs.outcome, "detail": obs.detail, "values": dict(obs.values),
                  "info": dict(obs.info)}))
"""


def test_unreadable_fds_degrade_to_unknown_not_error(runtimes: Sandbox) -> None:
    """/proc/<dockerd>/fd closed to us (as `nobody`; on this VM root without capabilities can
    still read it): memory is still read; fds are 'unknown', not an ERROR."""
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [*AS_NOBODY_ARGV, sys.executable, "-c", PROBE_ONCE, str(runtimes.dockerd.socket)],
        cwd=repo, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    got = json.loads(done.stdout)
    assert got["outcome"] == Outcome.OK, got["detail"]
    assert "fd count unknown (/proc/<pid>/fd needs CAP_SYS_PTRACE" in got["detail"]
    assert Value.FDS not in got["values"] and got["info"]["fds"] == "unknown"
    assert got["values"][Value.RSS_ANON_BYTES] > 0
    assert got["values"][Value.PID] == runtimes.dockerd.pid


def test_fd_limit_is_the_daemons_own(runtimes: Sandbox) -> None:
    limits = Path(f"/proc/{runtimes.dockerd.pid}/limits").read_text()
    soft = next(line.split()[3] for line in limits.splitlines()
                if line.startswith("Max open files"))
    outcome, values, detail = run(probe(Runtime.DOCKERD, runtimes.dockerd))
    assert outcome is Outcome.OK
    assert values[Value.FD_LIMIT] == int(soft)
    assert f"of {soft} open fds" in detail


def prlimit_nofile(pid: int, soft: int, hard: int) -> None:
    """util-linux prlimit on a running process; root here lacks CAP_SYS_RESOURCE, so only the
    soft limit moves (below the hard one), and it can be raised back."""
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:{hard}"], check=True,
                   capture_output=True, timeout=30)


def test_fds_near_the_daemons_own_limit_raise_and_clear(runtimes: Sandbox) -> None:
    """containerd's soft nofile lowered to just above its open fds: RuntimeFdsNearLimit through
    the agent's judge; the limit raised back, it clears."""
    daemon = runtimes.containerd
    config = Config.defaults()
    limits = Path(f"/proc/{daemon.pid}/limits").read_text()
    soft, hard = next(line.split()[3:5] for line in limits.splitlines()
                      if line.startswith("Max open files"))
    p = probe(Runtime.CONTAINERD, daemon)
    judge = Judge(config, expected={(Runtime.CONTAINERD, Check.PROCESS)}, now=time.time())

    def check() -> Observation:
        obs = p.run(Check.PROCESS, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
        assert obs.outcome is Outcome.OK, obs.detail
        judge.observe(obs, now=time.time())
        return obs

    def degraded() -> tuple[Status, str, str]:
        cond = judge.conditions()[ConditionType.DEGRADED]
        return cond.status, cond.reason, cond.message

    assert degraded()[:2] == (Status.UNKNOWN, Reason.UNKNOWN)
    fds = int(check().values[Value.FDS])
    assert degraded()[:2] == (Status.FALSE, Reason.NOT_DEGRADED)
    # 80 % of the limit even with one fd fewer (the probe's own peercred connection comes and
    # goes); a few fds of room left, so containerd goes on working
    low = math.floor((fds - 1) / (config.judge.fd_limit_percent / 100))
    assert low - fds >= 2, (fds, low)
    try:
        prlimit_nofile(daemon.pid, low, int(hard))
        end = time.monotonic() + 10
        while True:
            obs = check()
            assert obs.values[Value.FD_LIMIT] == low
            status, reason, message = degraded()
            if status is Status.TRUE or time.monotonic() > end:
                break
        assert (status, reason) == (Status.TRUE, Reason.RUNTIME_FDS_NEAR_LIMIT), (fds, low, obs)
        held = int(obs.values[Value.FDS])
        assert message.startswith(
            f"containerd holds {held} open fds, {100 * held / low:.0f}% of its own limit of {low}")
    finally:
        prlimit_nofile(daemon.pid, int(soft), int(hard))
    obs = check()
    assert obs.values[Value.FD_LIMIT] == int(soft)
    assert degraded()[:2] == (Status.FALSE, Reason.NOT_DEGRADED)


# ---- the daemon behind the socket, zombies, tenants named like shims (issues 17, 18) --------


def _blind(*_: object, **__: object) -> None:
    """SO_PEERCRED as an agent without hostPID sees it: the listener's pid is 0 (None)."""
    return None


def test_without_peercred_the_socket_inode_finds_the_younger_containerd(tmp_path: Path) -> None:
    """Two real containerds whose argv names no socket (a config file does): the scan alone
    picks the oldest; the listener of our socket is the younger one."""
    from tests.harness.cri import containerd_in
    from tests.harness.runtimes import containerd_build, containerd_config

    build = containerd_build()
    bases = [Path(tempfile.mkdtemp(prefix=f"np-two{i}-", dir="/tmp")) for i in range(2)]
    for base in bases:
        for d in ("root", "state", "cni-bin", "cni-conf"):
            (base / d).mkdir()
        (base / "config.toml").write_text(containerd_config(base))
    with contextlib.ExitStack() as stack:
        older, younger = (stack.enter_context(containerd_in(
            base, name=f"containerd-two{i}", argv=[build.binary, "--config",
                                                  str(base / "config.toml")], env=build.env))
            for i, base in enumerate(bases))
        blind = ProcessProbe(Runtime.CONTAINERD, socket_path=str(younger.socket), peer=_blind)
        obs = blind.run(Check.PROCESS, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
        assert obs.outcome is Outcome.OK, obs.detail
        assert (obs.values[Value.PID], obs.info["found_by"]) == (younger.pid, "socket inode")
        other = ProcessProbe(Runtime.CONTAINERD, socket_path=str(older.socket), peer=_blind)
        assert other.run(Check.PROCESS, deadline_s=DEADLINE_S,
                         slow_s=DEADLINE_S).values[Value.PID] == older.pid


def test_a_zombie_dockerd_is_down_with_its_pid_named(tmp_path: Path) -> None:
    """A process named dockerd that exited and that its parent (this test) does not reap."""
    binary = tmp_path / "dockerd"
    shutil.copy("/bin/sleep", binary)
    pid = os.posix_spawn(str(binary), ["dockerd", "600"], {})
    try:
        os.kill(pid, signal.SIGKILL)
        stat = Path(f"/proc/{pid}/stat")
        deadline = time.monotonic() + 10
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not become a zombie"
            time.sleep(0.01)  # polling a real state
        p = ProcessProbe(Runtime.DOCKERD, socket_path=str(tmp_path / "docker.sock"), peer=_blind)
        obs = p.run(Check.PROCESS, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    finally:
        os.waitpid(pid, 0)
    assert obs.outcome is Outcome.DOWN, obs.detail
    assert f"pid {pid} is a zombie" in obs.detail and f"pid {os.getpid()}" in obs.detail
    assert Value.PID not in obs.values and Value.PROCESS_START_TICKS not in obs.values


def test_a_tenant_process_named_like_a_shim_is_not_counted(runtimes: Sandbox) -> None:
    """argv[0] containerd-shim-runc-v2 naming our socket, but its parent is this test, not the
    init process or containerd."""
    p = probe(Runtime.CONTAINERD, runtimes.containerd)
    before = run(p)[1][Value.SHIMS]
    argv = ["containerd-shim-runc-v2", "-c", "import time; time.sleep(600)", "-namespace",
            "k8s.io", "-id", "tenant", "-address", str(runtimes.containerd.socket)]
    pid = os.posix_spawn(sys.executable, argv, dict(os.environ))
    try:
        cmdline = Path(f"/proc/{pid}/cmdline")
        deadline = time.monotonic() + 10
        while not cmdline.read_bytes().startswith(b"containerd-shim-runc-v2"):
            assert time.monotonic() < deadline, "the tenant process did not start"
            time.sleep(0.01)  # polling a real state
        after = run(p)[1][Value.SHIMS]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert after == before


@contextlib.contextmanager
def init_child_shim(socket: Path, *, own_mount_ns: bool) -> Iterator[int]:
    """A process named like a shim of `socket` whose parent is the init process, as a real
    shim's is (its starter exits at once); in a mount namespace of its own if asked."""
    shim = (f"exec -a containerd-shim-runc-v2 {sys.executable} -c 'import time; time.sleep(600)'"
            f" -namespace k8s.io -id other -address {socket}")
    argv = ["bash", "-c", shim]
    if own_mount_ns:
        argv = [shutil.which("unshare") or "unshare", "-m", "--propagation", "private", *argv]
    starter = subprocess.run(["bash", "-c", f"{subprocess.list2cmdline(argv)} "
                              ">/dev/null 2>&1 </dev/null & echo $!"],
                             capture_output=True, text=True, check=True, timeout=10)
    pid = int(starter.stdout)
    try:
        status = Path(f"/proc/{pid}/status")
        deadline = time.monotonic() + 10
        while not (Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"containerd-shim")
                   and "PPid:\t1\n" in status.read_text()):
            assert time.monotonic() < deadline, "the shim-like process did not start"
            time.sleep(0.01)  # polling a real state
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_shim_in_another_mount_namespace_is_another_containerds(runtimes: Sandbox) -> None:
    """Two nodes on one host (kind, the suite's real nodes) each serve
    /run/containerd/containerd.sock in their own mount namespace: a shim naming that path
    from another namespace is not ours (three real nodes side by side counted 6-7 shims for
    3 sandboxes and raised ContainerdOrphanedShims)."""
    p = probe(Runtime.CONTAINERD, runtimes.containerd)
    before = run(p)[1][Value.SHIMS]
    with init_child_shim(runtimes.containerd.socket, own_mount_ns=True):
        elsewhere = run(p)[1][Value.SHIMS]
    with init_child_shim(runtimes.containerd.socket, own_mount_ns=False):
        here = run(p)[1][Value.SHIMS]  # the same process in our namespace does count
    assert (elsewhere, here) == (before, before + 1)
