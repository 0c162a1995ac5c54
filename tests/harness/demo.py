"""`make demo`: real runtimes in a sandbox, `nodeprobe check` healthy, hung, and healthy again.

Everything runs under a fresh temp dir on private sockets; the host's own docker and containerd
(if any) are never touched. The sandbox is always torn down, even on Ctrl-C.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
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
    finally:
        _banner("cleaning up")
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)
    ok = (healthy, hung, cause, recovered) == (0, 1, 1, 0)
    _banner("demo " + ("passed" if ok else "did NOT behave as expected"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
