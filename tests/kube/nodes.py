"""Former name of tests.kube.objects, kept because tests elsewhere import it."""

from tests.kube.objects import KUBELET_TIME, crd, kubelet_node, running_pod

__all__ = ["KUBELET_TIME", "crd", "kubelet_node", "running_pod"]
