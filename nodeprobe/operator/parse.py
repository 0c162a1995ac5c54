"""RemediationPolicy specs into typed settings (`policy`), saying clearly what is wrong.

Purely data-manipulative: no I/O, no Kubernetes client types. Errors name the field
("spec.ladder[1].timeout: duration must not be negative, got '-1m'"); `validate_policy` lists
every problem so a person fixes them in one go.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nodeprobe.model import ConditionType, Runtime, Status
from nodeprobe.operator.grammar import (
    PolicyError,
    Window,
    parse_duration,
    parse_percent,
    parse_selector,
    parse_window,
)
from nodeprobe.operator.policy import (
    DEFAULT_AGENT_SILENCE_S,
    DEFAULT_ALERT_QUERY,
    DEFAULT_COOL_DOWN_S,
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_FLAP_ATTEMPTS,
    DEFAULT_FLAP_WINDOW_S,
    DEFAULT_KEEP,
    DEFAULT_KEEP_FOR_S,
    DEFAULT_MIN_HEALTHY_PCT,
    DEFAULT_RUNG_TIMEOUT_S,
    DEFAULT_SETTLE_S,
    DEFAULT_STORM_COOL_DOWN_S,
    DEFAULT_TERMINATING_SKIP_S,
    DEFAULT_TRIGGER_FOR_S,
    Action,
    BlockerSettings,
    Drain,
    OnTimeout,
    Plan,
    Policy,
    Rung,
    Trigger,
)

_RUNTIME_NAMES = {"docker": Runtime.DOCKERD, "dockerd": Runtime.DOCKERD,
                  "containerd": Runtime.CONTAINERD}
PLAN_KEYS = ("triggers", "ladder", "drain", "settleWindow", "agentSilence", "escalation")
"""The spec fields a NodeRemediation snapshots (spec.plan)."""


def known(raw: Mapping[str, Any], fields: tuple[str, ...], where: str) -> None:
    """The CRD keeps unknown fields (so a typo like `dryrun` is seen, not pruned): refuse them."""
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {unknown}; known: {', '.join(fields)}")


def _rung(raw: object, i: int) -> Rung:
    at = f"spec.ladder[{i}]"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{at}: expected {{action, timeout, runtime}}")
    known(raw, ("action", "timeout", "runtime"), at)
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
    known(raw, ("type", "status", "for"), at)
    ctype = str(raw["type"])
    types = {c.value for c in ConditionType} | {"Ready"}
    if ctype not in types:
        raise PolicyError(f"{at}.type: unknown condition {ctype!r}; use one of {sorted(types)}")
    status = str(raw.get("status", Status.TRUE.value))
    if status not in {s.value for s in Status}:
        raise PolicyError(f"{at}.status: expected True, False or Unknown, got {status!r}")
    return Trigger(ctype, status, parse_duration(raw.get("for", DEFAULT_TRIGGER_FOR_S),
                                                 where=f"{at}.for"))


def _bool(spec: Mapping[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def _count(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(f"{where}: expected a whole number >= 1, got {value!r}")
    return value


def _map(spec: Mapping[str, Any], key: str, fields: str) -> Mapping[str, Any]:
    raw = spec.get(key) or {}
    if not isinstance(raw, Mapping):
        raise PolicyError(f"spec.{key}: expected {{{fields}}}")
    known(raw, tuple(f.strip() for f in fields.split(",")), f"spec.{key}")
    return raw


def _drain(spec: Mapping[str, Any]) -> Drain:
    d = _map(spec, "drain", "timeout, gracePeriodSeconds, onTimeout, terminatingSkip, "
             "actionOnTimeout, evict")
    grace = d.get("gracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 0):
        raise PolicyError(f"spec.drain.gracePeriodSeconds: expected an integer >= 0, got {grace!r}")
    try:
        on_timeout = OnTimeout(d.get("onTimeout", "next"))
    except ValueError as e:
        raise PolicyError(f"spec.drain.onTimeout: expected next or fail, "
                          f"got {d.get('onTimeout')!r}") from e
    act = d.get("actionOnTimeout")
    if act is not None and not isinstance(act, bool):
        raise PolicyError(f"spec.drain.actionOnTimeout: expected true or false, got {act!r}")
    ev = d.get("evict") or {}
    if not isinstance(ev, Mapping) or set(ev) - {"unreplicated", "emptyDir", "protected"}:
        raise PolicyError("spec.drain.evict: expected {unreplicated, emptyDir, protected} "
                          f"(each true or false), got {ev!r}")
    return Drain(
        timeout_s=parse_duration(d.get("timeout", DEFAULT_DRAIN_TIMEOUT_S),
                                 where="spec.drain.timeout"),
        grace_period_s=grace, on_timeout=on_timeout,
        terminating_skip_s=parse_duration(d.get("terminatingSkip", DEFAULT_TERMINATING_SKIP_S),
                                          where="spec.drain.terminatingSkip"),
        action_on_timeout=act,
        evict_unreplicated=_bool(ev, "unreplicated", "spec.drain.evict"),
        evict_empty_dir=_bool(ev, "emptyDir", "spec.drain.evict"),
        evict_protected=_bool(ev, "protected", "spec.drain.evict"))


def parse_plan(spec: Mapping[str, Any]) -> Plan:
    """The episode half of a spec (or of a NodeRemediation's spec.plan snapshot)."""
    triggers = tuple(_trigger(t, i) for i, t in enumerate(spec.get("triggers") or []))
    if not triggers:
        raise PolicyError("spec.triggers: at least one trigger condition is needed")
    ladder = tuple(_rung(r, i) for i, r in enumerate(spec.get("ladder") or []))
    if not ladder:
        raise PolicyError("spec.ladder: at least one rung is needed")
    esc = _map(spec, "escalation", "webhookURL")
    url = esc.get("webhookURL")
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise PolicyError(f"spec.escalation.webhookURL: expected an http(s) URL, got {url!r}")
    return Plan(
        triggers=triggers, ladder=ladder, drain=_drain(spec),
        settle_s=parse_duration(spec.get("settleWindow", DEFAULT_SETTLE_S),
                                where="spec.settleWindow"),
        agent_silence_s=parse_duration(spec.get("agentSilence", DEFAULT_AGENT_SILENCE_S),
                                       where="spec.agentSilence"),
        webhook_url=str(url) if url else None)


def plan_snapshot(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The raw fields `parse_plan` reads, for a NodeRemediation's spec.plan."""
    return {k: spec[k] for k in PLAN_KEYS if k in spec}


def _blockers(spec: Mapping[str, Any]) -> BlockerSettings:
    b = _map(spec, "blockers", "podSelector, prometheus")
    prom = b.get("prometheus") or {}
    if not isinstance(prom, Mapping) or set(prom) - {"url", "query"}:
        raise PolicyError(f"spec.blockers.prometheus: expected {{url, query}}, got {prom!r}")
    url = prom.get("url")
    if prom and not str(url or "").startswith(("http://", "https://")):
        raise PolicyError(f"spec.blockers.prometheus.url: expected an http(s) URL, got {url!r}")
    pods = b.get("podSelector")
    return BlockerSettings(
        pod_selector=None if pods is None else parse_selector(
            pods, where="spec.blockers.podSelector"),
        prometheus_url=str(url).rstrip("/") if url else None,
        alert_query=str(prom.get("query") or DEFAULT_ALERT_QUERY))


@dataclass(frozen=True, slots=True)
class _Budget:
    max_concurrent: int | None
    max_concurrent_pct: float | None
    min_healthy_pct: float
    rate_per_hour: int | None


def _budget(spec: Mapping[str, Any]) -> _Budget:
    """maxConcurrent (a number or 'N%'), minHealthy and rate, refusing a policy with no brake."""
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
    rate = None if spec.get("rate") is None else _count(spec.get("rate"), "spec.rate")
    min_healthy = parse_percent(spec.get("minHealthy", DEFAULT_MIN_HEALTHY_PCT),
                                where="spec.minHealthy")
    if min_healthy == 0 and rate is None and (mc_pct is not None and mc_pct >= 100):
        raise PolicyError("spec: no brake: minHealthy 0%, maxConcurrent 100% and no rate would "
                          "let one bad signal drain the whole cluster; set minHealthy (e.g. "
                          "'80%'), a maxConcurrent below 100% or a rate")
    return _Budget(mc_n, mc_pct, min_healthy, rate)


def _windows(spec: Mapping[str, Any]) -> tuple[Window, ...]:
    windows = spec.get("maintenanceWindows") or []
    if not isinstance(windows, list):
        raise PolicyError("spec.maintenanceWindows: expected a list of {days, start, end, "
                          "timeZone}")
    return tuple(parse_window(w, where=f"spec.maintenanceWindows[{i}]")
                 for i, w in enumerate(windows))


def _duration(spec: Mapping[str, Any], key: str, default: float, where: str) -> float:
    return parse_duration(spec.get(key, default), where=where)


def parse_policy(name: str, spec: Mapping[str, Any]) -> Policy:
    """Turn a policy's spec into a Policy; raise PolicyError naming the first bad field."""
    plan = parse_plan(spec)
    budget = _budget(spec)
    flap = _map(spec, "flapLimit", "attempts, window")
    keep = _map(spec, "retention", "keep, for")
    return Policy(
        name=name,
        selector=parse_selector(spec.get("nodeSelector"), where="spec.nodeSelector"),
        plan=plan, max_concurrent=budget.max_concurrent,
        max_concurrent_pct=budget.max_concurrent_pct, min_healthy_pct=budget.min_healthy_pct,
        cool_down_s=_duration(spec, "coolDown", DEFAULT_COOL_DOWN_S, "spec.coolDown"),
        rate_per_hour=budget.rate_per_hour,
        storm_cool_down_s=_duration(spec, "stormCoolDown", DEFAULT_STORM_COOL_DOWN_S,
                                    "spec.stormCoolDown"),
        windows=_windows(spec), blockers=_blockers(spec),
        flap_attempts=_count(flap.get("attempts", DEFAULT_FLAP_ATTEMPTS),
                             "spec.flapLimit.attempts"),
        flap_window_s=_duration(flap, "window", DEFAULT_FLAP_WINDOW_S, "spec.flapLimit.window"),
        keep=_count(keep.get("keep", DEFAULT_KEEP), "spec.retention.keep"),
        keep_for_s=_duration(keep, "for", DEFAULT_KEEP_FOR_S, "spec.retention.for"),
        dry_run=_bool(spec, "dryRun", "spec"),
        paused=_bool(spec, "paused", "spec"),
    )


_MINIMAL: Mapping[str, Any] = {"triggers": [{"type": ConditionType.UNAVAILABLE.value}],
                                "ladder": [{"action": Action.ESCALATE.value}]}
KNOWN_FIELDS = frozenset({
    "nodeSelector", "triggers", "ladder", "maxConcurrent", "minHealthy", "coolDown", "rate",
    "settleWindow", "stormCoolDown", "drain", "escalation", "dryRun", "paused",
    "maintenanceWindows", "blockers", "flapLimit", "retention", "agentSilence"})


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
    problems += [f"spec.{k}: unknown field (known: {', '.join(sorted(KNOWN_FIELDS))})"
                 for k in spec if k not in KNOWN_FIELDS]
    checks.append(functools.partial(parse_policy, "-", spec))
    for check in checks:
        try:
            check()
        except PolicyError as e:
            problems += [p for p in e.problems if p not in problems]
    return problems
