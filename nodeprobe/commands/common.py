"""Wiring shared by `check` and `agent`: flags -> config overrides, config -> probes."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

from nodeprobe import discovery
from nodeprobe.config import Config
from nodeprobe.model import Runtime
from nodeprobe.probes import Probe

log = logging.getLogger(__name__)


def runtime_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The runtime flags both subcommands share, as dotted camelCase config keys."""
    overrides: dict[str, object] = {}
    if args.docker_socket:
        overrides["docker.socket"] = args.docker_socket
    if args.containerd_socket:
        overrides["containerd.socket"] = args.containerd_socket
    if args.no_docker:
        overrides["docker.enabled"] = False
    if args.no_containerd:
        overrides["containerd.enabled"] = False
    if args.proc_root:
        overrides["paths.procRoot"] = args.proc_root
    if args.cgroup_root:
        overrides["paths.cgroupRoot"] = args.cgroup_root
    return overrides


@dataclass
class Endpoints:
    """Which socket each enabled runtime uses, and what could not be found (said to the user)."""

    sockets: dict[Runtime, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def resolve(config: Config) -> Endpoints:
    found = Endpoints()
    wanted = (
        (Runtime.DOCKERD, config.docker.enabled, config.docker.socket, discovery.DOCKER_SOCKETS),
        (Runtime.CONTAINERD, config.containerd.enabled, config.containerd.socket,
         discovery.CONTAINERD_SOCKETS),
    )
    for runtime, enabled, socket, candidates in wanted:
        if not enabled:
            continue
        if socket != discovery.AUTO:
            found.sockets[runtime] = socket
            continue
        path = discovery.find_socket(candidates, root=config.paths.host_root)
        if path is None:
            found.notes.append(f"no {runtime} socket at {', '.join(candidates)}: not probed")
        else:
            found.sockets[runtime] = path
    return found


def build_probes(config: Config, endpoints: Endpoints, *, process: bool = True) -> list[Probe]:
    """API probes first, then process probes, in runtime order (dockerd, containerd).

    Each probe's client library is imported only when its runtime is probed: the docker stack
    costs ~6 MiB and grpc ~20 MiB of resident memory, paid on every node that runs the agent.
    """
    probes: list[Probe] = []
    docker = endpoints.sockets.get(Runtime.DOCKERD)
    containerd = endpoints.sockets.get(Runtime.CONTAINERD)
    if docker:
        from nodeprobe.probes.docker import DockerProbe

        probes.append(DockerProbe(docker))
    if containerd:
        from nodeprobe.probes.cri import CriProbe

        probes.append(CriProbe(
            containerd, require_network_ready=config.containerd.require_network_ready))
    if process and config.checks.process.enabled:
        from nodeprobe.probes.process import ProcessProbe

        for runtime, socket in ((Runtime.DOCKERD, docker), (Runtime.CONTAINERD, containerd)):
            if socket:
                probes.append(ProcessProbe(
                    runtime, socket_path=socket, proc_root=config.paths.proc_root,
                    cgroup_root=config.paths.cgroup_root))
    return probes


def disabled_checks(config: Config, probes: list[Probe]) -> None:
    """Drop checks the config turns off (probes list every check they can make)."""
    for probe in probes:
        probe.checks = tuple(c for c in probe.checks if config.checks.for_check(c).enabled)
