"""prometheus-operator's own CRDs (ServiceMonitor, PrometheusRule), so the real API server checks
the chart's monitoring objects against their real schemas.

They come from the prometheus-operator Go module (its `example/prometheus-operator-crd/`),
downloaded once per machine into the Go module cache, like the other Go tools (tools/go/).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

MODULE = "github.com/prometheus-operator/prometheus-operator"
VERSION = "v0.85.0"
KINDS = ("servicemonitors", "prometheusrules")


def _go() -> str:
    local = "/usr/local/go/bin/go"
    go = local if os.access(local, os.X_OK) else shutil.which("go")
    assert go, "go not found (Go 1.26 in /usr/local/go; tools/go/build needs it too)"
    return go


def crd_files() -> list[Path]:
    """The CRD files of KINDS, from the module cache (downloaded when missing)."""
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    proc = subprocess.run([_go(), "mod", "download", "-json", f"{MODULE}@{VERSION}"],
                          capture_output=True, text=True, check=False, timeout=600, env=env,
                          cwd="/")
    assert proc.returncode == 0, f"go mod download {MODULE}@{VERSION}: {proc.stdout}{proc.stderr}"
    root = Path(json.loads(proc.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [root / f"monitoring.coreos.com_{kind}.yaml" for kind in KINDS]
    for f in files:
        assert f.is_file(), f"{f} missing from {MODULE}@{VERSION}"
    return files
