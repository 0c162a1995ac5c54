"""Reusable fixture factory: `with kube_double() as kube:` or the `kube` pytest fixture."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.kube.double import KubeDouble


@contextmanager
def kube_double() -> Iterator[KubeDouble]:
    """A started double in a fresh /tmp/np-kube-* directory; stopped and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="np-kube-", dir="/tmp"))
    double = KubeDouble(directory=directory).start()
    try:
        yield double
        assert not double.errors, f"the kube double failed internally: {double.errors!r}"
    finally:
        double.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kube() -> Iterator[KubeDouble]:
    """A private Kubernetes API double per test (starts in a few milliseconds)."""
    with kube_double() as double:
        yield double
