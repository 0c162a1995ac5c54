"""`make demo`: real runtimes in a sandbox, `nodeprobe check` healthy, hung, and healthy again.

Everything runs under a fresh temp dir on private sockets; the host's own docker and containerd
(if any) are never touched. The sandbox is always torn down, even on Ctrl-C.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.harness.runtimes import Sandbox


def _banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def _check(sandbox: Sandbox) -> int:
    nodeprobe = Path(sys.executable).with_name("nodeprobe")
    argv = [
        str(nodeprobe), "check",
        "--docker-socket", str(sandbox.dockerd.socket),
        "--containerd-socket", str(sandbox.containerd.socket),
    ]
    print("$ " + " ".join(argv), flush=True)
    code = subprocess.call(argv)
    print(f"(exit code {code}: 0 healthy, 1 problem, 2 unknown)", flush=True)
    return code


_AGENT_CONFIG = """\
checks:
  dockerPing: {interval: 500ms, deadline: 1s}
  dockerVersion: {interval: 500ms, deadline: 1s}
  dockerInfo: {interval: 2s, deadline: 1s}
  criImageFsInfo: {interval: 2s, deadline: 1s}
  process: {interval: 2s}
  criVersion: {interval: 500ms, deadline: 1s}
  criStatus: {interval: 500ms, deadline: 1s}
  criListPodSandbox: {interval: 500ms, deadline: 1s}
  criListContainers: {interval: 500ms, deadline: 1s}
metrics: {port: 0}
"""


def _agent(sandbox: Sandbox, base: Path) -> bool:
    """The agent in standalone mode (no cluster): transitions show up in its log."""
    config = base / "agent.yaml"
    config.write_text(_AGENT_CONFIG)
    argv = [
        str(Path(sys.executable).with_name("nodeprobe")), "agent", "--standalone",
        "--config", str(config),
        "--docker-socket", str(sandbox.dockerd.socket),
        "--containerd-socket", str(sandbox.containerd.socket),
    ]
    print("$ " + " ".join(argv), flush=True)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []

    def follow() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            print("  " + line.rstrip(), flush=True)
            seen.append(line)

    threading.Thread(target=follow, daemon=True).start()

    def wait_for(word: str, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if any(word in line for line in seen):
                return True
            time.sleep(0.1)
        return False

    try:
        started = wait_for("first round of checks done", 30)
        with sandbox.dockerd.hung():
            raised = wait_for("DockerdHung:", 20)
        cleared = wait_for("ContainerRuntimeIsAvailable:", 20)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return started and raised and cleared


def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="np-demo-", dir="/tmp"))
    sandbox = Sandbox(base)
    try:
        _banner(f"starting a sandboxed containerd and dockerd under {base}")
        sandbox.start()
        sandbox.import_busybox()
        _banner("healthy runtimes")
        healthy = _check(sandbox)
        _banner("dockerd hung with SIGSTOP (its socket still accepts connections)")
        with sandbox.dockerd.hung():
            hung = _check(sandbox)
        _banner("containerd hung with SIGSTOP: dockerd fails too, containerd is the cause")
        with sandbox.containerd.hung():
            cause = _check(sandbox)
        _banner("both resumed with SIGCONT")
        recovered = _check(sandbox)
        _banner("the agent, standalone: dockerd hung, then resumed")
        agent_ok = _agent(sandbox, base)
    finally:
        _banner("cleaning up")
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    ok = (healthy, hung, cause, recovered) == (0, 1, 1, 0) and agent_ok
    _banner("demo " + ("passed" if ok else "did NOT behave as expected"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
