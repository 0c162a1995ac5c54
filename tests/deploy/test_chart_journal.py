"""agent.persistentJournal: the host's journal reaches the runtime-log check read-only, through
mounts that cannot create anything on the node, and the agent's config looks where they are."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodeprobe.config import load
from tools import helm as h

CI = h.CHART / "ci"


def _agent(values: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The agent pod's spec and its ConfigMap's config.yaml, rendered by real helm."""
    objects = h.objects(h.template([values] if values else [], include_crds=False))
    (ds,) = [o for o in objects if o["kind"] == "DaemonSet"]
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o["data"]]
    return ds["spec"]["template"]["spec"], cm["data"]


def _host_paths(pod: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """mountPath -> (host path, volumeMount) for every hostPath volume of the agent."""
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"] if "hostPath" in v}
    (container,) = pod["containers"]
    return {m["mountPath"]: (volumes[m["name"]]["path"], m)
            for m in container["volumeMounts"] if m["name"] in volumes}


def test_the_hosts_var_log_is_mounted_read_only_by_default() -> None:
    pod, _ = _agent(None)
    volume = next(v for v in pod["volumes"] if v["name"] == "host-journal")
    assert volume["hostPath"] == {"path": "/var/log", "type": "Directory"}
    host, mount = _host_paths(pod)["/host/var/log"]
    assert host == "/var/log"
    assert mount["readOnly"] is True


def test_journal_only_mounts_var_log_journal() -> None:
    pod, _ = _agent(CI / "journal-only-values.yaml")
    mounts = _host_paths(pod)
    assert "/host/var/log" not in mounts
    host, mount = mounts["/host/var/log/journal"]
    assert host == "/var/log/journal" and mount["readOnly"] is True


def test_disabled_mounts_nothing_under_var_log() -> None:
    pod, _ = _agent(CI / "persistent-journal-disabled-values.yaml")
    assert "host-journal" not in {v["name"] for v in pod["volumes"]}
    assert not any(host.startswith("/var/log") for host, _ in _host_paths(pod).values())


def _covering_mount(pod: dict[str, Any], in_pod: str) -> tuple[str, dict[str, Any]] | None:
    for mount_path, (host, mount) in _host_paths(pod).items():
        if in_pod == mount_path or in_pod.startswith(mount_path + "/"):
            return host + in_pod.removeprefix(mount_path), mount
    return None


@pytest.mark.parametrize("values", [None, CI / "journal-only-values.yaml"],
                         ids=["defaults", "journal-only"])
def test_the_agent_looks_for_both_journals_where_the_chart_mounts_them(
    values: Path | None, tmp_path: Path
) -> None:
    """Each of runtimeLog.journalDirs, under the config's hostRoot, is the host's own directory
    of that name, seen through a read-only mount."""
    pod, data = _agent(values)
    path = tmp_path / "config.yaml"
    path.write_text(data["config.yaml"])
    config = load(str(path))
    assert config.checks.runtime_log.enabled
    assert set(config.runtime_log.journal_dirs) == {"/var/log/journal", "/run/log/journal"}
    for directory in config.runtime_log.journal_dirs:
        in_pod = os.path.join(config.paths.host_root, directory.lstrip("/"))
        found = _covering_mount(pod, in_pod)
        assert found is not None, f"{in_pod} is not mounted"
        host, mount = found
        assert host == directory and mount["readOnly"] is True, (in_pod, host, mount)


def test_disabled_leaves_the_volatile_journal_under_run() -> None:
    pod, data = _agent(CI / "persistent-journal-disabled-values.yaml")
    cfg = yaml.safe_load(data["config.yaml"])
    assert _covering_mount(pod, cfg["paths"]["hostRoot"] + "/run/log/journal") is not None
    assert _covering_mount(pod, cfg["paths"]["hostRoot"] + "/var/log/journal") is None


def test_another_host_path_is_refused(tmp_path: Path) -> None:
    """Only directories every node has (or that a node pool promises): never one helm would
    pass to kubelet to create."""
    values = tmp_path / "v.yaml"
    values.write_text("agent:\n  persistentJournal:\n    hostPath: /var/log/nodeprobe\n")
    with pytest.raises(h.HelmError, match="persistentJournal"):
        h.template([values])
