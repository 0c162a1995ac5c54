"""Repair settings defaults and command building, without any daemon."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from nodeprobe.config import Config, load
from nodeprobe.model import Runtime
from nodeprobe.repair import actions
from nodeprobe.repair.actions import ActionSettings


def settings(**over: object) -> ActionSettings:
    return dataclasses.replace(ActionSettings.from_config(Config.defaults()), **over)  # type: ignore[arg-type]


def test_defaults_come_from_the_config_tree() -> None:
    s = ActionSettings.from_config(Config.defaults())
    host = ("nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--")
    assert s.restart_commands[Runtime.DOCKERD] == (*host, "systemctl", "restart", "docker")
    assert s.restart_commands[Runtime.CONTAINERD] == (*host, "systemctl", "restart", "containerd")
    assert s.reboot_command == (*host, "systemctl", "reboot")
    assert s.dockerd_exec_root == Path("/var/run/docker")
    assert (s.dump_wait_s, s.command_timeout_s, s.answer_wait_s) == (10.0, 120.0, 60.0)


def test_auto_sockets_are_found_under_the_host_root(tmp_path: Path) -> None:
    """The chart mounts the host's /run at /host/run: the executor waits for the restarted
    runtime's socket there, as the probes find it, not in its own container's /run."""
    run = tmp_path / "run" / "containerd"
    run.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(run / "containerd.sock"))
        config = load(None, overrides={"paths.hostRoot": str(tmp_path)})
        s = ActionSettings.from_config(config)
    assert s.containerd_socket == run / "containerd.sock"
    assert s.dockerd_socket == tmp_path / "var" / "run" / "docker.sock"  # none: the first


def test_unit_is_substituted_per_argument(tmp_path: Path) -> None:
    out = tmp_path / "argv"
    cmd = ("sh", "-c", f'echo "$0" > {out}', "{unit}")
    s = settings(restart_commands={Runtime.CONTAINERD: cmd},
                       containerd_socket=tmp_path / "missing.sock", answer_wait_s=0.3)
    r = actions.restart_runtime(Runtime.CONTAINERD, s, dry_run=False)
    assert out.read_text().strip() == "containerd"
    assert not r.ok and "did not answer within" in r.message  # no socket here: honest failure


def test_no_dump_while_dockerd_is_down_is_a_clear_message(tmp_path: Path) -> None:
    s = settings(dockerd_pidfile=tmp_path / "nope.pid", dockerd_socket=tmp_path / "d.sock")
    r = actions.dump_goroutines(s, dry_run=False)
    assert not r.ok and f"dockerd is DOWN ({tmp_path / 'd.sock'} refuses" in r.message


def test_command_timeout_is_reported(tmp_path: Path) -> None:
    s = settings(reboot_command=("sleep", "5"), command_timeout_s=0.2)
    r = actions.reboot(s, dry_run=False)
    assert not r.ok and "did not finish within" in r.message


def test_boot_id_read(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("abc\n")
    assert actions.boot_id(settings(boot_id_path=tmp_path / "b")) == "abc"
    assert actions.boot_id(settings(boot_id_path=tmp_path / "x")) == ""
