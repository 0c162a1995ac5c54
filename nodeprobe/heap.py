"""glibc heap settings for the long-running agent: fewer malloc arenas, free pages handed back.

The agent runs ~20 threads (one per check, grpc's own, the HTTP server). glibc gives each thread
that allocates an arena of its own, up to 8 per core, and keeps freed pages: both are resident
memory the agent does not use (docs/performance.md, "Agent footprint"). Setting `mallopt` here,
not MALLOC_ARENA_MAX in the image, makes every way of running the agent get it. Off glibc (musl,
other platforms) both calls do nothing.
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8
"""glibc's `mallopt` parameter number for the arena limit (malloc.h)."""

ARENAS = 2
"""The main arena plus one shared by all other threads: the agent's threads allocate little and
seldom at once, so they rarely wait on each other's malloc lock."""


def _libc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)  # the process's own symbols: glibc's when linked against it
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; call before threads start. False where it does not apply."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def release_free_memory() -> bool:
    """Hand freed heap pages back to the kernel (`malloc_trim(0)`): start-up leaves a few hundred
    KiB free but resident. False where it does not apply."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
