"""The container start canary against real runtimes: healthy, slow (a runc that sleeps before
starting the container), image missing, and a run that times out and still cleans up."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from nodeprobe.cli import main
from nodeprobe.config import Config, load
from nodeprobe.judge.attribution import problem_of
from nodeprobe.judge.continuous import Judge
from nodeprobe.model import Check, ConditionType, Outcome, Reason, Runtime, Status, Value
from nodeprobe.probes.canary import LABEL, DockerCanary
from nodeprobe.probes.canary_cri import CriCanary
from tests.harness.cri import (
    cri_containerd,
    ctr_container_ids,
    import_image_for_cri,
)
from tests.harness.runtimes import BUSYBOX_IMAGE, Sandbox, slow_runc

RUNC_DELAY_S = 15.0
DEADLINE_S = 90.0
"""Generous: the slow runtime's CRI canary starts two processes (sandbox, container)."""
SLOW_S = 10.0
CLEANUP_S = 120.0


def labelled(socket: Path) -> list[str]:
    client = docker.APIClient(base_url=f"unix://{socket}", version="auto", timeout=60)
    try:
        return [c["Id"] for c in client.containers(all=True, filters={"label": LABEL})]
    finally:
        client.close()


def wait_until_empty(socket: Path, *, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while labelled(socket):
        assert time.monotonic() < end, "canary containers were left behind"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def slow_sandbox() -> Iterator[Sandbox]:
    base = Path(tempfile.mkdtemp(prefix="np-slow-", dir="/tmp"))
    sandbox = Sandbox(base, runc=slow_runc(base / "runc-slow", delay_s=RUNC_DELAY_S))
    try:
        sandbox.start()
        sandbox.import_busybox()
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)


def slow_judge_config() -> Config:
    return load(None, overrides={"checks.canary.enabled": True, "judge.slowRaiseAfter": 1})


# ---- Docker -------------------------------------------------------------------------------


def test_docker_canary_healthy_is_ok_and_leaves_nothing(runtimes: Sandbox) -> None:
    canary = DockerCanary(str(runtimes.dockerd.socket), image=BUSYBOX_IMAGE,
                          cleanup_deadline_s=CLEANUP_S)
    obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
    assert obs.outcome is Outcome.OK, obs.detail
    assert obs.runtime is Runtime.DOCKERD
    for value in (Value.CANARY_CREATE_SECONDS, Value.CANARY_START_SECONDS,
                  Value.CANARY_REMOVE_SECONDS):
        assert obs.values[value] > 0
    assert obs.latency_s == pytest.approx(
        obs.values[Value.CANARY_CREATE_SECONDS] + obs.values[Value.CANARY_START_SECONDS], abs=0.5)
    assert labelled(runtimes.dockerd.socket) == []


def test_docker_canary_sweeps_only_what_it_made(runtimes: Sandbox) -> None:
    """A user's container labelled nodeprobe.io/canary=true survives a canary run; a leftover
    named like the canary's is swept."""
    from nodeprobe.probes.canary import NAME_PREFIX

    client = docker.APIClient(base_url=f"unix://{runtimes.dockerd.socket}", version="auto",
                              timeout=60)
    made = [client.create_container(BUSYBOX_IMAGE, name=name, labels={LABEL: "true"})["Id"]
            for name in (f"user-{uuid.uuid4().hex[:8]}", f"{NAME_PREFIX}old{uuid.uuid4().hex[:8]}")]
    try:
        canary = DockerCanary(str(runtimes.dockerd.socket), image=BUSYBOX_IMAGE,
                              cleanup_deadline_s=CLEANUP_S)
        obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
        assert obs.outcome is Outcome.OK, obs.detail
        assert labelled(runtimes.dockerd.socket) == [made[0]]  # the user's, and only it
    finally:
        client.remove_container(made[0], force=True)
        client.close()


