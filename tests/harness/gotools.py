"""Where the Go tools the suite builds live: one directory per tool and version, outside the tree.

tools/go/build writes them; this module only finds them, so the version is written once
(tools/go/versions.env) and a missing binary says how to build it instead of skipping a test.
While tools/go/build is making a tool (`make test` builds in the background while the tests that
need no Go tool run), finding that tool waits for it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools" / "go" / "build"
VERSIONS = ROOT / "tools" / "go" / "versions.env"


WAITED: dict[str, float] = {}
"""Seconds this process waited for tools/go/build, per tool (the test session reports them)."""


class ToolMissing(RuntimeError):
    """A Go tool the suite needs is not built; the message says how to build it."""


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in VERSIONS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def cache_dir() -> Path:
    return Path(os.environ.get("NODEPROBE_TOOLS_CACHE", "/var/cache/nodeprobe/tools"))


_DIRS = {
    "kube-apiserver": ("kube", "KUBERNETES"),
    "kube-controller-manager": ("kube", "KUBERNETES"),
    "kubectl": ("kube", "KUBERNETES"),
    "kube-scheduler": ("kube", "KUBERNETES"),
    "kubelet": ("kube", "KUBERNETES"),
    "pause": ("node", "KUBERNETES"),
    "etcd": ("etcd", "ETCD"),
    "helm": ("helm", "HELM"),
}


def wait_built(target: str) -> None:
    """Wait while tools/go/build makes `target` (it holds `.<target>.lock` in the cache until
    that tool is built); returns at once when no build is running."""
    lock = cache_dir() / f".{target}.lock"
    if not lock.exists():
        return
    started = time.monotonic()
    with lock.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
    WAITED[target] = WAITED.get(target, 0.0) + time.monotonic() - started


def _path(name: str) -> tuple[str, Path]:
    target, key = _DIRS[name]
    directory = "kube" if target == "node" else target  # pause sits beside kubelet
    return target, cache_dir() / f"{directory}-{versions()[key]}" / name


def tool(name: str, *, build: bool = False) -> Path:
    """The path of a built tool; with `build`, build it first when it is missing."""
    target, path = _path(name)
    wait_built(target)
    if not path.exists() and build:
        subprocess.run([str(BUILD), target], check=True)
    if not path.exists():
        raise ToolMissing(f"{path} is not built: run `{BUILD} {target}` (make test does; "
                          "its log: build/tools.log)")
    return path


def cni_bin() -> Path:
    """The directory of Debian's CNI plugins that `tools/go/build node` unpacked."""
    wait_built("node")
    found = sorted(cache_dir().glob("cni-*/bin/bridge"))
    if not found:
        raise ToolMissing(f"no CNI plugins under {cache_dir()}: run `{BUILD} node` "
                          "(make test does)")
    return found[-1].parent


def kube_versions() -> str:
    """One line for the pytest header: the control plane the suite runs against, as the built
    binaries report themselves (`--version`, ~0.1 s; the server's own /version is reported at
    the end of the session, see tests/conftest.py). It does not wait for a running build."""
    parts = []
    for name, flag in (("kube-apiserver", "--version"), ("etcd", "--version")):
        path = _path(name)[1]
        if not path.exists():
            parts.append(f"{name} not built yet (tools/go/build)")
            continue
        try:
            done = subprocess.run([str(path), flag], capture_output=True, text=True,
                                  timeout=30, check=False)
            parts.append(f"{name} {done.stdout.splitlines()[0].split()[-1]}")
        except (ToolMissing, OSError, IndexError, subprocess.TimeoutExpired) as e:
            parts.append(f"{name} unavailable ({e})")
    return "kubernetes control plane: " + ", ".join(parts)
