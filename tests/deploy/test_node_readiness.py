"""The NodeReadinessRule in docs/node-readiness.md keys on nodeprobe's own condition with its
healthy status, and targets the nodes the chart's agent runs on. (The controller itself is not
served by the Go module proxy; the doc says so.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from nodeprobe.model import ConditionType, Status
from tools import helm as h

DOC = Path(__file__).resolve().parents[2] / "docs" / "node-readiness.md"


def _rule() -> dict[str, object]:
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
               if "NodeReadinessRule" in b]
    rule: dict[str, object] = yaml.safe_load(block)
    return rule


def test_the_rule_keys_on_nodeprobes_conditions_with_their_healthy_status() -> None:
    rule = _rule()
    assert (rule["apiVersion"], rule["kind"]) == ("readiness.node.x-k8s.io/v1alpha1",
                                                  "NodeReadinessRule")
    spec = rule["spec"]
    assert isinstance(spec, dict)
    assert spec["conditions"] == [{"type": str(ConditionType.UNAVAILABLE),
                                   "requiredStatus": str(Status.FALSE)}]
    assert spec["taint"]["effect"] == "NoSchedule"
    assert spec["taint"]["key"].startswith("readiness.k8s.io/")
    assert spec["enforcementMode"] == "continuous"
    assert spec["dryRun"] is True, "the documented first step is a dry run"


def test_the_rule_selects_the_nodes_the_agent_runs_on() -> None:
    values = yaml.safe_load((h.CHART / "values.yaml").read_text())
    spec = _rule()["spec"]
    assert isinstance(spec, dict)
    assert spec["nodeSelector"]["matchLabels"] == values["agent"]["nodeSelector"]
    assert {"operator": "Exists"} in values["agent"]["tolerations"], (
        "the agent must tolerate the rule's taint")
