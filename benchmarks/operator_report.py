"""What benchmarks/operator_bench.py measured, as the Markdown docs/performance.md quotes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.audit import Stamped, breakdown, latency
from benchmarks.operator_nodes import UNHEALTHY
from benchmarks.stats import Summary, machine, summarize

MIB = 2**20
LATENCY_KEYS = ("list pods", "patch nodes", "patch noderemediations/status")
"""Requests whose answer time the report gives (a LIST after a write waits for the watch cache)."""


@dataclass(frozen=True)
class Startup:
    seconds: float
    listed_s: float
    log: list[Stamped]
    status: dict[str, int]


@dataclass(frozen=True)
class Idle:
    seconds: float
    log: list[Stamped]
    cpu_s: float
    rss: Summary

    @property
    def writes(self) -> list[Stamped]:
        return [(t, r) for t, r in self.log if r.write]


@dataclass(frozen=True)
class Rep:
    """One wave of sick nodes; times are wall-clock instants from the audit log."""

    elapse: float
    cordons: list[float]
    opened: list[float]
    phase1: list[Stamped]
    last_ar: float
    full: list[Stamped]
    succ_s: float
    uncordoned: bool
    rss: float

    @property
    def first(self) -> float:
        return self.cordons[0] - self.elapse if self.cordons else float("nan")

    @property
    def kth(self) -> float:
        return self.cordons[-1] - self.elapse if self.cordons else float("nan")

    def per_episode(self, entries: list[Stamped], *, writes: bool = False) -> float:
        return sum(1 for _, r in entries if r.write or not writes) / max(1, len(self.opened))


def _row(name: str, s: Summary, unit: str = "", bold: bool = False) -> str:
    value = f"**{s.median:.2f}{unit}**" if bold else f"{s.median:.2f}{unit}"
    return f"| {name} | {value} | {s.minimum:.2f} | {s.maximum:.2f} | {s.stdev:.2f} | {s.n} |"


def _setup(args: Any, where: str, load_s: float, load: tuple[str, str]) -> list[str]:
    return [
        f"### Remediation operator at {args.nodes:,} nodes, real API server ({machine()})",
        "",
        f"Against {where}. Load average start -> end: {load[0]} -> {load[1]} (2 shared cores: "
        "etcd, kube-apiserver, the operator and this script all run on them).",
        "",
        f"`nodeprobe operator --standalone --max-concurrent {args.sick}` (tick 2 s as shipped); "
        f"{args.nodes:,} Nodes ({args.images} status.images each, Ready and our condition) "
        f"created through the admin API in {load_s:.1f} s, not counted; one RemediationPolicy "
        f"matching all of them: trigger `{UNHEALTHY}=True for {args.for_s}s`, ladder "
        f"restart-runtime(docker) -> escalate, maxConcurrent {args.sick}, minHealthy 50 %, "
        "coolDown and settleWindow 0s. Request times are the audit log's ResponseComplete "
        "stamps.", ""]


def _startup_idle(args: Any, st: Startup, idle: Idle) -> list[str]:
    writes = idle.writes
    node_writes = sum(1 for _, r in writes if r.resource == "nodes")
    per_hour = len(writes) / idle.seconds * 3600 / args.nodes
    return [
        f"#### Start-up and idle ({args.nodes:,} healthy nodes)", "",
        "| measure | value | goal |", "|---|---|---|",
        f"| start to first full reconcile (policy status shows {args.nodes:,} matched) | "
        f"{st.seconds:.1f} s (first LIST of nodes answered {st.listed_s:.1f} s after start) | |",
        f"| requests during start-up | {len(st.log)} ({breakdown(st.log)}) | |",
        f"| idle window | {idle.seconds:.0f} s, {len(idle.log)} requests "
        f"({breakdown(idle.log)}) | |",
        f"| writes in idle window | {len(writes)} (to Nodes: {node_writes}) | 0 to Nodes |",
        f"| **writes per healthy node per hour** | **{per_hour:.3g}** | 0 |",
        f"| operator CPU, idle | {100 * idle.cpu_s / idle.seconds:.1f} % of one core | |",
        f"| **operator RSS, steady** (1 s samples over the idle window) | "
        f"**{idle.rss.median:.1f} MiB** (min {idle.rss.minimum:.1f}, max "
        f"{idle.rss.maximum:.1f}, n={idle.rss.n}); RssAnon after start-up "
        f"{st.status['RssAnon'] / MIB:.1f} MiB | < 250 MB |", ""]


def _episodes(args: Any, reps: list[Rep]) -> list[str]:
    s = args.sick
    return [
        f"#### {s} nodes turn sick at once, {len(reps)} repetition(s) (fresh nodes each time)", "",
        f"Times from the trigger's duration elapsing (lastTransitionTime + {args.for_s} s) to "
        "the API server completing the operator's request.", "",
        "| measure | median | min | max | sd | n |", "|---|---|---|---|---|---|",
        _row("first NodeRemediation created", summarize(
            [r.opened[0] - r.elapse if r.opened else float("nan") for r in reps]), " s"),
        _row("**time to first cordon**", summarize([r.first for r in reps]), " s", bold=True),
        _row(f"{s}th cordon (= maxConcurrent)", summarize([r.kth for r in reps]), " s"),
        _row(f"all {s} at ActionRequested", summarize([r.last_ar - r.elapse for r in reps]), " s"),
        _row("API requests per remediation (elapse -> last ActionRequested)",
             summarize([r.per_episode(r.phase1) for r in reps])),
        _row("API writes per remediation (same window)",
             summarize([r.per_episode(r.phase1, writes=True) for r in reps])),
        _row("requests per remediation, whole episode to Succeeded",
             summarize([r.per_episode(r.full) for r in reps])),
        _row("**operator VmRSS after each repetition** (MiB)",
             summarize([r.rss for r in reps]), bold=True), "",
        "Per repetition: " + "; ".join(
            f"#{i + 1}: first {r.first:.2f} s, {len(r.cordons)}th {r.kth:.2f} s, "
            f"{len(r.opened)} opened, Succeeded {r.succ_s:.1f} s after the agents reported, "
            f"uncordoned: {'yes' if r.uncordoned else 'NO'}" for i, r in enumerate(reps)) + ".",
        "", f"Requests from elapse to ActionRequested, repetition 1: {breakdown(reps[0].phase1)}.",
        "", "How long the API server took to answer them, all repetitions: "
        + "; ".join(latency([e for r in reps for e in r.phase1], key) for key in LATENCY_KEYS)
        + ".", ""]


def report(args: Any, where: str, load_s: float, startup: Startup, idle: Idle, reps: list[Rep],
           *, final: dict[str, int], alive: bool, log_text: str, load: tuple[str, str]) -> str:
    warnings = sum(1 for ln in log_text.splitlines() if "WARNING" in ln or "ERROR" in ln)
    return "\n".join([
        *_setup(args, where, load_s, load), *_startup_idle(args, startup, idle),
        *_episodes(args, reps),
        f"VmHWM (peak since start, start-up and all episodes) **{final['VmHWM'] / MIB:.1f} MiB**"
        f"; VmRSS at end {final['VmRSS'] / MIB:.1f} MiB; threads {final['Threads']}. Operator "
        f"alive at the end: {'yes' if alive else 'NO'}; warning/error lines in its log: "
        f"{warnings}.", ""])


def scaling_report(rows: list[tuple[int, float, float, float, float]], images: int) -> str:
    return "\n".join([
        f"#### Operator start-up vs node count, real API server ({machine()}, shared)", "",
        f"Nodes with {images} status.images each; operator start -> first full reconcile pass "
        "(policy status shows every node matched); its CPU time and VmHWM at that moment.", "",
        "| nodes | created in | start -> first pass | operator CPU | VmHWM |",
        "|---|---|---|---|---|",
        *(f"| {n:,} | {load_s:.1f} s | {ready:.1f} s | {cpu:.1f} s | {hwm:.1f} MiB |"
          for n, load_s, ready, cpu, hwm in rows), ""])
