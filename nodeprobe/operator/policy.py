"""RemediationPolicy: parse a spec into typed settings, and say clearly what is wrong with it.

Purely data-manipulative: no I/O, no Kubernetes client types. Errors name the field
("spec.ladder[1].timeout: duration must not be negative, got '-1m'"); `validate_policy` lists
every problem so a person fixes them in one go. The gates that use a Policy live in `gates`.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nodeprobe.model import (
    NODE_REMEDIATIONS,
    REMEDIATION_GROUP,
    REMEDIATION_NODE_LABEL,
    REMEDIATION_VERSION,
    ConditionType,
    RemediationAction,
    Runtime,
    Status,
)

GROUP = REMEDIATION_GROUP
VERSION = REMEDIATION_VERSION
POLICY_PLURAL = "remediationpolicies"
REMEDIATION_PLURAL = NODE_REMEDIATIONS
LABEL_NODE = REMEDIATION_NODE_LABEL
LABEL_POLICY = f"{GROUP}/policy"
LABEL_ESCALATED = f"{GROUP}/escalated"
"""Set on a node the ladder gave up on, so people (and selectors) can find it."""

DEFAULT_DRAIN_TIMEOUT_S = 600.0
"""10 min: long enough for ordinary graceful shutdowns, short enough that a PDB cannot hold
a sick node forever (kured #82)."""
DEFAULT_RUNG_TIMEOUT_S = 600.0
DEFAULT_SETTLE_S = 120.0
DEFAULT_STORM_COOL_DOWN_S = 300.0
"""After a minHealthy storm, nodes still flap; wait before starting again (NHC PR #378)."""
"""Conditions flap while a rebooted node comes back (NHC PR #274)."""
DEFAULT_COOL_DOWN_S = 1800.0
DEFAULT_TRIGGER_FOR_S = 120.0


Action = RemediationAction


class OnTimeout(enum.StrEnum):
    NEXT = "next"
    FAIL = "fail"


_RUNTIME_NAMES = {"docker": Runtime.DOCKERD, "dockerd": Runtime.DOCKERD,
                  "containerd": Runtime.CONTAINERD}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SELECTOR_OPS = {"In", "NotIn", "Exists", "DoesNotExist"}


class PolicyError(ValueError):
    """A duration, selector or quantity that cannot be understood; the message says where."""


def parse_duration(value: object, *, where: str) -> float:
    """Go-style durations ("90s", "1h30m", "500ms") or plain seconds, in seconds; never negative."""
    if isinstance(value, bool):
        raise PolicyError(f"{where}: expected a duration like '90s' or '5m', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("-"):
            raise PolicyError(f"{where}: duration must not be negative, got {value!r}")
        pos, seconds = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]
            seconds += float(m.group(1)) * scale
            pos = m.end()
        if not text or pos != len(text):
            raise PolicyError(f"{where}: expected a duration like '90s', '5m' or '1h30m', "
                              f"got {value!r}")
    else:
        raise PolicyError(f"{where}: expected a duration like '90s' or '5m', got {value!r}")
    if seconds < 0 or not math.isfinite(seconds):
        raise PolicyError(f"{where}: duration must not be negative, got {value!r}")
    return seconds


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


@dataclass(frozen=True, slots=True)
class Selector:
    """A Kubernetes label selector; the empty selector matches every node."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


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
class Trigger:
    type: str
    status: str
    for_s: float


@dataclass(frozen=True, slots=True)
class Rung:
    action: Action
    timeout_s: float
    runtime: Runtime | None = None


@dataclass(frozen=True, slots=True)
class Drain:
    timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    grace_period_s: int | None = None
    """None: each pod's own terminationGracePeriodSeconds."""
    on_timeout: OnTimeout = OnTimeout.NEXT


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    selector: Selector
    triggers: tuple[Trigger, ...]
    ladder: tuple[Rung, ...]
    max_concurrent: int | None = 1
    max_concurrent_pct: float | None = None
    min_healthy_pct: float = 0.0
    cool_down_s: float = DEFAULT_COOL_DOWN_S
    rate_per_hour: int | None = None
    settle_s: float = DEFAULT_SETTLE_S
    storm_cool_down_s: float = DEFAULT_STORM_COOL_DOWN_S
    drain: Drain = field(default_factory=Drain)
    webhook_url: str | None = None
    dry_run: bool = False
    paused: bool = False

    def budget(self, matched: int) -> int:
        """How many nodes may be cordoned by us at once; a percentage rounds down, minimum 1."""
        if self.max_concurrent_pct is not None:
            return max(1, math.floor(matched * self.max_concurrent_pct / 100))
        return self.max_concurrent if self.max_concurrent is not None else 1


def _rung(raw: object, i: int) -> Rung:
    at = f"spec.ladder[{i}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{at}: expected {{action, timeout, runtime}}")
    try:
        action = Action(str(raw.get("action")))
    except ValueError as e:
        raise PolicyError(f"{at}.action: unknown action {raw.get('action')!r}; use one of "
                          f"{', '.join(a.value for a in Action)}") from e
    runtime = None
    if action is Action.RESTART_RUNTIME:
        name = raw.get("runtime", "containerd")
        if name not in _RUNTIME_NAMES:
            raise PolicyError(f"{at}.runtime: unknown runtime {name!r}; use docker or containerd")
        runtime = _RUNTIME_NAMES[str(name)]
    timeout = parse_duration(raw.get("timeout", DEFAULT_RUNG_TIMEOUT_S), where=f"{at}.timeout")
    return Rung(action, timeout, runtime)


