"""kubectl against the session's real control plane, for the chart's server-side tests."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.harness.gotools import tool
from tools import helm as h

CRDS = ("remediationpolicies.nodeprobe.io", "noderemediations.nodeprobe.io")
"""The chart's CRDs."""
DEADLINE_S = 60.0
"""Generous: the machine is shared, and a new admission policy takes a moment to be enforced."""


class Kubectl:
    """The real kubectl with one kubeconfig; every call has a timeout and returns its output."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.binary = str(tool("kubectl"))

    def run(self, *args: str, stdin: str | None = None, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.binary, "--kubeconfig", str(self.kubeconfig), *args],
                              input=stdin, capture_output=True, text=True, check=False,
                              timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} -> {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def json(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run(*args, "-o", "json").stdout)
        return out

    def exists(self, kind: str, name: str, namespace: str | None = None) -> bool:
        ns = ["-n", namespace] if namespace else []
        proc = self.run("get", kind, name, *ns, "--ignore-not-found", "-o", "name", check=False)
        assert proc.returncode == 0, proc.stderr
        return bool(proc.stdout.strip())

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return h.helm(*args, "--kubeconfig", str(self.kubeconfig), check=check)


def wait(predicate: Any, *, what: str, timeout_s: float = DEADLINE_S) -> Any:
    end = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.2)


