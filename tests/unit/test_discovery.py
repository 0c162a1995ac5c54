"""Socket discovery looks under a host root and takes the first socket that is there."""

from __future__ import annotations

import socket

from nodeprobe.discovery import CONTAINERD_SOCKETS, DOCKER_SOCKETS, find_socket, is_socket


def test_first_existing_candidate_under_root_wins():
    present = {"/host/run/docker/containerd/containerd.sock",
               "/host/run/k3s/containerd/containerd.sock"}
    found = find_socket(CONTAINERD_SOCKETS, root="/host", exists=present.__contains__)
    assert found == "/host/run/docker/containerd/containerd.sock"


def test_nothing_found_is_none():
    assert find_socket(DOCKER_SOCKETS, root="/nowhere", exists=lambda _: False) is None


def test_a_plain_file_is_not_a_socket(tmp_path):
    plain = tmp_path / "docker.sock"
    plain.write_text("")
    assert not is_socket(str(plain))
    real = tmp_path / "real.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(real))
        assert is_socket(str(real))
