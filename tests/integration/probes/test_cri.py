"""CriProbe against the harness's real containerd (1.6 and 2.x), and against fake CRI servers
for the v1alpha2 fallback and for sockets that do not speak gRPC."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from nodeprobe.cri import runtime_v1_pb2, runtime_v1_pb2_grpc
from nodeprobe.model import Check, Observation, Outcome, Runtime, Value
from nodeprobe.probes.cri import INFO_CRI_API, CriProbe
from tests.harness.cri import (
    CriClient,
    cri_containerd,
    ctr_container_ids,
    fake_cri,
    import_image_for_cri,
    raw_server,
)
from tests.harness.runtimes import BUSYBOX_IMAGE, Sandbox

CHECKS = CriProbe.checks
DEADLINE = 2.0
SLOW = 1.0
MARGIN = 0.5
"""The Probe protocol: return within the deadline plus a small scheduling margin."""


@pytest.fixture
def probe(runtimes: Sandbox) -> Iterator[CriProbe]:
    p = CriProbe(str(runtimes.containerd.socket), require_network_ready=False)
    yield p
    p.close()


def run_all(probe: CriProbe, *, deadline_s: float = DEADLINE) -> dict[Check, Observation]:
    """All checks at once from several threads, as the agent's scheduler calls them."""
    with ThreadPoolExecutor(max_workers=len(CHECKS)) as pool:
        futures = {c: pool.submit(probe.run, c, deadline_s=deadline_s, slow_s=SLOW)
                   for c in CHECKS}
        return {c: f.result() for c, f in futures.items()}


def probe_root(probe: CriProbe) -> Path:
    """The containerd root of the sandbox whose socket this probe talks to."""
    return Path(probe.socket_path).parent / "root" / "io.containerd.snapshotter.v1.overlayfs"


def test_healthy_containerd_every_check_ok(probe: CriProbe, runtimes: Sandbox) -> None:
    obs = run_all(probe)
    for check, o in obs.items():
        assert o.outcome in (Outcome.OK, Outcome.SLOW), (check, o.detail)
        assert o.runtime is Runtime.CONTAINERD and o.check is check
        assert o.info[INFO_CRI_API] == "v1"
    version = obs[Check.CRI_VERSION].info
    assert version["runtime_name"] == "containerd"
    assert version["runtime_version"] == runtimes.containerd_build.version()
    assert version["runtime_api_version"] == "v1"
    status = obs[Check.CRI_STATUS]
    assert status.values[Value.RUNTIME_READY] == 1.0
    # No CNI config in the sandbox: containerd says so, and we pass it on without failing.
    assert status.values[Value.NETWORK_READY] == 0.0
    assert "NetworkReady=false (NetworkPluginNotReady" in status.detail
    fs = obs[Check.CRI_IMAGE_FS_INFO]
    assert abs(fs.values[Value.IMAGE_FS_TIMESTAMP_SECONDS] - time.time()) < 60
    # the sandbox's own overlayfs snapshotter root, and a byte count that is a whole number
    assert fs.info["image_fs_mountpoint"].startswith(str(probe_root(probe)))
    used = fs.values[Value.IMAGE_FS_USED_BYTES]
    assert used == int(used) and 0 <= used < 2**40
    assert probe.api == "v1"


def test_network_not_ready_is_an_error_when_required(runtimes: Sandbox) -> None:
    probe = CriProbe(str(runtimes.containerd.socket))
    try:
        o = probe.run(Check.CRI_STATUS, deadline_s=DEADLINE, slow_s=SLOW)
    finally:
        probe.close()
    assert o.outcome is Outcome.ERROR
    assert o.detail.startswith("CRI reports NetworkReady=false (NetworkPluginNotReady: ")
    assert "cni plugin not initialized" in o.detail
    assert o.values == {Value.RUNTIME_READY: 1.0, Value.NETWORK_READY: 0.0}


