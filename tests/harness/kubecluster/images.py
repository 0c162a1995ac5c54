"""Images for the real node without a registry: OCI archives made here, imported with `ctr`.

The pause image is the static `pause` binary tools/go/build compiles from the kubernetes module;
busybox is Debian's busybox-static (tests/harness/runtimes.py); the project's own image comes from
a `docker save` of the Dockerfile build (tests/harness/image.py). Every name is fully qualified
(docker.io/...), as the CRI normalises a pod's `image:`.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.harness.gotools import tool, versions
from tests.harness.runtimes import BUSYBOX_IMAGE, busybox_rootfs_tar, which

PAUSE_IMAGE = f"docker.io/nodeprobe-test/pause:{versions()['KUBERNETES']}"
NODE_BUSYBOX = f"docker.io/{BUSYBOX_IMAGE}"
NAMESPACE = "k8s.io"
"""containerd's namespace the CRI (and so kubelet) uses."""


def _blob(out: tarfile.TarFile, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_archive(name: str, layer: bytes, *, entrypoint: list[str]) -> bytes:
    """An OCI image layout tar of one uncompressed layer, named `name` for `ctr import`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        layer_desc = _blob(out, layer)
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Entrypoint": entrypoint},
                  "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]}}
        config_desc = _blob(out, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = _blob(out, json.dumps(manifest).encode())
        index = {"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest_desc,
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]}
        for path, data in (("index.json", json.dumps(index).encode()),
                           ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pause_archive() -> bytes:
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(str(tool("pause")), arcname="pause")
    return oci_archive(PAUSE_IMAGE, layer.getvalue(), entrypoint=["/pause"])


def busybox_archive() -> bytes:
    return oci_archive(NODE_BUSYBOX, busybox_rootfs_tar(), entrypoint=["/bin/sh"])


def ctr_import(socket: Path, archive: bytes | Path) -> None:
    """`ctr images import` (Debian's ctr) into the CRI's namespace, unpacked."""
    data = archive.read_bytes() if isinstance(archive, Path) else archive
    done = subprocess.run(
        [which("ctr"), "--address", str(socket), "--namespace", NAMESPACE, "images", "import",
         "-"],
        input=data, capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ctr images import into {socket} failed: "
                           f"{done.stderr.decode(errors='replace')[-2000:]}")