def test_docker_canary_image_missing_is_a_clear_setup_error(runtimes: Sandbox) -> None:
    canary = DockerCanary(str(runtimes.dockerd.socket), image="nodeprobe-test/absent:1",
                          cleanup_deadline_s=CLEANUP_S)
    problem = canary.image_problem(deadline_s=10)
    assert problem is not None and "nodeprobe-test/absent:1" in problem
    assert "checks.canary.image" in problem and "never pulls" in problem
    obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
    assert obs.outcome is Outcome.ERROR and obs.info["step"] == "image", obs.detail
    config = slow_judge_config()
    # a set-up problem, not a runtime fault: no ContainerRuntimeUnavailable
    assert problem_of(obs, settings=config.judge, require_network_ready=False) is None
    present = DockerCanary(str(runtimes.dockerd.socket), image=BUSYBOX_IMAGE,
                           cleanup_deadline_s=CLEANUP_S)
    assert present.image_problem(deadline_s=10) is None


def test_agent_refuses_to_start_when_the_canary_image_is_missing(
    runtimes: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("checks:\n  canary: {enabled: true, image: nodeprobe-test/absent:1}\n")
    code = main(["agent", "--standalone", "--config", str(config), "--metrics-port", "0",
                 "--docker-socket", str(runtimes.dockerd.socket), "--no-containerd"])
    assert code == 2
    assert "checks.canary is on, but dockerd: the canary image nodeprobe-test/absent:1" in (
        caplog.text)


def test_docker_canary_slow_runc_raises_container_start_slow(slow_sandbox: Sandbox) -> None:
    canary = DockerCanary(str(slow_sandbox.dockerd.socket), image=BUSYBOX_IMAGE,
                          cleanup_deadline_s=CLEANUP_S)
    obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
    assert obs.outcome is Outcome.SLOW, obs.detail
    assert obs.values[Value.CANARY_START_SECONDS] >= RUNC_DELAY_S
    assert obs.latency_s >= RUNC_DELAY_S
    config = slow_judge_config()
    judge = Judge(config, expected={(Runtime.DOCKERD, Check.CANARY)}, now=obs.at)
    judge.observe(obs, now=obs.at + obs.latency_s)
    slow = judge.conditions()[ConditionType.SLOW]
    assert (slow.status, slow.reason) == (Status.TRUE, Reason.CONTAINER_START_SLOW)
    assert f"{obs.latency_s:.3g}s" in slow.message and "container start canary" in slow.message
    assert judge.conditions()[ConditionType.UNAVAILABLE].status is Status.FALSE
    assert labelled(slow_sandbox.dockerd.socket) == []


def test_docker_canary_timed_out_names_the_step_and_cleans_up(slow_sandbox: Sandbox) -> None:
    """HUNG at the start step by the deadline; the run finishes in the background and removes
    its container; a run due while it is still going says so without starting another."""
    canary = DockerCanary(str(slow_sandbox.dockerd.socket), image=BUSYBOX_IMAGE,
                          cleanup_deadline_s=CLEANUP_S)
    started = time.monotonic()
    obs = canary.run(Check.CANARY, deadline_s=5.0, slow_s=1.0)
    assert time.monotonic() - started < 5.0 + 2.0, "the canary overran its deadline"
    assert obs.outcome is Outcome.HUNG and obs.info["step"] == "start", obs.detail
    again = canary.run(Check.CANARY, deadline_s=5.0, slow_s=1.0)
    assert again.outcome is Outcome.HUNG and again.info["step"] == "start"
    assert "the previous run is still in it" in again.detail
    config = slow_judge_config()
    problem = problem_of(obs, settings=config.judge, require_network_ready=False)
    assert problem is not None and problem.reason is Reason.CONTAINER_START_FAILED
    assert "start" in problem.text
    assert canary.wait_idle(2 * CLEANUP_S), "the timed-out run did not end"
    assert labelled(slow_sandbox.dockerd.socket) == [], "the timed-out run left its container"


# ---- CRI ----------------------------------------------------------------------------------


CRI_IMAGE = f"docker.io/{BUSYBOX_IMAGE}"


def test_cri_canary_healthy_then_image_missing(runtimes: Sandbox, tmp_path: Path) -> None:
    with cri_containerd(sandbox_image=CRI_IMAGE) as containerd:
        import_image_for_cri(docker_socket=runtimes.dockerd.socket,
                             containerd_socket=containerd.socket, tmp=tmp_path, cri_name=CRI_IMAGE)
        canary = CriCanary(str(containerd.socket), image=CRI_IMAGE, cleanup_deadline_s=CLEANUP_S)
        assert canary.image_problem(deadline_s=10) is None
        obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
        assert obs.outcome is Outcome.OK, obs.detail
        assert obs.runtime is Runtime.CONTAINERD
        assert obs.values[Value.CANARY_SANDBOX_SECONDS] > 0
        assert obs.values[Value.CANARY_START_SECONDS] > 0
        assert obs.values[Value.CANARY_REMOVE_SECONDS] > 0
        assert ctr_container_ids(containerd.socket) == set(), "the canary left containers"

        missing = CriCanary(str(containerd.socket), image="docker.io/nodeprobe-test/absent:1",
                            cleanup_deadline_s=CLEANUP_S)
        problem = missing.image_problem(deadline_s=10)
        assert problem is not None and "absent:1" in problem and "k8s.io" in problem
        obs = missing.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
        assert obs.outcome is Outcome.ERROR and obs.info["step"] == "image", obs.detail


def test_cri_canary_slow_runc_is_slow_with_its_latency(runtimes: Sandbox, tmp_path: Path) -> None:
    runc = slow_runc(tmp_path / "runc-slow", delay_s=RUNC_DELAY_S)
    with cri_containerd(sandbox_image=CRI_IMAGE, runc=runc) as containerd:
        import_image_for_cri(docker_socket=runtimes.dockerd.socket,
                             containerd_socket=containerd.socket, tmp=tmp_path, cri_name=CRI_IMAGE)
        canary = CriCanary(str(containerd.socket), image=CRI_IMAGE, cleanup_deadline_s=CLEANUP_S)
        obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
        assert obs.outcome is Outcome.SLOW, obs.detail
        assert obs.values[Value.CANARY_START_SECONDS] >= RUNC_DELAY_S
        assert obs.latency_s >= 2 * RUNC_DELAY_S  # the sandbox's pause process starts slowly too
        config = slow_judge_config()
        judge = Judge(config, expected={(Runtime.CONTAINERD, Check.CANARY)}, now=obs.at)
        judge.observe(obs, now=obs.at + obs.latency_s)
        slow = judge.conditions()[ConditionType.SLOW]
        assert (slow.status, slow.reason) == (Status.TRUE, Reason.CONTAINER_START_SLOW)
        assert f"{obs.latency_s:.3g}s" in slow.message
        assert ctr_container_ids(containerd.socket) == set()

        # RunPodSandbox outlives the deadline: HUNG at the sandbox step, and the pod containerd
        # finishes making after we gave up is found by its label and removed in the background
        started = time.monotonic()
        hung = canary.run(Check.CANARY, deadline_s=5.0, slow_s=1.0)
        assert time.monotonic() - started < 5.0 + 2.0, "the canary overran its deadline"
        assert hung.outcome is Outcome.HUNG and hung.info["step"] == "sandbox", hung.detail
        assert canary.wait_idle(2 * CLEANUP_S), "the timed-out run did not end"
        assert ctr_container_ids(containerd.socket) == set(), "the timed-out pod was left behind"


def test_cri_canary_sweeps_only_what_it_made(runtimes: Sandbox, tmp_path: Path) -> None:
    """A user's pod labelled nodeprobe.io/canary=true survives a canary run; a leftover of an
    earlier canary run (its namespace and name prefix too) is swept."""
    import grpc

    from nodeprobe.cri import runtime_v1_pb2 as pb
    from nodeprobe.cri import runtime_v1_pb2_grpc as pb_grpc
    from nodeprobe.probes.canary import NAME_PREFIX
    from nodeprobe.probes.canary_cri import NAMESPACE

    with cri_containerd(sandbox_image=CRI_IMAGE) as containerd:
        import_image_for_cri(docker_socket=runtimes.dockerd.socket,
                             containerd_socket=containerd.socket, tmp=tmp_path, cri_name=CRI_IMAGE)
        with grpc.insecure_channel(f"unix://{containerd.socket}") as channel:
            rt = pb_grpc.RuntimeServiceStub(channel)

            def sandbox(name: str, namespace: str) -> str:
                config = pb.PodSandboxConfig(
                    metadata=pb.PodSandboxMetadata(name=name, uid=name, namespace=namespace),
                    labels={LABEL: "true"},
                    linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                        namespace_options=pb.NamespaceOption(network=2))))  # NODE: no CNI
                reply = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=60)
                return str(reply.pod_sandbox_id)

            def sandboxes() -> set[str]:
                return {p.id for p in rt.ListPodSandbox(pb.ListPodSandboxRequest(),
                                                        timeout=30).items}

            user = sandbox("web", "default")
            leftover = sandbox(NAME_PREFIX + "old", NAMESPACE)
            canary = CriCanary(str(containerd.socket), image=CRI_IMAGE,
                               cleanup_deadline_s=CLEANUP_S)
            obs = canary.run(Check.CANARY, deadline_s=DEADLINE_S, slow_s=SLOW_S)
            assert obs.outcome is Outcome.OK, obs.detail
            left = sandboxes()
            assert user in left, "the user's labelled pod was removed"
            assert leftover not in left, "the canary's leftover stayed"
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=user), timeout=60)
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=user), timeout=60)


