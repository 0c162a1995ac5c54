"""Renders a one-shot diagnosis for people (a table) and for machines (JSON).

Readings are in each probe's detail (table) and in `values` (JSON). The first line is always
the one-line summary: node-problem-detector's custom-plugin protocol
uses stdout as the condition message, so the line that matters comes first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from nodeprobe.model import Observation

_COLUMNS = ("RUNTIME", "CHECK", "OUTCOME", "LATENCY", "DETAIL")


def human_latency(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def table(summary: str, observations: Sequence[Observation]) -> str:
    rows = [
        (str(o.runtime), str(o.check), str(o.outcome), human_latency(o.latency_s), o.detail)
        for o in observations
    ]
    widths = [max(len(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS) - 1)]
    lines = [summary, ""]
    for row in [_COLUMNS, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def as_json(summary: str, exit_code: int, observations: Sequence[Observation]) -> str:
    body = {
        "summary": summary,
        "exitCode": exit_code,
        "observations": [
            {
                "runtime": str(o.runtime),
                "check": str(o.check),
                "outcome": str(o.outcome),
                "latencySeconds": round(o.latency_s, 6),
                "at": o.at,
                "detail": o.detail,
                "values": dict(o.values),
                "info": dict(o.info),
            }
            for o in observations
        ],
    }
    return json.dumps(body, indent=2)
