"""Label and field selectors, parsed the way the API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


class SelectorError(ValueError):
    """A selector the server cannot parse; answered with 400 BadRequest."""


def _terms(text: str) -> list[str]:
    """Split at commas outside parentheses (`a in (x,y),b`)."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in terms if t.strip()]


def label_selector(text: str | None) -> Predicate:
    """`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, joined by commas."""
    # (key, operator, values): operator is one of in, notin, =, !=, exists, !exists
    checks: list[tuple[str, str, frozenset[str]]] = []
    for term in _terms(text or ""):
        if m := _SET_RE.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(","))
            checks.append((m.group(1), m.group(2), values))
        elif m := _CMP_RE.match(term):
            op = "!=" if m.group(2) == "!=" else "="
            checks.append((m.group(1), op, frozenset({m.group(3)})))
        elif m := _EXISTS_RE.match(term):
            checks.append((m.group(2), "!exists" if m.group(1) else "exists", frozenset()))
        else:
            raise SelectorError(f"unable to parse requirement: {term.strip()!r}")

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(_holds(labels, key, op, values) for key, op, values in checks)

    return match


def _holds(labels: Mapping[str, str], key: str, op: str, values: frozenset[str]) -> bool:
    if op in ("in", "="):
        return labels.get(key) in values
    if op in ("notin", "!="):
        return labels.get(key) not in values
    return (key in labels) == (op == "exists")


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field; absent fields compare as "" like the server's."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector(text: str | None) -> Predicate:
    """`path=value`, `path==value`, `path!=value` on any dotted field (the server: a subset)."""
    checks: list[tuple[str, bool, str]] = []
    for term in _terms(text or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise SelectorError(f"invalid field selector: {term.strip()!r}")
        checks.append((m.group(1), m.group(2) == "!=", m.group(3)))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, p) == v) != neg for p, neg, v in checks)

    return match
