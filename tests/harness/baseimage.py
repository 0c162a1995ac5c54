"""A local Debian base image for building the Dockerfile where no registry is reachable.

`debootstrap --variant=minbase` fetches packages from Debian's mirror (a package download, which
is reachable here), the result is tarred and `docker import`ed into the sandbox dockerd. The tar
is cached under CACHE_DIR keyed by a hash of every input, so re-runs skip the slow part; without
the cache (a fresh CI machine) it is simply built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

CACHE_DIR = Path(os.environ.get("NODEPROBE_TEST_CACHE", "/var/cache/nodeprobe-test"))
"""The debootstrapped base and wheelhouse, kept between runs (a fresh machine: an empty one)."""
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = ("python3", "python3-venv", "python3-systemd")
"""What the Dockerfile would apt-get install on debian:bookworm-slim (the build has no network)."""
BASE_TAG = "nodeprobe-test/debian-base:bookworm"
_RECIPE_VERSION = "1"
"""Bump when the way the tar is made changes, so stale caches are not reused."""


def cache_key() -> str:
    recipe = json.dumps([_RECIPE_VERSION, SUITE, MIRROR, "minbase", sorted(INCLUDE)])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def rootfs_tar(*, cache_dir: Path = CACHE_DIR) -> Path:
    """Return a tar of the debootstrapped rootfs, building it (minutes) only when not cached."""
    cached = cache_dir / f"debian-{SUITE}-{cache_key()}.tar"
    if cached.exists():
        return cached
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise RuntimeError("debootstrap not found: apt-get install debootstrap (make deps does)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="np-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        proc = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE,
             str(root), MIRROR],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"debootstrap {SUITE} from {MIRROR} failed (is the mirror "
                               f"reachable?):\n{(proc.stdout + proc.stderr)[-3000:]}")
        # The apt lists and caches only make the image bigger.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = cached.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."],
                       check=True)
        os.replace(partial, cached)
    return cached


def import_base(client: object, *, cache_dir: Path = CACHE_DIR) -> str:
    """`docker import` the rootfs into the daemon behind `client` (a docker.APIClient)."""
    tar = rootfs_tar(cache_dir=cache_dir)
    repo, tag = BASE_TAG.rsplit(":", 1)
    with tar.open("rb") as f:
        client.import_image_from_data(  # type: ignore[attr-defined]
            f.read(), repository=repo, tag=tag)
    return BASE_TAG


def wheelhouse(pyproject: Path, *, cache_dir: Path = CACHE_DIR) -> Path:
    """Wheels for the project's dependencies plus its build backend, for an offline image build.

    Downloaded with the host's pip (its index and certificates) because the image build has no
    network; cached by the dependency list, as the base rootfs is.
    """
    meta = tomllib.loads(pyproject.read_text())
    reqs = [*meta["build-system"]["requires"], "wheel", *meta["project"]["dependencies"],
            *meta["project"]["optional-dependencies"]["operator"]]  # the image runs it too
    key = hashlib.sha256(json.dumps([sys.version_info[:2], reqs]).encode()).hexdigest()[:16]
    target = cache_dir / f"wheelhouse-{key}"
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(target),
         "--only-binary=:all:", *reqs],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pip download of {reqs} failed:\n{proc.stderr[-3000:]}")
    (target / ".complete").touch()
    return target


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        print(rootfs_tar())
