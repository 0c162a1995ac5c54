"""How a config leaf is declared: its default, YAML kind and doc travel together in `metadata`,
so the loader and docs/configuration.md are generated from one place."""

from __future__ import annotations

from dataclasses import field
from typing import Any, TypeVar

_T = TypeVar("_T")


def leaf(default: Any, kind: str, doc: str, *, floor: float | None = None) -> Any:
    """A leaf setting: its default, its YAML kind (the loader's `_check_kind`) and what it
    means; `floor` is the least a duration may be (s), below which it does harm (a hot loop, a
    status write every sync)."""
    meta = {"kind": kind, "doc": doc, "floor": floor}
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: frozen, metadata=meta)
    return field(default=default, metadata=meta)


def section(text: str) -> dict[str, str]:
    """Metadata of a nested section (use with `field(default_factory=...)`)."""
    return {"kind": "section", "doc": text}
