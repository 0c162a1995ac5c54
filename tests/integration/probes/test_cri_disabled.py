"""A real containerd whose CRI plugin is disabled (as Docker 23+ ships it): answers Unimplemented
on both CRI versions. Recognised: CRI skipped with a note, no error, the process still probed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeprobe.config import Config
from nodeprobe.judge.verdict import verdict
from nodeprobe.model import Check, Outcome, Runtime, Value
from nodeprobe.probes.cri import CRI_DISABLED, INFO_CRI_API, CriProbe
from nodeprobe.probes.process import ProcessProbe
from tests.harness.cri import containerd_in
from tests.harness.runtimes import Containerd, which


@pytest.fixture
def containerd_without_cri() -> Iterator[Containerd]:
    base = Path(tempfile.mkdtemp(prefix="np-nocri-", dir="/tmp"))
    for d in ("root", "state"):
        (base / d).mkdir()
    config = base / "config.toml"
    config.write_text("\n".join([
        "version = 2",
        f'root = "{base / "root"}"',
        f'state = "{base / "state"}"',
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        "[grpc]",
        f'  address = "{base / "containerd.sock"}"',
        "[ttrpc]",
        f'  address = "{base / "containerd.sock.ttrpc"}"',
        "",
    ]))
    with containerd_in(base, name="containerd-nocri",
                       argv=[which("containerd"), "--config", str(config)]) as daemon:
        yield daemon


def test_cri_disabled_is_skipped_with_a_note_and_the_process_still_probed(
    containerd_without_cri: Containerd,
) -> None:
    socket = str(containerd_without_cri.socket)
    probe = CriProbe(socket, require_network_ready=False)
    try:
        observations = [probe.run(check, deadline_s=3.0, slow_s=3.0) for check in probe.checks]
        again = probe.run(Check.CRI_STATUS, deadline_s=3.0, slow_s=3.0)
    finally:
        probe.close()
    for obs in [*observations, again]:
        assert obs.outcome is Outcome.OK, obs.detail
        assert obs.info[INFO_CRI_API] == CRI_DISABLED
        assert "CRI plugin disabled" in obs.detail and "skipped" in obs.detail
        assert obs.info["version"].startswith("1.")  # containerd's own Version answered
    process = ProcessProbe(Runtime.CONTAINERD, socket_path=socket)
    proc = process.run(Check.PROCESS, deadline_s=3.0, slow_s=3.0)
    assert proc.outcome is Outcome.OK, proc.detail
    assert proc.values[Value.PID] == containerd_without_cri.pid
    result = verdict([*observations, proc], config=Config.defaults())
    assert result.code == 0, result.summary
    assert "ContainerdError" not in result.reason


def test_cri_disabled_containerd_that_hangs_is_still_hung(
    containerd_without_cri: Containerd,
) -> None:
    probe = CriProbe(str(containerd_without_cri.socket), require_network_ready=False)
    try:
        assert probe.run(Check.CRI_VERSION, deadline_s=3.0, slow_s=3.0).outcome is Outcome.OK
        with containerd_without_cri.hung():
            obs = probe.run(Check.CRI_VERSION, deadline_s=1.0, slow_s=1.0)
    finally:
        probe.close()
    assert obs.outcome is Outcome.HUNG, obs.detail
    assert "containerd's Version (CRI disabled)" in obs.detail
