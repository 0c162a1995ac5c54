"""Test-only CRI helpers: a pod sandbox + container made through real CRI calls, fake CRI servers
for the v1alpha2 fallback, and sockets that do not speak gRPC.

The lifecycle messages (RunPodSandbox, CreateContainer, ...) are not in nodeprobe's proto subset,
which holds only what the probe calls. They are built here from descriptors in a private pool,
with field numbers from k8s.io/cri-api pkg/apis/runtime/v1/api.proto (enums sent as int32, the
same varint on the wire), and sent to the real method paths.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from nodeprobe.cri import (
    runtime_v1_pb2,
    runtime_v1_pb2_grpc,
    runtime_v1alpha2_pb2,
    runtime_v1alpha2_pb2_grpc,
)
from tests.harness.runtimes import (
    Containerd,
    ContainerdBuild,
    busybox_rootfs_tar,
    containerd_build,
    containerd_config,
    reap_shims,
)

NAMESPACE_NODE = 2
"""NamespaceMode NODE: the sandbox shares the host network, so no CNI is needed."""

_F = descriptor_pb2.FieldDescriptorProto
_MESSAGES: dict[str, list[tuple[str, int, int, str]]] = {
    # name: [(field, number, type, message type or "")]
    "PodSandboxMetadata": [("name", 1, _F.TYPE_STRING, ""), ("uid", 2, _F.TYPE_STRING, ""),
                           ("namespace", 3, _F.TYPE_STRING, ""),
                           ("attempt", 4, _F.TYPE_UINT32, "")],
    "NamespaceOption": [("network", 1, _F.TYPE_INT32, ""), ("pid", 2, _F.TYPE_INT32, ""),
                        ("ipc", 3, _F.TYPE_INT32, "")],
    "LinuxSandboxSecurityContext": [("namespace_options", 1, _F.TYPE_MESSAGE, "NamespaceOption")],
    "LinuxPodSandboxConfig": [("cgroup_parent", 1, _F.TYPE_STRING, ""),
                              ("security_context", 2, _F.TYPE_MESSAGE,
                               "LinuxSandboxSecurityContext")],
    "PodSandboxConfig": [("metadata", 1, _F.TYPE_MESSAGE, "PodSandboxMetadata"),
                         ("hostname", 2, _F.TYPE_STRING, ""),
                         ("log_directory", 3, _F.TYPE_STRING, ""),
                         ("linux", 8, _F.TYPE_MESSAGE, "LinuxPodSandboxConfig")],
    "RunPodSandboxRequest": [("config", 1, _F.TYPE_MESSAGE, "PodSandboxConfig"),
                             ("runtime_handler", 2, _F.TYPE_STRING, "")],
    "RunPodSandboxResponse": [("pod_sandbox_id", 1, _F.TYPE_STRING, "")],
    "PodSandboxIdRequest": [("pod_sandbox_id", 1, _F.TYPE_STRING, "")],
    "Empty": [],
    "ContainerMetadata": [("name", 1, _F.TYPE_STRING, ""), ("attempt", 2, _F.TYPE_UINT32, "")],
    "ImageSpec": [("image", 1, _F.TYPE_STRING, "")],
    "ContainerConfig": [("metadata", 1, _F.TYPE_MESSAGE, "ContainerMetadata"),
                        ("image", 2, _F.TYPE_MESSAGE, "ImageSpec"),
                        ("command", 3, _F.TYPE_STRING, "repeated"),
                        ("log_path", 11, _F.TYPE_STRING, "")],
    "CreateContainerRequest": [("pod_sandbox_id", 1, _F.TYPE_STRING, ""),
                               ("config", 2, _F.TYPE_MESSAGE, "ContainerConfig"),
                               ("sandbox_config", 3, _F.TYPE_MESSAGE, "PodSandboxConfig")],
    "CreateContainerResponse": [("container_id", 1, _F.TYPE_STRING, "")],
    "ContainerIdRequest": [("container_id", 1, _F.TYPE_STRING, "")],
}
_PKG = "nodeprobe_test.cri"


def _lifecycle_classes() -> dict[str, Any]:
    file = descriptor_pb2.FileDescriptorProto(name="nodeprobe_test_cri.proto", package=_PKG,
                                              syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = file.message_type.add(name=name)
        for fname, number, ftype, ref in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=_F.LABEL_OPTIONAL)
            if ref == "repeated":
                f.label = _F.LABEL_REPEATED
            elif ref:
                f.type_name = f".{_PKG}.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.{n}"))
            for n in _MESSAGES}


@dataclass
class Pod:
    sandbox_id: str
    container_id: str
    name: str
    uid: str
    namespace: str
    container_name: str


class CriClient:
    """Just enough of kubelet to run one pod with one container through real CRI calls."""

    def __init__(self, socket_path: Path) -> None:
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._m = _lifecycle_classes()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, response: str, timeout: float = 60.0) -> Any:
        rpc = self._channel.unary_unary(
            f"/runtime.v1.RuntimeService/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self._m[response].FromString,
        )
        return rpc(request, timeout=timeout)

    def run_pod(self, *, name: str, uid: str, namespace: str, image: str, log_dir: Path,
                container_name: str, command: list[str]) -> Pod:
        m = self._m
        config = m["PodSandboxConfig"](
            metadata=m["PodSandboxMetadata"](name=name, uid=uid, namespace=namespace, attempt=0),
            log_directory=str(log_dir),
            linux=m["LinuxPodSandboxConfig"](security_context=m["LinuxSandboxSecurityContext"](
                namespace_options=m["NamespaceOption"](network=NAMESPACE_NODE))),
        )
        sandbox = self._call("RunPodSandbox", m["RunPodSandboxRequest"](config=config),
                             "RunPodSandboxResponse").pod_sandbox_id
        cconfig = m["ContainerConfig"](
            metadata=m["ContainerMetadata"](name=container_name, attempt=0),
            image=m["ImageSpec"](image=image), command=command, log_path=f"{container_name}.log",
        )
        request = m["CreateContainerRequest"](pod_sandbox_id=sandbox, config=cconfig,
                                              sandbox_config=config)
        cid = self._call("CreateContainer", request, "CreateContainerResponse").container_id
        self._call("StartContainer", m["ContainerIdRequest"](container_id=cid), "Empty")
        return Pod(sandbox, cid, name, uid, namespace, container_name)

    def remove_pod(self, sandbox_id: str) -> None:
        request = self._m["PodSandboxIdRequest"](pod_sandbox_id=sandbox_id)
        self._call("StopPodSandbox", request, "Empty")
        self._call("RemovePodSandbox", request, "Empty")


@contextlib.contextmanager
def cri_containerd(*, sandbox_image: str, build: ContainerdBuild | None = None,
                   runc: Path | None = None) -> Iterator[Containerd]:
    """A private containerd (`build`: 1.6 or 2.x) whose CRI can run pods on this VM.

    The CRI gives every sandbox oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE, which
    root lacks here, so runc fails ("can't get final child's PID from pipe"). containerd's
    `restrict_oom_score_adj` clamps it to our own score instead (the harness config sets it).
    A private one, so the pods these tests run never meet the session's dockerd.
    """
    base = Path(tempfile.mkdtemp(prefix="np-cri-", dir="/tmp"))
    for d in ("root", "state", "cni-bin", "cni-conf"):
        (base / d).mkdir()
    config = base / "config.toml"
    build = build or containerd_build()
    config.write_text(containerd_config(base, sandbox_image=sandbox_image, runc=runc))
    with containerd_in(base, name="containerd-cri", argv=[build.binary, "--config", str(config)],
                       env=build.env, reap=True) as daemon:
        yield daemon


@contextlib.contextmanager
def containerd_in(base: Path, *, name: str, argv: list[str], env: dict[str, str] | None = None,
                  reap: bool = False) -> Iterator[Containerd]:
    """A containerd with its socket and log in `base`, for the with-block; then stopped, its
    shims reaped when asked, and `base` removed."""
    daemon = Containerd(name=name, argv=argv, socket=base / "containerd.sock",
                        log=base / "containerd.log", env=env)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        if reap:
            reap_shims(daemon.socket)
        shutil.rmtree(base, ignore_errors=True)


def import_image_for_cri(*, docker_socket: Path, containerd_socket: Path, tmp: Path,
                         cri_name: str) -> None:
    """Put a busybox image whose command keeps running into containerd's `k8s.io` namespace
    (the CRI's) under `cri_name`: the harness's busybox runs `sh`, which exits at once and
    would leave a sandbox NOTREADY. dockerd keeps its own image store, hence save + import."""
    import docker

    client = docker.APIClient(base_url=f"unix://{docker_socket}", version="auto", timeout=60)
    ref = "nodeprobe-test/cri-sleep:latest"
    try:
        client.import_image_from_data(busybox_rootfs_tar(), repository=ref.split(":")[0],
                                      tag="latest", changes=['CMD ["/bin/sleep", "3600"]'])
        archive = tmp / "cri-sleep.tar"
        with archive.open("wb") as out:
            for chunk in client.get_image(ref):
                out.write(chunk)
        client.remove_image(ref)
    finally:
        client.close()
    ctr = ["ctr", "-a", str(containerd_socket), "-n", "k8s.io"]
    subprocess.run([*ctr, "images", "import", str(archive)], check=True, capture_output=True,
                   timeout=120)
    subprocess.run([*ctr, "images", "rm", cri_name], capture_output=True, timeout=60)
    subprocess.run([*ctr, "images", "tag", f"docker.io/{ref}", cri_name], check=True,
                   capture_output=True, timeout=60)


def ctr_container_ids(containerd_socket: Path) -> set[str]:
    out = subprocess.run(["ctr", "-a", str(containerd_socket), "-n", "k8s.io", "containers",
                          "ls", "-q"], check=True, capture_output=True, text=True, timeout=30)
    return set(out.stdout.split())


# ---- fake CRI servers --------------------------------------------------------------------


class _Recorder(grpc.ServerInterceptor):  # type: ignore[misc]
    """Records every method the client called, including ones no service implements."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        with self._lock:
            self.methods.append(details.method)
        return continuation(details)


def _servicers(pb: Any, pb_grpc: Any, *, status: Any = None, image_fs: Any = None,
               version: Any = None) -> tuple[Any, Any]:
    api = pb.DESCRIPTOR.package.split(".")[-1]
    now = time.time_ns()

    class Runtime(pb_grpc.RuntimeServiceServicer):  # type: ignore[misc]
        def Version(self, request: Any, context: Any) -> Any:
            return version or pb.VersionResponse(version="0.1.0", runtime_name="fake-cri",
                                                 runtime_version="0.0.1", runtime_api_version=api)

        def Status(self, request: Any, context: Any) -> Any:
            return status or pb.StatusResponse(status=pb.RuntimeStatus(conditions=[
                pb.RuntimeCondition(type="RuntimeReady", status=True),
                pb.RuntimeCondition(type="NetworkReady", status=True)]))

        def ListPodSandbox(self, request: Any, context: Any) -> Any:
            return pb.ListPodSandboxResponse(items=[pb.PodSandbox(id="s1", created_at=now)])

        def ListContainers(self, request: Any, context: Any) -> Any:
            return pb.ListContainersResponse(containers=[
                pb.Container(id="c1", pod_sandbox_id="s1", state=1, created_at=now)])

    class Image(pb_grpc.ImageServiceServicer):  # type: ignore[misc]
        def ImageFsInfo(self, request: Any, context: Any) -> Any:
            return image_fs or pb.ImageFsInfoResponse(image_filesystems=[pb.FilesystemUsage(
                timestamp=time.time_ns(), fs_id=pb.FilesystemIdentifier(mountpoint="/fake"),
                used_bytes=pb.UInt64Value(value=4096))])

    return Runtime(), Image()


@contextlib.contextmanager
def fake_cri(sock: Path, *, apis: tuple[str, ...], **replies: Any) -> Iterator[_Recorder]:
    """A gRPC server on `sock` implementing only `apis` (others answer UNIMPLEMENTED)."""
    recorder = _Recorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[recorder])
    modules = {"v1": (runtime_v1_pb2, runtime_v1_pb2_grpc),
               "v1alpha2": (runtime_v1alpha2_pb2, runtime_v1alpha2_pb2_grpc)}
    for api in apis:
        pb, pb_grpc = modules[api]
        runtime, image = _servicers(pb, pb_grpc, **replies.get(api, {}))
        pb_grpc.add_RuntimeServiceServicer_to_server(runtime, server)
        pb_grpc.add_ImageServiceServicer_to_server(image, server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        yield recorder
    finally:
        server.stop(grace=None).wait(5)


@contextlib.contextmanager
def raw_server(sock: Path, reply: bytes) -> Iterator[None]:
    """A unix socket that writes `reply` (maybe nothing) to every client and hangs up."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()
