"""`nodeprobe check` end to end against the real sandboxed dockerd and containerd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodeprobe.cli import main
from tests.harness.runtimes import Sandbox

DEADLINE = 1.0


def _sandbox_host(base: Path) -> str:
    """A config whose host root is an empty directory under `base`: `check` then reads only
    what the sandbox made, never this machine's own /var/lib/containerd, /var/lib/docker or
    journal (a developer's machine that ran containerd once has them)."""
    host = base / "empty-host"
    host.mkdir(exist_ok=True)
    config = base / "check-config.yaml"
    config.write_text(f"paths:\n  hostRoot: {host}\n")
    return str(config)


def _argv(sandbox: Sandbox, *extra: str) -> list[str]:
    return [
        "check",
        "--config", _sandbox_host(sandbox.base),
        "--docker-socket", str(sandbox.dockerd.socket),
        "--containerd-socket", str(sandbox.containerd.socket),
        "--deadline", str(DEADLINE),
        *extra,
    ]


def _check_json(sandbox: Sandbox, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code = main(_argv(sandbox, "--json", *extra))
    body = json.loads(capsys.readouterr().out)
    assert body["exitCode"] == code
    return body


def _outcomes(body: dict, runtime: str) -> dict[str, str]:
    return {o["check"]: o["outcome"] for o in body["observations"] if o["runtime"] == runtime}


def test_healthy_runtimes_every_check_ok_exit_0(runtimes, capsys):
    body = _check_json(runtimes, capsys)
    assert body["exitCode"] == 0, body["summary"]
    outcomes = {(o["runtime"], o["check"]): o["outcome"] for o in body["observations"]}
    assert set(outcomes.values()) == {"OK"}, outcomes
    assert len(outcomes) == 10  # 3 docker + 5 CRI + 2 process
    assert body["summary"].startswith("dockerd 20.10")


def test_hung_dockerd_is_reported_within_deadline_and_named(runtimes, capsys):
    with runtimes.dockerd.hung():
        start = time.monotonic()
        body = _check_json(runtimes, capsys, "--no-process")
        elapsed = time.monotonic() - start
    assert body["exitCode"] == 1
    assert set(_outcomes(body, "dockerd").values()) == {"HUNG"}
    assert set(_outcomes(body, "containerd").values()) == {"OK"}
    assert body["summary"].startswith("dockerd is hung")
    assert "containerd" not in body["summary"].split(";")[0]
    assert elapsed < DEADLINE + 0.5


def test_hung_containerd_is_named_as_the_cause(runtimes, capsys):
    with runtimes.containerd.hung():
        body = _check_json(runtimes, capsys, "--no-process")
    assert body["exitCode"] == 1
    assert set(_outcomes(body, "containerd").values()) == {"HUNG"}
    assert body["summary"].startswith("containerd is hung")
    assert "dockerd fails because of it" in body["summary"]


def test_killed_dockerd_is_down_not_hung_and_fast(runtimes, capsys):
    runtimes.dockerd.crash()
    start = time.monotonic()
    body = _check_json(runtimes, capsys, "--no-containerd", "--no-process")
    elapsed = time.monotonic() - start
    assert set(_outcomes(body, "dockerd").values()) == {"DOWN"}, body["observations"]
    assert body["exitCode"] == 1
    assert "dockerd is down" in body["summary"]
    assert elapsed < DEADLINE / 2


def test_summary_mode_prints_one_line_for_npd(runtimes, capsys):
    with runtimes.dockerd.hung():
        code = main(_argv(runtimes, "--summary", "--no-containerd", "--no-process"))
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("\n") == 1 and out.startswith("dockerd is hung")
    assert len(out) <= 201


def test_table_starts_with_the_summary_line(runtimes, capsys):
    assert main(_argv(runtimes)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dockerd 20.10")
    assert lines[2].split() == ["RUNTIME", "CHECK", "OUTCOME", "LATENCY", "DETAIL"]
    assert any(line.startswith("containerd  cri_list_pod_sandbox  OK") for line in lines)


def test_no_runtime_found_is_unknown_exit_2(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  hostRoot: {tmp_path}\n")
    code = main(["check", "--config", str(config), "--summary"])
    assert code == 2
    assert capsys.readouterr().out.startswith("unknown: no container runtime found")


def test_directory_at_the_docker_socket_path_is_named_with_its_cause(runtimes, tmp_path, capsys):
    """kubelet makes a directory for a hostPath that was missing: say so, not 'nothing listens'."""
    where = tmp_path / "docker.sock"
    where.mkdir()
    code = main(["check", "--config", _sandbox_host(tmp_path), "--summary", "--docker-socket",
                 str(where), "--no-containerd", "--no-process"])
    summary = capsys.readouterr().out.strip()
    assert code == 1
    assert summary.startswith(f"dockerd is down: GET /_ping: {where} is a directory, not a socket")
    assert "kubelet creates one for a hostPath that was missing" in summary
    assert "refused" not in summary and "nothing listens" not in summary


def test_directory_at_a_discovered_socket_path_is_named_too(tmp_path, capsys):
    (tmp_path / "var/run/docker.sock").mkdir(parents=True)
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  hostRoot: {tmp_path}\n")
    assert main(["check", "--config", str(config), "--summary"]) == 2
    summary = capsys.readouterr().out.strip()
    assert summary.startswith("unknown: no container runtime found; ")
    assert f"{tmp_path}/var/run/docker.sock is a directory, not a socket (kubelet" in summary


def test_sockets_are_discovered_at_their_usual_paths(runtimes, tmp_path, capsys):
    """A fake host root holding links to the sandbox sockets at the standard locations."""
    (tmp_path / "var/run").mkdir(parents=True)
    (tmp_path / "run/containerd").mkdir(parents=True)
    os.symlink(runtimes.dockerd.socket, tmp_path / "var/run/docker.sock")
    os.symlink(runtimes.containerd.socket, tmp_path / "run/containerd/containerd.sock")
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  hostRoot: {tmp_path}\n")
    assert main(["check", "--config", str(config), "--json", "--no-process"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {o["runtime"] for o in body["observations"]} == {"dockerd", "containerd"}


def test_bad_config_is_unknown_with_the_key_path(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("checks:\n  dockerPing:\n    deadline: -1s\n")
    assert main(["check", "--config", str(config), "--summary"]) == 2
    out = capsys.readouterr().out
    assert "checks.dockerPing.deadline" in out and str(config) in out


def test_console_script_exit_codes(runtimes):
    """The installed entry point, as node-problem-detector runs it."""
    exe = Path(sys.executable).with_name("nodeprobe")
    healthy = subprocess.run([exe, *_argv(runtimes, "--summary")], capture_output=True,
                             text=True, timeout=30)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stderr == ""
    with runtimes.dockerd.hung():
        hung = subprocess.run([exe, *_argv(runtimes, "--summary")], capture_output=True,
                              text=True, timeout=30)
    assert hung.returncode == 1
    assert "Traceback" not in hung.stderr
