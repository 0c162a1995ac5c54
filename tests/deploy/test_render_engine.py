"""tools/render behaves like `helm template` on the features charts rely on.

Each case is a tiny chart written by the test, so a difference from helm shows up here rather
than as a puzzling diff in the real chart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tools import render as r


def _chart(tmp_path: Path, templates: dict[str, str], values: str = "",
           files: dict[str, str] | None = None) -> Path:
    chart = tmp_path / "mini"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: mini\nversion: 1.2.3\nappVersion: '4.5'\n")
    (chart / "values.yaml").write_text(values)
    (chart / "values.schema.json").write_text('{"type": "object"}')
    for name, text in templates.items():
        (chart / "templates" / name).write_text(text)
    for name, text in (files or {}).items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)
    return chart


def _values_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_values_merge_like_helm(tmp_path: Path) -> None:
    chart = _chart(tmp_path, {}, "a: {b: 1, c: 2, d: {e: 3}}\nlist: [1, 2]\n")
    over = _values_file(tmp_path, "o.yaml", "a: {c: 20, d: null}\nlist: [9]\n")
    assert r.merged_values(chart, [over]) == {"a": {"b": 1, "c": 20}, "list": [9]}


def test_builtin_objects_and_helpers(tmp_path: Path) -> None:
    chart = _chart(tmp_path, {
        "_h.tpl": '{{- define "mini.greet" -}}hi {{ .name }}{{- end -}}',
        "cm.yaml": (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
            "  namespace: {{ .Release.Namespace }}\ndata:\n"
            "  chart: {{ .Chart.Name }}-{{ .Chart.Version }}-{{ .Chart.AppVersion }}\n"
            "  kube: {{ .Capabilities.KubeVersion.Major | quote }}\n"
            "  greet: {{ include \"mini.greet\" (dict \"name\" \"x\") }}\n"
            "  tpl: {{ tpl .Values.t . }}\n"
            "  missing: '{{ .Values.nope }}'\n"
            "  file: {{ .Files.Get \"files/a.txt\" | trim }}\n"
            "  yaml: |\n    {{- toYaml .Values.obj | nindent 4 }}\n"
        ),
    }, "t: '{{ .Release.Name }}-tpl'\nobj: {z: 1, a: [x], m: {k: v}}\n",
        files={"files/a.txt": "from a file\n"})
    (cm,) = r.render(chart, include_crds=False).objects
    data = cm["data"]
    assert cm["metadata"] == {"name": r.RELEASE, "namespace": r.NAMESPACE}
    assert data["chart"] == "mini-1.2.3-4.5"
    assert data["kube"] == "1"
    assert data["greet"] == "hi x"
    assert data["tpl"] == f"{r.RELEASE}-tpl"
    assert data["missing"] == ""  # helm blanks "<no value>"
    assert data["file"] == "from a file"
    assert data["yaml"] == "a:\n- x\nm:\n  k: v\nz: 1\n"  # keys sorted, as helm's toYaml


def test_required_and_fail_stop_rendering(tmp_path: Path) -> None:
    chart = _chart(tmp_path, {"x.yaml": '{{ required "set .Values.must" .Values.must }}'})
    with pytest.raises(r.RenderError, match=r"set \.Values\.must"):
        r.render(chart)


def test_output_is_split_sorted_in_install_order_and_skips_partials_and_notes(
    tmp_path: Path,
) -> None:
    chart = _chart(tmp_path, {
        "a.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\n"
                  "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\n# empty\n",
        "b.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n",
        "_p.tpl": "apiVersion: v1\nkind: Secret\nmetadata: {name: never}\n",
        "NOTES.txt": "just notes",
    }, files={"crds/c.yaml": "apiVersion: apiextensions.k8s.io/v1\n"
                             "kind: CustomResourceDefinition\nmetadata: {name: c}\n"})
    text = r.render(chart).text
    kinds = [d["kind"] for d in yaml.safe_load_all(text) if d]
    assert kinds == ["CustomResourceDefinition", "Namespace", "ServiceAccount", "Deployment"]
    assert "# Source: mini/templates/a.yaml" in text
    assert "just notes" not in text
    assert r.render(chart, notes=True).text == "just notes"


def test_template_syntax_error_names_the_file(tmp_path: Path) -> None:
    chart = _chart(tmp_path, {"bad.yaml": "{{ if }}"})
    with pytest.raises(r.RenderError, match=r"bad\.yaml"):
        r.render(chart)


def test_cli_reports_errors_without_a_traceback(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tools.render.__main__ import main

    assert main(["-f", str(tmp_path / "missing.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("render: values file") and "Traceback" not in err
    bad = _values_file(tmp_path, "bad.yaml", "agent: {repiar: {}}\n")
    assert main(["-f", str(bad), "--validate"]) == 1
    assert "'repiar' was unexpected" in capsys.readouterr().err
    assert main(["--check-manifests"]) == 0


def test_sync_crds_copies_changes_and_drops_removed(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.yaml").write_text("a: 2\n")
    chart = _chart(tmp_path, {}, files={"crds/a.yaml": "a: 1\n", "crds/gone.yaml": "x: 1\n"})
    copied = r.sync_crds(chart, source)
    assert [p.name for p in copied] == ["a.yaml"]
    assert sorted(p.name for p in (chart / "crds").iterdir()) == ["a.yaml"]
    assert (chart / "crds" / "a.yaml").read_text() == "a: 2\n"
    assert r.sync_crds(chart, source) == []


def test_kube_version_outside_the_charts_range_is_refused() -> None:
    import subprocess

    args = [str(r.renderer()), "-chart", str(r.CHART)]
    too_old = subprocess.run([*args, "-kube-version", "v1.24.3"], capture_output=True,
                             text=True, check=False)
    assert too_old.returncode == 1
    assert "incompatible with Kubernetes v1.24.3" in too_old.stderr
    ok = subprocess.run([*args, "-kube-version", "v1.30.1"], capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0, ok.stderr
