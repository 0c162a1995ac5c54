"""RuntimeLogProbe on real journal files (tests/harness/journal.py: written by Debian's
systemd-journal-remote, laid out as the host keeps them), read through the agent's own wiring
(runtime_log_probes) and systemd's reader."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nodeprobe.commands.common import Endpoints, runtime_log_probes
from nodeprobe.config import Config, load
from nodeprobe.judge.degraded import findings
from nodeprobe.model import Check, Outcome, Reason, Runtime, Value
from nodeprobe.probes.runtime_log import RuntimeLogProbe
from tests.harness.journal import BENIGN, CORRUPT, write_journal


def config_for(journal: Path) -> Config:
    return load(None, overrides={"paths.hostRoot": "/", "runtimeLog.journalDirs": [str(journal)]})


def docker_log_probe(config: Config) -> RuntimeLogProbe:
    probes = runtime_log_probes(config, Endpoints(sockets={Runtime.DOCKERD: "/x/docker.sock"}))
    assert len(probes) == 1 and isinstance(probes[0], RuntimeLogProbe)
    return probes[0]


def test_ten_corruption_lines_in_five_minutes_raise_with_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    burst = [(now - 240 + 24 * i, "docker.service", CORRUPT) for i in range(10)]
    noise = [(now - 200, "docker.service", BENIGN), (now - 100, "containerd.service", CORRUPT)]
    write_journal(tmp_path, sorted(burst + noise))
    config = config_for(tmp_path)
    probe = docker_log_probe(config)
    obs = probe.run(Check.RUNTIME_LOG, deadline_s=5, slow_s=5)
    assert obs.outcome is Outcome.OK, obs.detail
    assert obs.values[Value.LOG_CORRUPTION] == 10  # containerd's line is containerd's
    assert obs.values[Value.LOG_EXHAUSTION] == 0
    (finding,) = findings([obs], config)
    assert finding.reason is Reason.RUNTIME_STORAGE_CORRUPT
    assert "10 lines of storage corruption" in finding.message
    assert "pattern log_corruption" in finding.message
    # never the line itself (paths, pod UIDs): that goes only to the agent's log
    assert "readlink" not in finding.message and "ABCDEFGH" not in finding.message
    assert "ABCDEFGH" in caplog.text
    assert "remove the broken layer" in finding.message

    # read again: nothing new, nothing counted twice
    again = probe.run(Check.RUNTIME_LOG, deadline_s=5, slow_s=5)
    assert again.values[Value.LOG_CORRUPTION] == 10 and again.detail.startswith("0 new")


def test_the_same_lines_spread_over_a_day_raise_nothing(tmp_path: Path) -> None:
    now = time.time()
    spread = [(now - 86400 + 9590 * i, "docker.service", CORRUPT) for i in range(10)]
    write_journal(tmp_path, spread)
    config = config_for(tmp_path)
    obs = docker_log_probe(config).run(Check.RUNTIME_LOG, deadline_s=5, slow_s=5)
    assert obs.outcome is Outcome.OK
    assert obs.values[Value.LOG_CORRUPTION] <= 1
    assert findings([obs], config) == []


def test_new_files_are_read_on_and_old_matches_leave_the_window(tmp_path: Path) -> None:
    clock = [time.time()]
    write_journal(tmp_path, [(clock[0] - 10, "docker.service", BENIGN)])
    probe = RuntimeLogProbe(Runtime.DOCKERD, journal_dirs=[str(tmp_path)],
                            units=["docker.service"], window_s=300, clock=lambda: clock[0])
    assert probe.run(Check.RUNTIME_LOG, deadline_s=5, slow_s=5).values[Value.LOG_EXHAUSTION] == 0
    write_journal(tmp_path, [(clock[0] - 5 + i * 0.1, "docker.service",
                              "write /var/lib/docker/tmp/x: no space left on device")
                             for i in range(12)])
    config = config_for(tmp_path)
    obs = probe.run(Check.RUNTIME_LOG, deadline_s=5, slow_s=5)
    assert obs.values[Value.LOG_EXHAUSTION] == 12
    assert findings([obs], config)[0].reason is Reason.RUNTIME_RESOURCES_EXHAUSTED
    clock[0] += 301
    later = probe.run(Check.RUNTIME_LOG, deadline_s=5, slow_s=5)
    assert later.values[Value.LOG_EXHAUSTION] == 0
    assert findings([later], config) == []


def test_no_entries_of_the_units_means_no_probe(tmp_path: Path) -> None:
    write_journal(tmp_path, [(time.time(), "sshd.service", CORRUPT)])
    assert runtime_log_probes(config_for(tmp_path), Endpoints(
        sockets={Runtime.DOCKERD: "/x/docker.sock"})) == []
