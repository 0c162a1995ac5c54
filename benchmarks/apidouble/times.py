"""Timestamps as the real server decodes and re-encodes them for built-in types.

metav1.Time: RFC 3339, any fraction accepted on input, written back as whole seconds in UTC
("...T00:01:00Z"). metav1.MicroTime (Event eventTime, Lease renewTime, ...): exactly six
fraction digits on input (Go's RFC3339Micro layout), written back in UTC. A value the server
could not decode is a 400. Custom resources are plain JSON: their strings are left alone.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

from benchmarks.apidouble.errors import bad_request
from benchmarks.apidouble.resources import ResourceType

MICRO_FIELDS = frozenset({"eventTime", "lastObservedTime", "acquireTime", "renewTime"})
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _utc(date: str, zone: str) -> str:
    stamp = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp))


def _one(rt: ResourceType, key: str, value: str) -> str:
    m = _RFC3339.match(value)
    micro = key in MICRO_FIELDS
    if m is None or (micro and (m.group(2) is None or len(m.group(2)) != 7)):
        layout = "2006-01-02T15:04:05.000000Z07:00" if micro else "2006-01-02T15:04:05Z07:00"
        need = " (MicroTime needs exactly six fractional digits)" if micro else ""
        raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                          f'{rt.kind}: parsing time "{value}" as "{layout}"{need}')
    try:
        base = _utc(m.group(1), m.group(3))
    except ValueError as e:
        raise bad_request(f'{rt.kind}: parsing time "{value}": {e}') from e
    return f"{base}{m.group(2)}Z" if micro else f"{base}Z"


def normalize(rt: ResourceType, obj: Any) -> None:
    """Check and rewrite, in place, every `...Time`/`...Timestamp` field of a built-in object."""
    if rt.crd:
        return
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and key.endswith(("Time", "Timestamp")):
                    node[key] = _one(rt, key, value)
                elif isinstance(value, dict | list):
                    stack.append(value)
