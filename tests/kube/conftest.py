"""The `kube` fixture for the double's own tests; tests/conftest.py can import it the same way."""

from tests.kube.fixtures import kube

__all__ = ["kube"]
