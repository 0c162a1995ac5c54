"""The container start canary through CRI (runtime.v1): a pod with one container, as kubelet
makes it. See canary.py for the deadline, cleanup and latency rules both flavours share (why a
call past the deadline is left to finish: a RunPodSandbox cancelled mid-way leaves containerd 1.6
with a container its CRI store does not list).

The sandbox shares the node's network namespace (NamespaceMode NODE), so no CNI is involved:
the canary judges the runtime, not the network plugin. It speaks runtime.v1 only (containerd
1.6+); a runtime that answers Unimplemented is a set-up problem (`setup`), not a fault.

kubelet lists these pods too (ListPodSandbox) and may stop a running pod it does not know during
its housekeeping (every 2 s); the canary's pod lives about a second, and a pod stopped under it
shows as a failed `start`/`remove` step with the runtime's own words.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from nodeprobe.cri import runtime_v1_pb2, runtime_v1_pb2_grpc
from nodeprobe.model import Outcome, Runtime, Value
from nodeprobe.probes.canary import (
    LABEL,
    NAME_PREFIX,
    Attempt,
    CanaryBase,
    StepFailed,
    image_missing_message,
)

log = logging.getLogger(__name__)
pb: Any = runtime_v1_pb2  # generated without type stubs (see nodeprobe/cri/regenerate.py)
pb_grpc: Any = runtime_v1_pb2_grpc

NAMESPACE = "nodeprobe-canary"
"""The pod namespace in the canary's sandbox metadata (no such Kubernetes namespace needed)."""
_NODE = 2  # NamespaceMode NODE


def _outcome(code: grpc.StatusCode) -> Outcome:
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Outcome.HUNG
    if code is grpc.StatusCode.UNAVAILABLE:
        return Outcome.DOWN
    return Outcome.ERROR


class _Session:
    """One channel and one absolute deadline; every RPC gets what is left of it."""

    def __init__(self, target: str, deadline: float, deadline_s: float) -> None:
        self.channel = grpc.insecure_channel(target)
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)
        self.deadline = deadline
        self.deadline_s = deadline_s

    def call(self, step: str, method: Callable[..., Any], request: Any) -> Any:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise StepFailed(step, Outcome.HUNG, f"canary {step}: no time left within "
                                                 f"{self.deadline_s:g}s")
        try:
            return method(request, timeout=remaining, wait_for_ready=False)
        except grpc.RpcError as e:
            code = e.code()
            name = type(request).__name__.removesuffix("Request")
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                text = f"CRI {name} did not answer within {self.deadline_s:g}s"
            else:
                text = f"CRI {name} failed: {code.name}: {e.details() or ''}"
            outcome = _outcome(code)
            if code is grpc.StatusCode.UNIMPLEMENTED:
                step, text = "setup", (f"{text}; the canary needs CRI runtime.v1 (containerd "
                                       "1.6+ with the CRI plugin enabled)")
            raise StepFailed(step, outcome, f"canary {step}: {text}") from e

    def close(self) -> None:
        self.channel.close()


