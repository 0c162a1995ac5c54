"""The base install runs the agent, `nodeprobe check` and `kubectl nodeprobe`; the operator's
framework comes only with the `operator` extra (the import-linter contract checks the same
statically, including imports inside functions)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_ONLY = ("kopf", "aiohttp")
"""kopf (the operator extra) and the asyncio HTTP stack it runs on (the kubernetes client 37
installs aiohttp too, but its synchronous API, which the node side uses, never imports it)."""


def _project() -> dict[str, object]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def test_kopf_is_in_the_operator_extra_and_the_test_extra_installs_every_part() -> None:
    project = _project()
    base = " ".join(str(d) for d in project["dependencies"])  # type: ignore[attr-defined]
    extras = project["optional-dependencies"]
    assert "kopf" not in base
    assert any(d.startswith("kopf") for d in extras["operator"])  # type: ignore[index]
    assert "kube-nodeprobe[operator]" in extras["test"]  # type: ignore[index]


def _without_operator_extra(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter where importing kopf or aiohttp fails, as after a
    plain `pip install kube-nodeprobe`."""
    block = textwrap.dedent(f"""\
        import sys
        for name in {OPERATOR_ONLY!r}:
            sys.modules[name] = None  # import raises ImportError
        """)
    return subprocess.run([sys.executable, "-c", block + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)


def test_agent_check_and_plugin_run_without_the_operator_extra(tmp_path: Path) -> None:
    done = _without_operator_extra("""\
        import nodeprobe.commands.agent, nodeprobe.commands.check, nodeprobe.kubectl
        import nodeprobe.agent, nodeprobe.publish.kube
        from nodeprobe import cli, kubectl
        for argv in (["check", "--help"], ["agent", "--help"]):
            try:
                cli.main(argv)
            except SystemExit as e:
                assert e.code == 0, (argv, e.code)
        try:
            kubectl.main(["--version"])
        except SystemExit as e:
            assert e.code == 0, e.code
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("kopf", "aiohttp")
                     and sys.modules[m] is not None))
        """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("[]"), done.stdout


def test_the_operator_without_its_extra_says_how_to_install_it() -> None:
    done = _without_operator_extra("""\
        import importlib.util
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "kopf" else real(name, *a)
        from nodeprobe import cli
        sys.exit(cli.main(["operator"]))
        """)
    assert done.returncode == 2
    assert "pip install 'kube-nodeprobe[operator]'" in done.stderr


def _installed_names(text: str) -> list[str]:
    """The distributions each `pip install` / `pipx install` in `text` names (flags, quotes,
    extras and version specifiers dropped; a comment or the end of inline code ends the line)."""
    names = []
    for args in re.findall(r"\bpipx? install\b([^#\n`|;)]*)", text):
        for word in args.split():
            name = re.split(r"[\[=<>~!]", word.strip("'\""))[0]
            if name and not name.startswith("-"):
                names.append(name)
    return names


def test_no_doc_or_message_tells_users_to_install_pypis_other_nodeprobe() -> None:
    """`nodeprobe` on PyPI is an unrelated project: the distribution is `kube-nodeprobe`."""
    assert _installed_names("run `pip install nodeprobe` or pip install -U 'nodeprobe[x]'") == [
        "nodeprobe", "nodeprobe"]
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "charts").rglob("*.md"), *(ROOT / "charts").rglob("*.txt"),
             *(ROOT / "nodeprobe").rglob("*.py"), ROOT / "Dockerfile"]
    wrong = [f"{path.relative_to(ROOT)}: pip install {name}" for path in files
             for name in _installed_names(path.read_text()) if name == "nodeprobe"]
    assert wrong == []
