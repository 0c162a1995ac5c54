"""`make release`: what a release publishes, in the order that lets the chart pin the image.

    1. build the image from the Dockerfile (the dockerd at $DOCKER_HOST, else the local one)
    2. push it to <registry>/nodeprobe/nodeprobe:<version>; the registry answers its digest
    3. copy the chart with image.repository on that registry and image.digest pinned to the digest
    4. helm lint and helm package it into build/release/, then helm push it to oci://<registry>/charts

The digest is the registry's manifest digest, which exists only once the image is pushed: that is
why the chart is packaged after the push, never before. Pushing to a real registry needs a
`docker login` and a `helm registry login` first.

    python -m tools.release --registry ghcr.io [--out build/release]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeprobe import __version__
from tools import helm as h

ROOT = Path(__file__).resolve().parents[1]
IMAGE_PATH = "nodeprobe/nodeprobe"
"""The image's path under the registry (the chart's default: ghcr.io/nodeprobe/nodeprobe)."""


class ReleaseError(RuntimeError):
    """A step of the release failed; the message names the step."""


@dataclass(frozen=True)
class Released:
    image: str
    """<registry>/nodeprobe/nodeprobe:<version>"""
    digest: str
    chart: Path
    """The packaged chart, image.digest pinned."""


def build_and_push(client: Any, *, context: Path, repository: str, tag: str,
                   build_args: Mapping[str, str]) -> str:
    """Build the Dockerfile in `context`, push repository:tag, return the registry's digest."""
    for chunk in client.build(path=str(context), tag=f"{repository}:{tag}", rm=True,
                              forcerm=True, decode=True, buildargs=dict(build_args),
                              network_mode="none" if build_args.get("PIP_NO_INDEX") else None):
        if "error" in chunk:
            raise ReleaseError(f"docker build: {chunk['error']}")
    digest = ""
    for chunk in client.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise ReleaseError(f"docker push {repository}:{tag}: {chunk['error']}")
        digest = (chunk.get("aux") or {}).get("Digest", digest)
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ReleaseError(f"docker push {repository}:{tag} reported no digest")
    return digest


def pin_chart(*, out: Path, repository: str, digest: str) -> Path:
    """A copy of the chart whose values pull `repository@digest`."""
    chart = out / "chart" / "nodeprobe"
    shutil.rmtree(chart, ignore_errors=True)
    shutil.copytree(h.CHART, chart)
    values = chart / "values.yaml"
    text = values.read_text()
    for key, value in (("repository", repository), ("digest", f'"{digest}"')):
        text, n = re.subn(rf"(?m)^(  {key}:) .*$", rf"\1 {value}", text, count=1)
        if n != 1:
            raise ReleaseError(f"{values}: no image.{key} line to pin")
    values.write_text(text)
    return chart


def package(chart: Path, *, out: Path, registry: str, plain_http: bool, push: bool) -> Path:
    h.lint(chart=chart)
    h.helm("package", str(chart), "-d", str(out))
    [tgz] = out.glob(f"nodeprobe-{__version__}.tgz")
    if push:
        h.helm("push", str(tgz), f"oci://{registry}/charts", *(["--plain-http"] if plain_http
                                                               else []))
    return tgz


def release(client: Any, *, registry: str, context: Path = ROOT, out: Path = ROOT / "build" /
            "release", build_args: Mapping[str, str] | None = None, plain_http: bool = False,
            push_chart: bool = True) -> Released:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("nodeprobe-*.tgz"):
        old.unlink()
    repository = f"{registry}/{IMAGE_PATH}"
    digest = build_and_push(client, context=context, repository=repository, tag=__version__,
                            build_args=build_args or {})
    chart = pin_chart(out=out, repository=repository, digest=digest)
    tgz = package(chart, out=out, registry=registry, plain_http=plain_http, push=push_chart)
    return Released(f"{repository}:{__version__}", digest, tgz)


def main(argv: list[str] | None = None) -> int:
    import docker

    ap = argparse.ArgumentParser(prog="python -m tools.release", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--registry", required=True, help="e.g. ghcr.io, or 127.0.0.1:5000")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "release")
    ap.add_argument("--plain-http", action="store_true", help="a registry without TLS")
    args = ap.parse_args(argv)
    client = docker.APIClient(base_url=os.environ.get("DOCKER_HOST",
                                                      "unix:///var/run/docker.sock"),
                              version="auto", timeout=900)
    try:
        done = release(client, registry=args.registry, out=args.out,
                       plain_http=args.plain_http)
    except (ReleaseError, h.HelmError) as e:
        print(f"release: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"image {done.image}@{done.digest}\nchart {done.chart} "
          f"(image.digest pinned; pushed to oci://{args.registry}/charts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
