"""Disk space and inodes of a runtime's root, and for dockerd what holds the space.

statvfs of the root's host path (cheap, never blocks on the runtime). When the free share is
below `cause_below_percent`, dockerd is asked for its dangling images (GET /images/json with the
dangling filter), within the check's deadline. Build cache and volumes come only from GET
/system/df, which takes container locks and can take minutes: it runs in its own thread at most
every `usage_interval_s` under its own long deadline, and each check attaches the last answer.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.docker import CallFailed, EngineCall

log = logging.getLogger(__name__)

_DANGLING = urllib.parse.quote(json.dumps({"dangling": ["true"]}))


@dataclass(frozen=True, slots=True)
class Usage:
    """What GET /system/df said, and when (monotonic)."""

    values: Mapping[str, float]
    at: float


def parse_system_df(data: Mapping[str, Any]) -> dict[str, float]:
    """Build cache and volume bytes from a /system/df reply (sizes of -1 mean unknown)."""
    cache = sum(item.get("Size", 0) for item in data.get("BuildCache") or []
                if isinstance(item, dict) and isinstance(item.get("Size"), int)
                and item["Size"] > 0)
    volumes = 0
    for volume in data.get("Volumes") or []:
        usage = volume.get("UsageData") if isinstance(volume, dict) else None
        size = usage.get("Size") if isinstance(usage, dict) else None
        if isinstance(size, int) and size > 0:
            volumes += size
    return {Value.BUILD_CACHE_BYTES: float(cache), Value.VOLUMES_BYTES: float(volumes)}


def parse_dangling(data: object) -> dict[str, float]:
    images = [i for i in data if isinstance(i, dict)] if isinstance(data, list) else []
    size = sum(i.get("Size", 0) for i in images if isinstance(i.get("Size"), int))
    return {Value.DANGLING_IMAGES: float(len(images)), Value.DANGLING_IMAGES_BYTES: float(size)}


@dataclass(slots=True)
class _UsageWorker:
    """The /system/df thread: one call at a time, at most every `interval_s`."""

    socket_path: str
    interval_s: float
    deadline_s: float
    latest: Usage | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="docker-system-df",
                                               daemon=True)
                self.thread.start()

    def read(self) -> Usage | None:
        with self.lock:
            return self.latest

    def _loop(self) -> None:
        while not self.stop.is_set():
            call = EngineCall(self.socket_path, deadline=time.monotonic() + self.deadline_s,
                              deadline_s=self.deadline_s)
            try:
                api = call.get("/_ping").headers.get("Api-Version", "1.41")
                values = parse_system_df(call.get_json(f"/v{api}/system/df"))
                with self.lock:
                    self.latest = Usage(values, time.monotonic())
            except (CallFailed, ValueError) as e:
                log.info("GET /system/df failed (retried in %gs): %s", self.interval_s, e)
            finally:
                call.close()
            self.stop.wait(self.interval_s)


class DiskProbe:
    """statvfs of one runtime root; for dockerd also the causes named above."""

    checks: tuple[Check, ...] = (Check.DISK,)

    def __init__(
        self,
        runtime: Runtime,
        *,
        root: str,
        docker_socket: str | None = None,
        cause_below_percent: float = 20.0,
        usage_interval_s: float = 3600.0,
        usage_deadline_s: float = 300.0,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.runtime = runtime
        self.root = root
        self.docker_socket = docker_socket
        self.cause_below_percent = cause_below_percent
        self._statvfs = statvfs
        self._usage = None if docker_socket is None else _UsageWorker(
            docker_socket, usage_interval_s, usage_deadline_s)

    def close(self) -> None:
        if self._usage is not None:
            self._usage.stop.set()

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        at, start = time.time(), time.monotonic()
        info = {"root": self.root}
        try:
            st = self._statvfs(self.root)
        except OSError as e:
            key = "dockerRoot" if self.runtime is Runtime.DOCKERD else "containerdRoot"
            detail = (f"cannot read the filesystem of {self.root}: {e.strerror or e}; set "
                      f"disk.{key} to the runtime's root on the host and mount it (read-only)")
            return Observation(self.runtime, check, Outcome.ERROR, time.monotonic() - start, at,
                               detail, {}, info)
        values: dict[str, float] = {
            Value.DISK_AVAILABLE_BYTES: float(st.f_bavail * st.f_frsize),
            Value.DISK_TOTAL_BYTES: float(st.f_blocks * st.f_frsize),
            Value.INODES_AVAILABLE: float(st.f_favail),
            Value.INODES_TOTAL: float(st.f_files),
        }
        free = percent(values[Value.DISK_AVAILABLE_BYTES], values[Value.DISK_TOTAL_BYTES])
        inodes = percent(values[Value.INODES_AVAILABLE], values[Value.INODES_TOTAL])
        detail = f"{self.root}: {free:.1f}% free" + (
            f", {inodes:.1f}% inodes free" if values[Value.INODES_TOTAL] else "")
        if self._usage is not None:
            self._usage.ensure_started()
            usage = self._usage.read()
            if usage is not None:
                values.update(usage.values)
                info["usage_age_s"] = f"{time.monotonic() - usage.at:.0f}"
            if min(free, inodes) < self.cause_below_percent:
                detail += self._dangling(values, start + deadline_s, deadline_s)
        latency = time.monotonic() - start
        outcome = Outcome.SLOW if latency > slow_s else Outcome.OK
        return Observation(self.runtime, check, outcome, latency, at, detail, values, info)

    def _dangling(self, values: dict[str, float], deadline: float, deadline_s: float) -> str:
        assert self.docker_socket is not None
        call = EngineCall(self.docker_socket, deadline=deadline, deadline_s=deadline_s)
        try:
            api = call.get("/_ping").headers.get("Api-Version", "1.41")
            found = parse_dangling(call.request("GET", f"/v{api}/images/json?filters={_DANGLING}")
                                   .json())
        except (CallFailed, ValueError) as e:
            return f"; dangling images unknown ({e})"
        finally:
            call.close()
        values.update(found)
        return (f"; {found[Value.DANGLING_IMAGES]:.0f} dangling images, "
                f"{found[Value.DANGLING_IMAGES_BYTES] / 2**20:.0f} MiB")


def percent(part: float, whole: float) -> float:
    """part/whole in percent; 100 when `whole` is 0 (no fixed inode table: never 'full')."""
    return 100.0 * part / whole if whole > 0 else 100.0
