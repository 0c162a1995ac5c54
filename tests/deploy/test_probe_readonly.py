"""Probing is read-only: every request the docker probe and `nodeprobe check` send is GET/HEAD.

docs/security.md promises this (the socket is root-equivalent, so what we do with it matters);
a recording proxy between the client and the real sandbox dockerd proves it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeprobe.cli import main
from nodeprobe.model import Outcome
from nodeprobe.probes.docker import DockerProbe
from tests.deploy.recording_proxy import RecordingProxy, Request, recording
from tests.harness.runtimes import Sandbox

READ_ONLY = {"GET", "HEAD"}


@pytest.fixture
def proxy(runtimes: Sandbox) -> Iterator[RecordingProxy]:
    with tempfile.TemporaryDirectory(prefix="np-proxy-", dir="/tmp") as tmp, \
            recording(Path(tmp) / "docker.sock", runtimes.dockerd.socket) as p:
        yield p


def _writes(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method not in READ_ONLY]


def test_proxy_records_what_passes(proxy: RecordingProxy) -> None:
    """The proxy itself sees writes: otherwise an empty write list would prove nothing."""
    import docker

    client = docker.APIClient(base_url=f"unix://{proxy.listen}", version="auto", timeout=30)
    try:
        client.ping()
        client.create_volume(name="np-proxy-selftest")
        client.remove_volume("np-proxy-selftest")
    finally:
        client.close()
    methods = {r.method for r in proxy.recorded()}
    assert {"GET", "POST", "DELETE"} <= methods


def test_docker_probe_sends_only_get_and_head(proxy: RecordingProxy) -> None:
    probe = DockerProbe(str(proxy.listen))
    try:
        for check in probe.checks:
            obs = probe.run(check, deadline_s=10.0, slow_s=5.0)
            assert obs.outcome in (Outcome.OK, Outcome.SLOW), obs
    finally:
        probe.close()
    requests = proxy.recorded()
    assert len(requests) >= len(probe.checks)
    assert _writes(requests) == []
    paths = " ".join(r.path for r in requests)
    for endpoint in ("/_ping", "/version", "/info"):
        assert endpoint in paths


def test_check_command_sends_only_get_and_head(
    proxy: RecordingProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["check", "--docker-socket", str(proxy.listen), "--no-containerd",
                   "--no-process"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert proxy.recorded(), "nodeprobe check sent nothing through the proxy"
    assert _writes(proxy.recorded()) == []
