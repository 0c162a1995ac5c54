"""`nodeprobe.operator.run()` with its metrics port open, in its own process (for tests that
scrape it or need a live operator beside other parts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.agent.agent_process import free_port, terminate
from tests.integration.operator.cluster import ROOT


class OperatorProcess:
    def __init__(self, kubeconfig: Path, tmp: Path, *, tick_s: float = 0.3) -> None:
        self.port = free_port()
        self.log = tmp / "operator.log"
        code = ("import logging; logging.basicConfig(level=logging.INFO); "
                "from nodeprobe.operator import run; "
                f"run(kubeconfig={str(kubeconfig)!r}, standalone=True, tick_s={tick_s}, "
                f"metrics_port={self.port})")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)})

    def stop(self) -> None:
        terminate(self.proc)  # type: ignore[arg-type]
