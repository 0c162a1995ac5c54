"""Real containerd and dockerd on private sockets under a temp dir, with fault injectors.

Two containerds: Debian's 1.6 (`CONTAINERD_16`) and 2.x built from the published
`github.com/containerd/containerd/v2` module by tools/go/build (`CONTAINERD_2`, with its own runc
shim; Debian's runc 1.1 runs its containers). `Sandbox(base, containerd=...)` starts either.

Used by the test suite (through fixtures in tests/conftest.py), by `make demo` and by the
benchmarks. Nothing here touches the host's own sockets or data roots: every path lives under
the directory the caller passes in. Faults are real signals: SIGSTOP hangs a daemon (its socket
still accepts connections, nothing answers), SIGKILL crashes it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.gotools import wait_built

BUSYBOX_IMAGE = "nodeprobe-test/busybox:latest"
START_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[2]
GO_BUILD = ROOT / "tools" / "go" / "build"
GO_VERSIONS = ROOT / "tools" / "go" / "versions.env"
CONTAINERD_16 = "1.6"
"""Debian's containerd (1.6.x): CRI v1 and v1alpha2."""
CONTAINERD_2 = "2.x"
"""containerd 2.x from the Go module proxy (version in tools/go/versions.env): CRI v1 only."""
CONTAINERDS = (CONTAINERD_16, CONTAINERD_2)


class HarnessError(RuntimeError):
    """A daemon did not start, or a fault could not be injected."""


def _wait_until(predicate: object, *, timeout_s: float, what: str, log: Path | None) -> None:
    """Poll `predicate` (a callable) until true; polling a real state, not sleeping blind."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise HarnessError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tail}")


def _http_get(sock_path: Path, path: str, timeout_s: float = 2.0) -> bytes | None:
    """A minimal GET on a unix socket, for readiness only (the product uses the docker SDK)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout_s)
            s.connect(str(sock_path))
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
    except OSError:
        return None


