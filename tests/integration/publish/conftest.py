"""The Kubernetes API double's `kube` fixture, for the publisher tests in this directory."""

from tests.kube.fixtures import kube

__all__ = ["kube"]
