"""What the packaged chart carries besides templates: README with a current values table,
LICENSE, Artifact Hub metadata that matches the chart (real `helm package` and `helm show`)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import yaml

from tools import chart_readme
from tools import helm as h

ROOT = Path(__file__).resolve().parents[2]


def test_the_values_table_in_the_chart_readme_is_current() -> None:
    readme = (h.CHART / "README.md").read_text()
    assert readme == chart_readme.render(readme, chart_readme.table()), (
        "charts/nodeprobe/README.md is stale: run `python -m tools.chart_readme write`")


def test_every_documented_value_is_in_the_table_with_its_default() -> None:
    rows = {key: (default, text) for key, default, text in
            chart_readme.rows((h.CHART / "values.yaml").read_text())}
    assert rows["image.digest"][1].startswith("When set (sha256:...)")
    assert rows["agent.tolerations"] == ('[{"operator": "Exists"}]',
                                         "A node agent must run on every node, tainted or not.")
    assert rows["agent.resources.limits.memory"] == ('"192Mi"', "")
    # a documented map is one row, its children are not repeated
    assert "agent.ownNodeOnly" in rows and "agent.ownNodeOnly.enabled" not in rows


def test_the_license_is_apache_2_at_the_root_and_in_the_chart() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert (h.CHART / "LICENSE").read_text() == text


def test_the_packaged_chart_carries_readme_license_and_no_ci_values(tmp_path: Path) -> None:
    h.helm("package", str(h.CHART), "-d", str(tmp_path))
    [package] = tmp_path.glob("nodeprobe-*.tgz")
    with tarfile.open(package) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames()}
    assert {"README.md", "LICENSE", "values.schema.json", "Chart.yaml"} <= names
    assert not any(n.startswith("ci/") for n in names)
    shown = h.helm("show", "readme", str(package)).stdout
    assert shown.startswith("# nodeprobe") and "| `image.digest` |" in shown


def test_artifact_hub_metadata_matches_the_chart() -> None:
    chart = yaml.safe_load((h.CHART / "Chart.yaml").read_text())
    assert chart["icon"].startswith("https://")
    assert (h.CHART / chart["icon"].rsplit("/", 1)[1]).is_file()
    assert chart["sources"] and chart["maintainers"]
    notes = chart["annotations"]
    assert notes["artifacthub.io/license"] == "Apache-2.0"
    [image] = yaml.safe_load(notes["artifacthub.io/images"])
    values = yaml.safe_load((h.CHART / "values.yaml").read_text())
    assert image["image"] == f"{values['image']['repository']}:{chart['appVersion']}"
    crds = {c["name"] for c in yaml.safe_load(notes["artifacthub.io/crds"])}
    assert crds == {yaml.safe_load(p.read_text())["metadata"]["name"]
                    for p in (h.CHART / "crds").glob("*.yaml")}
