"""DockerProbe against the harness's real dockerd (hang = SIGSTOP, crash = SIGKILL) and against
small fake servers on unix sockets that answer wrongly in the ways a broken daemon can."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from nodeprobe.model import Check, Outcome, Runtime, Value
from nodeprobe.probes.docker import DockerProbe
from tests.harness.runtimes import Sandbox

DEADLINE_S = 3.0
MARGIN_S = 0.5


def probe_for(sandbox: Sandbox) -> DockerProbe:
    return DockerProbe(str(sandbox.dockerd.socket))


# ---- real dockerd -------------------------------------------------------------------------------


def test_healthy_checks_answer_ok_with_plausible_values(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    assert probe.runtime is Runtime.DOCKERD
    assert probe.checks == (Check.DOCKER_PING, Check.DOCKER_VERSION, Check.DOCKER_INFO)
    obs = {c: probe.run(c, deadline_s=DEADLINE_S, slow_s=DEADLINE_S) for c in probe.checks}

    for check, o in obs.items():
        assert o.outcome is Outcome.OK, o.detail
        assert o.check is check and o.runtime is Runtime.DOCKERD
        assert 0 < o.latency_s < DEADLINE_S
        assert o.info["api_version"] == "1.41"

    version = obs[Check.DOCKER_VERSION]
    assert version.info["version"].startswith("20.10")
    assert version.info["containerd_version"] == runtimes.containerd_build.version()

    info = obs[Check.DOCKER_INFO]
    assert info.info["driver"] == "overlay2"
    assert info.info["server_version"] == version.info["version"]
    assert 5 < info.values[Value.GOROUTINES] < 10_000
    assert 3 < info.values[Value.FDS] < 10_000
    assert info.values[Value.IMAGES] >= 1  # the session imported busybox
    client = docker.APIClient(base_url=f"unix://{runtimes.dockerd.socket}", version="auto")
    try:
        assert info.values[Value.CONTAINERS] == len(client.containers(all=True))
        listeners = info.values[Value.EVENT_LISTENERS]
        stream = client.events(decode=True)  # one more listener while it is held
        try:
            held = probe.run(Check.DOCKER_INFO, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
            assert held.values[Value.EVENT_LISTENERS] == listeners + 1
        finally:
            stream.close()
    finally:
        client.close()


def test_negotiated_version_is_the_daemons(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    assert probe.api_version is None
    obs = probe.run(Check.DOCKER_VERSION, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.outcome is Outcome.OK, obs.detail
    assert probe.api_version == obs.info["api_version"] == "1.41"
    assert "/v1.41/version" in obs.detail


def test_hung_dockerd_gives_hung_within_the_deadline(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    deadline = 1.0
    # negotiate first, so the versioned calls themselves are what hangs
    assert probe.run(Check.DOCKER_PING, deadline_s=DEADLINE_S, slow_s=DEADLINE_S).outcome \
        is Outcome.OK
    with runtimes.dockerd.hung():
        for check in probe.checks:
            obs = probe.run(check, deadline_s=deadline, slow_s=deadline)
            assert obs.outcome is Outcome.HUNG, obs.detail
            assert deadline <= obs.latency_s <= deadline + MARGIN_S
            assert "did not answer GET" in obs.detail
    # the same daemon: the version stays and the calls answer again
    assert probe.run(Check.DOCKER_INFO, deadline_s=DEADLINE_S, slow_s=DEADLINE_S).outcome \
        is Outcome.OK


def test_hung_before_negotiation_is_hung_too(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    with runtimes.dockerd.hung():
        obs = probe.run(Check.DOCKER_INFO, deadline_s=0.5, slow_s=0.5)
    assert obs.outcome is Outcome.HUNG, obs.detail
    assert 0.5 <= obs.latency_s <= 0.5 + MARGIN_S
    assert obs.detail.endswith("did not answer GET /_ping within 0.5s (negotiating the API "
                               "version for /info)")


def test_crashed_dockerd_is_down_fast_and_renegotiates(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    assert probe.run(Check.DOCKER_PING, deadline_s=DEADLINE_S, slow_s=DEADLINE_S).outcome \
        is Outcome.OK
    assert probe.api_version == "1.41"
    runtimes.dockerd.crash()
    for check in probe.checks:
        obs = probe.run(check, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
        assert obs.outcome is Outcome.DOWN, obs.detail
        assert obs.latency_s < 0.5
        assert "refused" in obs.detail
    assert probe.api_version is None
    runtimes.heal()
    obs = probe.run(Check.DOCKER_VERSION, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.outcome is Outcome.OK, obs.detail
    assert probe.api_version == "1.41"


def test_missing_socket_is_down(tmp_path: Path) -> None:
    obs = DockerProbe(str(tmp_path / "none.sock")).run(Check.DOCKER_PING, deadline_s=1,
                                                        slow_s=1)
    assert obs.outcome is Outcome.DOWN
    assert "no socket at" in obs.detail


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _poll(predicate: Callable[[], bool], *, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_no_thread_or_fd_leak_after_many_hung_checks(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    assert probe.run(Check.DOCKER_PING, deadline_s=DEADLINE_S, slow_s=DEADLINE_S).outcome \
        is Outcome.OK
    threads, fds = threading.active_count(), _fd_count()
    with runtimes.dockerd.hung():
        for i in range(50):
            check = probe.checks[i % len(probe.checks)]
            obs = probe.run(check, deadline_s=0.2, slow_s=0.2)
            assert obs.outcome is Outcome.HUNG, obs.detail
            assert obs.latency_s <= 0.2 + MARGIN_S
    assert _poll(lambda: threading.active_count() <= threads and _fd_count() <= fds,
                 timeout_s=2.0), (threading.active_count(), threads, _fd_count(), fds)


def test_concurrent_runs_from_several_threads(runtimes: Sandbox) -> None:
    probe = probe_for(runtimes)
    results: list[Outcome] = []
    lock = threading.Lock()

    def work(check: Check) -> None:
        for _ in range(5):
            o = probe.run(check, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
            with lock:
                results.append(o.outcome)

    workers = [threading.Thread(target=work, args=(c,)) for c in probe.checks for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert results == [Outcome.OK] * 30


# ---- fake daemons -------------------------------------------------------------------------------

Reply = Callable[[str], bytes | None]
"""Given the request path, the raw bytes to send back (None: close without a word)."""


class FakeDaemon:
    """A unix-socket server in a thread that answers each request with `reply(path)`."""

    def __init__(self, path: Path, reply: Reply) -> None:
        self.path = path
        self.reply = reply
        self.seen: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                if not data:
                    continue
                path = data.split(b" ", 2)[1].decode()
                self.seen.append(path)
                answer = self.reply(path)
                if answer is not None:
                    with contextlib.suppress(OSError):
                        conn.sendall(answer)

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


def http(status: str, body: bytes, *, headers: str = "", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (f"HTTP/1.1 {status}\r\nContent-Length: {size}\r\nConnection: close\r\n{headers}"
            f"\r\n").encode() + body


PING_144 = http("200 OK", b"OK", headers="Api-Version: 1.44\r\n")
VERSION_144 = (b'{"Version":"29.0.0","ApiVersion":"1.44","Components":[{"Name":"Engine"},'
               b'{"Name":"containerd","Version":"2.0.0"}]}')


def routed(other: bytes | None) -> Reply:
    """A correct /_ping with API 1.44; `other` for everything else."""
    return lambda path: PING_144 if path == "/_ping" else other


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Callable[[Reply], FakeDaemon]]:
    made: list[FakeDaemon] = []

    def start(reply: Reply) -> FakeDaemon:
        d = FakeDaemon(tmp_path / f"d{len(made)}.sock", reply)
        made.append(d)
        return d

    yield start
    for d in made:
        d.close()


def run_fake(daemon: FakeDaemon, check: Check) -> tuple[Outcome, str]:
    obs = DockerProbe(str(daemon.path)).run(check, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.latency_s < DEADLINE_S
    return obs.outcome, obs.detail


def test_fake_newer_daemon_gets_its_own_api_version(fake: Callable[[Reply], FakeDaemon]) -> None:
    daemon = fake(routed(http("200 OK", VERSION_144)))
    probe = DockerProbe(str(daemon.path))
    obs = probe.run(Check.DOCKER_VERSION, deadline_s=DEADLINE_S, slow_s=DEADLINE_S)
    assert obs.outcome is Outcome.OK, obs.detail
    assert daemon.seen == ["/_ping", "/v1.44/version"]
    assert probe.api_version == "1.44"
    assert obs.info["containerd_version"] == "2.0.0"


def test_fake_without_containerd_component(fake: Callable[[Reply], FakeDaemon]) -> None:
    body = b'{"Version":"20.10.24","ApiVersion":"1.41","Components":[{"Name":"Engine"}]}'
    outcome, detail = run_fake(fake(routed(http("200 OK", body))), Check.DOCKER_VERSION)
    assert outcome is Outcome.ERROR
    assert detail == ("dockerd answers /version but lists no containerd component: its "
                      "containerd connection is broken")


def test_fake_garbage_bytes(fake: Callable[[Reply], FakeDaemon]) -> None:
    outcome, detail = run_fake(fake(lambda _: b"\x00\xffgarbage\r\n\r\n"), Check.DOCKER_PING)
    assert outcome is Outcome.ERROR
    assert "not HTTP" in detail and "GET /_ping" in detail


def test_fake_closes_mid_reply(fake: Callable[[Reply], FakeDaemon]) -> None:
    cut = http("200 OK", b'{"ID":', length=1000)
    outcome, detail = run_fake(fake(routed(cut)), Check.DOCKER_INFO)
    assert outcome is Outcome.ERROR
    assert detail == "dockerd closed the connection mid-reply to GET /v1.44/info"


def test_fake_closes_without_a_word(fake: Callable[[Reply], FakeDaemon]) -> None:
    outcome, detail = run_fake(fake(lambda _: None), Check.DOCKER_PING)
    assert outcome is Outcome.ERROR
    assert "closed the connection" in detail


def test_fake_http_500(fake: Callable[[Reply], FakeDaemon]) -> None:
    body = b'{"message":"layer store is locked"}'
    outcome, detail = run_fake(fake(routed(http("500 Internal Server Error", body))),
                               Check.DOCKER_INFO)
    assert outcome is Outcome.ERROR
    assert detail == "dockerd answered GET /v1.44/info with HTTP 500: layer store is locked"


def test_fake_non_json_200(fake: Callable[[Reply], FakeDaemon]) -> None:
    outcome, detail = run_fake(fake(routed(http("200 OK", b"<html>hello</html>"))),
                               Check.DOCKER_VERSION)
    assert outcome is Outcome.ERROR
    assert detail.startswith("dockerd answered GET /v1.44/version with HTTP 200 but the body "
                             "is not JSON")


def test_trickling_bytes_cannot_stretch_the_deadline(tmp_path: Path) -> None:
    """Per-op timeouts would let a byte every 0.3 s run on forever; the deadline is absolute."""
    stop = threading.Event()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "t.sock"))
    listener.listen(1)

    def serve_trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            while not stop.wait(0.3):
                with contextlib.suppress(OSError):
                    conn.sendall(b"O")

    server = threading.Thread(target=serve_trickle, daemon=True)
    server.start()
    try:
        deadline = 1.0
        obs = DockerProbe(str(tmp_path / "t.sock")).run(Check.DOCKER_PING, deadline_s=deadline,
                                                       slow_s=deadline)
        assert obs.outcome is Outcome.HUNG, obs.detail
        # Per-op timeouts would take 30 s (100 bytes, one per 0.3 s); 2 s of margin absorbs a
        # loaded machine's scheduling (1.64 s was seen at load 11 on 2 cores).
        assert deadline <= obs.latency_s <= deadline + 2.0
    finally:
        stop.set()
        server.join(timeout=5)
        listener.close()


AS_NOBODY_ARGV = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
"""util-linux's setpriv; subprocess(user=...) cannot exec the venv's python on this VM."""
AS_NOBODY = """
import json, sys
from nodeprobe.model import Check
from nodeprobe.probes.docker import DockerProbe
obs = DockerProbe(sys.argv[1]).run(Check.DOCKER_PING, deadline_s=3, slow_s=3)
print(json.dumps({"outcome": obs.outcome, "detail": obs.detail}))
"""


def test_permission_denied_for_real_as_another_user(runtimes: Sandbox) -> None:
    """Root passes every permission check, so the probe runs as `nobody` in a child process."""
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [*AS_NOBODY_ARGV, sys.executable, "-c", AS_NOBODY, str(runtimes.dockerd.socket)],
        cwd=repo, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr  # no traceback
    got = json.loads(done.stdout)
    assert got["outcome"] == Outcome.ERROR
    assert got["detail"] == (
        f"permission denied on {runtimes.dockerd.socket}: the socket is root's; run as root "
        "(membership in the docker group is root-equivalent, prefer sudo)")
