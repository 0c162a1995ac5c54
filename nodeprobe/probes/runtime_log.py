"""The runtimes' journald entries: counts of corruption and exhaustion patterns over a window.

Overlay2 damage shows only in dockerd's log or on a container start (DESIGN 2a), and "no space
left on device" / "too many open files" are in the log long before anything else says so. The
journal files are read through systemd's own reader (systemd-python, Debian's python3-systemd),
from host directories mounted read-only: `/var/log/journal` (persistent) and `/run/log/journal`
(volatile). Each run opens the directories anew (so rotated and new files are seen), goes on from
the cursor of the last entry it read (the first run starts one window back: older history is not
counted), stops at the deadline and goes on from there next time.

Counting is over `window_s` of entry time, ending now (NPD's docker monitor counts this way):
ten matching lines in five minutes are a finding; the same ten over a day are not.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nodeprobe.model import Check, Observation, Outcome, Runtime, Value

log = logging.getLogger(__name__)

PATTERNS: tuple[tuple[Value, re.Pattern[str]], ...] = (
    (Value.LOG_CORRUPTION, re.compile(
        r"readlink \S*overlay2\S*: (invalid argument|no such file or directory)"
        r"|layer does not exist|failed to register layer|error creating overlay mount to"
        r"|unexpected commit digest|content digest \S+: not found", re.IGNORECASE)),
    (Value.LOG_EXHAUSTION, re.compile(r"no space left on device|too many open files",
                                      re.IGNORECASE)),
    (Value.LOG_SHIM_ERRORS, re.compile(
        r"failed to (delete|kill|start|clean ?up) (dead )?shim|ttrpc: closed"
        r"|failed to delete task|shim .*(panic|killed)", re.IGNORECASE)),
)
"""What each count means; the first pattern that matches a line wins."""

EXAMPLE_CHARS = 160
"""A matching line goes to the agent's log (cut to this), never into a condition or Event:
journal lines carry pod UIDs, volume names and paths, and anyone who can get nodes reads those."""
INSTALL_HINT = ("reading the journal needs systemd-python (pip install systemd-python; Debian: "
                "python3-systemd)")


def classify(message: str) -> Value | None:
    for value, pattern in PATTERNS:
        if pattern.search(message):
            return value
    return None


def _journal() -> Any:
    from systemd import journal  # optional: only nodes that read the journal need it

    return journal


def journal_available() -> bool:
    try:
        _journal()
    except ImportError:
        return False
    return True


class RuntimeLogProbe:
    """One runtime's units in the host journal. One run at a time (the scheduler's rule)."""

    checks: tuple[Check, ...] = (Check.RUNTIME_LOG,)

    def __init__(
        self,
        runtime: Runtime,
        *,
        journal_dirs: Sequence[str],
        units: Sequence[str],
        window_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runtime = runtime
        self.journal_dirs = tuple(journal_dirs)
        self.units = tuple(units)
        self.window_s = window_s
        self._clock = clock
        self._cursors: dict[str, str] = {}
        """Per journal directory: the cursor of the last entry read there."""
        self._matches: list[tuple[float, Value]] = []

    def close(self) -> None:
        """Readers are opened and closed within each run."""

    def has_entries(self) -> bool:
        """True when the journal holds any entry of these units (decides whether to probe)."""
        for _, reader in self._readers():
            try:
                if reader.get_next():
                    return True
            finally:
                reader.close()
        return False

    def run(self, check: Check, *, deadline_s: float, slow_s: float) -> Observation:
        at, start = self._clock(), time.monotonic()
        deadline = start + deadline_s
        try:
            read, complete = self._read(deadline)
        except ImportError:
            return self._obs(check, Outcome.ERROR, start, at, INSTALL_HINT)
        except OSError as e:
            return self._obs(check, Outcome.ERROR, start, at,
                             f"cannot read the journal in {', '.join(self.journal_dirs)}: {e}")
        horizon = at - self.window_s
        self._matches = [m for m in self._matches if m[0] >= horizon]
        counts = collections.Counter(kind for _, kind in self._matches)
        values = {str(value): float(counts.get(value, 0)) for value, _ in PATTERNS}
        info: dict[str, str] = {}
        found = ", ".join(f"{int(n)} {k.removeprefix('log_')}" for k, n in values.items() if n)
        detail = (f"{read} new journal entries of {', '.join(self.units)}; in the last "
                  f"{self.window_s:g}s: {found or 'no corruption or exhaustion lines'}")
        if not complete:
            detail += " (deadline reached: the rest is read next time)"
        latency = time.monotonic() - start
        outcome = Outcome.SLOW if latency > slow_s else Outcome.OK
        return self._obs(check, outcome, start, at, detail, values, info, latency)

    def _obs(self, check: Check, outcome: Outcome, start: float, at: float, detail: str,
             values: dict[str, float] | None = None, info: dict[str, str] | None = None,
             latency: float | None = None) -> Observation:
        took = time.monotonic() - start if latency is None else latency
        return Observation(self.runtime, check, outcome, took, at, detail, values or {},
                           info or {})

    def _readers(self) -> Iterator[tuple[str, Any]]:
        journal = _journal()
        for directory in self.journal_dirs:
            if not os.path.isdir(directory):
                continue
            reader = journal.Reader(path=directory)
            for i, unit in enumerate(self.units):
                if i:
                    reader.add_disjunction()
                reader.add_match(_SYSTEMD_UNIT=unit)
            yield directory, reader

    def _read(self, deadline: float) -> tuple[int, bool]:
        """Read entries past each directory's cursor; returns (entries read, all read)."""
        read, complete = 0, True
        since = self._clock() - self.window_s
        for directory, reader in self._readers():
            try:
                cursor = self._cursors.get(directory)
                if cursor is not None:
                    reader.seek_cursor(cursor)
                    entry = reader.get_next()
                    if entry and not reader.test_cursor(cursor):
                        read += self._take(entry)  # the cursor's entry is gone (rotated)
                        cursor = entry.get("__CURSOR", cursor)
                else:
                    reader.seek_realtime(dt.datetime.fromtimestamp(since))
                while True:
                    if time.monotonic() > deadline:
                        complete = False
                        break
                    entry = reader.get_next()
                    if not entry:
                        break
                    read += self._take(entry)
                    cursor = entry.get("__CURSOR", cursor)
                if cursor is not None:
                    self._cursors[directory] = cursor
            finally:
                reader.close()
        return read, complete

    def _take(self, entry: dict[str, Any]) -> int:
        message = entry.get("MESSAGE", "")
        if isinstance(message, bytes):
            message = message.decode("utf-8", errors="replace")
        kind = classify(str(message))
        if kind is not None:
            stamp = entry.get("__REALTIME_TIMESTAMP")
            at = stamp.timestamp() if isinstance(stamp, dt.datetime) else self._clock()
            self._matches.append((at, kind))
            log.warning("%s journal line matches %s: %s", self.runtime, kind,
                        " ".join(str(message).split())[:EXAMPLE_CHARS])
        return 1
