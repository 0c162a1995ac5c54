"""The Dockerfile builds with the real dockerd, offline (tests/harness/image.py), and the image
diagnoses a real dockerd. The build is the session's `project_image` (tests/conftest.py), which
the real node's tests import into its containerd too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from nodeprobe.config import load
from nodeprobe.judge.degraded import findings
from nodeprobe.judge.verdict import one_line
from nodeprobe.model import Check, Observation, Outcome, Reason, Runtime, Value
from tests.harness.image import IMAGE
from tests.harness.journal import CORRUPT, write_journal
from tests.harness.runtimes import Sandbox
from tools import helm

pytestmark = pytest.mark.timeout(900)  # a fresh machine debootstraps and downloads first


@pytest.fixture(scope="module")
def built_image(project_image: tuple[Any, float]) -> tuple[Any, float]:
    return project_image


def _run(client: Any, *, command: list[str], user: str | None = None,
         binds: dict[str, dict[str, str]] | None = None, entrypoint: list[str] | None = None
         ) -> tuple[int, str]:
    host_config = client.create_host_config(binds=binds or {}, network_mode="none",
                                            read_only=True)
    return _run_container(client, command=command, user=user or "", entrypoint=entrypoint,
                          host_config=host_config)


def _run_container(client: Any, *, stderr: bool = True, **create: Any) -> tuple[int, str]:
    """Create, start and wait for a container of the image; its exit status and output
    (stdout alone without `stderr`: a `--json` report, with the log lines kept apart)."""
    container = client.create_container(IMAGE, **create)
    try:
        client.start(container)
        status = client.wait(container, timeout=120)["StatusCode"]
        return status, client.logs(container, stderr=stderr).decode(errors="replace")
    finally:
        client.remove_container(container, force=True)


def _run_as_the_chart_runs_the_agent(
    client: Any, ds: dict[str, Any], *, command: list[str], binds: dict[str, dict[str, str]],
    pid_host: bool = False,
) -> tuple[int, str]:
    """The image with the DaemonSet's own user and container securityContext (repair off)."""
    pod = ds["spec"]["template"]["spec"]
    user = pod["securityContext"]
    security = pod["containers"][0]["securityContext"]
    host_config = client.create_host_config(
        binds=binds, network_mode="none", read_only=security["readOnlyRootFilesystem"],
        pid_mode="host" if pid_host else None, cap_drop=security["capabilities"]["drop"],
        security_opt=[] if security["allowPrivilegeEscalation"] else ["no-new-privileges"])
    return _run_container(client, command=command, stderr=False,
                          user=f"{user['runAsUser']}:{user['runAsGroup']}",
                          host_config=host_config)


def test_image_runs_check_against_a_real_dockerd(
    built_image: tuple[Any, float], runtimes: Sandbox
) -> None:
    client, build_s = built_image
    size_mb = client.inspect_image(IMAGE)["Size"] / 1e6
    print(f"image build took {build_s:.1f}s; image size {size_mb:.1f} MB")
    sock = str(runtimes.dockerd.socket)
    status, out = _run(
        client,
        command=["check", "--docker-socket", "/var/run/docker.sock", "--no-containerd",
                 "--no-process"],
        user="0",  # the socket is root's, as on a node
        binds={sock: {"bind": "/var/run/docker.sock", "mode": "rw"}},
    )
    assert status == 0, out
    assert "dockerd" in out


def test_image_checks_both_runtimes_laid_out_as_the_chart_mounts_them(
    built_image: tuple[Any, float], runtimes: Sandbox, tmp_path: Path
) -> None:
    """The in-pod command docs/install.md gives, on the chart's own config file and layout: the
    host's /run read-only at /host/run, sockets found there (`auto`), read-only root, uid 0."""
    client, _ = built_image
    objects = helm.objects(helm.template())
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(cm["data"]["config.yaml"])
    status, out = _run(
        client,
        command=["check", "--config", "/etc/nodeprobe/config.yaml", "--no-process"],
        user="0",
        binds={
            str(runtimes.dockerd.socket): {"bind": "/host/run/docker.sock", "mode": "ro"},
            str(runtimes.containerd.socket.parent): {"bind": "/host/run/containerd",
                                                     "mode": "ro"},
            str(config_dir): {"bind": "/etc/nodeprobe", "mode": "ro"},
        },
    )
    assert status == 0, out
    assert "containerd" in out and "dockerd" in out


def test_image_is_non_root_and_has_no_build_tools(built_image: tuple[Any, float]) -> None:
    client, _ = built_image
    config = client.inspect_image(IMAGE)["Config"]
    assert config["User"] == "65532:65532"
    # kopf asks for the user's name (getpass): uid 65532 has one, so the operator starts.
    status, out = _run(client, entrypoint=["python3", "-c"],
                       command=["import getpass, os; print(getpass.getuser(), os.getuid())"])
    assert (status, out.split()) == (0, ["nodeprobe", "65532"]), out
    assert config["Entrypoint"] == ["nodeprobe"]
    status, out = _run(
        client, entrypoint=["python3", "-c"],
        command=["import importlib.util as u, shutil, sys; "
                 "found = [m for m in ('pip', 'setuptools') if u.find_spec(m)] + "
                 "[t for t in ('gcc', 'cc', 'make', 'pip', 'pip3') if shutil.which(t)]; "
                 "print(found); sys.exit(1 if found else 0)"],
    )
    assert status == 0, f"build tools left in the final image: {out}"
    # Repair mode runs `nsenter -t 1 ... systemctl`: nsenter must be in the image.
    status, out = _run(client, entrypoint=["nsenter"], command=["--version"])
    assert status == 0, out


