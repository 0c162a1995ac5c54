"""`make release` up to and including the push, into a real registry on loopback (Debian's
docker-registry, the distribution registry): the image from the Dockerfile, built by the real
dockerd and pushed; the chart packaged with image.digest pinned to the digest the registry
gave, and pushed as an OCI artifact; pulled back by helm, it renders the image by that digest."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from nodeprobe import __version__
from tests.deploy import baseimage
from tests.deploy.test_image import _context
from tests.harness.kubecluster import free_port
from tests.harness.runtimes import Sandbox
from tools import helm as h
from tools import release as rel

pytestmark = pytest.mark.timeout(900)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry not found: apt-get install docker-registry (make deps does)"
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "registry")}},
        "http": {"addr": address}}))
    with (tmp_path / "registry.log").open("w") as log:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://{address}/v2/"):
            assert proc.poll() is None, (tmp_path / "registry.log").read_text()
            assert time.monotonic() < deadline, "the registry did not answer /v2/ in 30 s"
            time.sleep(0.1)  # pacing of the poll, not synchronisation
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


def _manifest_digest(address: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://{address}/v2/{rel.IMAGE_PATH}/manifests/{tag}", method="HEAD",
        headers={"Accept": ", ".join([
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json"])})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(reply.headers["Docker-Content-Digest"])


def test_release_pushes_the_image_and_a_chart_pinned_to_its_digest(
    _session_sandbox: Sandbox, registry: str, tmp_path: Path,
) -> None:
    client: Any = docker.APIClient(base_url=f"unix://{_session_sandbox.dockerd.socket}",
                                   version="auto", timeout=900)
    try:
        base = baseimage.import_base(client)
        done = rel.release(client, registry=registry, context=_context(tmp_path),
                           out=tmp_path / "release", plain_http=True,
                           build_args={"BASE_IMAGE": base, "PIP_NO_INDEX": "1"})
    finally:
        client.close()
    assert done.image == f"{registry}/{rel.IMAGE_PATH}:{__version__}"
    assert done.digest == _manifest_digest(registry, __version__)

    with tarfile.open(done.chart) as tar:
        values = yaml.safe_load(tar.extractfile("nodeprobe/values.yaml").read())  # type: ignore[union-attr]
    assert values["image"]["digest"] == done.digest
    assert values["image"]["repository"] == f"{registry}/{rel.IMAGE_PATH}"

    pulled = tmp_path / "pulled"
    pulled.mkdir()
    h.helm("pull", f"oci://{registry}/charts/nodeprobe", "--version", __version__,
           "--plain-http", "-d", str(pulled))
    [tgz] = pulled.glob("nodeprobe-*.tgz")
    ds = next(o for o in h.objects(h.template(chart=tgz)) if o["kind"] == "DaemonSet")
    image = ds["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{registry}/{rel.IMAGE_PATH}@{done.digest}"
    tags = json.loads(urllib.request.urlopen(
        f"http://{registry}/v2/charts/nodeprobe/tags/list", timeout=10).read())
    assert tags["tags"] == [__version__]
