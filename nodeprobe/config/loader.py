"""Loading: YAML file (camelCase keys) -> defaults -> overrides -> validate; and the key table.

Errors name the source, the key path and the reason, in one line a person can act on.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from nodeprobe.config.tree import Config
from nodeprobe.durations import parse_duration

_T = TypeVar("_T")

MAX_IDLE_CEILING_S = 85.0
"""kube-apiserver closes a connection idle for 90 s; reusing one near that races its close."""

# ---------------------------------------------------------------------------------------------
# Loading and validation.


class ConfigError(ValueError):
    """A config problem, already worded for a person: `<source>: <key.path>: <reason>`."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_SIZE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("not a number")
    return float(raw)


def _size(raw: object) -> float:
    if isinstance(raw, str):
        match = _SIZE.match(raw)
        if not match:
            raise ValueError("not a size")
        return float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    return _number(raw)


def _check_floor(seconds: float, floor: float | None, raw: object) -> float:
    if floor is not None and seconds < floor and seconds != 0:
        raise ValueError(f"must be at least {_describe_duration(floor)}, got {raw!r}: less "
                         "does harm (a hot loop or a write on every pass) and finds nothing more")
    return seconds


def _check_text(kind: str, raw: object) -> str:
    """`path`, `path-or-empty`, `socket` (`auto` or a path) and `address` (an IP literal)."""
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {raw!r}")
    if kind == "address":
        import ipaddress

        try:
            ipaddress.ip_address(raw)
        except ValueError:
            raise ValueError(f"must be an IP address to listen on, like 0.0.0.0, :: or "
                             f"127.0.0.1, got {raw!r}") from None
        return raw
    allowed = {"path-or-empty": "", "socket": "auto"}.get(kind)
    if raw != allowed and not raw.startswith("/"):
        what = {"path-or-empty": " (or empty: off)", "socket": " (or auto)"}.get(kind, "")
        raise ValueError(f"must be an absolute path{what}, got {raw!r}")
    return raw


def _check_kind(kind: str, raw: object, floor: float | None = None) -> Any:
    """Convert one leaf; ValueError's text is the reason shown after the key path."""
    if kind in ("path", "path-or-empty", "socket", "address"):
        return _check_text(kind, raw)
    if kind == "bool":
        if not isinstance(raw, bool):
            raise ValueError(f"must be true or false, got {raw!r}")
        return raw
    if kind == "str":
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, got {raw!r}")
        return raw
    if kind in ("duration", "duration-or-0"):
        try:
            seconds = parse_duration(raw)
        except ValueError:
            seconds = -1.0
        if seconds < 0 or (seconds == 0 and kind == "duration"):
            what = "a positive duration" if kind == "duration" else "a duration (0 = off)"
            raise ValueError(f"must be {what} like '3s', got {raw!r}")
        return _check_floor(seconds, floor, raw)
    if kind in ("count", "port"):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"must be a whole number, got {raw!r}")
        if kind == "count" and raw < 1:
            raise ValueError(f"must be at least 1, got {raw!r}")
        if kind == "port" and not 0 <= raw <= 65535:
            raise ValueError(f"must be a port 0-65535, got {raw!r}")
        return raw
    if kind in ("paths", "names"):
        absolute = kind == "paths"
        if not isinstance(raw, list) or not all(
            isinstance(a, str) and a and (a.startswith("/") or not absolute) for a in raw
        ):
            what = "absolute paths" if absolute else "non-empty strings"
            raise ValueError(f"must be a list of {what}, got {raw!r}")
        return tuple(raw)
    if kind == "command":
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) and a for a in raw):
            raise ValueError(f"must be a non-empty list of strings (argv), got {raw!r}")
        return tuple(raw)
    return _check_number(kind, raw)


def _check_number(kind: str, raw: object) -> float:
    try:
        value = _size(raw) if kind == "size" else _number(raw)
    except ValueError:
        what = "a size like '2Gi' or a number" if kind == "size" else "a number"
        raise ValueError(f"must be {what}, got {raw!r}") from None
    if kind == "positive" and value <= 0:
        raise ValueError(f"must be greater than 0, got {raw!r}")
    if kind in ("number", "size") and value < 0:
        raise ValueError(f"must not be negative, got {raw!r}")
    if kind == "fraction" and not 0 <= value <= 1:
        raise ValueError(f"must be a fraction from 0 to 1, got {raw!r}")
    if kind == "percent" and not 0 <= value <= 100:
        raise ValueError(f"must be a percentage from 0 to 100, got {raw!r}")
    return value


