"""What an identity did (the API server's audit log) against what its RBAC grants it.

Used by the end-to-end test to prove each chart role is exactly what its component calls:
nothing missing (no 403, every request covered) and nothing unused.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from tests.harness.kubecluster import KubeCluster


class Permission(NamedTuple):
    group: str
    resource: str
    """`resource` or `resource/subresource`."""
    verb: str


def used(cluster: KubeCluster, username: str) -> tuple[set[Permission], list[str]]:
    """The permissions `username`'s requests needed, and the requests that were forbidden."""
    permissions: set[Permission] = set()
    forbidden = []
    for event in cluster.audit(username):
        ref = event.get("objectRef")
        if not ref:
            continue  # discovery and other non-resource URLs: granted to every user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        permissions.add(Permission(ref.get("apiGroup", ""), resource, event["verb"]))
        if event.get("responseStatus", {}).get("code") == 403:
            forbidden.append(f"{event['verb']} {event['requestURI']}")
    return permissions, forbidden


def _expand(rules: list[dict[str, Any]]) -> set[Permission]:
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add(Permission(group, resource, verb))
    return out


def granted(cluster: KubeCluster, namespace: str, service_account: str) -> set[Permission]:
    """Every permission the ServiceAccount's bindings give it (resourceNames ignored)."""

    def bound(binding: dict[str, Any]) -> bool:
        return any(s.get("kind") == "ServiceAccount" and s.get("name") == service_account
                   and s.get("namespace") == namespace for s in binding.get("subjects") or [])

    out: set[Permission] = set()
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    bindings = cluster.must("GET", f"{rbac}/clusterrolebindings")["items"] + \
        cluster.must("GET", f"{rbac}/rolebindings")["items"]
    for binding in filter(bound, bindings):
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            role = cluster.must("GET", f"{rbac}/clusterroles/{ref['name']}")
        else:
            ns = binding["metadata"]["namespace"]
            role = cluster.must("GET", f"{rbac}/namespaces/{ns}/roles/{ref['name']}")
        out |= _expand(role.get("rules") or [])
    return out
