"""Forensics and restarts against the real sandbox dockerd: real signals, real restarts."""

from __future__ import annotations

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