def test_wire_compatible_with_containerd_replies(runtimes: Sandbox, tmp_path: Path) -> None:
    """A real pod made through CRI comes back field for field: our field numbers are right."""
    image = f"docker.io/{BUSYBOX_IMAGE}"
    with cri_containerd(sandbox_image=image, build=runtimes.containerd_build) as containerd:
        import_image_for_cri(docker_socket=runtimes.dockerd.socket,
                             containerd_socket=containerd.socket, tmp=tmp_path, cri_name=image)
        client = CriClient(containerd.socket)
        name, uid = f"np-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
        started = time.time_ns()
        pod = client.run_pod(name=name, uid=uid, namespace="nodeprobe-test", image=image,
                             log_dir=tmp_path, container_name="sleeper",
                             command=["/bin/sleep", "3600"])
        probe = CriProbe(str(containerd.socket), require_network_ready=False)
        try:
            with grpc.insecure_channel(f"unix://{containerd.socket}") as channel:
                stub = runtime_v1_pb2_grpc.RuntimeServiceStub(channel)
                sandboxes = stub.ListPodSandbox(runtime_v1_pb2.ListPodSandboxRequest(),
                                                timeout=5)
                containers = stub.ListContainers(runtime_v1_pb2.ListContainersRequest(),
                                                 timeout=5)
            [sandbox] = sandboxes.items
            assert sandbox.id == pod.sandbox_id
            assert (sandbox.metadata.name, sandbox.metadata.uid, sandbox.metadata.namespace,
                    sandbox.metadata.attempt) == (name, uid, "nodeprobe-test", 0)
            assert sandbox.state == runtime_v1_pb2.SANDBOX_READY
            assert started <= sandbox.created_at <= time.time_ns()
            [container] = containers.containers
            assert container.id == pod.container_id
            assert container.pod_sandbox_id == pod.sandbox_id
            assert (container.metadata.name, container.metadata.attempt) == ("sleeper", 0)
            assert container.state == runtime_v1_pb2.CONTAINER_RUNNING
            assert started <= container.created_at <= time.time_ns()
            # containerd's own view (ctr): the sandbox and the container, nothing else.
            assert ctr_container_ids(containerd.socket) == {pod.sandbox_id, pod.container_id}
            obs = run_all(probe)
            assert {o.outcome for o in obs.values()} == {Outcome.OK}, obs
            assert obs[Check.CRI_LIST_POD_SANDBOX].values[Value.POD_SANDBOXES] == 1
            assert obs[Check.CRI_LIST_POD_SANDBOX].detail == "1 pod sandboxes (1 ready)"
            assert obs[Check.CRI_LIST_CONTAINERS].values[Value.CONTAINERS] == 1
            assert obs[Check.CRI_LIST_CONTAINERS].detail == "1 containers (1 running)"
            fs = obs[Check.CRI_IMAGE_FS_INFO]
            assert fs.info["image_fs_mountpoint"] == str(
                containerd.socket.parent / "root" / "io.containerd.snapshotter.v1.overlayfs")
            assert fs.values[Value.IMAGE_FS_TIMESTAMP_SECONDS] > started / 1e9 - 60
        finally:
            probe.close()
            client.remove_pod(pod.sandbox_id)
            client.close()


def test_falls_back_to_v1alpha2_only_when_v1_is_unimplemented(tmp_path: Path) -> None:
    sock = tmp_path / "cri.sock"
    with fake_cri(sock, apis=("v1alpha2",)) as calls:
        probe = CriProbe(str(sock), require_network_ready=True)
        try:
            first = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
            rest = run_all(probe)
        finally:
            probe.close()
    assert first.outcome is Outcome.OK, first.detail
    assert first.info[INFO_CRI_API] == "v1alpha2"
    assert first.info["runtime_api_version"] == "v1alpha2"
    for check, o in rest.items():
        assert o.outcome is Outcome.OK, (check, o.detail)
        assert o.info[INFO_CRI_API] == "v1alpha2"
    # v1 was asked once; once v1alpha2 answered, the choice was remembered.
    assert calls.methods[:2] == ["/runtime.v1.RuntimeService/Version",
                                 "/runtime.v1alpha2.RuntimeService/Version"]
    assert all(m.startswith("/runtime.v1alpha2.") for m in calls.methods[2:])
    assert probe.api == "v1alpha2"


def test_uses_v1_and_never_v1alpha2_when_both_answer(tmp_path: Path) -> None:
    sock = tmp_path / "cri.sock"
    with fake_cri(sock, apis=("v1", "v1alpha2")) as calls:
        probe = CriProbe(str(sock))
        try:
            obs = run_all(probe)
        finally:
            probe.close()
    assert {o.outcome for o in obs.values()} == {Outcome.OK}
    assert len(calls.methods) == len(CHECKS)
    assert all(m.startswith("/runtime.v1.") for m in calls.methods), calls.methods