def _build(cls: type[_T], raw: object, *, base: _T, path: str, source: str) -> _T:
    """Merge `raw` (a YAML mapping) onto `base`, leaf by leaf, with errors naming the key."""
    if not isinstance(raw, Mapping):
        where = path or "top level"
        raise ConfigError(f"{source}: {where}: must be a mapping of keys, got {raw!r}")
    fields = {camel(f.name): f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        keypath = f"{path}.{key}" if path else str(key)
        spec = fields.get(str(key))
        if spec is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: {keypath}: unknown key (known here: {known})")
        current = getattr(base, spec.name)
        if spec.metadata["kind"] == "section":
            changes[spec.name] = _build(
                type(current), value, base=current, path=keypath, source=source
            )
            continue
        try:
            changes[spec.name] = _check_kind(spec.metadata["kind"], value,
                                             spec.metadata.get("floor"))
        except ValueError as e:
            raise ConfigError(f"{source}: {keypath}: {e}") from e
    return dataclasses.replace(base, **changes)  # type: ignore[type-var]


def _validate(config: Config, source: str) -> Config:
    """Rules that span several keys."""
    leak = config.judge.leak
    if leak.min_span > leak.window:
        raise ConfigError(
            f"{source}: judge.leak.minSpan: must not exceed judge.leak.window "
            f"({leak.min_span:g}s > {leak.window:g}s)"
        )
    if config.kubernetes.connection_max_idle > MAX_IDLE_CEILING_S:
        raise ConfigError(
            f"{source}: kubernetes.connectionMaxIdle: must be at most "
            f"{MAX_IDLE_CEILING_S:g}s, below kube-apiserver's 90 s idle timeout, got "
            f"{config.kubernetes.connection_max_idle:g}s"
        )
    if not (config.docker.enabled or config.containerd.enabled):
        raise ConfigError(
            f"{source}: docker.enabled, containerd.enabled: at least one must be true"
        )
    return config


def _nest(overrides: Mapping[str, object]) -> dict[str, object]:
    """{'checks.dockerPing.deadline': '1s'} -> {'checks': {'dockerPing': {'deadline': '1s'}}}."""
    tree: dict[str, object] = {}
    for dotted, value in overrides.items():
        node = tree
        *parents, last = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"overrides: {dotted}: conflicts with another override")
            node = child
        node[last] = value
    return tree


def read_yaml(path: str) -> object:
    """Parse one YAML file; a missing file or bad syntax becomes a ConfigError with the line."""
    import yaml  # lazy: `nodeprobe check` without --config never pays for it

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    try:
        _no_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path=path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from e
    return {} if data is None else data


def _no_duplicate_keys(node: object, *, path: str, at: str = "") -> None:
    """PyYAML lets the last of two equal keys win silently; a config typo must not."""
    import yaml

    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, path=path, at=f"{at}[{i}]")
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key, value in node.value:
        name = str(key.value) if isinstance(key, yaml.ScalarNode) else repr(key)
        keypath = f"{at}.{name}" if at else name
        if name in seen:
            raise ConfigError(f"{path}: {keypath}: duplicate key (line {key.start_mark.line + 1});"
                              " YAML would keep only the last one, so remove one of them")
        seen.add(name)
        _no_duplicate_keys(value, path=path, at=keypath)


def load(path: str | None, *, overrides: Mapping[str, object] | None = None) -> Config:
    """Defaults <- file (camelCase YAML) <- overrides (dotted camelCase keys, from env/flags)."""
    config = Config.defaults()
    source = path or "defaults"
    if path is not None:
        config = _build(Config, read_yaml(path), base=config, path="", source=path)
    if overrides:
        source = "overrides"
        config = _build(Config, _nest(overrides), base=config, path="", source=source)
    return _validate(config, path or source)


# ---------------------------------------------------------------------------------------------
# Documentation, generated from the tree.


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f'"{value}"' if isinstance(value, str) else str(value)


def _describe_duration(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


def _describe_size(value: float) -> str:
    for suffix, unit in (("Gi", 2**30), ("Mi", 2**20)):
        if value >= unit and value % unit == 0:
            return f"{int(value // unit)}{suffix}"
    return _describe(value)


def _rows(obj: object, prefix: str) -> Iterator[tuple[str, str, str, str]]:
    for spec in dataclasses.fields(obj):  # type: ignore[arg-type]
        key = f"{prefix}{camel(spec.name)}"
        value = getattr(obj, spec.name)
        if spec.metadata["kind"] == "section":
            yield key, "section", "", spec.metadata["doc"]
            yield from _rows(value, key + ".")
        else:
            kind = spec.metadata["kind"]
            shown = _describe_size(value) if kind == "size" else _describe(value)
            floor = spec.metadata.get("floor")
            if floor is not None:
                kind = f"{kind} ≥ {_describe_duration(floor)}"
            yield key, kind, shown, spec.metadata["doc"]


def reference_table() -> str:
    """The Markdown table of every key; docs/configuration.md embeds it verbatim."""
    lines = ["| key | kind | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, doc in _rows(Config.defaults(), ""):
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{key}` | {kind} | {shown} | {doc.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
