"""Issue 11 judgement against real runtimes: time to raise per fault, p50/p95 over injections.

Run with `python -m benchmarks.judge_bench [--injections N] [--cycle-s S]`; prints a Markdown
section and writes it to benchmarks/out/judge.md. Each injection runs a fresh in-process agent
(the real Agent, probes, scheduler and judge; conditions into recording sinks) against one
private sandbox, at the shipped check intervals and judge settings unless the row says otherwise:

- slow daemon: a proxy holds every dockerd reply 8 s (tests/harness/delay_proxy.py); measured:
  start -> ContainerRuntimeSlow=True, and how long ContainerRuntimeUnavailable was True before the
  late answers re-judged the hangs (must end: no remediation `for:` can fire);
- restart loop: dockerd SIGKILLed and restarted every `--cycle-s` s; measured: first kill ->
  DockerdRestartLoop, and the number of ContainerRuntimeUnavailable transitions until then.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.stats import machine, summarize
from nodeprobe.model import ConditionType, Reason, Status
from tests.harness.agent_loop import SHIPPED, TransitionSinks, config_for, running_agent
from tests.harness.delay_proxy import DelayProxy
from tests.harness.runtimes import Sandbox

OUT = Path(__file__).with_name("out") / "judge.md"
POLL_S = 0.05


def _until(predicate: object, timeout_s: float) -> float | None:
    assert callable(predicate)
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(POLL_S)
    return None


def _is(sinks: TransitionSinks, kind: ConditionType, status: Status, reason: str | None = None
        ) -> bool:
    cond = sinks.condition(kind)
    return (cond is not None and cond.status is status
            and (reason is None or cond.reason == reason))


def slow_daemon(sandbox: Sandbox, n: int) -> tuple[list[float], list[float], int]:
    """Seconds to ContainerRuntimeSlow, seconds Unavailable was True, runs that stayed hung."""
    to_slow, hung_for, stuck = [], [], 0
    proxy_path = sandbox.base / "slow.sock"
    for _ in range(n):
        with DelayProxy(proxy_path, sandbox.dockerd.socket, delay_s=8.0):
            config = config_for(sandbox, **SHIPPED, **{"docker.socket": str(proxy_path),
                                                       "checks.process.enabled": False})
            sinks = TransitionSinks()
            with running_agent(config, sinks=sinks):
                start = time.monotonic()
                took = _until(lambda s=sinks: _is(s, ConditionType.SLOW, Status.TRUE), 120)
                _until(lambda s=sinks: _is(s, ConditionType.UNAVAILABLE, Status.FALSE), 30)
                with sinks.lock:
                    history = list(sinks.history)
        if took is None:
            stuck += 1
            continue
        to_slow.append(took)
        true_s = 0.0
        for (t0, s0, _), (t1, _, _) in zip(history, [*history[1:], (time.monotonic(), 0, 0)],
                                           strict=True):
            if s0 is Status.TRUE:
                true_s += t1 - max(t0, start)
        hung_for.append(true_s)
    return to_slow, hung_for, stuck


def restart_loop(sandbox: Sandbox, n: int, cycle_s: float) -> tuple[list[float], list[int]]:
    """Seconds from the first kill to DockerdRestartLoop; Unavailable transitions until then."""
    took_all, transitions = [], []
    for _ in range(n):
        sinks = TransitionSinks()
        with running_agent(config_for(sandbox, **SHIPPED), sinks=sinks):
            _until(lambda s=sinks: _is(s, ConditionType.UNAVAILABLE, Status.FALSE), 60)
            start = time.monotonic()
            raised = None
            kills = 0
            while raised is None and kills < 10:
                sandbox.dockerd.crash()
                sandbox.dockerd.start()
                kills += 1
                raised = _until(lambda s=sinks: _is(s, ConditionType.UNAVAILABLE, Status.TRUE,
                                            Reason.DOCKERD_RESTART_LOOP),
                                max(0.0, start + kills * cycle_s - time.monotonic()))
                if raised is not None:
                    raised = time.monotonic() - start
            with sinks.lock:
                history = list(sinks.history)
        if raised is not None:
            took_all.append(raised)
            transitions.append(len(history) - 2)  # minus Unknown->False at start
    return took_all, transitions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="judge_bench")
    parser.add_argument("--injections", type=int, default=10)
    parser.add_argument("--cycle-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="npj-", dir="/tmp"))
    lines = [f"Machine: {machine()}.", ""]
    try:
        with Sandbox(base) as sandbox:
            to_slow, hung_for, stuck = slow_daemon(sandbox, args.injections)
            loop, transitions = restart_loop(sandbox, args.injections, args.cycle_s)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines += ["| fault | signal | raised | time to raise |", "|---|---|---|---|"]
    if to_slow:
        lines.append(f"| dockerd answers every call in 8 s (delaying proxy) | late answers of "
                     f"calls kept past the 3 s deadline | ContainerRuntimeSlow/DockerdAPISlow | "
                     f"{summarize(to_slow).row('s')} |")
        lines.append(f"| (same) | ContainerRuntimeUnavailable True before the first late answer "
                     f"| DockerdHung, then cleared | {summarize(hung_for).row('s')}; "
                     f"stayed hung: {stuck} of {args.injections} |")
    if loop:
        lines.append(f"| dockerd SIGKILLed + restarted every {args.cycle_s:g} s | DOWN spells, "
                     f"new pid/start time | ContainerRuntimeUnavailable/DockerdRestartLoop | "
                     f"{summarize(loop).row('s')} after the first kill; Unavailable transitions "
                     f"until then: {sorted(transitions)} |")
    text = "\n".join(lines) + "\n"
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
