"""The agent starts from the chart's default config on a node with containerd only, dockerd only,
or both: it probes the sockets that are there and says which runtime it skipped.

The pod's view is rebuilt for real: a private mount namespace (unshare) where a directory holding
the node's sockets is bind-mounted read-only, as the chart mounts the host's /run at /host/run,
and the agent runs from the ConfigMap helm renders (`socket: auto`). The sockets are hard links
to the sandbox runtimes' own: a unix socket is found by its inode, so connect() through the link
reaches the real daemon, and through a read-only mount too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.model import Outcome, Runtime
from tests.harness.agent_process import free_port, terminate, wait_for
from tests.harness.runtimes import Sandbox
from tools import helm

pytestmark = pytest.mark.timeout(180)


def _chart_config() -> dict[str, Any]:
    (cm,) = [o for o in helm.objects(helm.template(include_crds=False))
             if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "nodeprobe-agent"]
    cfg: dict[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return cfg


class PodView:
    """`nodeprobe agent --standalone` in its own mount namespace, the node's /run read-only."""

    def __init__(self, workdir: Path, sockets: dict[str, Path]) -> None:
        self.host = workdir / "host"
        run = self.host / "run"
        for rel, target in sockets.items():
            link = run / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(target, link)  # a hard link to the live socket
        cfg = _chart_config()
        self.port = free_port()
        # Only what differs between a pod and this test: where the host is, and the port.
        cfg["paths"] = {**cfg["paths"], "hostRoot": str(self.host)}
        cfg["metrics"] = {**cfg["metrics"], "address": "127.0.0.1", "port": self.port}
        # The process check reads /proc, where other sandboxes' daemons run too: out of scope.
        cfg["checks"] = {"process": {"enabled": False}}
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(cfg))
        self.log_path = workdir / "agent.log"
        agent = [str(Path(sys.executable).with_name("nodeprobe")), "agent", "--config",
                 str(config), "--standalone"]
        script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
        argv = [_need("unshare"), "--mount", "--propagation", "private", "--",
                "sh", "-c", script, "sh", str(run), *agent]
        env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def outcomes(self, runtime: Runtime, outcome: Outcome) -> float:
        import urllib.request

        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                body = r.read().decode()
        except OSError:
            return 0.0
        total = 0.0
        for line in body.splitlines():
            if (line.startswith("nodeprobe_probe_outcomes_total{")
                    and f'runtime="{runtime}"' in line and f'outcome="{outcome}"' in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        terminate(self.proc)


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} not found: apt-get install util-linux (make deps does)"
    return path


@pytest.fixture
def pod_view(runtimes: Sandbox, tmp_path: Path) -> Iterator[Any]:
    started: list[PodView] = []

    def start(*present: Runtime) -> PodView:
        sockets = {}
        if Runtime.DOCKERD in present:
            sockets["docker.sock"] = runtimes.dockerd.socket
        if Runtime.CONTAINERD in present:
            sockets["containerd/containerd.sock"] = runtimes.containerd.socket
        view = PodView(tmp_path, sockets)
        started.append(view)
        return view

    yield start
    for view in started:
        view.stop()


def _answered(view: PodView, runtime: Runtime) -> bool:
    return view.outcomes(runtime, Outcome.OK) + view.outcomes(runtime, Outcome.SLOW) > 0


SKIPPED = "no {} socket at"


@pytest.mark.parametrize("present", [
    (Runtime.CONTAINERD,), (Runtime.DOCKERD,), (Runtime.DOCKERD, Runtime.CONTAINERD),
], ids=["containerd-only", "dockerd-only", "both"])
def test_agent_probes_what_the_node_has_and_says_what_it_skipped(
    pod_view: Any, present: tuple[Runtime, ...]
) -> None:
    view = pod_view(*present)
    for runtime in present:
        wait_for(lambda r=runtime: _answered(view, r), timeout_s=60,
                 what=f"{runtime} answering the agent through the read-only mount")
    log = view.log()
    for runtime in (Runtime.DOCKERD, Runtime.CONTAINERD):
        if runtime in present:
            assert SKIPPED.format(runtime) not in log, log
        else:
            assert SKIPPED.format(runtime) in log, log
            assert f"under {view.host}: not probed" in log, "say where it looked"
            # a node without that runtime is normal: no WARNING (an idle soak counts them)
            assert f"WARNING nodeprobe.agent: {SKIPPED.format(runtime)}" not in log, log
            assert sum(view.outcomes(runtime, o) for o in Outcome) == 0


def test_the_mount_is_really_read_only(tmp_path: Path) -> None:
    """Guard: the namespace's bind mount is read-only (else the test above proves less)."""
    run = tmp_path / "host" / "run"
    run.mkdir(parents=True)
    proc = subprocess.run(
        [_need("unshare"), "--mount", "--propagation", "private", "--", "sh", "-c",
         'mount --bind -o ro "$1" "$1" && touch "$1/x"', "sh", str(run)],
        capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr
