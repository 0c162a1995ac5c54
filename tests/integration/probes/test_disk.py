"""DiskProbe on a real dockerd whose data-root is a small loop-mounted ext4, filled for real."""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from nodeprobe.commands.common import Endpoints, disk_probes
from nodeprobe.config import load
from nodeprobe.judge.continuous import Judge
from nodeprobe.judge.degraded import findings
from nodeprobe.model import Check, ConditionType, Outcome, Reason, Runtime, Status, Value
from nodeprobe.probes.disk import DiskProbe
from tests.harness import loopfs
from tests.harness.runtimes import BUSYBOX_IMAGE, Sandbox

BLOAT_BYTES = 24 * 2**20


@pytest.fixture
def loop_mount() -> Iterator[Path]:
    """A small ext4 on a loop device, mounted under a temp dir."""
    with loopfs.loop_mount() as mount:
        yield mount


@pytest.fixture
def small_root_sandbox(loop_mount: Path) -> Iterator[Sandbox]:
    """A private containerd + dockerd whose --data-root is the loop filesystem."""
    sandbox = Sandbox(loop_mount)
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()


def _bloat_tar(seed: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("bloat.bin")
        info.size = BLOAT_BYTES
        tar.addfile(info, io.BytesIO(os.urandom(BLOAT_BYTES - 8) + seed.to_bytes(8, "big")))
    return out.getvalue()


def _make_dangling_images(socket: Path, count: int) -> None:
    """Import under one tag `count + 1` times: every import but the last leaves a dangling one."""
    client = docker.APIClient(base_url=f"unix://{socket}", version="auto", timeout=120)
    try:
        for seed in range(count + 1):
            client.import_image_from_data(_bloat_tar(seed), repository="nodeprobe-test/bloat",
                                          tag="latest")
        assert len(client.images(filters={"dangling": True})) == count
    finally:
        client.close()


def test_docker_root_filled_to_95_percent_names_dangling_images(
    small_root_sandbox: Sandbox,
) -> None:
    root = small_root_sandbox.base / "docker" / "root"
    config = load(None, overrides={"paths.hostRoot": "/", "disk.dockerRoot": str(root)})
    probes = disk_probes(config, Endpoints(sockets={
        Runtime.DOCKERD: str(small_root_sandbox.dockerd.socket)}))
    assert [p.runtime for p in probes] == [Runtime.DOCKERD]
    probe = probes[0]
    try:
        healthy = probe.run(Check.DISK, deadline_s=10, slow_s=5)
        assert healthy.outcome is Outcome.OK, healthy.detail
        assert findings([healthy], config) == []
        assert Value.DANGLING_IMAGES not in healthy.values  # not looked up while there is room

        _make_dangling_images(small_root_sandbox.dockerd.socket, 2)
        loopfs.fill_to(small_root_sandbox.base, 0.95)
        full = probe.run(Check.DISK, deadline_s=10, slow_s=5)
    finally:
        probe.close()
    assert full.outcome is Outcome.OK, full.detail
    free = 100 * full.values[Value.DISK_AVAILABLE_BYTES] / full.values[Value.DISK_TOTAL_BYTES]
    assert free < 6
    assert full.values[Value.DANGLING_IMAGES] == 2
    assert full.values[Value.DANGLING_IMAGES_BYTES] >= 2 * BLOAT_BYTES

    judge = Judge(config, expected={(Runtime.DOCKERD, Check.DISK)}, now=full.at)
    judge.observe(full, now=full.at)
    degraded = judge.conditions()[ConditionType.DEGRADED]
    assert (degraded.status, degraded.reason) == (Status.TRUE, Reason.DOCKER_ROOT_DISK_LOW)
    assert f"dockerd root {root} has {free:.1f}% free" in degraded.message
    assert "2 dangling images hold" in degraded.message and "docker image prune" in degraded.message
    assert judge.conditions()[ConditionType.UNAVAILABLE].status is Status.FALSE


def test_missing_root_is_a_clear_error_not_a_condition(tmp_path: Path) -> None:
    probe = DiskProbe(Runtime.CONTAINERD, root=str(tmp_path / "absent"))
    obs = probe.run(Check.DISK, deadline_s=5, slow_s=5)
    assert obs.outcome is Outcome.ERROR
    assert "set disk.containerdRoot" in obs.detail
    config = load(None)
    assert findings([obs], config) == []


def test_build_cache_and_volumes_come_from_system_df_off_the_check(runtimes: Sandbox) -> None:
    """GET /system/df runs in its own thread; a check attaches its last answer."""
    client = docker.APIClient(base_url=f"unix://{runtimes.dockerd.socket}", version="auto",
                              timeout=120)
    volume = f"np-df-{os.getpid()}"
    try:
        client.create_volume(volume)
        container = client.create_container(
            BUSYBOX_IMAGE, ["sh", "-c", "echo 0123456789abcdef > /v/data"],
            host_config=client.create_host_config(binds={volume: {"bind": "/v", "mode": "rw"}},
                                                  network_mode="none"))
        client.start(container)
        assert client.wait(container, timeout=60)["StatusCode"] == 0
        client.remove_container(container)
        probe = DiskProbe(Runtime.DOCKERD, root=str(runtimes.base),
                          docker_socket=str(runtimes.dockerd.socket), usage_interval_s=3600,
                          usage_deadline_s=60)
        try:
            first = probe.run(Check.DISK, deadline_s=5, slow_s=5)
            assert first.outcome is Outcome.OK  # answered without waiting for /system/df
            end = time.monotonic() + 60
            obs = first
            while Value.VOLUMES_BYTES not in obs.values:
                assert time.monotonic() < end, "no /system/df answer attached within 60 s"
                time.sleep(0.2)
                obs = probe.run(Check.DISK, deadline_s=5, slow_s=5)
        finally:
            probe.close()
        assert obs.values[Value.VOLUMES_BYTES] >= 17  # the file written into the volume
        assert obs.values[Value.BUILD_CACHE_BYTES] == 0
        assert int(obs.info["usage_age_s"]) < 60
    finally:
        client.remove_volume(volume, force=True)
        client.close()
