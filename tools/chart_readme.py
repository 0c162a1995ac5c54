"""The chart README's values table, generated from the `# --` comments in values.yaml.

The comments follow helm-docs' convention (a `# --` line starts a key's description, following
`#` lines continue it; a documented map or list is one row with its whole default), so a team
that runs helm-docs gets the same table. The generator is these few lines rather than helm-docs
itself because helm-docs is one more Go binary for every CI machine to build, and the table is
all the chart needs from it.

    python -m tools.chart_readme write   # rewrite the table in charts/nodeprobe/README.md
    python -m tools.chart_readme check   # exit 1 when the table is stale
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "nodeprobe"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(\s*)([A-Za-z0-9_.-]+):(\s|$)")


def _lookup(values: Any, path: Sequence[str]) -> Any:
    for part in path:
        values = values[part]
    return values


def rows(text: str) -> Iterator[tuple[str, str, str]]:
    """(dotted key, default as JSON, description) for every documented key and every
    undocumented leaf, in file order."""
    values = yaml.safe_load(text)
    doc: list[str] | None = None
    stack: list[tuple[int, str]] = []
    skip_deeper: int | None = None
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper is not None and (not stripped or indent > skip_deeper):
            continue
        skip_deeper = None
        if not stripped:
            doc = None
        elif stripped.startswith("# --"):
            doc = [stripped[4:].strip()]
        elif stripped.startswith("#"):
            if doc is not None:
                doc.append(stripped[1:].strip())
        elif (m := KEY.match(line)) is not None:
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, m.group(2))]
            path = [k for _, k in stack]
            value = _lookup(values, path)
            if doc is not None or not isinstance(value, dict) or not value:
                yield ".".join(path), json.dumps(value), " ".join(doc or [])
                skip_deeper = indent
            doc = None


def table(values_yaml: Path = CHART / "values.yaml") -> str:
    lines = ["| Key | Default | Description |", "|---|---|---|"]
    for key, default, description in rows(values_yaml.read_text()):
        cell = default.replace("|", "\\|")
        lines.append(f"| `{key}` | `{cell}` | {description.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def render(readme: str, values_table: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{values_table}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    readme = CHART / "README.md"
    fresh = render(readme.read_text(), table())
    if args == ["write"]:
        readme.write_text(fresh)
        return 0
    if args == ["check"]:
        if readme.read_text() != fresh:
            print(f"{readme} is stale: run `python -m tools.chart_readme write`", file=sys.stderr)
            return 1
        return 0
    print("usage: python -m tools.chart_readme write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
