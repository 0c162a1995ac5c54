"""The project's image, built from its Dockerfile with the real dockerd, offline.

No registry is reachable, so the base is a debootstrapped bookworm imported into the dockerd
(tests/harness/baseimage.py) and the dependencies come from a wheelhouse downloaded on the host.
The build runs with network "none": nothing in it may reach out. Used by tests/deploy/test_image.py
and by the real node (imported into its containerd from a `docker save`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from docker.utils.build import exclude_paths

from tests.harness import baseimage

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "nodeprobe-test/nodeprobe:test"


class ImageBuildError(RuntimeError):
    """`docker build` of the Dockerfile failed; the message has the end of its log."""


def context(tmp: Path) -> Path:
    """The files `docker build .` would send (per .dockerignore), plus the wheelhouse."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    ctx = tmp / "ctx"
    for rel in sorted(exclude_paths(str(ROOT), patterns, dockerfile="Dockerfile")):
        src = ROOT / rel
        if src.is_file():
            dst = ctx / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shutil.copy2(ROOT / ".dockerignore", ctx / ".dockerignore")
    shutil.copytree(baseimage.wheelhouse(ROOT / "pyproject.toml"), ctx / "build" / "wheelhouse")
    return ctx


def build(client: Any, tmp: Path, *, tag: str = IMAGE) -> list[str]:
    """Build the Dockerfile on the imported base with `client` (a docker.APIClient); its log."""
    base = baseimage.import_base(client)
    log: list[str] = []
    for chunk in client.build(
        path=str(context(tmp)), tag=tag, rm=True, forcerm=True, decode=True,
        network_mode="none", buildargs={"BASE_IMAGE": base, "PIP_NO_INDEX": "1"},
    ):
        if "error" in chunk:
            raise ImageBuildError("docker build failed: " + chunk["error"] + "\n"
                                  + "".join(log[-40:]))
        log.append(chunk.get("stream", ""))
    return log


def save(client: Any, path: Path, *, tag: str = IMAGE) -> Path:
    """`docker save` of the image into `path` (a docker archive `ctr images import` reads)."""
    with path.open("wb") as out:
        for chunk in client.get_image(tag):
            out.write(chunk)
    return path
