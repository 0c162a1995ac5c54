"""The config tree: promised defaults, loading, overrides, and errors that name file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nodeprobe.config import Config, ConfigError, load, parse_duration, reference_table
from nodeprobe.model import Check

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def test_promised_defaults() -> None:
    c = Config.defaults()
    assert c.docker.enabled and c.docker.socket == "auto"
    assert c.containerd.enabled and c.containerd.socket == "auto"
    assert c.containerd.require_network_ready is False  # kubelet already reports it
    ping = c.checks.docker_ping
    assert (ping.enabled, ping.interval, ping.deadline, ping.slow) == (True, 2.0, 3.0, 1.0)
    assert c.checks.docker_info.interval == 30.0
    assert c.checks.docker_version.interval == 5.0
    assert c.checks.cri_status.interval == 5.0
    assert c.checks.cri_version.interval == 10.0
    assert c.checks.cri_image_fs_info.interval == 30.0
    assert c.checks.process.interval == 15.0
    assert c.checks.canary.enabled is False
    assert (c.judge.raise_after, c.judge.clear_after, c.judge.slow_raise_after) == (2, 3, 5)
    assert c.judge.leak.window == 3600.0 and c.judge.leak.min_span == 600.0
    assert c.judge.leak.memory.ceiling == 2 * 2**30
    assert c.paths.proc_root == "/proc" and c.paths.cgroup_root == "/sys/fs/cgroup"
    assert c.kubernetes.heartbeat == 300.0
    assert (c.metrics.address, c.metrics.port) == ("0.0.0.0", 9103)
    assert c.repair.enabled is False
    assert c.repair.restart_command.docker == (
        "nsenter",
        "-t",
        "1",
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "--",
        "systemctl",
        "restart",
        "docker",
    )


def test_default_hang_detection_under_ten_seconds() -> None:
    """Worst case: hang starts just after a call; next call starts within one interval."""
    c = Config.defaults()
    for check in (Check.DOCKER_PING, Check.CRI_LIST_POD_SANDBOX, Check.CRI_LIST_CONTAINERS):
        s = c.checks.for_check(check)
        worst = s.interval + s.deadline + (c.judge.raise_after - 1) * max(s.interval, s.deadline)
        assert worst < 10.0, check


def test_every_check_has_settings() -> None:
    c = Config.defaults()
    for check in Check:
        assert c.checks.for_check(check).deadline > 0


def test_load_without_file_is_defaults() -> None:
    assert load(None) == Config.defaults()


def test_load_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
nodeName: node-1
docker:
  socket: /tmp/np/docker.sock
checks:
  dockerPing: {interval: 500ms, deadline: 2, slow: "0.2s"}
  canary: {enabled: true}
judge:
  raiseAfter: 3
  leak:
    memory: {ceiling: 512Mi, minGrowthPerHour: 10Mi}
repair:
  restartCommand: {docker: [systemctl, restart, docker]}
""",
    )
    c = load(path)
    assert c.node_name == "node-1"
    assert c.docker.socket == "/tmp/np/docker.sock" and c.docker.enabled
    assert (c.checks.docker_ping.interval, c.checks.docker_ping.deadline) == (0.5, 2.0)
    assert c.checks.docker_ping.slow == pytest.approx(0.2)
    assert c.checks.canary.enabled and c.checks.canary.interval == 300.0
    assert c.judge.raise_after == 3 and c.judge.clear_after == 3
    assert c.judge.leak.memory.ceiling == 512 * 2**20
    assert c.judge.leak.memory.min_growth_per_hour == 10 * 2**20
    assert c.judge.leak.memory.percent_of_node_memory == 25.0
    assert c.repair.restart_command.docker == ("systemctl", "restart", "docker")


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, "# nothing\n")) == Config.defaults()


def test_overrides_win_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics: {port: 9200}\nchecks: {dockerPing: {deadline: 5s}}\n")
    c = load(
        path,
        overrides={
            "metrics.port": 9300,
            "checks.dockerPing.deadline": "2s",
            "nodeName": "from-env",
        },
    )
    assert c.metrics.port == 9300
    assert c.checks.docker_ping.deadline == 2.0
    assert c.node_name == "from-env"


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("3s", 3.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        (2, 2.0),
        (0.25, 0.25),
        ("1.5s", 1.5),
        ("10", 10.0),
    ],
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)


