"""An umbrella chart with nodeprobe as a dependency, the way a platform team bundles it: a
`condition:` on `nodeprobe.enabled` and `global` values Helm passes to every subchart."""

from __future__ import annotations

from pathlib import Path

import yaml

from tools import helm as h


def umbrella_chart(base: Path, *, enabled: bool = True) -> Path:
    """Write the umbrella chart under `base` and vendor nodeprobe with `helm dependency build`."""
    chart = yaml.safe_load((h.CHART / "Chart.yaml").read_text())
    root = base / "platform"
    root.mkdir(parents=True)
    (root / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0",
        "dependencies": [{"name": "nodeprobe", "version": chart["version"],
                          "repository": f"file://{h.CHART}",
                          "condition": "nodeprobe.enabled"}]}))
    (root / "values.yaml").write_text(yaml.safe_dump({
        "global": {"imageRegistry": "mirror.example.com", "storageClass": "fast",
                   "imagePullSecrets": []},
        "nodeprobe": {"enabled": enabled, "operator": {"replicas": 2}},
    }))
    h.helm("dependency", "build", str(root))
    return root
