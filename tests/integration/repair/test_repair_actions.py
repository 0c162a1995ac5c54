"""Forensics and restarts against the real sandbox dockerd: real signals, real restarts."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from nodeprobe.model import Runtime
from nodeprobe.repair import actions
from nodeprobe.repair.actions import ActionSettings
from tests.harness.runtimes import Sandbox
from tests.integration.repair.systemd_stub import Servicer, command


def settings_for(sandbox: Sandbox, spool: Path, **over: object) -> ActionSettings:
    base = sandbox.base
    stub = command(spool)
    kw: dict[str, object] = {
        "restart_commands": {Runtime.DOCKERD: stub, Runtime.CONTAINERD: stub},
        "reboot_command": ("false",),
        "dockerd_pidfile": base / "docker" / "dockerd.pid",
        "dockerd_exec_root": base / "docker" / "exec",
        "dump_dir": None,
        "dockerd_socket": sandbox.dockerd.socket,
        "containerd_socket": sandbox.containerd.socket,
        "dump_wait_s": 5.0,
        "answer_wait_s": 60.0,
    }
    kw.update(over)
    return ActionSettings(**kw)  # type: ignore[arg-type]


def test_sigusr1_dump_from_running_dockerd(runtimes: Sandbox, tmp_path: Path) -> None:
    result = actions.dump_goroutines(settings_for(runtimes, tmp_path), dry_run=False)
    assert result.ok, result.message
    assert result.dump_path is not None
    text = Path(result.dump_path).read_text()
    assert "goroutine" in text
    deadline = time.monotonic() + 10
    while result.dump_path not in runtimes.dockerd.log.read_text():  # dockerd logs the path
        assert time.monotonic() < deadline, "dockerd never logged the dump path"
        time.sleep(0.05)


def test_dry_run_sends_nothing_and_runs_nothing(runtimes: Sandbox, tmp_path: Path) -> None:
    s = settings_for(runtimes, tmp_path)
    before = set((runtimes.base / "docker" / "exec").glob("goroutine-stacks-*"))
    assert "dry run" in actions.dump_goroutines(s, dry_run=True).message
    r = actions.restart_runtime(Runtime.DOCKERD, s, dry_run=True)
    assert not r.ok and "would run" in r.message
    assert set((runtimes.base / "docker" / "exec").glob("goroutine-stacks-*")) == before
    assert not (tmp_path / "docker.request").exists()


def test_restart_of_hung_dockerd_for_real(own_runtimes: Sandbox, tmp_path: Path) -> None:
    s = settings_for(own_runtimes, tmp_path, answer_wait_s=60.0)
    old_pid = own_runtimes.dockerd.pid
    own_runtimes.dockerd.hang()
    deadline = time.monotonic() + 10  # SIGSTOP lands asynchronously
    while actions.answers(Runtime.DOCKERD, s):
        assert time.monotonic() < deadline, "dockerd still answers after SIGSTOP"
    with Servicer(own_runtimes, tmp_path) as servicer:
        dump = actions.dump_goroutines(s, dry_run=False)
        assert not dump.ok and "no goroutine dump" in dump.message  # SIGSTOPped: cannot dump
        result = actions.restart_runtime(Runtime.DOCKERD, s, dry_run=False)
    assert result.ok, result.message
    assert servicer.restarts["docker"] == 1
    assert own_runtimes.dockerd.pid != old_pid
    assert actions.answers(Runtime.DOCKERD, s)


def test_stopped_dockerd_dumps_once_resumed(runtimes: Sandbox, tmp_path: Path) -> None:
    s = settings_for(runtimes, tmp_path, dump_wait_s=1.0)
    sent = time.time()
    with runtimes.dockerd.hung():
        dump = actions.dump_goroutines(s, dry_run=False)
        assert not dump.ok and "no goroutine dump" in dump.message
    deadline = time.monotonic() + 10
    while (late := actions.late_dump(s, sent)) is None:  # the pending SIGUSR1 is handled now
        assert time.monotonic() < deadline, "no dump after SIGCONT"
        time.sleep(0.05)
    assert "goroutine" in Path(late).read_text()


def test_failed_restart_command_is_reported(runtimes: Sandbox, tmp_path: Path) -> None:
    s = settings_for(runtimes, tmp_path, restart_commands={Runtime.CONTAINERD: ("false",)})
    r = actions.restart_runtime(Runtime.CONTAINERD, s, dry_run=False)
    assert not r.ok and "exited 1" in r.message
    s = settings_for(runtimes, tmp_path,
                     restart_commands={Runtime.CONTAINERD: ("/nonexistent/systemctl",)})
    r = actions.restart_runtime(Runtime.CONTAINERD, s, dry_run=False)
    assert not r.ok and "not found" in r.message


def test_dump_never_signals_what_a_stale_pidfile_names(runtimes: Sandbox, tmp_path: Path) -> None:
    """issue 18: a crashed dockerd leaves its pidfile; the pid in it can be anything by now.
    A real process named there (whose SIGUSR1 default action is to die) is left alone."""
    other = subprocess.Popen(["sleep", "300"])
    try:
        pidfile = tmp_path / "docker.pid"
        pidfile.write_text(f"{other.pid}\n")
        s = settings_for(runtimes, tmp_path, dockerd_pidfile=pidfile, dump_wait_s=0.5)
        result = actions.dump_goroutines(s, dry_run=False)
        assert not result.ok
        assert f"names pid {other.pid}, but dockerd pid {runtimes.dockerd.pid}" in result.message
        assert other.poll() is None  # not signalled: still running
        assert "dry run: no goroutine dump" in actions.dump_goroutines(s, dry_run=True).message
    finally:
        other.kill()
        other.wait()


def test_dump_only_to_the_sockets_listener_named_dockerd(runtimes: Sandbox,
                                                         tmp_path: Path) -> None:
    """Something else listening on the configured socket is not dockerd, whatever it says."""
    path = tmp_path / "fake.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fake:
        fake.bind(str(path))
        fake.listen(1)
        pidfile = tmp_path / "docker.pid"
        pidfile.write_text(f"{os.getpid()}\n")
        s = settings_for(runtimes, tmp_path, dockerd_pidfile=pidfile, dockerd_socket=path)
        pid, why = actions.verified_dockerd(s)
    assert pid is None and f"pid {os.getpid()} listens on {path} but is" in why
    assert actions.verified_dockerd(settings_for(runtimes, tmp_path))[0] == runtimes.dockerd.pid


def test_dump_skipped_while_dockerd_is_down(own_runtimes: Sandbox, tmp_path: Path) -> None:
    s = settings_for(own_runtimes, tmp_path)
    own_runtimes.dockerd.crash()  # its pidfile stays behind
    result = actions.dump_goroutines(s, dry_run=False)
    assert not result.ok and "dockerd is DOWN" in result.message, result.message
