"""Which CRI API each real containerd speaks, and what the probe says about it.

containerd 1.6 serves runtime.v1 and runtime.v1alpha2; 2.x removed v1alpha2. The probe must use
v1 on both, never call v1alpha2 when v1 answers, and, when a 2.x containerd has no CRI at all
(plugin disabled), say that neither API answers rather than pretend a fallback exists.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nodeprobe.cri import runtime_v1alpha2_pb2, runtime_v1alpha2_pb2_grpc
from nodeprobe.model import Check, Outcome
from nodeprobe.probes.cri import INFO_CRI_API, CriProbe
from tests.harness.cri import containerd_in
from tests.harness.runtimes import (
    CONTAINERD_2,
    Containerd,
    Sandbox,
    containerd_build,
    containerd_config,
)

DEADLINE = 5.0


def _v1alpha2_version(socket: Path) -> tuple[grpc.StatusCode | None, str]:
    """Call runtime.v1alpha2 Version directly: (None, runtime_version) or (error code, '')."""
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        stub = runtime_v1alpha2_pb2_grpc.RuntimeServiceStub(channel)
        try:
            reply = stub.Version(runtime_v1alpha2_pb2.VersionRequest(), timeout=DEADLINE)
        except grpc.RpcError as e:
            return e.code(), ""
    return None, reply.runtime_version


def test_v1alpha2_answers_on_1_6_and_is_gone_in_2_x(runtimes: Sandbox, containerd: str) -> None:
    code, version = _v1alpha2_version(runtimes.containerd.socket)
    if containerd == CONTAINERD_2:
        assert code is grpc.StatusCode.UNIMPLEMENTED
    else:
        assert code is None and version == runtimes.containerd_build.version()


def test_probe_speaks_v1_on_every_containerd(runtimes: Sandbox) -> None:
    probe = CriProbe(str(runtimes.containerd.socket), require_network_ready=False)
    try:
        obs = [probe.run(check, deadline_s=DEADLINE, slow_s=DEADLINE) for check in probe.checks]
    finally:
        probe.close()
    assert all(o.outcome is Outcome.OK for o in obs), [o.detail for o in obs]
    assert {o.info[INFO_CRI_API] for o in obs} == {"v1"}
    assert probe.api == "v1"


@pytest.fixture
def containerd_2_without_cri() -> Iterator[Containerd]:
    """A real containerd 2.x with its CRI plugins disabled: the v1 fallback has nowhere to go."""
    build = containerd_build(CONTAINERD_2)
    base = Path(tempfile.mkdtemp(prefix="np-nocri-", dir="/tmp"))
    for d in ("root", "state", "cni-bin", "cni-conf"):
        (base / d).mkdir()
    config = containerd_config(base).replace(
        'disabled_plugins = ["io.containerd.nri.v1.nri"]',
        'disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.grpc.v1.cri"]')
    assert "io.containerd.grpc.v1.cri\"]" in config
    (base / "config.toml").write_text(config)
    with containerd_in(base, name="containerd-2-no-cri",
                       argv=[build.binary, "--config", str(base / "config.toml")],
                       env=build.env) as daemon:
        yield daemon


def test_containerd_2_without_cri_is_recognised_not_an_error(
        containerd_2_without_cri: Containerd) -> None:
    """Neither runtime.v1 nor v1alpha2 answers: the CRI plugin is off (Docker 23+ hosts). That is
    a set-up, not a fault: CRI is skipped with a note and containerd's own Version is asked."""
    probe = CriProbe(str(containerd_2_without_cri.socket))
    try:
        o = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=DEADLINE)
    finally:
        probe.close()
    assert o.outcome is Outcome.OK, o.detail
    assert o.info["cri_api"] == "disabled"
    assert "CRI plugin disabled" in o.detail and "containerd's own Version answers" in o.detail
    assert o.info["version"].startswith("2.")
