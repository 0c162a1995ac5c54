"""Which socket a containerd serves, from its argv and config file (pure parsing)."""

from __future__ import annotations

import pytest

from nodeprobe.probes.procfs import (
    CONTAINERD_DEFAULT_CONFIG,
    CONTAINERD_DEFAULT_SOCKET,
    config_file,
    grpc_address,
    same_socket,
    under_run,
)


@pytest.mark.parametrize(("argv", "path"), [
    (["containerd"], CONTAINERD_DEFAULT_CONFIG),  # the systemd unit's
    (["containerd", "--config", "/var/run/docker/containerd/containerd.toml"],
     "/var/run/docker/containerd/containerd.toml"),  # dockerd's managed one
    (["containerd", "-c", "/etc/c.toml"], "/etc/c.toml"),
    (["containerd", "--config=/etc/c.toml", "--log-level", "debug"], "/etc/c.toml"),
    (["containerd", "--config"], CONTAINERD_DEFAULT_CONFIG),  # no value: containerd refuses it
])
def test_config_file(argv: list[str], path: str) -> None:
    assert config_file(argv) == path


@pytest.mark.parametrize(("text", "address"), [
    ('version = 2\n[grpc]\n  address = "/run/k/c.sock"\n', "/run/k/c.sock"),
    ('version = 3\n[grpc]\naddress = "unix:///run/k/c.sock"\n', "/run/k/c.sock"),
    ('version = 2\n[grpc]\n  uid = 0\n', CONTAINERD_DEFAULT_SOCKET),
    ('root = "/var/lib/containerd"\n', CONTAINERD_DEFAULT_SOCKET),
    ("", CONTAINERD_DEFAULT_SOCKET),
    ('[grpc]\n  address = "tcp://0.0.0.0:1"\n', None),  # not a unix socket
    ('[grpc]\n  address = ""\n', None),  # containerd refuses an empty address
    ('[grpc]\n  address = 7\n', None),
    ('grpc = "x"\n', None),
    ("[grpc\n", None),  # not TOML
])
def test_grpc_address(text: str, address: str | None) -> None:
    assert grpc_address(text) == address


def test_var_run_is_run() -> None:
    assert under_run("/var/run/docker/containerd/containerd.toml") == (
        "/run/docker/containerd/containerd.toml")
    assert under_run("/var/lib/x") == "/var/lib/x"
    assert same_socket("/var/run/docker/containerd/containerd.sock",
                       "/host/run/docker/containerd/containerd.sock")
    assert same_socket("/run/containerd/containerd.sock", "/var/run/containerd/containerd.sock")
    assert not same_socket("/var/run/a.sock", "/run/b.sock")
