"""A soak on the real node, outside CI: the chart installed with the agent's projected token living
600 s (the API server's minimum), then the node left idle for 30 minutes. kubelet rotates the
token at 80 % of its life (about every 8 minutes), the agent rewrites its conditions every 5
minutes (heartbeat) on a connection idle for longer than the API server keeps one open.

    python -m benchmarks.realnode_soak [MINUTES] [IMAGE_TAR]
        MINUTES: how long the node stays idle (default 30);
        IMAGE_TAR: a `docker save` of the project's image instead of building it

Counted: the agent's token file rewritten (rotations) and the tokens (JTIs) its requests carried,
every 401 in the API server's audit log (also those that name no user: the audit policy here
keeps failed authentications), the agent's writes and their status codes, WARNING/ERROR lines
in its log, nodeprobe_publish_errors_total, its restarts and its peak memory. Prints the
Markdown docs/performance.md quotes; exits 1 when the soak saw a 401, a failed write or a warning.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peer_measure import loadavg
from benchmarks.realnode_hang import agent_pod, built_image, install, working_set_mib
from benchmarks.stats import machine
from tests.harness.kubecluster import KubeCluster
from tests.harness.kubecluster.control import AUDIT_POLICY as CLUSTER_AUDIT_POLICY
from tests.harness.kubecluster.node import RealNode, real_node

TOKEN_LIFE_S = 600
AGENT_USER = "system:serviceaccount:nodeprobe:nodeprobe-agent"
CREDENTIAL = "authentication.kubernetes.io/credential-id"
SAMPLE_S = 5.0
"""How often the token file, the agent's memory and its restarts are read (s)."""
AUDIT_POLICY = CLUSTER_AUDIT_POLICY.replace("  - level: None\n", """\
  - level: None
    userGroups: ["system:authenticated"]
  # Anonymous requests and failed authentications (a rejected token names no user).
  - level: Metadata
""")


class SoakCluster(KubeCluster):
    audit_policy = AUDIT_POLICY


@dataclass
class Soak:
    """What the samples saw."""

    started: str = ""
    """When the idle run began (UTC, as the CRI log stamps lines): the agent was Ready."""
    tokens: list[str] = field(default_factory=list)
    rotations_at_s: list[float] = field(default_factory=list)
    peak_working_set_mib: float = 0.0
    restarts: int = 0


def _jti(token: str) -> str:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"JTI={claims['jti']}"


def _token_file(node: RealNode, pod: dict[str, Any]) -> Path:
    return node.host_path(f"/var/lib/kubelet/pods/{pod['metadata']['uid']}/volumes/"
                          "kubernetes.io~projected/kube-api-access-nodeprobe/token")


def _restarts(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0))
               for c in pod.get("status", {}).get("containerStatuses") or [])


def soak(cluster: KubeCluster, node: RealNode, seconds: float) -> Soak:
    pod = agent_pod(cluster)
    token, memory = _token_file(node, pod), node.pod_cgroup("memory", pod["metadata"]["uid"])
    assert memory is not None, "the agent pod has no memory cgroup"
    seen = Soak(started=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                tokens=[token.read_text()])
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        now = token.read_text()
        if now != seen.tokens[-1]:
            seen.tokens.append(now)
            seen.rotations_at_s.append(elapsed)
            print(f"token rotated at {elapsed:.0f} s", file=sys.stderr, flush=True)
        seen.peak_working_set_mib = max(seen.peak_working_set_mib, working_set_mib(memory))
        time.sleep(SAMPLE_S)
    seen.restarts = _restarts(agent_pod(cluster))
    return seen


