"""A small real filesystem to fill: ext4 on a loop device, mounted under a temp dir (needs root).

The disk check's tests and the fault-matrix benchmark put a runtime's root on it and fill it for
real, so free space and inodes run out as they do on a node.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

FS_BYTES = 160 * 2**20
"""Big enough for dockerd's root with busybox, small enough to fill in a moment."""


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@contextlib.contextmanager
def loop_mount(prefix: str = "np-disk-") -> Iterator[Path]:
    """ext4 without reserved blocks (so 95 % used is 95 % for everyone), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    image = base / "fs.img"
    with image.open("wb") as f:
        f.truncate(FS_BYTES)
    device = _run("losetup", "--find", "--show", str(image)).strip()
    mount = base / "d"
    try:
        _run("mkfs.ext4", "-q", "-m", "0", device)
        mount.mkdir()
        _run("mount", device, str(mount))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def fill_to(mount: Path, used_fraction: float) -> None:
    """Allocate a filler file so `used_fraction` of the filesystem is in use."""
    st = os.statvfs(mount)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    want_free = int(total * (1 - used_fraction))
    with (mount / "filler").open("wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, free - want_free))