def message(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(info.value).startswith(path + ": ")
    return str(info.value)[len(path) + 2 :]


def test_syntax_error_names_line(tmp_path: Path) -> None:
    text = message(tmp_path, "docker:\n  enabled: true\n  socket: [unclosed\nmetrics: {}\n")
    assert re.match(r"line \d+, column \d+: invalid YAML", text), text


def test_unknown_key_named(tmp_path: Path) -> None:
    text = message(tmp_path, "checks:\n  dockerPing:\n    dedline: 3s\n")
    assert text.startswith("checks.dockerPing.dedline: unknown key")
    assert "deadline" in text  # the known keys are listed, so the typo is obvious


def test_snake_case_key_is_unknown(tmp_path: Path) -> None:
    assert message(tmp_path, "judge: {raise_after: 2}\n").startswith("judge.raise_after: unknown")


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "checks: {dockerPing: {deadline: -1s}}",
            "checks.dockerPing.deadline: must be a positive duration like '3s', got '-1s'",
        ),
        (
            "checks: {criStatus: {interval: 0}}",
            "checks.criStatus.interval: must be a positive duration like '3s', got 0",
        ),
        (
            "checks: {criStatus: {interval: soon}}",
            "checks.criStatus.interval: must be a positive duration like '3s', got 'soon'",
        ),
        (
            "docker: {enabled: yes please}",
            "docker.enabled: must be true or false, got 'yes please'",
        ),
        ("judge: {raiseAfter: 0}", "judge.raiseAfter: must be at least 1, got 0"),
        ("judge: {raiseAfter: 2.5}", "judge.raiseAfter: must be a whole number, got 2.5"),
        ("metrics: {port: 70000}", "metrics.port: must be a port 0-65535, got 70000"),
        (
            "judge: {leak: {memory: {ceiling: lots}}}",
            "judge.leak.memory.ceiling: must be a size like '2Gi' or a number, got 'lots'",
        ),
        (
            "judge: {leak: {fds: {minRelativeGrowth: 2}}}",
            "judge.leak.fds.minRelativeGrowth: must be a fraction from 0 to 1, got 2",
        ),
        (
            "repair: {rebootCommand: reboot}",
            "repair.rebootCommand: must be a non-empty list of strings (argv), got 'reboot'",
        ),
        ("docker: true", "docker: must be a mapping of keys, got True"),
        ("- a\n- b", "top level: must be a mapping of keys, got ['a', 'b']"),
        (
            "judge: {leak: {minSpan: 2h}}",
            "judge.leak.minSpan: must not exceed judge.leak.window (7200s > 3600s)",
        ),
        (
            "docker: {enabled: false}\ncontainerd: {enabled: false}",
            "docker.enabled, containerd.enabled: at least one must be true",
        ),
    ],
)
def test_bad_values_name_key_path(tmp_path: Path, yaml_text: str, expected: str) -> None:
    assert message(tmp_path, yaml_text + "\n") == expected


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"nope.yaml: cannot read: No such file"):
        load(path)


def test_bad_override_names_source() -> None:
    with pytest.raises(ConfigError, match=r"^overrides: metrics.port: must be a whole number"):
        load(None, overrides={"metrics.port": "http"})


def test_config_is_frozen() -> None:
    c = Config.defaults()
    with pytest.raises(AttributeError):
        c.node_name = "x"  # type: ignore[misc]


def test_doc_is_current() -> None:
    """docs/configuration.md embeds reference_table() verbatim; regenerate it when this fails:
    .venv/bin/python -c 'import nodeprobe.config as c; print(c.reference_table())'."""
    assert reference_table() in DOC.read_text(), "docs/configuration.md is out of date"


def test_doc_lists_every_key() -> None:
    table = reference_table()
    for key in (
        "nodeName",
        "checks.dockerPing.deadline",
        "judge.leak.memory.percentOfNodeMemory",
        "repair.restartCommand.containerd",
        "kubernetes.eventAggregation",
    ):
        assert f"| `{key}` |" in table


