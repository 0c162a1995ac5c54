"""The small grammars a RemediationPolicy is written in: durations, percentages, label
selectors, maintenance windows, and the one time format of the operator's status and messages.

Purely data-manipulative: no I/O, time is a parameter. Every error names the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nodeprobe import durations
from nodeprobe.publish.kube import rfc3339

_SELECTOR_OPS = {"In", "NotIn", "Exists", "DoesNotExist"}
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def iso(t: float) -> str:
    """The one time format (status fields, messages, Events): `publish.kube.rfc3339`.

    Absolute times keep status messages stable between passes, so a pass writes nothing new.
    """
    return rfc3339(t)


def parse_iso(text: object) -> float | None:
    """Unix seconds from an RFC 3339 time as the API server writes it; None when absent or bad."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class PolicyError(ValueError):
    """A duration, selector or quantity that cannot be understood; the message says where.
    One error may carry several problems of one object (`problems`), so none hides another."""

    def __init__(self, problem: str, *more: str) -> None:
        super().__init__("; ".join((problem, *more)))
        self.problems = (problem, *more)


def parse_duration(value: object, *, where: str) -> float:
    """`nodeprobe.durations.parse_duration`, the one duration grammar, naming the field."""
    try:
        return durations.parse_duration(value)
    except ValueError as e:
        raise PolicyError(f"{where}: {e}") from e


def parse_percent(value: object, *, where: str) -> float:
    """'60%' or 60 -> 60.0, within 0..100."""
    text = str(value).strip()
    try:
        pct = float(text[:-1] if text.endswith("%") else text)
    except ValueError as e:
        raise PolicyError(f"{where}: expected a percentage like '60%', got {value!r}") from e
    if isinstance(value, bool) or not 0 <= pct <= 100:
        raise PolicyError(f"{where}: percentage must be between 0% and 100%, got {value!r}")
    return pct


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # NotIn

    def query(self) -> str:
        """This requirement in the API server's `labelSelector` syntax."""
        values = ",".join(self.values)
        return {"Exists": self.key, "DoesNotExist": f"!{self.key}",
                "In": f"{self.key} in ({values})",
                "NotIn": f"{self.key} notin ({values})"}[self.operator]


@dataclass(frozen=True, slots=True)
class Selector:
    """A Kubernetes label selector; the empty selector matches every node."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def query(self) -> str:
        """The `labelSelector` that lets the API server do the filtering ("" matches all)."""
        return ",".join(r.query() for r in self.requirements)


def parse_selector(raw: object, *, where: str) -> Selector:
    if raw is None:
        return Selector()
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected matchLabels/matchExpressions, got {raw!r}")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {sorted(unknown)}; a label selector has "
                          "matchLabels and matchExpressions")
    reqs: list[Requirement] = []
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise PolicyError(f"{where}.matchLabels: expected a map of label to value")
    for k, v in labels.items():
        if not isinstance(v, str):
            raise PolicyError(f"{where}.matchLabels[{k}]: value must be a string, got {v!r}")
        reqs.append(Requirement(str(k), "In", (v,)))
    for i, expr in enumerate(raw.get("matchExpressions") or []):
        at = f"{where}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping) or not expr.get("key"):
            raise PolicyError(f"{at}: needs a key and an operator")
        op = expr.get("operator")
        values = tuple(str(v) for v in expr.get("values") or [])
        if op not in _SELECTOR_OPS:
            raise PolicyError(f"{at}: operator {op!r} is not one of {sorted(_SELECTOR_OPS)}")
        if op in ("In", "NotIn") and not values:
            raise PolicyError(f"{at}: operator {op} needs at least one value")
        if op in ("Exists", "DoesNotExist") and values:
            raise PolicyError(f"{at}: operator {op} takes no values")
        reqs.append(Requirement(str(expr["key"]), str(op), values))
    return Selector(tuple(reqs))


@dataclass(frozen=True, slots=True)
class Window:
    """Days and hours in a time zone when new episodes may start (kured's reboot window).

    `end` before `start` crosses midnight: 22:00-06:00 on Fri opens Friday 22:00 and closes
    Saturday 06:00 (the day is the day the window opens).
    """

    days: frozenset[int]
    start_min: int
    end_min: int
    zone: str

    def open_at(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start_min < self.end_min:
            return day in self.days and self.start_min <= minute < self.end_min
        if self.start_min == self.end_min:
            return day in self.days
        return ((day in self.days and minute >= self.start_min)
                or ((day - 1) % 7 in self.days and minute < self.end_min))

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return (f"{days} {self.start_min // 60:02d}:{self.start_min % 60:02d}-"
                f"{self.end_min // 60:02d}:{self.end_min % 60:02d} {self.zone}")


def _clock(value: object, where: str) -> int:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip())
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59 or (
            int(m.group(1)) == 24 and int(m.group(2)) != 0):
        raise PolicyError(f"{where}: expected a time of day like '22:00', got {value!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_window(raw: object, *, where: str) -> Window:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected {{days, start, end, timeZone}}")
    unknown = set(raw) - {"days", "start", "end", "timeZone"}
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {sorted(unknown)}; a window has days, "
                          "start, end and timeZone")
    problems: list[str] = []
    parts: list[object] = []
    for parse in (lambda: _days(raw.get("days", list(DAYS)), f"{where}.days"),
                  lambda: _zone(str(raw.get("timeZone", "UTC")), f"{where}.timeZone"),
                  lambda: _clock(raw.get("start", "00:00"), f"{where}.start"),
                  lambda: _clock(raw.get("end", "24:00"), f"{where}.end") % 1440):
        try:
            parts.append(parse())
        except PolicyError as e:
            problems += e.problems
    if problems:
        raise PolicyError(*problems)
    days, zone, start, end = parts
    return Window(days, start, end, zone)  # type: ignore[arg-type]


def _days(names: object, where: str) -> frozenset[int]:
    if not isinstance(names, list) or not names:  # [] would silently mean every day
        raise PolicyError(f"{where}: expected a non-empty list like [Mon, Tue] (leave days out "
                          f"for every day), got {names!r}")
    bad = [d for d in names if str(d)[:3].capitalize() not in DAYS]
    if bad:
        raise PolicyError(*(f"{where}: unknown day {d!r}; use {', '.join(DAYS)}" for d in bad))
    return frozenset(DAYS.index(str(d)[:3].capitalize()) for d in names)


def _zone(zone: str, where: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise PolicyError(f"{where}: unknown time zone {zone!r} (an IANA name like "
                          "'Europe/Berlin')") from e
    return zone
