"""Orphaned shims for real: pods run through CRI, then containerd is SIGKILLed and comes back on
the same socket without its state, so the pods' shims run on unknown to it (1.6 and 2.x).

The probes' observations go through the agent's Judge, one round per process check, as the
agent's loop feeds it; the rounds follow each other without waiting (the hysteresis counts
checks, not seconds). Afterwards containerd gets its old state back, knows the shims again, and
the pods are removed through CRI; whatever is left is killed with its containers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeprobe.config import Config
from nodeprobe.judge.continuous import Judge
from nodeprobe.judge.shims import tallies
from nodeprobe.model import Check, ConditionType, Observation, Outcome, Reason, Runtime, Status
from nodeprobe.probes.cri import CriProbe
from nodeprobe.probes.docker import DockerProbe
from nodeprobe.probes.process import ProcessProbe
from tests.harness.cri import (
    CriClient,
    Pod,
    cri_containerd,
    import_image_for_cri,
)
from tests.harness.runtimes import BUSYBOX_IMAGE, Containerd, Sandbox, unmount_under

CHECKS = [(Runtime.CONTAINERD, Check.CRI_LIST_POD_SANDBOX),
          (Runtime.CONTAINERD, Check.CRI_LIST_CONTAINERS),
          (Runtime.CONTAINERD, Check.PROCESS)]
PODS = 2
DEADLINE_S = 60.0


def shim_pids(socket: Path) -> list[int]:
    """The shims serving `socket`, from /proc (the test's own view, not the probe's)."""
    needle = str(socket).encode()
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and b"containerd-shim" in argv[0] and needle in argv:
                found.append(int(d.name))
    return sorted(found)


def children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def kill_tree(pid: int) -> None:
    for child in children(pid):
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Rounds:
    """The agent's judge fed by real probes: one round = the CRI lists, then the process check."""

    def __init__(self, containerd: Containerd) -> None:
        self.cri = CriProbe(str(containerd.socket), require_network_ready=False)
        # the pods are seconds old: every shim counts at once (settling is tested below)
        self.process = ProcessProbe(Runtime.CONTAINERD, socket_path=str(containerd.socket),
                                    shim_settle_s=0)
        self.judge = Judge(Config.defaults(), expected=CHECKS, now=time.time())

    def close(self) -> None:
        self.cri.close()

    def round(self) -> list[Observation]:
        got = [self.cri.run(check, deadline_s=5, slow_s=5) for _, check in CHECKS[:2]]
        got.append(self.process.run(Check.PROCESS, deadline_s=5, slow_s=5))
        for obs in got:
            assert obs.outcome is Outcome.OK, obs.detail
            self.judge.observe(obs, now=time.time())
        return got

    def degraded(self) -> tuple[Status, str, str]:
        cond = self.judge.conditions()[ConditionType.DEGRADED]
        return cond.status, cond.reason, cond.message


@pytest.fixture
def pods_on_cri(runtimes: Sandbox, tmp_path: Path) -> Iterator[tuple[Containerd, list[Pod]]]:
    image = f"docker.io/{BUSYBOX_IMAGE}"
    with cri_containerd(sandbox_image=image, build=runtimes.containerd_build) as containerd:
        import_image_for_cri(docker_socket=runtimes.dockerd.socket,
                             containerd_socket=containerd.socket, tmp=tmp_path, cri_name=image)
        wait_cri_initialized(containerd)
        client = CriClient(containerd.socket)
        pods: list[Pod] = []
        try:
            for i in range(PODS):
                pods.append(client.run_pod(
                    name=f"np-{uuid.uuid4().hex[:8]}", uid=str(uuid.uuid4()),
                    namespace="nodeprobe-test", image=image, log_dir=tmp_path,
                    container_name=f"sleeper-{i}", command=["/bin/sleep", "3600"]))
            yield containerd, pods
        finally:
            client.close()
            leftovers = shim_pids(containerd.socket)
            for pid in leftovers:
                kill_tree(pid)  # the shim and the containers it keeps
            unmount_under(containerd.socket.parent)
            assert leftovers == [], f"shims left after the pods were removed: {leftovers}"


def lose_state(containerd: Containerd, *, fresh: bool) -> None:
    """SIGKILL containerd and start it on the same socket with a fresh root and state
    (`fresh`), or with its own again."""
    config = Path(containerd.argv[containerd.argv.index("--config") + 1])
    base = containerd.socket.parent
    text = config.read_text()
    for name in ("root", "state"):
        old, new = f'{name} = "{base / name}"', f'{name} = "{base / (name + "-fresh")}"'
        if fresh:
            (base / f"{name}-fresh").mkdir(exist_ok=True)
            text = text.replace(old, new)
        else:
            text = text.replace(new, old)
    containerd.crash()
    config.write_text(text)
    containerd.proc = None
    containerd.start()
    wait_cri_initialized(containerd)


def wait_cri_initialized(containerd: Containerd) -> None:
    """The socket is there before the CRI plugin has restored its state: until then every CRI
    call answers "server is not initialized yet"."""
    probe = CriProbe(str(containerd.socket), require_network_ready=False)
    end = time.monotonic() + DEADLINE_S
    try:
        while True:
            obs = probe.run(Check.CRI_LIST_POD_SANDBOX, deadline_s=5, slow_s=5)
            if obs.outcome is Outcome.OK:
                return
            assert time.monotonic() < end, obs.detail
            time.sleep(0.05)
    finally:
        probe.close()