def test_neither_api_is_an_error_saying_so(tmp_path: Path) -> None:
    sock = tmp_path / "cri.sock"
    with fake_cri(sock, apis=()):
        probe = CriProbe(str(sock))
        try:
            o = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
        finally:
            probe.close()
    assert o.outcome is Outcome.ERROR
    assert "neither runtime.v1 nor runtime.v1alpha2" in o.detail


def test_bad_replies_are_errors_with_a_reason(tmp_path: Path) -> None:
    pb = runtime_v1_pb2
    replies = {"v1": {
        "status": pb.StatusResponse(status=pb.RuntimeStatus(conditions=[
            pb.RuntimeCondition(type="RuntimeReady", status=False, reason="ShimDown",
                                message="no shim")])),
        "image_fs": pb.ImageFsInfoResponse(),
        "version": pb.VersionResponse(),
    }}
    sock = tmp_path / "cri.sock"
    with fake_cri(sock, apis=("v1",), **replies):
        probe = CriProbe(str(sock), require_network_ready=False)
        try:
            obs = run_all(probe)
        finally:
            probe.close()
    status = obs[Check.CRI_STATUS]
    assert status.outcome is Outcome.ERROR
    assert status.detail == "CRI reports RuntimeReady=false (ShimDown: no shim)"
    assert status.values[Value.RUNTIME_READY] == 0.0
    assert status.values[Value.NETWORK_READY] == 0.0  # not reported counts as not ready
    assert obs[Check.CRI_IMAGE_FS_INFO].outcome is Outcome.ERROR
    assert "lists no image filesystem" in obs[Check.CRI_IMAGE_FS_INFO].detail
    assert obs[Check.CRI_VERSION].outcome is Outcome.ERROR
    assert "names no runtime" in obs[Check.CRI_VERSION].detail
    assert obs[Check.CRI_LIST_CONTAINERS].outcome is Outcome.OK


def test_hung_containerd_is_hung_within_the_deadline(runtimes: Sandbox, probe: CriProbe) -> None:
    assert probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW).outcome is Outcome.OK
    deadline = 1.0
    with runtimes.containerd.hung():
        t0 = time.monotonic()
        obs = run_all(probe, deadline_s=deadline)
        wall = time.monotonic() - t0
    for check, o in obs.items():
        assert o.outcome is Outcome.HUNG, (check, o.detail)
        assert deadline <= o.latency_s <= deadline + MARGIN, (check, o.latency_s)
        assert f"did not answer within {deadline:g}s" in o.detail
    assert wall <= deadline + MARGIN


def test_probe_started_while_hung_is_hung_too(runtimes: Sandbox) -> None:
    with runtimes.containerd.hung():
        probe = CriProbe(str(runtimes.containerd.socket))
        try:
            o = probe.run(Check.CRI_LIST_POD_SANDBOX, deadline_s=0.5, slow_s=SLOW)
        finally:
            probe.close()
    assert o.outcome is Outcome.HUNG
    assert o.latency_s <= 0.5 + MARGIN


def test_crashed_containerd_is_down_fast_and_ok_again_after_restart(
        runtimes: Sandbox, probe: CriProbe) -> None:
    assert probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW).outcome is Outcome.OK
    runtimes.containerd.crash()
    obs = run_all(probe)
    for check, o in obs.items():
        assert o.outcome is Outcome.DOWN, (check, o.detail)
        assert o.latency_s < 0.5, (check, o.latency_s)
        assert "connection refused" in o.detail
    down = [o.latency_s for o in obs.values()]
    runtimes.heal()
    back = time.monotonic()
    deadline = back + 3.0
    while True:
        obs = run_all(probe)
        if all(o.outcome is Outcome.OK for o in obs.values()):
            break
        assert time.monotonic() < deadline, {c: o.detail for c, o in obs.items()}
        time.sleep(0.05)  # polling a real state: the probe itself, with a 3 s deadline
    print(f"\nDOWN latency max {max(down) * 1000:.2f} ms; all checks OK "
          f"{time.monotonic() - back:.3f}s after containerd answered again")


