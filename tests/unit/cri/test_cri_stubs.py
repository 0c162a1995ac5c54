"""The committed CRI stubs are exactly what `python -m nodeprobe.cri.regenerate` makes of the
protos, and they carry the public CRI field numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeprobe.cri import regenerate, runtime_v1_pb2, runtime_v1alpha2_pb2


def test_regenerating_gives_byte_identical_stubs(tmp_path: Path) -> None:
    written = regenerate.regenerate(tmp_path)
    assert sorted(p.name for p in written) == sorted(regenerate.generated_names())
    for name in regenerate.generated_names():
        fresh = (tmp_path / name).read_bytes()
        committed = (regenerate.PACKAGE_DIR / name).read_bytes()
        assert fresh == committed, f"{name} is stale: run python -m nodeprobe.cri.regenerate"


def test_main_writes_into_out_dir_and_reports_files(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert regenerate.main(["--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == len(regenerate.generated_names())
    assert all(Path(p).exists() for p in printed)


@pytest.mark.parametrize("name", [n for n in regenerate.generated_names() if "_grpc" in n])
def test_grpc_stubs_import_their_messages_package_relative(name: str) -> None:
    text = (regenerate.PACKAGE_DIR / name).read_text()
    assert "from . import runtime_" in text
    assert "from nodeprobe.cri import" not in text


# Field numbers as in k8s.io/cri-api pkg/apis/runtime/{v1,v1alpha2}/api.proto.
EXPECTED = {
    "VersionResponse": {"version": 1, "runtime_name": 2, "runtime_version": 3,
                        "runtime_api_version": 4},
    "PodSandbox": {"id": 1, "metadata": 2, "state": 3, "created_at": 4},
    "PodSandboxMetadata": {"name": 1, "uid": 2, "namespace": 3, "attempt": 4},
    "Container": {"id": 1, "pod_sandbox_id": 2, "metadata": 3, "state": 6, "created_at": 7},
    "ContainerMetadata": {"name": 1, "attempt": 2},
    "RuntimeCondition": {"type": 1, "status": 2, "reason": 3, "message": 4},
    "StatusResponse": {"status": 1, "info": 2},
    "FilesystemUsage": {"timestamp": 1, "fs_id": 2, "used_bytes": 3, "inodes_used": 4},
    "ImageFsInfoResponse": {"image_filesystems": 1},
}


@pytest.mark.parametrize("module", [runtime_v1_pb2, runtime_v1alpha2_pb2],
                         ids=["v1", "v1alpha2"])
def test_field_numbers_match_the_public_cri(module: object) -> None:
    for message, fields in EXPECTED.items():
        descriptor = getattr(module, message).DESCRIPTOR
        assert {f: descriptor.fields_by_name[f].number for f in fields} == fields, message


def test_services_are_in_the_cri_packages() -> None:
    assert runtime_v1_pb2.DESCRIPTOR.package == "runtime.v1"
    assert runtime_v1alpha2_pb2.DESCRIPTOR.package == "runtime.v1alpha2"
    probe = {"Version", "Status", "ListPodSandbox", "ListContainers"}
    canary = {"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "CreateContainer",
              "StartContainer", "StopContainer", "RemoveContainer"}
    v1 = runtime_v1_pb2.DESCRIPTOR.services_by_name
    assert set(v1["RuntimeService"].methods_by_name) == probe | canary
    assert set(v1["ImageService"].methods_by_name) == {"ImageFsInfo", "ImageStatus"}
    v1alpha2 = runtime_v1alpha2_pb2.DESCRIPTOR.services_by_name  # the canary speaks v1 only
    assert set(v1alpha2["RuntimeService"].methods_by_name) == probe
    assert set(v1alpha2["ImageService"].methods_by_name) == {"ImageFsInfo"}


CANARY_FIELDS: dict[str, dict[str, int]] = {
    # k8s.io/cri-api pkg/apis/runtime/v1/api.proto
    "PodSandboxConfig": {"metadata": 1, "hostname": 2, "log_directory": 3, "labels": 6,
                         "annotations": 7, "linux": 8},
    "LinuxPodSandboxConfig": {"cgroup_parent": 1, "security_context": 2},
    "LinuxSandboxSecurityContext": {"namespace_options": 1},
    "NamespaceOption": {"network": 1, "pid": 2, "ipc": 3},
    "RunPodSandboxRequest": {"config": 1, "runtime_handler": 2},
    "ContainerConfig": {"metadata": 1, "image": 2, "command": 3, "args": 4, "labels": 9,
                        "log_path": 11},
    "CreateContainerRequest": {"pod_sandbox_id": 1, "config": 2, "sandbox_config": 3},
    "StopContainerRequest": {"container_id": 1, "timeout": 2},
    "ImageStatusRequest": {"image": 1},
}


def test_canary_field_numbers_match_the_public_cri() -> None:
    for message, fields in CANARY_FIELDS.items():
        descriptor = getattr(runtime_v1_pb2, message).DESCRIPTOR
        assert {f: descriptor.fields_by_name[f].number for f in fields} == fields, message
