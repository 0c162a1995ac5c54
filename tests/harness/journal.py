"""Real journal files, as journald lays them out on a host (<dir>/<machine-id>/*.journal).

Written by Debian's systemd-journal-remote (Makefile DEBS) from export-format input, so the
runtime-log check reads files made by systemd's own writer, with the entry times a test chooses.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

JOURNAL_REMOTE = "/usr/lib/systemd/systemd-journal-remote"
MACHINE_ID = "0123456789abcdef0123456789abcdef"
"""Not this host's: the reader must open the directory by path, not filter on the machine."""
BOOT = uuid.uuid4().hex
CORRUPT = ("time=\"2026-01-01T00:00:00Z\" level=error msg=\"Handler for POST /containers/create "
           "returned error: readlink /var/lib/docker/overlay2/l/ABCDEFGH: invalid argument\"")
"""dockerd's line for a broken overlay2 layer link (DESIGN 2a)."""
BENIGN = "level=info msg=\"API listen on /run/docker.sock\""
"""An ordinary dockerd line the runtime-log check must not count."""


def write_journal(directory: Path, entries: list[tuple[float, str, str]]) -> None:
    """One more journal file under `directory`/<machine-id>/ holding `entries` (time, unit,
    message), in the order given, as journald would have written them."""
    machine = directory / MACHINE_ID
    machine.mkdir(parents=True, exist_ok=True)
    export = "".join(
        f"__REALTIME_TIMESTAMP={int(at * 1e6)}\n__MONOTONIC_TIMESTAMP={i + 1}\n_BOOT_ID={BOOT}\n"
        f"_HOSTNAME=node-a\n_SYSTEMD_UNIT={unit}\nMESSAGE={message}\n\n"
        for i, (at, unit, message) in enumerate(entries)
    )
    out = machine / f"remote-{uuid.uuid4().hex[:8]}.journal"
    subprocess.run([JOURNAL_REMOTE, f"--output={out}", "-"], input=export.encode(), check=True,
                   capture_output=True, timeout=60)
