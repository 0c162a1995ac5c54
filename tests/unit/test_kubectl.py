"""The plugin's pure parts: durations, columns, which conditions count, the budget arithmetic,
its flags and exit codes, and `kubectl exec` under a deadline (a real child process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nodeprobe import __version__
from nodeprobe.kubectl import age, budget_rows, parse, sick_conditions, table
from nodeprobe.kubectl_check import Exit, check_argv, fallback_code, run_exec, worst


def test_age_reads_like_kubectl() -> None:
    assert [age(s) for s in (-3, 0, 45, 60, 192, 3600, 18240, 86400, 183600)] == [
        "0s", "0s", "45s", "1m", "3m12s", "1h", "5h4m", "1d", "2d3h"]


def test_table_aligns_columns_and_leaves_the_last_one_free() -> None:
    assert table(("A", "BB", "MESSAGE"), [("xxx", "y", "long text  "), ("z", "", "m")]) == (
        "A     BB   MESSAGE\n"
        "xxx   y    long text\n"
        "z          m")


def test_only_nodeprobes_conditions_that_are_not_false_count() -> None:
    node = {"status": {"conditions": [
        {"type": "Ready", "status": "False"},
        {"type": "ContainerRuntimeUnavailable", "status": "True", "reason": "DockerdHung"},
        {"type": "ContainerRuntimeSlow", "status": "Unknown"},
        {"type": "ContainerRuntimeMemoryLeak", "status": "False"},
        {"type": "ContainerRuntimeUnhealthy", "status": "True"},  # NPD's, not ours
    ]}}
    assert [c["type"] for c in sick_conditions(node)] == [
        "ContainerRuntimeUnavailable", "ContainerRuntimeSlow"]
    assert sick_conditions({}) == []


def _nr(policy: str, phase: str, cordoned: bool = False) -> dict[str, Any]:
    return {"spec": {"policy": policy}, "status": {"phase": phase, "cordonedByUs": cordoned}}


def _spec(max_concurrent: object) -> dict[str, Any]:
    return {"triggers": [{"type": "ContainerRuntimeUnavailable", "for": "1m"}],
            "ladder": [{"action": "escalate"}], "maxConcurrent": max_concurrent}


def test_budget_counts_open_episodes_and_escalated_cordons_against_max_concurrent() -> None:
    policies = [
        {"metadata": {"name": "b"}, "spec": _spec("10%"),
         "status": {"matchedNodes": 40, "sickNodes": 3, "message": "waiting"}},
        {"metadata": {"name": "a"}, "spec": _spec(2), "status": {}},
        {"metadata": {"name": "bad"}, "spec": _spec(0), "status": {}},
    ]
    remediations = [
        _nr("b", "Draining", cordoned=True), _nr("b", "Escalated", cordoned=True),
        _nr("b", "Succeeded", cordoned=True), _nr("b", "Failed"), _nr("a", "Pending"),
    ]
    assert budget_rows(policies, remediations) == [
        ["a", "1/2", "0/0", ""],
        ["b", "2/4", "3/40", "waiting"],
        ["bad", "0/invalid", "0/0", ""],
    ]


def test_check_runs_nodeprobe_check_in_the_agent_container_with_the_users_credentials() -> None:
    expected = ["--kubeconfig", "/k", "--context", "prod", "exec", "-n", "nodeprobe",
                "nodeprobe-agent-x", "-c", "agent", "--", "nodeprobe", "check",
                "--config", "/etc/nodeprobe/config.yaml", "--json"]
    for argv in (["check", "node-a", "--kubeconfig", "/k", "--context", "prod", "--json"],
                 ["--kubeconfig", "/k", "--context", "prod", "check", "node-a", "--json"],
                 ["--kubeconfig=/k", "check", "node-a", "--context=prod", "--", "--json"]):
        args = parse(argv)
        assert args.node == "node-a"
        assert check_argv(kubeconfig=args.kubeconfig, context=args.context, namespace="nodeprobe",
                          pod="nodeprobe-agent-x", check_args=args.check_args)[1:] == expected, argv


def test_usage_errors_exit_4_not_argparses_2_which_means_unknown(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in ((["status", "--json"], "unrecognized arguments: --json"),
                          (["status", "-o", "xml"], "expected one of table, wide, json, yaml"),
                          (["check", "-n", "x", "-A", "a"], "exclude each other"),
                          (["check"], "name one NODE or select nodes with -l"),
                          (["describe", "a", "-l", "x=y"], "not both"),
                          (["check", "a", "--exec-timeout", "soon"], "expected seconds")):
        with pytest.raises(SystemExit) as raised:
            parse(argv)
        assert raised.value.code == Exit.ERROR == 4, argv
        assert message in capsys.readouterr().err, argv


def test_flags_kubectl_users_expect() -> None:
    args = parse(["check", "-l", "pool=gpu", "-A", "-o", "wide", "--exec-timeout", "2.5"])
    assert (args.node, args.selector, args.all_namespaces, args.output, args.exec_timeout) == (
        None, "pool=gpu", True, "wide", 2.5)
    args = parse(["status"])
    assert (args.output, args.exec_timeout, args.namespace) == ("table", 15.0, None)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"kubectl-nodeprobe {__version__}"


def test_exit_codes_are_distinct_and_the_worst_node_wins() -> None:
    assert [int(e) for e in Exit] == [0, 1, 2, 3, 4]
    assert worst([0, 2, 1, 0]) == 1
    assert worst([0, 2]) == 2
    assert worst([1, 3]) == 3
    assert worst([3, 4, 1]) == 4
    assert worst([]) == 0


def test_without_a_check_a_true_condition_is_a_problem_and_otherwise_not_checked() -> None:
    assert fallback_code([{"type": "ContainerRuntimeUnavailable", "status": "True"}]) == 1
    assert fallback_code([{"type": "ContainerRuntimeUnavailable", "status": "False"},
                          {"type": "ContainerRuntimeSlow", "status": "Unknown"}]) == 3
    assert fallback_code([]) == 3


def _kubectl(tmp_path: Path, body: str) -> list[str]:
    """A stand-in for kubectl's exec behaviour only where the real one cannot be made to do it
    here: its exit-code and message conventions (the integration tests use the real kubectl)."""
    script = tmp_path / "fake-kubectl.py"
    script.write_text(textwrap.dedent(body))
    return [sys.executable, str(script)]


def test_exec_tells_the_remote_exit_code_from_kubectls_own_failure(tmp_path: Path) -> None:
    remote = run_exec(_kubectl(tmp_path, """\
        import sys
        print("ContainerdHung ...")
        print("command terminated with exit code 1", file=sys.stderr)
        sys.exit(1)
        """), timeout_s=30)
    assert (remote.code, remote.stdout, remote.stderr) == (1, "ContainerdHung ...\n", "")
    own = run_exec(_kubectl(tmp_path, """\
        import sys
        print("error: unable to upgrade connection: container not found", file=sys.stderr)
        sys.exit(1)
        """), timeout_s=30)
    assert own.code is None and "kubectl exec failed (exit 1)" in own.why
    assert "container not found" in own.stderr


def test_exec_that_never_answers_is_killed_at_the_deadline(tmp_path: Path) -> None:
    argv = _kubectl(tmp_path, """\
        import sys, time
        print("partial", flush=True)
        time.sleep(600)
        """)
    result = run_exec(argv, timeout_s=0.5)
    assert result.code is None and result.stdout == "partial\n"
    assert "did not answer within 0.5s" in result.why and "may be hung" in result.why
    assert subprocess.run(["pgrep", "-f", argv[1]], check=False).returncode == 1
