"""The real node's `systemctl` stand-in (tests/harness/kubecluster/units.py) runs nothing but
`restart <unit>` of a unit the node has: a reboot, or any other verb, is refused with exit 1 and
touches no daemon. (Its restart of the node's real containerd is test_repair_loop.py's.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.harness.kubecluster.units import UnitManager, standin_script
from tests.harness.runtimes import Daemon


def _untouchable() -> Daemon:
    raise AssertionError("the stand-in reached a daemon for a refused request")


def test_the_standin_refuses_reboot_and_everything_but_restart(tmp_path: Path) -> None:
    manager = UnitManager(tmp_path / "u.sock", {"containerd": _untouchable}).start()
    standin = tmp_path / "systemctl"
    standin.write_text(standin_script(manager.sock_path))
    standin.chmod(0o755)
    try:
        for argv, says in ((["reboot"], "refused"), (["--force", "reboot"], "refused"),
                           (["stop", "containerd"], "refused"),
                           (["restart", "docker"], "docker.service not found")):
            done = subprocess.run([str(standin), *argv], capture_output=True, text=True,
                                  timeout=30, check=False)
            assert done.returncode == 1 and says in done.stderr, (argv, done)
    finally:
        manager.stop()
    assert manager.restarts == []
