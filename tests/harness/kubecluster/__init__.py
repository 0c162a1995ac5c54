"""The test Kubernetes: certificates (pki), the control plane (control), a real kubelet node
(node) and the stand-in kubelet kept for fleet-size operator tests (testkubelet)."""

from tests.harness.kubecluster.control import (
    AUDIT_POLICY,
    ClusterError,
    KubeCluster,
    Process,
    free_port,
    running_cluster,
)
from tests.harness.kubecluster.pki import kubeconfig, make_pki
from tests.harness.kubecluster.testkubelet import TestKubelet

__all__ = ["AUDIT_POLICY", "ClusterError", "KubeCluster", "Process", "TestKubelet", "free_port",
           "kubeconfig", "make_pki", "running_cluster"]
