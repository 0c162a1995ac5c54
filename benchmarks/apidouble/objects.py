"""Objects tests arrange through put_object(): a kubelet-registered node, a running pod, a CRD."""

from __future__ import annotations

from typing import Any

KUBELET_TIME = "2026-01-01T00:00:00Z"


def kubelet_node(name: str, *, boot_id: str = "boot-1") -> dict[str, Any]:
    """A Node as kubelet leaves it: Ready (kubelet-owned), addresses, nodeInfo.bootID."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": KUBELET_TIME, "lastTransitionTime": KUBELET_TIME,
            }],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "bootID": boot_id, "machineID": "m", "systemUUID": "s",
                "kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12",
                "containerRuntimeVersion": "containerd://1.6.20", "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    }


def running_pod(name: str, *, node: str, namespace: str = "default",
                labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Running, Ready pod owned by a ReplicaSet (so drain treats it as managed)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "labels": labels or {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rs",
                                 "uid": "rs-uid-1", "controller": True}],
        },
        "spec": {"nodeName": node,
                 "containers": [{"name": "web", "image": "nodeprobe-test/busybox:latest"}]},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0}]},
    }


def crd(group: str, plural: str, kind: str, *, scope: str = "Cluster",
         status: bool = True) -> dict[str, Any]:
    """A CRD with one served version and an open schema, like the ones nodeprobe ships."""
    version = "v1" if group == "kopf.dev" else "v1alpha1"
    ver: dict[str, Any] = {"name": version, "served": True, "storage": True, "schema": {
        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    if status:
        ver["subresources"] = {"status": {}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope, "versions": [ver],
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind}}}