class CriCanary(CanaryBase):
    """The canary through CRI: a pod with one container."""

    runtime: Runtime = Runtime.CONTAINERD
    what = "pod"

    def __init__(self, socket_path: str, *, image: str, cleanup_deadline_s: float) -> None:
        self.target = f"unix://{socket_path.removeprefix('unix://')}"
        self.image = image
        self.cleanup_deadline_s = cleanup_deadline_s

    def image_problem(self, *, deadline_s: float) -> str | None:
        """A sentence when the image is certainly missing; None when present or unknown."""
        session = self._session(deadline_s)
        try:
            self._check_image(session)
        except StepFailed as e:
            return e.detail if e.step == "image" else None
        finally:
            session.close()
        return None

    def _work(self, attempt: Attempt, budget: float) -> None:
        session = _Session(self.target, budget, budget - attempt.started)
        sandbox: str | None = None
        try:
            attempt.enter("create")
            self._check_image(session)
            attempt.enter("sandbox")
            self._sweep(session)
            sandbox, config = self._sandbox(session, attempt)
            cid = self._container(session, sandbox, config, attempt)
            attempt.to_running = time.monotonic() - attempt.started
            attempt.enter("remove")
            began = time.monotonic()
            rt = session.runtime
            session.call("remove", rt.StopContainer,
                         pb.StopContainerRequest(container_id=cid, timeout=0))
            session.call("remove", rt.RemoveContainer, pb.RemoveContainerRequest(container_id=cid))
            self._remove_sandbox(session, sandbox)
            sandbox = None
            attempt.timed(Value.CANARY_REMOVE_SECONDS, began)
        finally:
            session.close()
            if sandbox is not None:
                self._cleanup(sandbox)

    # ---- steps --------------------------------------------------------------------------

    def _session(self, deadline_s: float) -> _Session:
        return _Session(self.target, time.monotonic() + deadline_s, deadline_s)

    def _check_image(self, session: _Session) -> None:
        reply = session.call("create", session.images.ImageStatus,
                             pb.ImageStatusRequest(image=pb.ImageSpec(image=self.image)))
        if not reply.image.id:
            raise StepFailed("image", Outcome.ERROR, image_missing_message(
                self.image, "containerd", "crictl images, namespace k8s.io"))

    def _sandbox(self, session: _Session, attempt: Attempt) -> tuple[str, Any]:
        name = NAME_PREFIX + uuid.uuid4().hex[:12]
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=str(uuid.uuid4()),
                                           namespace=NAMESPACE, attempt=0),
            labels={LABEL: "true"},
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=_NODE))),
        )
        began = time.monotonic()
        reply = session.call("sandbox", session.runtime.RunPodSandbox,
                             pb.RunPodSandboxRequest(config=config))
        attempt.timed(Value.CANARY_SANDBOX_SECONDS, began)
        return str(reply.pod_sandbox_id), config

    def _container(self, session: _Session, sandbox: str, config: Any, attempt: Attempt) -> str:
        container = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="canary", attempt=0),
            image=pb.ImageSpec(image=self.image),
            labels={LABEL: "true"},
        )
        attempt.enter("create")
        began = time.monotonic()
        reply = session.call("create", session.runtime.CreateContainer, pb.CreateContainerRequest(
            pod_sandbox_id=sandbox, config=container, sandbox_config=config))
        attempt.timed(Value.CANARY_CREATE_SECONDS, began)
        attempt.enter("start")
        began = time.monotonic()
        session.call("start", session.runtime.StartContainer,
                     pb.StartContainerRequest(container_id=reply.container_id))
        attempt.timed(Value.CANARY_START_SECONDS, began)
        return str(reply.container_id)

    @staticmethod
    def _remove_sandbox(session: _Session, sandbox: str) -> None:
        """Stopping and removing the sandbox removes its containers too."""
        rt = session.runtime
        session.call("remove", rt.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=sandbox))
        session.call("remove", rt.RemovePodSandbox,
                     pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox))

    def _sweep(self, session: _Session) -> None:
        """Remove pods earlier runs left: only what a canary made (its label, its namespace and
        its name prefix), never a user's pod that carries the label. A failure here is the
        sandbox step's to report."""
        try:
            wanted = pb.PodSandboxFilter(label_selector={LABEL: "true"})
            reply = session.call("sandbox", session.runtime.ListPodSandbox,
                                 pb.ListPodSandboxRequest(filter=wanted))
            for item in reply.items:
                if (item.metadata.namespace != NAMESPACE
                        or not item.metadata.name.startswith(NAME_PREFIX)):
                    continue
                log.info("removing canary leftover pod %s", item.id[:12])
                self._remove_sandbox(session, item.id)
        except StepFailed as e:
            if e.step == "setup":
                raise

    def _cleanup(self, sandbox: str) -> None:
        """After a failed step: remove the pod under a fresh cleanup deadline."""
        session = self._session(self.cleanup_deadline_s)
        try:
            self._remove_sandbox(session, sandbox)
            log.info("removed canary pod %s after a failed run", sandbox[:12])
        except StepFailed as e:
            log.warning("could not remove canary pod %s (the next run sweeps it): %s",
                        sandbox[:12], e.detail)
        finally:
            session.close()
