"""`nodeprobe agent`: wires config, probes, the loop, metrics, and Kubernetes unless standalone."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from nodeprobe import heap
from nodeprobe.agent import Agent, Publishers, probed_checks
from nodeprobe.commands.common import (
    build_probes,
    canary_image_problems,
    disabled_checks,
    resolve,
    runtime_overrides,
)
from nodeprobe.config import Config, ConfigError, load
from nodeprobe.publish.metrics import Metrics
from nodeprobe.publish.server import MetricsServer, MetricsServerError, ServerSettings

if TYPE_CHECKING:
    from nodeprobe.agent import ConditionSink
    from nodeprobe.model import Condition, ConditionType
    from nodeprobe.probes import Probe
    from nodeprobe.publish.kubeclient import ClientSettings
    from nodeprobe.repair.executor import RepairExecutor
    from nodeprobe.repair.verify import TriggerMemory

log = logging.getLogger("nodeprobe.agent")

EXIT_CONFIG = 2


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides = runtime_overrides(args)
    if args.node_name:
        overrides["nodeName"] = args.node_name
    if args.metrics_address:
        overrides["metrics.address"] = args.metrics_address
    if args.metrics_port is not None:
        overrides["metrics.port"] = args.metrics_port
    return overrides


def client_settings(config: Config) -> ClientSettings:
    from nodeprobe.publish.kubeclient import ClientSettings

    return ClientSettings(max_idle_s=config.kubernetes.connection_max_idle)


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def _kube_publishers(config: Config, kubeconfig: str | None, metrics: Metrics) -> Publishers:
    from nodeprobe.publish.conditions import ConditionSettings, ConditionWriter
    from nodeprobe.publish.events import EventRecorder, EventSettings
    from nodeprobe.publish.kubeclient import new_client

    api = new_client(kubeconfig=kubeconfig, in_cluster=kubeconfig is None,
                     settings=client_settings(config))
    kube = config.kubernetes
    writer = ConditionWriter(
        config.node_name, api,
        settings=ConditionSettings(heartbeat_s=kube.heartbeat),
        on_error=lambda _: metrics.publish_error("node_status"),
    )
    recorder = EventRecorder(
        config.node_name, api,
        settings=EventSettings(aggregate_window_s=kube.event_aggregation),
        on_error=lambda _: metrics.publish_error("event"),
    )
    return Publishers(conditions=writer, events=recorder, adopted=writer.adopt())


def run(args: argparse.Namespace) -> int:
    """Start up, run the loop until SIGTERM or SIGINT, stop what started; EXIT_CONFIG (after
    saying why) when start-up fails."""
    _configure_logging()
    heap.limit_arenas()  # before any thread starts
    try:
        config, standalone = _settings(args)
        probes = _probes(config)
        registry = CollectorRegistry()
        metrics = Metrics(registry, checks=probed_checks(config, probes))
        publishers = _publishers(config, args.kubeconfig, metrics, standalone=standalone)
        server = _start_server(config, registry, metrics, standalone=standalone)
    except _StartupFailed:
        return EXIT_CONFIG
    stop = _stop_on_signals()
    try:
        repair = _start_repair(config, args.kubeconfig, standalone, publishers, metrics)
    except _StartupFailed:
        if server is not None:
            server.stop()
        return EXIT_CONFIG
    try:
        Agent(config, probes=probes, metrics=metrics, publishers=publishers,
              after_first_round=heap.release_free_memory).run(stop)
    finally:
        if repair is not None:
            repair.stop()
        if server is not None:
            server.stop()
        for probe in probes:
            probe.close()
    return 0


class _StartupFailed(Exception):
    """Already logged; the agent exits with EXIT_CONFIG."""


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("NODEPROBE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _settings(args: argparse.Namespace) -> tuple[Config, bool]:
    """The config, and whether to run standalone: when asked, or with no kubeconfig outside a
    cluster."""
    try:
        config = load(args.config, overrides=_overrides(args))
    except ConfigError as e:
        log.error("bad configuration: %s", e)
        raise _StartupFailed from e
    standalone = args.standalone or (not args.kubeconfig and not in_cluster())
    if not standalone and not config.node_name:
        log.error("no node name: pass --node-name or set NODE_NAME (a DaemonSet sets it from "
                  "spec.nodeName through the downward API)")
        raise _StartupFailed
    return config, standalone


def _publishers(config: Config, kubeconfig: str | None, metrics: Metrics, *,
                standalone: bool) -> Publishers:
    """Node conditions and Events through the API server; none when standalone."""
    if standalone:
        log.info("standalone mode: no Kubernetes API; transitions go to this log")
        return Publishers()
    from nodeprobe.publish.kubeclient import KubeConfigError

    try:
        return _kube_publishers(config, kubeconfig, metrics)
    except KubeConfigError as e:
        log.error("%s", e)
        raise _StartupFailed from e


def _stop_on_signals() -> threading.Event:
    """An event that SIGTERM and SIGINT set: the loop ends and `run` stops what it started."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


