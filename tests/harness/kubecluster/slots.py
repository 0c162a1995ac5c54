"""Slots for real nodes, so up to SLOTS of them (each with its control plane) run side by side.

A real node puts a few things on the host that must not collide with another node's: its CNI
bridge, the link holding the API server's service address (the first of the control plane's
--service-cluster-ip-range), its pods' subnet and kubelet's cgroups (kubelet's `cgroupRoot`).
A slot number gives each of them, and a slot is held by an flock on its own lock file for as
long as the control plane made `for_node=True` runs; a node whose slot is free starts at once,
and with every slot taken it waits.

Slot 0 keeps the names, addresses and lock file of the time before slots (one node per
machine), so an older checkout and this one exclude each other instead of sharing `np-cni0`.
"""

from __future__ import annotations

import fcntl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

SLOTS = 3
LOCK_DIR = Path("/run/lock")
CGROUP = Path("/sys/fs/cgroup")
WAIT_POLL_S = 1.0
"""How often a node waiting for a slot tries them all again (s)."""


@dataclass(frozen=True)
class Slot:
    """What a real node in slot `number` names and addresses on the host."""

    number: int

    @property
    def lock(self) -> Path:
        suffix = f"-{self.number}" if self.number else ""
        return LOCK_DIR / f"nodeprobe-real-node{suffix}.lock"

    @property
    def bridge(self) -> str:
        return f"np-cni{self.number}"

    @property
    def service_link(self) -> str:
        return f"np-svc{self.number}"

    @property
    def service_range(self) -> str:
        return f"10.96.{self.number}.0/24"

    @property
    def service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP: the first address of the service range."""
        return f"10.96.{self.number}.1"

    @property
    def pod_subnet(self) -> str:
        return f"10.233.{self.number}.0/24"

    @property
    def cgroup_root(self) -> str:
        """kubelet's `cgroupRoot`: its `kubepods` go under it, in every hierarchy."""
        return f"/np-node{self.number}"

    def cgroup_dirs(self) -> list[Path]:
        """The cgroup root in every hierarchy of the host (v1 controllers, named, unified)."""
        return [d / self.cgroup_root.lstrip("/") for d in sorted(CGROUP.iterdir()) if d.is_dir()]


@dataclass
class HeldSlot:
    """A slot and the open lock file that holds it (closing the file frees the slot)."""

    slot: Slot
    lock_file: IO[str]

    def release(self) -> None:
        self.lock_file.close()


def _try(slot: Slot) -> HeldSlot | None:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    lock_file = slot.lock.open("w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        return None
    return HeldSlot(slot, lock_file)


def take_slot() -> HeldSlot:
    """The first free slot, held until release(); waits (without end) while all are taken, as
    a real node waited for the single lock before."""
    while True:
        for number in range(SLOTS):
            held = _try(Slot(number))
            if held is not None:
                return held
        time.sleep(WAIT_POLL_S)