def _leaf_names(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted camelCase key, field name) of every leaf of the tree."""
    import dataclasses

    from nodeprobe.config import camel

    found = []
    for spec in dataclasses.fields(cls):
        key = f"{prefix}{camel(spec.name)}"
        if spec.metadata["kind"] == "section":
            found += _leaf_names(type(getattr(cls(), spec.name)), key + ".")
        else:
            found.append((key, spec.name))
    return found


def test_every_config_key_is_read_by_some_code() -> None:
    """A documented key that no code reads is a lie: each leaf's field must be read as `.name`
    somewhere in the package outside the tree and its loader (which only build it)."""
    import re

    from nodeprobe.config import Config

    package = Path(__file__).resolve().parents[2] / "nodeprobe"
    skip = {package / "config" / "tree.py", package / "config" / "loader.py"}
    source = "\n".join(p.read_text() for p in package.rglob("*.py") if p not in skip)
    unread = [key for key, name in _leaf_names(Config) if not re.search(rf"\.{name}\b", source)]
    assert unread == [], f"config keys no code reads: {unread}"


def test_config_and_policies_share_one_duration_grammar() -> None:
    from nodeprobe.operator.grammar import PolicyError
    from nodeprobe.operator.grammar import parse_duration as policy_duration

    assert parse_duration("1h30m") == policy_duration("1h30m", where="x") == 5400.0
    assert parse_duration("2d") == 172800.0
    with pytest.raises(ValueError, match="negative"):
        parse_duration("-3s")
    with pytest.raises(PolicyError, match=r"^spec\.for: expected a duration"):
        policy_duration("3 parsecs", where="spec.for")


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("kubernetes: {heartbeat: 1ms}", "kubernetes.heartbeat: must be at least 10s, got '1ms'"),
    ("checks: {dockerPing: {interval: 0.000001}}",
     "checks.dockerPing.interval: must be at least 100ms, got 1e-06"),
    ("checks: {criStatus: {deadline: 0.000001}}",
     "checks.criStatus.deadline: must be at least 100ms, got 1e-06"),
    ("checks: {canary: {interval: 50ms}}", "checks.canary.interval: must be at least 100ms"),
    ("kubernetes: {eventAggregation: 10ms}",
     "kubernetes.eventAggregation: must be at least 1s"),
    ("kubernetes: {connectionMaxIdle: 100ms}",
     "kubernetes.connectionMaxIdle: must be at least 1s"),
    ("kubernetes: {connectionMaxIdle: 90s}",
     "kubernetes.connectionMaxIdle: must be at most 85s, below kube-apiserver's 90 s"),
    ("disk: {usageInterval: 1s}", "disk.usageInterval: must be at least 60s"),
    ("runtimeLog: {window: 10ms}", "runtimeLog.window: must be at least 1s"),
    ("judge: {horizon: 10ms}", "judge.horizon: must be at least 1s"),
    ("judge: {recheckInterval: 1ms}", "judge.recheckInterval: must be at least 100ms"),
    ("judge: {recheckFor: 10ms}", "judge.recheckFor: must be at least 1s"),
    ("judge: {imageFsStaleAfter: 1s}", "judge.imageFsStaleAfter: must be at least 10s"),
    ("judge: {restart: {window: 1ms}}", "judge.restart.window: must be at least 1s"),
    ("judge: {restart: {quiet: 1ms}}", "judge.restart.quiet: must be at least 1s"),
    ("judge: {restart: {downGrace: 1ms}}", "judge.restart.downGrace: must be at least 1s"),
    ("judge: {leak: {window: 1s, minSpan: 1s}}", "judge.leak.window: must be at least 60s"),
    ("judge: {leak: {minSpan: 1ms}}", "judge.leak.minSpan: must be at least 1s"),
    ("judge: {leak: {longWindow: 1s}}", "judge.leak.longWindow: must be at least 60s"),
    ("judge: {leak: {longMinSpan: 1ms}}", "judge.leak.longMinSpan: must be at least 1s"),
    ("checks: {canary: {cleanupDeadline: 1ms}}",
     "checks.canary.cleanupDeadline: must be at least 1s"),
])
def test_every_duration_has_a_floor(tmp_path: Path, yaml_text: str, expected: str) -> None:
    """issue 18: `heartbeat: 1ms` meant a status write every sync, `interval: 0.000001` a hot
    loop. The floors are pinned here and shown in docs/configuration.md."""
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, yaml_text))
    assert expected in str(e.value), str(e.value)
    assert str(e.value).startswith(str(tmp_path / "config.yaml") + ": ")


def test_floors_are_pinned() -> None:
    import dataclasses

    def floors(cls: type, prefix: str = "") -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for f in dataclasses.fields(cls):
            if f.metadata["kind"] == "section":
                out.update(floors(type(getattr(cls(), f.name)), f"{prefix}{f.name}."))
            elif f.metadata["kind"].startswith("duration"):
                out[prefix + f.name] = f.metadata.get("floor")
        return out

    found = floors(Config)
    assert found["kubernetes.heartbeat"] == 10.0
    assert found["kubernetes.connection_max_idle"] == 1.0
    assert found["checks.docker_ping.interval"] == found["checks.docker_ping.deadline"] == 0.1
    per_check = {k: v for k, v in found.items()
                 if k.startswith("checks.") and k.endswith((".interval", ".deadline"))}
    assert len(per_check) >= 2 * len(Check) - 2 and set(per_check.values()) == {0.1}
    assert "| `kubernetes.heartbeat` | duration ≥ 10s |" in reference_table()
    assert [key for key, floor in found.items() if floor is None] == []
    assert found["judge.recheck_interval"] == 0.1
    assert found["judge.horizon"] == found["judge.recheck_for"] == 1.0
    assert found["judge.image_fs_stale_after"] == 10.0
    assert found["judge.restart.window"] == found["judge.restart.quiet"] == 1.0
    assert found["judge.restart.down_grace"] == 1.0
    assert found["judge.leak.window"] == found["judge.leak.long_window"] == 60.0
    assert found["judge.leak.min_span"] == found["judge.leak.long_min_span"] == 1.0
    assert found["checks.canary.cleanup_deadline"] == 1.0


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("metrics: {address: not an address}",
     "metrics.address: must be an IP address to listen on, like 0.0.0.0, :: or 127.0.0.1"),
    ("paths: {procRoot: host/proc}", "paths.procRoot: must be an absolute path, got 'host/proc'"),
    ("paths: {hostRoot: ''}", "paths.hostRoot: must be an absolute path, got ''"),
    ("disk: {dockerRoot: var/lib/docker}", "disk.dockerRoot: must be an absolute path"),
    ("docker: {socket: docker.sock}",
     "docker.socket: must be an absolute path (or auto), got 'docker.sock'"),
    ("repair: {ledger: ledger.json}",
     "repair.ledger: must be an absolute path (or empty: off), got 'ledger.json'"),
])
def test_addresses_and_paths_are_validated(tmp_path: Path, yaml_text: str,
                                           expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, yaml_text))
    assert expected in str(e.value), str(e.value)


def test_good_addresses_and_paths_load(tmp_path: Path) -> None:
    c = load(write(tmp_path, "metrics: {address: '::'}\npaths: {procRoot: /host/proc}\n"
                             "repair: {ledger: ''}\ncontainerd: {socket: /run/c.sock}\n"))
    assert (c.metrics.address, c.paths.proc_root, c.repair.ledger) == ("::", "/host/proc", "")


def test_duplicate_yaml_keys_are_an_error_naming_file_and_key(tmp_path: Path) -> None:
    """issue 18: the last of two equal keys silently won."""
    text = "checks:\n  dockerPing:\n    interval: 5s\n    deadline: 1s\n    interval: 1s\n"
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text))
    assert str(e.value) == (f"{tmp_path / 'config.yaml'}: checks.dockerPing.interval: duplicate "
                            "key (line 5); YAML would keep only the last one, so remove one of "
                            "them")
    with pytest.raises(ConfigError, match=r"config.yaml: kubernetes: duplicate key \(line 2\)"):
        load(write(tmp_path, "kubernetes: {}\nkubernetes: {heartbeat: 1m}\n"))
