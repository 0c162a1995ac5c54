"""docs/security.md says what the chart renders and names tests that exist (issue 18 items 3, 10).

A renamed test or a changed securityContext would otherwise leave the page promising what
nothing checks any more.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

from tools import helm as h

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "security.md"


def _rows(heading: str) -> list[list[str]]:
    """The cells of each body row of the first table after `heading`."""
    text = PAGE.read_text()
    after = text[text.index(heading):].splitlines()
    start = next(i for i, ln in enumerate(after) if ln.startswith("|"))
    table = []
    for line in after[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    return table[2:]


def _named_tests(cell: str) -> list[tuple[str, str | None]]:
    """(file, test) for each `tests/...` or `::test` in a cell; `::x` is in the last file named."""
    named, current = [], ""
    for code in re.findall(r"`([^`]+)`", cell):
        path, _, test = code.partition("::")
        if path.startswith("tests/"):
            current = path
        elif path or not current:
            continue
        named.append((current, test or None))
    return named


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def test_every_threat_row_names_tests_that_exist() -> None:
    rows = _rows("## Threats, and what stops them")
    assert len(rows) >= 15
    for who, tries, _stops, proved in rows:
        named = _named_tests(proved)
        assert named, f"the row '{who} | {tries}' names no test"
        for file, test in named:
            assert (ROOT / file).is_file(), f"{file} (row '{tries}') does not exist"
            if test is not None:
                assert test in _test_functions(ROOT / file), f"{file}::{test} does not exist"


def _shown(cell: str) -> dict[str, Any]:
    """The `key: value` fragments of a cell before its '(pod: ...)' note, as YAML."""
    fragments = re.findall(r"`([^`]+)`", cell.partition("(pod:")[0])
    shown: dict[str, Any] = yaml.safe_load("{" + ", ".join(fragments) + "}")
    return shown


def test_both_containers_security_contexts_are_shown_as_rendered() -> None:
    objects = h.objects(h.template([h.CHART / "ci" / "repair-values.yaml"]))
    [ds] = [o for o in objects if o["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    rendered = {c["name"]: c["securityContext"] for c in pod["containers"]}
    rows = {name.strip("`"): context
            for name, context in _rows("What repair mode adds")}
    assert {name: _shown(cell) for name, cell in rows.items()} == rendered
    assert "uid 0" in rows["agent"] and pod["securityContext"]["runAsUser"] == 0
    assert "seccomp `RuntimeDefault`" in rows["agent"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