class _Remember:
    """Hands every judged change to the repair executor's memory, then to the Node writer: the
    executor acts only while the agent's own judgement says the node is sick."""

    def __init__(self, inner: ConditionSink, memory: TriggerMemory) -> None:
        self._inner = inner
        self._memory = memory

    def update(self, conditions: dict[ConditionType, Condition]) -> None:
        self._memory.update(conditions, now=time.time())
        self._inner.update(conditions)

    def sync(self) -> bool:
        return self._inner.sync()

    def holds(self) -> bool:
        return self._inner.holds()


def _start_repair(
    config: Config, kubeconfig: str | None, standalone: bool, publishers: Publishers,
    metrics: Metrics,
) -> RepairExecutor | None:
    """Node-local repairs run only when enabled and connected to a cluster."""
    if not config.repair.enabled:
        return None
    if standalone or publishers.conditions is None:
        log.warning("repair.enabled is set but the agent is standalone: no repairs will run")
        return None
    from nodeprobe.publish.kubeclient import KubeConfigError
    from nodeprobe.repair.executor import start_executor
    from nodeprobe.repair.verify import TriggerMemory

    memory = TriggerMemory()
    publishers.conditions = _Remember(publishers.conditions, memory)
    try:
        return start_executor(config, kubeconfig=kubeconfig, triggers=memory,
                              on_guard=metrics.set_admission_guard)
    except KubeConfigError as e:
        log.error("repair executor: %s", e)
        raise _StartupFailed from e


def _probes(config: Config) -> list[Probe]:
    """The probes of the runtimes found. Says why and raises _StartupFailed when there is
    nothing to probe or the canary cannot run."""
    endpoints = resolve(config)
    for note in endpoints.notes:
        # A containerd-only node has no dockerd: that is news, not a warning. Something else
        # at a socket's usual path (a directory kubelet made) is.
        log.log(logging.WARNING if note in endpoints.misplaced else logging.INFO, "%s", note)
    probes = build_probes(config, endpoints)
    disabled_checks(config, probes)
    if not probes:
        log.error("nothing to probe: no dockerd or containerd socket found; in the Helm chart "
                  "set agent.docker.socket or agent.containerd.socket to the socket's host path, "
                  "on the command line --docker-socket or --containerd-socket (config: "
                  "docker.socket, containerd.socket)")
        raise _StartupFailed
    missing = canary_image_problems(probes)
    for problem in missing:
        log.error("checks.canary is on, but %s", problem)
    if missing:
        raise _StartupFailed
    return probes


def _start_server(config: Config, registry: CollectorRegistry, metrics: Metrics, *,
                  standalone: bool) -> MetricsServer | None:
    """/metrics, /healthz and /readyz, unless `metrics.port` is 0."""
    if not config.metrics.port:
        return None
    server = MetricsServer(registry, metrics, settings=ServerSettings(
        host=config.metrics.address, port=config.metrics.port, need_node_status=not standalone))
    try:
        server.start()
    except MetricsServerError as e:
        log.error("%s", e)
        raise _StartupFailed from e
    log.info("metrics on http://%s:%d/metrics", config.metrics.address, server.port)
    return server