def test_shims_orphaned_by_a_containerd_that_lost_its_state_are_named(
    pods_on_cri: tuple[Containerd, list[Pod]],
) -> None:
    containerd, pods = pods_on_cri
    shims = shim_pids(containerd.socket)
    assert len(shims) == PODS  # one runc v2 shim per sandbox; its container joined it
    rounds = Rounds(containerd)
    try:
        # healthy running pods: twice as many checks as it takes to raise, nothing raised
        for _ in range(2 * Config.defaults().judge.orphaned_shim_checks):
            rounds.round()
        assert rounds.degraded()[:2] == (Status.FALSE, Reason.NOT_DEGRADED), rounds.degraded()

        lose_state(containerd, fresh=True)
        assert shim_pids(containerd.socket) == shims  # the shims live on
        end = time.monotonic() + DEADLINE_S
        checks = 0
        while rounds.degraded()[1] != Reason.CONTAINERD_ORPHANED_SHIMS:
            assert time.monotonic() < end, rounds.degraded()
            sandboxes, containers, _ = rounds.round()
            assert sandboxes.detail == "0 pod sandboxes (0 ready)"  # containerd knows none
            assert containers.detail == "0 containers (0 running)"
            checks += 1
        assert checks == Config.defaults().judge.orphaned_shim_checks
        status, _, message = rounds.degraded()
        assert status is Status.TRUE
        pids = ", ".join(str(p) for p in shims)
        assert message.startswith(
            f"containerd runs {PODS} shims in namespace k8s.io for 0 ready pod sandboxes: "
            f"{PODS} orphaned (shim pids, oldest first: {pids}), over {checks} process checks")
        assert "ctr -n <namespace> tasks ls" in message

        # containerd gets its state back: it knows the shims again, and the pods go through CRI
        lose_state(containerd, fresh=False)
        client = CriClient(containerd.socket)
        try:
            for pod in pods:
                client.remove_pod(pod.sandbox_id)
        finally:
            client.close()
        end = time.monotonic() + DEADLINE_S
        while shim_pids(containerd.socket):
            assert time.monotonic() < end, f"shims still running: {shim_pids(containerd.socket)}"
            time.sleep(0.1)
    finally:
        rounds.close()


def test_dockers_running_and_paused_containers_account_for_their_shims(runtimes: Sandbox) -> None:
    """moby: one shim per container, a paused one keeps it (GET /info ContainersPaused)."""
    import docker

    client = docker.APIClient(base_url=f"unix://{runtimes.dockerd.socket}", version="auto",
                              timeout=60)
    host = client.create_host_config(network_mode="none")
    ids = [client.create_container(BUSYBOX_IMAGE, command=["sleep", "300"],
                                   host_config=host)["Id"] for _ in range(2)]
    info_probe = DockerProbe(str(runtimes.dockerd.socket))
    process = ProcessProbe(Runtime.CONTAINERD, socket_path=str(runtimes.containerd.socket),
                           shim_settle_s=0)
    try:
        for cid in ids:
            client.start(cid)
        client.pause(ids[1])
        got = [info_probe.run(Check.DOCKER_INFO, deadline_s=5, slow_s=5),
               process.run(Check.PROCESS, deadline_s=5, slow_s=5)]
        assert [o.outcome for o in got] == [Outcome.OK, Outcome.OK], [o.detail for o in got]
        (moby,) = tallies(got)  # no CRI lists: k8s.io is not judged
        assert (moby.namespace, moby.shims, moby.expected, moby.surplus) == ("moby", 2, 2, 0)
        assert moby.basis == "2 running or paused docker containers"
        assert sorted(moby.pids) == shim_pids(runtimes.containerd.socket)
    finally:
        info_probe.close()
        for cid in ids:
            client.remove_container(cid, force=True)
        client.close()


def test_a_container_started_after_the_last_info_is_no_orphan(runtimes: Sandbox) -> None:
    """The race heavy `docker run` churn makes at nearly every check: GET /info (every 30 s) was
    read before a container started, the process check (every 15 s) sees its shim. Counted at
    once, that shim is a surplus; a settled count (SHIM_SETTLE_S) leaves it out."""
    import docker

    client = docker.APIClient(base_url=f"unix://{runtimes.dockerd.socket}", version="auto",
                              timeout=60)
    info_probe = DockerProbe(str(runtimes.dockerd.socket))
    socket = str(runtimes.containerd.socket)
    cid = client.create_container(BUSYBOX_IMAGE, command=["sleep", "300"],
                                  host_config=client.create_host_config(network_mode="none"))["Id"]
    try:
        info = info_probe.run(Check.DOCKER_INFO, deadline_s=5, slow_s=5)
        assert info.outcome is Outcome.OK, info.detail
        client.start(cid)
        at_once = ProcessProbe(Runtime.CONTAINERD, socket_path=socket, shim_settle_s=0)
        settled = ProcessProbe(Runtime.CONTAINERD, socket_path=socket)
        (raw,) = tallies([info, at_once.run(Check.PROCESS, deadline_s=5, slow_s=5)])
        (judged,) = tallies([info, settled.run(Check.PROCESS, deadline_s=5, slow_s=5)])
        assert (raw.shims - judged.shims, raw.surplus, judged.surplus) == (1, 1, 0)
    finally:
        info_probe.close()
        client.remove_container(cid, force=True)
        client.close()
