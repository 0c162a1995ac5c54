"""Wiring shared by `check` and `agent`: flags -> config overrides, config -> probes."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field

from nodeprobe import discovery
from nodeprobe.config import Config
from nodeprobe.model import Runtime
from nodeprobe.probes import Probe
from nodeprobe.probes.unixpeer import not_a_socket

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
    misplaced: list[str] = field(default_factory=list)
    """Sentences for usual socket paths that hold something else (e.g. a directory kubelet made);
    also in `notes`."""


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
            where = "" if config.paths.host_root == "/" else f" under {config.paths.host_root}"
            found.notes.append(
                f"no {runtime} socket at {', '.join(candidates)}{where}: not probed")
            for candidate in candidates:
                wrong = not_a_socket(os.path.join(config.paths.host_root, candidate.lstrip("/")),
                                     daemon=str(runtime))
                if wrong:
                    found.notes.append(wrong)
                    found.misplaced.append(wrong)
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
    if config.checks.canary.enabled:
        probes.extend(canaries(config, endpoints))
    if config.checks.disk.enabled:
        probes.extend(disk_probes(config, endpoints))
    if config.checks.runtime_log.enabled:
        probes.extend(runtime_log_probes(config, endpoints))
    if process and config.checks.process.enabled:
        from nodeprobe.probes.process import ProcessProbe

        for runtime, socket in ((Runtime.DOCKERD, docker), (Runtime.CONTAINERD, containerd)):
            if socket:
                probes.append(ProcessProbe(
                    runtime, socket_path=socket, proc_root=config.paths.proc_root,
                    cgroup_root=config.paths.cgroup_root, host_root=config.paths.host_root))
    return probes


def canaries(config: Config, endpoints: Endpoints) -> list[Probe]:
    """One canary per runtime socket: Docker's API for dockerd, CRI for containerd."""
    from nodeprobe.probes.canary import DockerCanary
    from nodeprobe.probes.canary_cri import CriCanary

    settings = config.checks.canary
    found: list[Probe] = []
    docker = endpoints.sockets.get(Runtime.DOCKERD)
    containerd = endpoints.sockets.get(Runtime.CONTAINERD)
    if docker:
        found.append(DockerCanary(docker, image=settings.image,
                                  cleanup_deadline_s=settings.cleanup_deadline))
    if containerd:
        found.append(CriCanary(containerd, image=settings.image,
                               cleanup_deadline_s=settings.cleanup_deadline))
    return found


def disk_probes(config: Config, endpoints: Endpoints) -> list[Probe]:
    """One per runtime whose socket was found and whose root is a directory on the host."""
    from nodeprobe.probes.disk import DiskProbe

    disk = config.disk
    found: list[Probe] = []
    for runtime, root in ((Runtime.DOCKERD, disk.docker_root),
                          (Runtime.CONTAINERD, disk.containerd_root)):
        path = os.path.join(config.paths.host_root, root.lstrip("/"))
        if runtime not in endpoints.sockets or not os.path.isdir(path):
            continue
        docker = endpoints.sockets.get(Runtime.DOCKERD) if runtime is Runtime.DOCKERD else None
        found.append(DiskProbe(runtime, root=path, docker_socket=docker,
                               cause_below_percent=disk.min_free_percent,
                               usage_interval_s=disk.usage_interval,
                               usage_deadline_s=disk.usage_deadline))
    return found


def runtime_log_probes(config: Config, endpoints: Endpoints) -> list[Probe]:
    """One per runtime whose socket was found and whose units have entries in a host journal
    directory; none when systemd-python is missing (noted in the log)."""
    from nodeprobe.probes.runtime_log import INSTALL_HINT, RuntimeLogProbe, journal_available

    settings = config.runtime_log
    dirs = [os.path.join(config.paths.host_root, d.lstrip("/")) for d in settings.journal_dirs]
    if not any(os.path.isdir(d) for d in dirs):
        return []
    if not journal_available():
        log.warning("runtime log check off: %s", INSTALL_HINT)
        return []
    found: list[Probe] = []
    for runtime, units in ((Runtime.DOCKERD, settings.docker_units),
                           (Runtime.CONTAINERD, settings.containerd_units)):
        if runtime not in endpoints.sockets:
            continue
        probe = RuntimeLogProbe(runtime, journal_dirs=dirs, units=units,
                                window_s=settings.window)
        try:
            present = probe.has_entries()
        except OSError as e:
            log.warning("runtime log check off for %s: cannot read %s: %s", runtime, dirs, e)
            continue
        if present:
            found.append(probe)
        else:
            log.info("no journal entries of %s in %s: its log is not read", ", ".join(units),
                     ", ".join(dirs))
    return found


CANARY_IMAGE_CHECK_S = 5.0
"""How long the start-up check of the canary's image may take per runtime."""


def canary_image_problems(probes: list[Probe]) -> list[str]:
    """Sentences for each canary whose image is certainly missing (unknown counts as present:
    a runtime that does not answer at start is the probes' to report, not a reason to refuse)."""
    problems = []
    for probe in probes:
        check = getattr(probe, "image_problem", None)
        if check is not None:
            problem = check(deadline_s=CANARY_IMAGE_CHECK_S)
            if problem:
                problems.append(f"{probe.runtime}: {problem}")
    return problems


def disabled_checks(config: Config, probes: list[Probe]) -> None:
    """Drop checks the config turns off (probes list every check they can make)."""
    for probe in probes:
        probe.checks = tuple(c for c in probe.checks if config.checks.for_check(c).enabled)