def test_missing_socket_is_down(tmp_path: Path) -> None:
    probe = CriProbe(str(tmp_path / "nothing.sock"))
    o = probe.run(Check.CRI_STATUS, deadline_s=DEADLINE, slow_s=SLOW)
    probe.close()
    assert o.outcome is Outcome.DOWN
    assert "socket does not exist" in o.detail
    assert o.latency_s < 0.5


def test_path_that_is_not_a_socket_says_so(tmp_path: Path) -> None:
    path = tmp_path / "containerd.sock"
    path.write_text("not a socket")
    probe = CriProbe(str(path))
    o = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
    probe.close()
    assert o.outcome is Outcome.DOWN
    assert f"{path} is a regular file, not a socket" in o.detail
    assert o.latency_s < 0.5


def test_directory_at_the_socket_path_says_how_it_got_there(tmp_path: Path) -> None:
    path = tmp_path / "containerd.sock"
    path.mkdir()
    probe = CriProbe(str(path))
    o = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
    probe.close()
    assert o.outcome is Outcome.DOWN
    assert f"{path} is a directory, not a socket (kubelet creates one for a hostPath" in o.detail


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n" + os.urandom(64)],
                         ids=["closes-at-once", "garbage"])
def test_socket_that_is_not_grpc_is_a_clear_failure(tmp_path: Path, reply: bytes) -> None:
    sock = tmp_path / "bad.sock"
    with raw_server(sock, reply):
        probe = CriProbe(str(sock))
        try:
            o = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
        finally:
            probe.close()
    assert o.outcome in (Outcome.ERROR, Outcome.DOWN), o.detail
    assert str(sock) in o.detail
    assert "is this a CRI gRPC socket?" in o.detail
    assert o.latency_s <= DEADLINE + MARGIN


def test_closed_probe_answers_error_and_close_is_idempotent(probe: CriProbe) -> None:
    probe.close()
    probe.close()
    o = probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
    assert o.outcome is Outcome.ERROR
    assert "closed" in o.detail


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    """OS threads, gRPC core's own included (threading.active_count sees only Python's)."""
    return len(os.listdir("/proc/self/task"))


def test_hung_checks_leak_no_threads_or_fds(runtimes: Sandbox, probe: CriProbe) -> None:
    assert probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW).outcome is Outcome.OK
    threads, fds = _threads(), _fds()
    with runtimes.containerd.hung():
        for i in range(50):
            o = probe.run(CHECKS[i % len(CHECKS)], deadline_s=0.2, slow_s=SLOW)
            assert o.outcome is Outcome.HUNG, o.detail
    assert probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW).outcome is Outcome.OK
    settle = time.monotonic() + 3.0
    while (_threads() > threads or _fds() > fds) and time.monotonic() < settle:
        time.sleep(0.05)  # gRPC closes replaced channels' sockets on its own threads
    print(f"\nthreads {threads} -> {_threads()}, fds {fds} -> {_fds()} after 50 HUNG calls")
    assert _threads() <= threads
    assert _fds() <= fds


def test_latency_healthy_and_time_to_hung(runtimes: Sandbox, probe: CriProbe) -> None:
    """Figures for the report (pytest -s prints them); asserts only what the design promises."""
    probe.run(Check.CRI_VERSION, deadline_s=DEADLINE, slow_s=SLOW)
    for check in CHECKS:
        samples = [probe.run(check, deadline_s=DEADLINE, slow_s=SLOW).latency_s * 1000
                   for _ in range(20)]
        med, lo, hi = statistics.median(samples), min(samples), max(samples)
        print(f"\n{check}: median {med:.2f} ms, min {lo:.2f}, max {hi:.2f}, "
              f"stdev {statistics.stdev(samples):.2f} ms (n=20)")
        assert med < SLOW * 1000
    for deadline in (0.2, 1.0):
        with runtimes.containerd.hung():
            late = [probe.run(Check.CRI_LIST_CONTAINERS, deadline_s=deadline,
                              slow_s=SLOW).latency_s - deadline for _ in range(5)]
        print(f"\ntime to HUNG at deadline {deadline}s: overshoot median "
              f"{statistics.median(late) * 1000:.1f} ms, max {max(late) * 1000:.1f} ms (n=5)")
        assert max(late) < MARGIN
