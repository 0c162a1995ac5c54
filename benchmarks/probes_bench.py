"""The Docker and process probes against real sandboxed runtimes: call latency, time to HUNG/DOWN.

Run with `python -m benchmarks.probes_bench`; prints a Markdown section. Latencies are each
`Observation.latency_s` (the probe's own monotonic measurement of the whole call).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchmarks.stats import machine, summarize
from nodeprobe.model import Check, Outcome, Runtime
from nodeprobe.probes import Probe
from nodeprobe.probes.docker import DockerProbe
from nodeprobe.probes.process import ProcessProbe
from tests.harness.runtimes import Sandbox

RUNS = 20
HUNG_RUNS = 5
HUNG_DEADLINES_S = (0.2, 1.0, 3.0)


def _latencies(probe: Probe, check: Check, *, runs: int, deadline_s: float,
               expect: Outcome) -> list[float]:
    out = []
    for _ in range(runs):
        obs = probe.run(check, deadline_s=deadline_s, slow_s=deadline_s)
        assert obs.outcome is expect, (check, obs.outcome, obs.detail)
        out.append(obs.latency_s)
    return out


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="np-bench-", dir="/tmp"))
    sandbox = Sandbox(base)
    lines = [f"### Docker and process probes ({machine()})", "",
             "| call | outcome | latency |", "|---|---|---|"]
    try:
        sandbox.start()
        docker = DockerProbe(str(sandbox.dockerd.socket))
        first = docker.run(Check.DOCKER_VERSION, deadline_s=3, slow_s=3)
        lines.append(f"| first /version (negotiates via /_ping) | {first.outcome} | "
                     f"{first.latency_s * 1000:.1f} ms |")
        probes: list[tuple[str, Probe, Check]] = [
            (f"docker {c}", docker, c) for c in docker.checks
        ] + [
            ("process dockerd", ProcessProbe(Runtime.DOCKERD,
                                             socket_path=str(sandbox.dockerd.socket)),
             Check.PROCESS),
            ("process containerd", ProcessProbe(Runtime.CONTAINERD,
                                                socket_path=str(sandbox.containerd.socket)),
             Check.PROCESS),
        ]
        for name, probe, check in probes:
            probe.run(check, deadline_s=3, slow_s=3)  # warm
            s = summarize(_latencies(probe, check, runs=RUNS, deadline_s=3, expect=Outcome.OK))
            lines.append(f"| {name} | OK | {s.row('ms', 1000)} |")
        with sandbox.dockerd.hung():
            for deadline in HUNG_DEADLINES_S:
                lat = _latencies(docker, Check.DOCKER_INFO, runs=HUNG_RUNS, deadline_s=deadline,
                                 expect=Outcome.HUNG)
                s = summarize([x - deadline for x in lat])
                lines.append(f"| docker_info, dockerd SIGSTOPped, deadline {deadline:g} s | HUNG | "
                             f"past the deadline by {s.row('ms', 1000)} |")
        sandbox.dockerd.crash()
        s = summarize(_latencies(docker, Check.DOCKER_PING, runs=RUNS, deadline_s=3,
                                 expect=Outcome.DOWN))
        lines.append(f"| docker_ping, dockerd SIGKILLed, deadline 3 s | DOWN | "
                     f"{s.row('ms', 1000)} |")
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
