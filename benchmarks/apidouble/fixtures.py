"""`with kube_double() as kube:` for the benchmarks that still measure on the double."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.apidouble.double import KubeDouble


@contextmanager
def kube_double() -> Iterator[KubeDouble]:
    """A started double in a fresh /tmp/np-kube-* directory; stopped and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="np-kube-", dir="/tmp"))
    double = KubeDouble(directory=directory).start()
    try:
        yield double
    finally:
        double.stop()
        shutil.rmtree(directory, ignore_errors=True)
