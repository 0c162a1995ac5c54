"""docs/conditions.md lists every condition type and reason of the vocabulary."""

from __future__ import annotations

from pathlib import Path

from nodeprobe.model import ConditionType, Reason

DOC = Path(__file__).resolve().parents[3] / "docs" / "conditions.md"


def test_every_name_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        n.value
        for n in [*ConditionType, *Reason]
        if f"`{n.value}`" not in text and f"## {n.value}" not in text
    ]
    assert missing == [], f"docs/conditions.md does not mention {missing}"
