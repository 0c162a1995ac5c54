"""`nodeprobe agent` start-up: what it says when there is nothing to probe, and what /metrics
carries for a runtime that is not probed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from nodeprobe.agent import probed_checks
from nodeprobe.cli import main
from nodeprobe.commands.common import build_probes, resolve
from nodeprobe.config import load
from nodeprobe.publish.metrics import Metrics
from tests.harness.runtimes import Sandbox


def test_no_socket_found_names_the_chart_values_and_the_flags(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host with neither socket under hostRoot (the sandbox's empty directory)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"paths": {"hostRoot": str(tmp_path)},
                                      "metrics": {"port": 0}}))
    with caplog.at_level(logging.ERROR):
        code = main(["agent", "--standalone", "--config", str(config), "--node-name", "n1"])
    assert code != 0
    for name in ("agent.docker.socket", "agent.containerd.socket", "--docker-socket",
                 "--containerd-socket"):
        assert name in caplog.text, caplog.text


@pytest.mark.containerd("1.6")
def test_metrics_carry_no_series_of_a_runtime_not_probed(runtimes: Sandbox) -> None:
    config = load(None, overrides={"docker.enabled": False,
                                   "containerd.socket": str(runtimes.containerd.socket)})
    probes = build_probes(config, resolve(config))
    try:
        registry = CollectorRegistry()
        Metrics(registry, checks=probed_checks(config, probes))
        text = generate_latest(registry).decode()
    finally:
        for probe in probes:
            probe.close()
    series = [line for line in text.splitlines() if not line.startswith("#")]
    assert any('runtime="containerd"' in line for line in series)
    docker = [line for line in series if "docker" in line.lower()]
    assert docker == [], f"{len(docker)} dockerd series, e.g. {docker[:3]}"