# ---- the agent, end to end ----------------------------------------------------------------


def _canary_config(sandbox: Sandbox, **extra: object) -> Config:
    from tests.harness.agent_loop import config_for

    return config_for(sandbox, **{"checks.canary.enabled": True,
                                  "checks.canary.image": BUSYBOX_IMAGE,
                                  "containerd.enabled": False, **extra})


def _canary_counts(text: str) -> dict[str, float]:
    """nodeprobe_probe_outcomes_total of dockerd's canary, by outcome."""
    counts = {}
    for line in text.splitlines():
        if line.startswith('nodeprobe_probe_outcomes_total{check="canary"') and (
                'runtime="dockerd"' in line):
            outcome = line.split('outcome="')[1].split('"')[0]
            counts[outcome] = float(line.split()[-1])
    return counts


def test_agent_with_the_canary_on_healthy_runtimes_is_ok_each_interval(runtimes: Sandbox) -> None:
    from prometheus_client import generate_latest

    from tests.harness.agent_loop import running_agent, wait_for

    config = _canary_config(runtimes, **{"checks.canary.interval": "1s"})
    with running_agent(config) as (_, sinks, registry):
        wait_for(lambda: _canary_counts(generate_latest(registry).decode()).get("OK", 0) >= 3,
                 timeout_s=60, what="three OK canary runs")
        text = generate_latest(registry).decode()
        counts = _canary_counts(text)
        assert {k: v for k, v in counts.items() if k != "OK" and v} == {}, counts
        assert 'nodeprobe_canary_start_seconds{runtime="dockerd"}' in text
        slow = sinks.condition(ConditionType.SLOW)
        assert slow is not None and slow.status is Status.FALSE
    wait_until_empty(runtimes.dockerd.socket, timeout_s=30)


def test_agent_with_a_slow_runc_raises_container_start_slow(slow_sandbox: Sandbox) -> None:
    from tests.harness.agent_loop import running_agent, wait_for

    config = _canary_config(slow_sandbox, **{"checks.canary.interval": "20s",
                                             "checks.canary.deadline": "90s",
                                             "judge.slowRaiseAfter": 1})
    with running_agent(config) as (_, sinks, _registry):
        def raised() -> bool:
            cond = sinks.condition(ConditionType.SLOW)
            return cond is not None and cond.status is Status.TRUE
        wait_for(raised, timeout_s=180, what="ContainerRuntimeSlow")
        slow = sinks.condition(ConditionType.SLOW)
        assert slow is not None and slow.reason == Reason.CONTAINER_START_SLOW
        assert "dockerd the container start canary answered in" in slow.message
        latency = float(slow.message.split("answered in ")[1].split("s,")[0])
        assert latency >= RUNC_DELAY_S
        unavailable = sinks.condition(ConditionType.UNAVAILABLE)
        assert unavailable is not None and unavailable.status is Status.FALSE
