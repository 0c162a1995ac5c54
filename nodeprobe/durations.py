"""The one duration grammar, for the config file and for policies alike.

Go-style ("90s", "500ms", "1h30m", plus "d" for days) or a number of seconds (bare or quoted);
never negative. Pure: callers add where the value came from to the error.
"""

from __future__ import annotations

import math
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_PLAIN = re.compile(r"\d+(?:\.\d+)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds; ValueError (its text says what was expected) for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '90s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise ValueError(f"duration must not be negative, got {value!r}")
        pos, seconds = 0, 0.0
        for m in _PART.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if _PLAIN.fullmatch(text):  # a number in quotes: seconds, as a bare number is
            seconds, pos = float(text), len(text)
        if not text or pos != len(text):
            raise ValueError(f"expected a duration like '90s', '5m' or '1h30m', got {value!r}")
    else:
        raise ValueError(f"expected a duration like '90s' or '5m', got {value!r}")
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"duration must not be negative, got {value!r}")
    return seconds
