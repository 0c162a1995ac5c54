"""An in-memory stand-in for the few API paths the reconciler uses, with write counters.

Only for unit tests of the reconciler's wiring; the integration tests use the team's API double
(tests/kube). Merge-patch semantics as the API server applies them (None deletes a key).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from nodeprobe.operator.kube import Kube, KubeError

_API = "/apis/nodeprobe.io/v1alpha1"
_ts = itertools.count(1)


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v) if not isinstance(v, Mapping) else _clean(v)


def _clean(v: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    merge(out, v)
    return out


class FakeKube(Kube):
    def __init__(self, *, created_at: str = "2027-01-15T08:00:00Z") -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.nrs: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.writes: Counter[str] = Counter()
        self.pdb_blocked: set[str] = set()
        """`ns/name` of pods whose eviction a PDB refuses (429)."""
        self.evictions: Counter[str] = Counter()
        self.pod_deletes = 0
        self.created_at = created_at

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: object = None, content_type: str = "application/json") -> dict[str, Any]:
        assert body is None or isinstance(body, dict)
        patch: dict[str, Any] = body or {}
        if method != "GET":
            self.writes[f"{method} {re.sub(r'/[^/]+$', '/*', path)}"] += 1
        if m := re.fullmatch(r"/api/v1/nodes(?:/([^/]+))?", path):
            return self._object(self.nodes, m.group(1), method, patch)
        if path == "/api/v1/pods":
            node = (query or {}).get("fieldSelector", "").removeprefix("spec.nodeName=")
            return {"items": [copy.deepcopy(p) for p in self.pods.values()
                              if p["spec"].get("nodeName") == node]}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction", path):
            key = f"{m.group(1)}/{m.group(2)}"
            self.evictions[key] += 1
            if key not in self.pods:
                raise KubeError(404, "not found")
            if key in self.pdb_blocked:
                raise KubeError(429, "Cannot evict pod as it would violate the pod's "
                                     "disruption budget.")
            del self.pods[key]
            return {}
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/events", path):
            self.events.append(patch)
            return patch
        if m := re.fullmatch(_API + r"/remediationpolicies/([^/]+)(/status)?", path):
            return self._object(self.policies, m.group(1), method, patch)
        if m := re.fullmatch(_API + r"/noderemediations(?:/([^/]+))?(/status)?", path):
            if method == "POST":
                name = patch["metadata"]["name"]
                if name in self.nrs:
                    raise KubeError(409, f"noderemediations {name} already exists")
                obj = copy.deepcopy(patch)
                obj["metadata"]["creationTimestamp"] = self.created_at
                obj.pop("status", None)
                self.nrs[name] = obj
                return copy.deepcopy(obj)
            return self._object(self.nrs, m.group(1), method, patch)
        raise KubeError(404, f"fake: no route for {method} {path}")

    def _object(self, store: dict[str, dict[str, Any]], name: str | None, method: str,
                patch: dict[str, Any]) -> dict[str, Any]:
        if name is None:
            return {"items": [copy.deepcopy(o) for o in store.values()]}
        if name not in store:
            raise KubeError(404, f"{name} not found")
        if method == "PATCH":
            merge(store[name], patch)
        return copy.deepcopy(store[name])

    # ---- helpers for tests ---------------------------------------------------------------------

    def add_node(self, name: str, *, sick_since: str | None = None, labels: dict[str, str]
                 | None = None, boot_id: str = "boot-1") -> None:
        conds = [{"type": "Ready", "status": "True", "lastTransitionTime": "2027-01-01T00:00:00Z"}]
        conds.append({"type": "ContainerRuntimeUnavailable",
                      "status": "True" if sick_since else "False",
                      "lastTransitionTime": sick_since or "2027-01-01T00:00:00Z"})
        self.nodes[name] = {"metadata": {"name": name, "uid": f"uid-{name}",
                                         "labels": labels or {}},
                            "spec": {}, "status": {"conditions": conds,
                                                   "nodeInfo": {"bootID": boot_id}}}

    def set_condition(self, node: str, status: str, at: str) -> None:
        for c in self.nodes[node]["status"]["conditions"]:
            if c["type"] == "ContainerRuntimeUnavailable":
                c.update(status=status, lastTransitionTime=at)

    def add_pod(self, node: str, ns: str, name: str, *, daemonset: bool = False,
                mirror: bool = False) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if daemonset:
            meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "ds"}]
        if mirror:
            meta["annotations"] = {"kubernetes.io/config.mirror": "x"}
        self.pods[f"{ns}/{name}"] = {"metadata": meta, "spec": {"nodeName": node},
                                     "status": {"phase": "Running"}}

    def cordoned(self) -> set[str]:
        return {n for n, o in self.nodes.items() if o["spec"].get("unschedulable")}
