"""`nodeprobe agent` with no runtime socket to probe names the chart value first: in a pod, a
CrashLoopBackOff's log is where users read it, and the chart's pod takes no CLI flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_nothing_to_probe_names_the_chart_value(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "run").mkdir(parents=True)
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  hostRoot: {host}\n")
    done = subprocess.run(
        [sys.executable, "-m", "nodeprobe", "agent", "--standalone", "--config", str(config),
         "--metrics-port", "0"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "nothing to probe" in x]
    assert "agent.containerd.socket" in line and "agent.docker.socket" in line
    assert line.index("agent.containerd.socket") < line.index("--containerd-socket")
