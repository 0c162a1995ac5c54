"""glibc heap settings: they apply on glibc (this machine, the image) and do nothing elsewhere.
In a fresh interpreter: the arena limit is process-wide."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


def test_arena_limit_and_trim_apply_on_glibc() -> None:
    code = ("from nodeprobe import heap; "
            "print(heap.limit_arenas(), heap.release_free_memory())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout.split()
    assert out == ["True", "True"]