@dataclass
class Daemon:
    """One real daemon process with fault injectors."""

    name: str
    argv: list[str]
    socket: Path
    log: Path
    env: dict[str, str] | None = field(default=None, repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopped: bool = False

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise HarnessError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> None:
        if self.socket.exists():
            self.socket.unlink()
        logf = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=self.env,
        )
        logf.close()
        self.stopped = False
        _wait_until(self.ready, timeout_s=START_TIMEOUT_S, what=f"{self.name} on {self.socket}",
                    log=self.log)

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"{self.name} exited with {self.proc.returncode}:\n"
                               + self.log.read_text(errors="replace")[-3000:])
        return self.socket.exists()

    def hang(self) -> None:
        """SIGSTOP: the kernel keeps accepting connections; nothing answers.

        Returns once every thread is stopped: kill() returns before the signal lands, and a
        thread still running on the other core could otherwise answer one more call.
        """
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True
        _wait_until(self._all_threads_stopped, timeout_s=10, what=f"{self.name} to stop",
                    log=None)

    def _all_threads_stopped(self) -> bool:
        states = []
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            states.append(stat.rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in ("T", "t") for state in states)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    @contextlib.contextmanager
    def hung(self) -> Iterator[None]:
        """Hang for the duration of the block; always resumes, even when the test fails."""
        self.hang()
        try:
            yield
        finally:
            self.resume()

    def crash(self) -> None:
        """SIGKILL, as the OOM killer would: the socket file stays, connections are refused."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.stopped = False
        _wait_until(self._refused, timeout_s=10, what=f"{self.name}'s socket to refuse", log=None)

    def _refused(self) -> bool:
        """True once nothing listens on the socket any more (the kernel refuses, or it is gone)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket))
            except (ConnectionRefusedError, FileNotFoundError):
                return True
            except OSError:
                return False
        return False

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        """Resume if hung, then SIGTERM, then SIGKILL; always reaps."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None


class Containerd(Daemon):
    def ready(self) -> bool:
        return super().ready() and Path(str(self.socket) + ".ttrpc").exists()


class Dockerd(Daemon):
    def ready(self) -> bool:
        if not super().ready():
            return False
        reply = _http_get(self.socket, "/_ping")
        return reply is not None and reply.startswith(b"HTTP/1.") and b" 200 " in reply[:20]

    def reaches_containerd(self) -> bool:
        """/version lists the containerd component only while dockerd's connection to it works
        (after containerd was stopped for a while, dockerd's gRPC client can stay in backoff)."""
        reply = _http_get(self.socket, "/version")
        if reply is None or b" 200 " not in reply[:20]:
            return False
        try:
            body = json.loads(reply.partition(b"\r\n\r\n")[2])
        except ValueError:
            return False
        return any(c.get("Name") == "containerd" for c in body.get("Components") or [])


def slow_runc(path: Path, *, delay_s: float) -> Path:
    """A runc wrapper that sleeps `delay_s` before `runc start` (the container's process start),
    for a runtime whose container starts are slow; every other runc command passes straight on."""
    path.write_text("\n".join([
        "#!/bin/sh",
        'for arg in "$@"; do',
        f'  if [ "$arg" = start ]; then sleep {delay_s:g}; break; fi',
        "done",
        f'exec {which("runc")} "$@"',
        "",
    ]))
    path.chmod(0o755)
    return path


def cri_runc_config(runc: Path | None) -> list[str]:
    """containerd config lines that make the CRI's default runtime use `runc` as its binary."""
    if runc is None:
        return []
    return [
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        f'        BinaryName = "{runc}"',
    ]


@dataclass(frozen=True)
class ContainerdBuild:
    """Which containerd a sandbox runs: its binary, and the PATH its shims come from."""

    label: str
    binary: str
    env: dict[str, str] | None = None

    def version(self) -> str:
        """What the binary says it is (`containerd --version`, third field)."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,
                             timeout=30, check=True, env=self.env).stdout.split()
        return out[2] if len(out) > 2 else " ".join(out)


def go_versions() -> dict[str, str]:
    """tools/go/versions.env as a dict: the one place the Go tools' versions are written."""
    pairs = (line.split("=", 1) for line in GO_VERSIONS.read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def tools_cache() -> Path:
    return Path(os.environ.get("NODEPROBE_TOOLS_CACHE", "/var/cache/nodeprobe/tools"))


def containerd_build(label: str = CONTAINERD_16, *, wait: bool = True) -> ContainerdBuild:
    """The containerd for `label`; a missing 2.x build says how to make it (never a skip).
    2.x waits for a running tools/go/build to finish it, unless `wait` is False."""
    if label == CONTAINERD_16:
        return ContainerdBuild(label, which("containerd"))
    if label != CONTAINERD_2:
        raise HarnessError(f"unknown containerd {label!r}: one of {', '.join(CONTAINERDS)}")
    if wait:
        wait_built("containerd")
    directory = tools_cache() / f"containerd-{go_versions()['CONTAINERD']}"
    binary = directory / "containerd"
    if not (binary.exists() and (directory / "containerd-shim-runc-v2").exists()):
        raise HarnessError(f"{binary} is not built: run `{GO_BUILD} containerd` (make test does)")
    # containerd finds its shim on PATH: put the matching 2.x shim before Debian's 1.6 one.
    path = f"{directory}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return ContainerdBuild(label, str(binary), {**os.environ, "PATH": path})


def containerd_config(root: Path, *, sandbox_image: str = BUSYBOX_IMAGE,
                      runc: Path | None = None) -> str:
    """A config.toml (version 2: 1.6 reads it, 2.x migrates it) keeping every path under root."""
    return "\n".join(
        [
            "version = 2",
            f'root = "{root / "root"}"',
            f'state = "{root / "state"}"',
            # 1.7+/2.x: NRI would listen on the host's /var/run/nri/nri.sock; keep off it.
            'disabled_plugins = ["io.containerd.nri.v1.nri"]',
            "[grpc]",
            f'  address = "{root / "containerd.sock"}"',
            "[ttrpc]",
            f'  address = "{root / "containerd.sock.ttrpc"}"',
            "[debug]",
            f'  address = "{root / "debug.sock"}"',
            '  level = "info"',
            "[plugins]",
            '  [plugins."io.containerd.grpc.v1.cri"]',
            f'    sandbox_image = "{sandbox_image}"',
            # Root here lacks CAP_SYS_RESOURCE: CRI's oom_score_adj of -998 would make runc fail.
            "    restrict_oom_score_adj = true",
            '    [plugins."io.containerd.grpc.v1.cri".cni]',
            f'      bin_dir = "{root / "cni-bin"}"',
            f'      conf_dir = "{root / "cni-conf"}"',
            *cri_runc_config(runc),
            "",
        ]
    )


class Sandbox:
    """A containerd and a dockerd that uses it, all under `base`.

    `base` should be short: unix socket paths are limited to 107 bytes. `runc`, when given, is
    the runc binary both daemons use (e.g. a `slow_runc` wrapper).
    """

    def __init__(self, base: Path, *, containerd: str = CONTAINERD_16,
                 runc: Path | None = None) -> None:
        self.base = base
        self.containerd_build = containerd_build(containerd)
        cd = base / "containerd"
        dk = base / "docker"
        for d in (cd / "root", cd / "state", cd / "cni-bin", cd / "cni-conf", dk / "root",
                  dk / "exec"):
            d.mkdir(parents=True, exist_ok=True)
        config = cd / "config.toml"
        config.write_text(containerd_config(cd, runc=runc))
        runtime_flags = [] if runc is None else [
            "--add-runtime", f"nodeprobe-test={runc}", "--default-runtime", "nodeprobe-test"]
        self.containerd = Containerd(
            name="containerd",
            argv=[self.containerd_build.binary, "--config", str(config)],
            socket=cd / "containerd.sock",
            log=base / "containerd.log",
            env=self.containerd_build.env,
        )
        self.dockerd = Dockerd(
            name="dockerd",
            argv=[
                which("dockerd"),
                "-H", f"unix://{dk / 'docker.sock'}",
                "--data-root", str(dk / "root"),
                "--exec-root", str(dk / "exec"),
                "--pidfile", str(dk / "dockerd.pid"),
                "--containerd", str(cd / "containerd.sock"),
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                *runtime_flags,
            ],
            socket=dk / "docker.sock",
            log=base / "dockerd.log",
        )

    def start(self) -> Sandbox:
        self.containerd.start()
        self.dockerd.start()
        return self

    def heal(self) -> None:
        """Bring both daemons back to running and answering, whatever a test did to them."""
        for daemon in (self.containerd, self.dockerd):
            if daemon.proc is None or daemon.proc.poll() is not None:
                daemon.proc = None
                daemon.start()
            else:
                daemon.resume()  # also after a SIGSTOP sent around hang(): SIGCONT is harmless
        try:
            _wait_until(self.dockerd.reaches_containerd, timeout_s=15,
                        what="dockerd to reach containerd again", log=None)
        except HarnessError:  # its client gave up on the connection: restart it, as one would
            self.dockerd.stop()
            self.dockerd.start()
            _wait_until(self.dockerd.reaches_containerd, timeout_s=START_TIMEOUT_S,
                        what="dockerd to reach containerd after a restart", log=self.dockerd.log)

    def stop(self) -> None:
        self.dockerd.stop()
        self.containerd.stop()
        reap_shims(self.containerd.socket)
        unmount_under(self.base)

    def import_busybox(self) -> str:
        """Build a rootfs from Debian's busybox-static and `docker import` it (no registry here)."""
        import docker  # the harness may use the SDK freely; only the probe is held to deadlines

        client = docker.APIClient(base_url=f"unix://{self.dockerd.socket}", version="auto",
                                  timeout=60)
        try:
            repo, tag = BUSYBOX_IMAGE.rsplit(":", 1)
            client.import_image_from_data(
                busybox_rootfs_tar(), repository=repo, tag=tag,
                changes=['CMD ["/bin/sh"]'],
            )
        finally:
            client.close()
        return BUSYBOX_IMAGE

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def busybox_rootfs_tar() -> bytes:
    """A tar of a minimal root filesystem: /bin/busybox plus its applet links."""
    busybox = which("busybox")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo", "true", "cat", "ls"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return out.getvalue()


def reap_shims(containerd_socket: Path) -> None:
    """Kill shims this sandbox's containerd started (they outlive containerd by design)."""
    needle = str(containerd_socket).encode()
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_dir.name), signal.SIGKILL)


def unmount_under(base: Path) -> None:
    """Lazily unmount what a killed dockerd left mounted under `base` (its data-root bind mount)."""
    prefix = str(base.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def which(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise HarnessError(f"{name} not found: install Debian's docker.io, containerd, runc and "
                           "busybox-static (make deps does)")
    return path
