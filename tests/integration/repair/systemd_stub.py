"""A stand-in for `systemctl restart <unit>` that restarts the harness's real daemons.

The harness owns its daemons in-process (`Daemon.restart()`), so the production path (a real
command run by the executor) is kept by making the command this script: it drops a request file
and waits for the test's `Servicer` thread to restart the real daemon and answer. Run as
`python systemd_stub.py <dir> <unit>`.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.harness.runtimes import Sandbox

WAIT_S = 90.0


def main(argv: list[str]) -> int:
    spool, unit = Path(argv[0]), argv[1]
    request = spool / f"{unit}.request"
    done = spool / f"{unit}.done"
    done.unlink(missing_ok=True)
    request.write_text(str(time.time()))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if done.exists():
            result = done.read_text()
            done.unlink(missing_ok=True)
            if result != "ok":
                print(f"restart of {unit} failed: {result}", file=sys.stderr)
                return 1
            return 0
        time.sleep(0.05)
    print(f"nobody restarted {unit} within {WAIT_S:.0f}s", file=sys.stderr)
    return 1


def command(spool: Path) -> tuple[str, ...]:
    return (sys.executable, str(Path(__file__).resolve()), str(spool), "{unit}")


class Servicer:
    """Serves restart requests for one sandbox's units until stopped; counts restarts."""

    def __init__(self, sandbox: Sandbox, spool: Path) -> None:
        self.sandbox = sandbox
        self.spool = spool
        self.restarts: dict[str, int] = {"docker": 0, "containerd": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Servicer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            for unit, daemon in (("docker", self.sandbox.dockerd),
                                 ("containerd", self.sandbox.containerd)):
                request = self.spool / f"{unit}.request"
                if not request.exists():
                    continue
                request.unlink()
                try:
                    daemon.restart()
                    self.restarts[unit] += 1
                    result = "ok"
                except Exception as e:
                    result = repr(e)
                (self.spool / f"{unit}.done").write_text(result)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