def audit_events(audit_log: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every completed request, and every 401 once: a failed authentication is audited at
    ResponseStarted only, with no user (a rejected token names none)."""
    done, unauthorized = [], {}
    for line in audit_log.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the last line of a server killed mid-write
        if event.get("stage") == "ResponseComplete":
            done.append(event)
        if event.get("responseStatus", {}).get("code") == 401:
            unauthorized[event.get("auditID")] = event
    return done, list(unauthorized.values())


def _metric(pod: dict[str, Any], name: str, port: int = 9103) -> float:
    """The sum of a counter's series on the agent's /metrics (the host reaches the pod IP)."""
    url = f"http://{pod['status']['podIP']}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def report(cluster: KubeCluster, node: RealNode, seen: Soak, minutes: float,
           loads: list[float]) -> tuple[str, bool]:
    """The table, and whether the soak was clean: no 401, failed write, publish error or restart
    in the whole run (install included), no WARNING+ line while idle, two rotations at least."""
    pod = agent_pod(cluster)
    events, unauthorized = audit_events(cluster.audit_log)
    agent = [e for e in events if e.get("user", {}).get("username") == AGENT_USER]
    writes = [e for e in agent if e.get("verb") in ("patch", "create", "update")]
    bad = [e for e in writes if e.get("responseStatus", {}).get("code", 0) >= 300]
    used = {j for e in agent for j in e.get("user", {}).get("extra", {}).get(CREDENTIAL, [])}
    rotated = {_jti(t) for t in seen.tokens[1:]}
    log = node.host_path("/var/log/pods").glob(
        f"nodeprobe_{pod['metadata']['name']}_{pod['metadata']['uid']}/agent/*.log")
    lines = [line for f in log for line in f.read_text().splitlines()]
    warned = [line for line in lines if re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
    warnings = [line for line in warned if line >= seen.started]  # CRI lines start with a stamp
    errors = _metric(pod, "nodeprobe_publish_errors_total")
    out = [
        "| idle | token rotations seen (file rewritten) | rotated tokens the agent used | "
        "401s in the audit log (agent / all) | agent writes (non-2xx) | WARNING+ log lines "
        "while idle (at startup) | "
        "nodeprobe_publish_errors_total | agent restarts | peak working set |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {minutes:.0f} min | {len(seen.rotations_at_s)} (at "
        f"{', '.join(f'{s / 60:.1f}' for s in seen.rotations_at_s)} min) | "
        f"{len(rotated & used)} of {len(rotated)} | "
        f"{sum(1 for e in unauthorized if _is_agent(e))} / {len(unauthorized)} | "
        f"{len(writes)} ({len(bad)}) | {len(warnings)} ({len(warned) - len(warnings)}) | "
        f"{errors:g} | {seen.restarts} | "
        f"{seen.peak_working_set_mib:.0f} MiB |",
        f"\ntoken expirationSeconds {TOKEN_LIFE_S}; load average (1 min) "
        f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f}; {machine()}",
    ]
    out += [f"    {w}" for w in warned[:10]]
    clean = not unauthorized and not bad and not warnings and errors == 0 and not seen.restarts
    return "\n".join(out), clean and len(seen.rotations_at_s) >= 2


def _is_agent(event: dict[str, Any]) -> bool:
    return event.get("user", {}).get("username") == AGENT_USER or \
        str(event.get("userAgent", "")).startswith("nodeprobe")


def measure(minutes: float, archive: Path | None = None) -> tuple[str, bool]:
    base = Path(tempfile.mkdtemp(prefix="np-bs-", dir="/tmp"))
    loads: list[float] = []
    cluster = SoakCluster(base / "k", for_node=True)
    try:
        archive = archive or built_image(base)
        cluster.start()
        with real_node(cluster, base / "n") as node:
            node.import_image(archive)
            install(cluster, f"agent.serviceAccount.tokenExpirationSeconds={TOKEN_LIFE_S}")
            with loadavg(loads):
                seen = soak(cluster, node, minutes * 60)
            return report(cluster, node, seen, minutes, loads)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    table, clean = measure(float(args[0]) if args else 30.0,
                           Path(args[1]) if len(args) > 1 else None)
    print(table)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