def test_image_help_lists_every_subcommand(built_image: tuple[Any, float]) -> None:
    client, _ = built_image
    status, out = _run(client, command=["--help"])
    assert status == 0, out
    for sub in ("check", "agent", "operator"):
        assert sub in out


def test_image_with_the_charts_security_context_is_healthy(
    built_image: tuple[Any, float], runtimes: Sandbox, tmp_path: Path
) -> None:
    """As the chart runs the agent: uid 0, every capability dropped, no new privileges,
    read-only root, the host's pid namespace, /proc and the cgroup fs under /host, the runtime
    roots under /host. Every check, the process check included, is healthy: exit 0."""
    client, _ = built_image
    values = tmp_path / "values.yaml"
    values.write_text(
        "agent:\n  config:\n    containerd:\n      requireNetworkReady: false\n"
        f"  docker:\n    root: {runtimes.base / 'docker' / 'root'}\n"
        f"  containerd:\n    root: {runtimes.base / 'containerd' / 'root'}\n")
    objects = helm.objects(helm.template([values]))
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (ds,) = [o for o in objects if o["kind"] == "DaemonSet"]
    security = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security["allowPrivilegeEscalation"] is False
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(cm["data"]["config.yaml"])
    binds = {
        str(runtimes.dockerd.socket): {"bind": "/host/run/docker.sock", "mode": "ro"},
        str(runtimes.containerd.socket.parent): {"bind": "/host/run/containerd", "mode": "ro"},
        str(config_dir): {"bind": "/etc/nodeprobe", "mode": "ro"},
        "/proc": {"bind": "/host/proc", "mode": "ro"},
        "/sys/fs/cgroup": {"bind": "/host/sys/fs/cgroup", "mode": "ro"},
    }
    for root in (runtimes.base / "docker" / "root", runtimes.base / "containerd" / "root"):
        binds[str(root)] = {"bind": f"/host{root}", "mode": "ro"}
    status, out = _run_as_the_chart_runs_the_agent(
        client, ds, command=["check", "--config", "/etc/nodeprobe/config.yaml"], binds=binds,
        pid_host=True)
    assert status == 0, out
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    process = [r for r in rows if len(r) > 2 and r[1] == "process"]
    assert {r[0] for r in process} == {"dockerd", "containerd"}, out
    assert all(r[2] == "OK" for r in process), out
    disk = [r for r in rows if len(r) > 2 and r[1] == "disk"]
    assert {r[0] for r in disk} == {"dockerd", "containerd"} and all(r[2] == "OK" for r in disk)


def test_image_reads_the_hosts_journal_where_the_chart_mounts_it(
    built_image: tuple[Any, float], runtimes: Sandbox, tmp_path: Path
) -> None:
    """Ten overlay2 corruption lines of docker.service in five minutes, in journal files written
    by systemd's own writer under a foreign machine id, in the host's /var/log/journal mounted
    as the chart mounts /var/log: the image's systemd reader finds them, and `nodeprobe check`
    with the chart's config and securityContext reports RuntimeStorageCorrupt."""
    client, _ = built_image
    objects = helm.objects(helm.template())
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (ds,) = [o for o in objects if o["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    (journal,) = [v for v in pod["volumes"] if v["name"] == "host-journal"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "host-journal"]
    assert mount["readOnly"] is True
    host_log = tmp_path / "var-log"  # the node's journal.hostPath (/var/log)
    now = time.time()
    write_journal(host_log / "journal",
                  [(now - 240 + 24 * i, "docker.service", CORRUPT) for i in range(10)])
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "config.yaml").write_text(cm["data"]["config.yaml"])
    assert journal["hostPath"]["path"] == "/var/log"
    status, out = _run_as_the_chart_runs_the_agent(
        client, ds, command=["check", "--config", "/etc/nodeprobe/config.yaml", "--json",
                             "--no-process", "--no-containerd"],
        binds={
            str(runtimes.dockerd.socket): {"bind": "/host/run/docker.sock", "mode": "ro"},
            str(config_dir): {"bind": "/etc/nodeprobe", "mode": "ro"},
            str(host_log): {"bind": mount["mountPath"], "mode": "ro"},
        })
    assert status == 1, out
    report = json.loads(out)
    (log,) = [Observation(Runtime(o["runtime"]), Check(o["check"]), Outcome(o["outcome"]),
                          o["latencySeconds"], o["at"], o["detail"], o["values"], o["info"])
              for o in report["observations"] if o["check"] == Check.RUNTIME_LOG]
    assert log.runtime is Runtime.DOCKERD and log.values[Value.LOG_CORRUPTION] == 10, log
    (finding,) = findings([log], load(str(config_dir / "config.yaml")))
    assert finding.reason is Reason.RUNTIME_STORAGE_CORRUPT
    assert report["summary"] == one_line(finding.message)
    assert report["summary"].startswith("dockerd's journal has 10 lines of storage corruption")
    assert "pattern log_corruption" in finding.message and "ABCDEFGH" not in finding.message
