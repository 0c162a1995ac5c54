"""The alert rules pass `promtool check rules` and their unit tests (fire and don't-fire cases).

The rules file is the one the chart's PrometheusRule embeds; the rendered PrometheusRule's groups
are checked by promtool too, so what is deployed is what is tested.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from nodeprobe.model import REASONS, ConditionType
from tools import helm as h

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
RULES = h.CHART / "files" / "nodeprobe.rules.yaml"
ALERTS = ("NodeprobeRuntimeHung", "NodeprobeRuntimeDown", "NodeprobeRuntimeLeaking",
          "NodeprobeAgentNotReporting", "NodeprobeAgentAbsent", "NodeprobeRemediationFailed",
          "NodeprobeRemediationEscalated", "NodeprobeOperatorStuck",
          "NodeprobeNodesWaitingOnBudget")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (make deps does)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, check=False,
                          timeout=120)


def test_rules_file_passes_promtool_check() -> None:
    proc = _promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_unit_tests_pass() -> None:
    proc = _promtool("test", "rules", str(HERE / "alerts.test.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rendered_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    objects = h.objects(h.template([h.CHART / "ci" / "prometheusrule-values.yaml"]))
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    path = tmp_path / "rendered.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = _promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_promised_alert_exists_and_is_unit_tested() -> None:
    rules = yaml.safe_load(RULES.read_text())
    names = {rule["alert"] for g in rules["groups"] for rule in g["rules"]}
    assert set(ALERTS) <= names
    tests = (HERE / "alerts.test.yaml").read_text()
    for name in names:
        assert f"alertname: {name}" in tests, f"{name} has no promtool unit test"


def test_alert_reasons_are_real_reasons() -> None:
    """A renamed reason in model.py must not silently stop an alert from matching."""
    known = {str(reason) for reasons in REASONS.values() for reason in reasons}
    text = RULES.read_text()
    for word in ("DockerdHung", "ContainerdHung", "DockerdDown", "ContainerdDown",
                 "CRIRuntimeNotReady"):
        assert word in text and word in known
    for ctype in ConditionType:
        assert f'condition="{ctype}"' in text


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^a-z0-9 -]", "", title).replace(" ", "-"))
    return found


def test_there_is_a_runbook_per_condition_type() -> None:
    for ctype in ConditionType:
        runbook = DOCS / "runbooks" / f"{ctype}.md"
        assert runbook.is_file(), f"{runbook} is missing"
        text = runbook.read_text()
        for section in ("## What it means", "## Confirm on the node", "## What to do"):
            assert section in text, f"{runbook.name}: no '{section}'"


def test_every_alert_links_to_an_existing_runbook_section() -> None:
    rules = yaml.safe_load(RULES.read_text())
    prefix = "https://github.com/nodeprobe/nodeprobe/blob/main/docs/"
    for group in rules["groups"]:
        for rule in group["rules"]:
            url = rule["annotations"]["runbook_url"]
            assert url.startswith(prefix), url
            rel, _, anchor = url[len(prefix):].partition("#")
            doc = DOCS / rel
            assert doc.is_file(), f"{rule['alert']}: {doc} does not exist"
            if anchor:
                assert anchor in _anchors(doc.read_text()), f"{rule['alert']}: no #{anchor}"
