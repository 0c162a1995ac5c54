"""Where the agent's resident memory goes: RSS after each import step in a fresh interpreter.

Run with `python -m benchmarks.agent_rss`; prints a Markdown table. Each step imports what the
agent imports for one part (in the agent's own order), so the deltas attribute its RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys

STEPS = (
    ("python interpreter", "pass"),
    ("prometheus_client, yaml, nodeprobe.config/agent/metrics",
     "import prometheus_client, yaml, nodeprobe.config, nodeprobe.agent, "
     "nodeprobe.publish.metrics, nodeprobe.publish.server, nodeprobe.commands.agent"),
    ("docker probe (http.client on the unix socket)", "import nodeprobe.probes.docker"),
    ("CRI probe (grpc, protobuf, generated stubs)", "import nodeprobe.probes.cri"),
    ("process probe", "import nodeprobe.probes.process"),
    ("Kubernetes client (publish.kubeclient, conditions, events, repair executor)",
     "import nodeprobe.publish.kubeclient, nodeprobe.publish.conditions, "
     "nodeprobe.publish.events, nodeprobe.repair.executor"),
    ("for comparison: the `kubernetes` package the agent no longer imports", "import kubernetes"),
)

CHILD = """
import json, re, sys
def rss():
    t = open('/proc/self/status').read()
    return {k: int(re.search(k + r':\\s+(\\d+)', t).group(1)) for k in ('VmRSS', 'RssAnon')}
out = []
for label, code in json.loads(sys.argv[1]):
    exec(code)
    out.append((label, rss()))
print(json.dumps(out))
"""


def table() -> str:
    """The Markdown table of RSS per import step."""
    raw = subprocess.run([sys.executable, "-c", CHILD, json.dumps(STEPS)], check=True,
                         capture_output=True, text=True).stdout
    rows = json.loads(raw)
    lines = ["| import step | RSS after | delta RSS | delta RssAnon |", "|---|---|---|---|"]
    prev = {"VmRSS": 0, "RssAnon": 0}
    for label, kib in rows:
        lines.append(f"| {label} | {kib['VmRSS'] / 1024:.1f} MiB | "
                     f"+{(kib['VmRSS'] - prev['VmRSS']) / 1024:.1f} MiB | "
                     f"+{(kib['RssAnon'] - prev['RssAnon']) / 1024:.1f} MiB |")
        prev = kib
    return "\n".join(lines)


def arenas(seconds: float = 120.0) -> str:
    """Two agents side by side for `seconds`: glibc's default malloc arenas vs MALLOC_ARENA_MAX=2.

    A diagnostic of where run-time RSS goes (one arena per thread that allocates). The agent now
    caps arenas itself (nodeprobe/heap.py), so the two should measure alike.
    """
    import shutil
    import tempfile
    import time
    from pathlib import Path

    from benchmarks.agent_load import DefaultAgent
    from benchmarks.real_kube import real_kube
    from tests.harness.agent_process import NODE
    from tests.harness.runtimes import Sandbox

    base = Path(tempfile.mkdtemp(prefix="np-ar-", dir="/tmp"))
    sandbox = Sandbox(base)
    agents: list[tuple[str, DefaultAgent]] = []
    rows = [f"| agent environment (both at once, {seconds:g} s, default config) | RSS | RssAnon "
            "| VmHWM | threads |", "|---|---|---|---|---|"]
    try:
        with real_kube(NODE) as kube:
            sandbox.start()
            for label, env in (("default glibc arenas", {}),
                               ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"})):
                agents.append((label, DefaultAgent(sandbox, base, kubeconfig=kube.kubeconfig,
                                                   env=env)))
            time.sleep(seconds)
            for label, agent in agents:
                st = agent.status()
                rows.append(f"| {label} | {st['rss'] / 2**20:.1f} MiB | "
                            f"{st['anon'] / 2**20:.1f} MiB | {st['hwm'] / 2**20:.1f} MiB | "
                            f"{st['threads']} |")
            for _, agent in agents:
                agent.stop()
    finally:
        for _, agent in agents:
            agent.stop()
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    print(table())
    if argv and argv[0] == "--arenas":
        print()
        print(arenas(float(argv[1]) if len(argv) > 1 else 120.0))


if __name__ == "__main__":
    main(sys.argv[1:])