def _trigger(raw: object, i: int) -> Trigger:
    at = f"spec.triggers[{i}]"
    if not isinstance(raw, Mapping) or not raw.get("type"):
        raise PolicyError(f"{at}: expected {{type, status, for}}")
    ctype = str(raw["type"])
    known = {c.value for c in ConditionType} | {"Ready"}
    if ctype not in known:
        raise PolicyError(f"{at}.type: unknown condition {ctype!r}; use one of {sorted(known)}")
    status = str(raw.get("status", Status.TRUE.value))
    if status not in {s.value for s in Status}:
        raise PolicyError(f"{at}.status: expected True, False or Unknown, got {status!r}")
    return Trigger(ctype, status, parse_duration(raw.get("for", DEFAULT_TRIGGER_FOR_S),
                                                 where=f"{at}.for"))


def parse_policy(name: str, spec: Mapping[str, Any]) -> Policy:
    """Turn a policy's spec into a Policy; raise PolicyError naming the first bad field."""
    triggers = tuple(_trigger(t, i) for i, t in enumerate(spec.get("triggers") or []))
    if not triggers:
        raise PolicyError("spec.triggers: at least one trigger condition is needed")
    ladder = tuple(_rung(r, i) for i, r in enumerate(spec.get("ladder") or []))
    if not ladder:
        raise PolicyError("spec.ladder: at least one rung is needed")
    mc = spec.get("maxConcurrent", 1)
    mc_n: int | None = None
    mc_pct: float | None = None
    if isinstance(mc, str) and mc.strip().endswith("%"):
        mc_pct = parse_percent(mc, where="spec.maxConcurrent")
        if mc_pct == 0:
            raise PolicyError("spec.maxConcurrent: 0% would never remediate anything")
    elif isinstance(mc, int) and not isinstance(mc, bool) and mc >= 1:
        mc_n = mc
    else:
        raise PolicyError(f"spec.maxConcurrent: expected a whole number >= 1 or 'N%', got {mc!r}")
    rate = spec.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
        raise PolicyError(f"spec.rate: expected remediations per hour >= 1, got {rate!r}")
    d = spec.get("drain") or {}
    if not isinstance(d, Mapping):
        raise PolicyError("spec.drain: expected {timeout, gracePeriodSeconds, onTimeout}")
    grace = d.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 0):
        raise PolicyError(f"spec.drain.gracePeriodSeconds: expected an integer >= 0, got {grace!r}")
    try:
        on_timeout = OnTimeout(d.get("onTimeout", "next"))
    except ValueError as e:
        raise PolicyError(f"spec.drain.onTimeout: expected next or fail, "
                          f"got {d.get('onTimeout')!r}") from e
    drain = Drain(parse_duration(d.get("timeout", DEFAULT_DRAIN_TIMEOUT_S),
                                 where="spec.drain.timeout"), grace, on_timeout)
    esc = spec.get("escalation") or {}
    url = esc.get("webhookURL") if isinstance(esc, Mapping) else None
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise PolicyError(f"spec.escalation.webhookURL: expected an http(s) URL, got {url!r}")
    return Policy(
        name=name,
        selector=parse_selector(spec.get("nodeSelector"), where="spec.nodeSelector"),
        triggers=triggers,
        ladder=ladder,
        max_concurrent=mc_n,
        max_concurrent_pct=mc_pct,
        min_healthy_pct=parse_percent(spec.get("minHealthy", 0), where="spec.minHealthy"),
        cool_down_s=parse_duration(spec.get("coolDown", DEFAULT_COOL_DOWN_S),
                                   where="spec.coolDown"),
        rate_per_hour=rate,
        settle_s=parse_duration(spec.get("settleWindow", DEFAULT_SETTLE_S),
                                where="spec.settleWindow"),
        storm_cool_down_s=parse_duration(spec.get("stormCoolDown", DEFAULT_STORM_COOL_DOWN_S),
                                         where="spec.stormCoolDown"),
        drain=drain,
        webhook_url=str(url) if url else None,
        dry_run=bool(spec.get("dryRun", False)),
        paused=bool(spec.get("paused", False)),
    )


_MINIMAL: Mapping[str, Any] = {"triggers": [{"type": ConditionType.UNAVAILABLE.value}],
                                "ladder": [{"action": Action.ESCALATE.value}]}


def validate_policy(spec: Mapping[str, Any]) -> list[str]:
    """Every problem in a policy spec, one clear sentence each (empty when valid).

    Each top-level field is checked on its own (inside an otherwise minimal policy), so one bad
    field never hides another.
    """
    if not isinstance(spec, Mapping):
        return [f"spec: expected an object, got {type(spec).__name__}"]
    problems: list[str] = []
    checks: list[Callable[[], object]] = []
    for i, t in enumerate(spec.get("triggers") or []):
        checks.append(functools.partial(_trigger, t, i))
    for i, r in enumerate(spec.get("ladder") or []):
        checks.append(functools.partial(_rung, r, i))
    for key in spec:
        if key not in ("triggers", "ladder"):
            checks.append(functools.partial(parse_policy, "-", {**_MINIMAL, key: spec[key]}))
    known = {"nodeSelector", "triggers", "ladder", "maxConcurrent", "minHealthy", "coolDown",
             "rate", "settleWindow", "stormCoolDown", "drain", "escalation", "dryRun", "paused"}
    problems += [f"spec.{k}: unknown field (known: {', '.join(sorted(known))})"
                 for k in spec if k not in known]
    checks.append(functools.partial(parse_policy, "-", spec))
    for check in checks:
        try:
            check()
        except PolicyError as e:
            if str(e) not in problems:
                problems.append(str(e))
    return problems
