"""An in-memory stand-in for the few API paths the reconciler uses, with write counters.

Only for unit tests of the reconciler's wiring; the integration tests use the real control plane
(tests/integration/operator). Merge-patch semantics as the API server applies them (None deletes
a key).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from nodeprobe.operator.kube import Kube, KubeError

_API = "/apis/nodeprobe.io/v1alpha1"
_ts = itertools.count(1)


def labels_match(selector: str, labels: Mapping[str, str]) -> bool:
    """The API server's labelSelector syntax: `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`."""
    for req in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        req = req.strip()
        if m := re.fullmatch(r"(\S+) (in|notin) \(([^)]*)\)", req):
            inside = labels.get(m.group(1)) in m.group(3).split(",")
            if inside != (m.group(2) == "in"):
                return False
        elif "=" in req:
            k, v = req.split("=", 1)
            if labels.get(k) != v:
                return False
        elif req.startswith("!"):
            if req[1:] in labels:
                return False
        elif req and req not in labels:
            return False
    return True


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
        self.leases: dict[str, dict[str, Any]] = {}
        self.errors: Counter[int] = Counter()
        """HTTP status of every refused request (409 storms show here)."""
        self.hung: set[str] = set()
        """Nodes whose runtime is hung: evicted pods stay Terminating until `unhang()`."""
        self.stamp: Callable[[], str] = lambda: created_at
        """The time written into deletionTimestamp (tests point it at their clock)."""
        self.rv = itertools.count(1)
        self.log: list[str] = []
        """Every request, `METHOD path`, in order."""

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: object = None, content_type: str = "application/json") -> dict[str, Any]:
        try:
            return self._request(method, path, query=query, body=body)
        except KubeError as e:
            self.errors[e.status] += 1
            raise

    def _request(self, method: str, path: str, *, query: Mapping[str, str] | None,
                 body: object) -> dict[str, Any]:
        assert body is None or isinstance(body, dict)
        patch: dict[str, Any] = body or {}
        self.log.append(f"{method} {path}")
        if method != "GET":
            self.writes[f"{method} {re.sub(r'/[^/]+$', '/*', path)}"] += 1
        if m := re.fullmatch(r"/api/v1/nodes(?:/([^/]+))?", path):
            return self._object(self.nodes, m.group(1), method, patch)
        if path == "/api/v1/pods":
            q = query or {}
            node = q.get("fieldSelector", "").removeprefix("spec.nodeName=")
            return {"items": [copy.deepcopy(p) for p in self.pods.values()
                              if (not node or p["spec"].get("nodeName") == node)
                              and labels_match(q.get("labelSelector", ""),
                                               p["metadata"].get("labels") or {})]}
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path):
            sel = dict(kv.split("=", 1) for kv in
                       (query or {}).get("labelSelector", "").split(",") if kv)
            return {"items": [copy.deepcopy(p) for p in self.pods.values()
                              if p["metadata"]["namespace"] == m.group(1) and all(
                                  (p["metadata"].get("labels") or {}).get(k) == v
                                  for k, v in sel.items())]}
        if m := re.fullmatch(r"/apis/coordination.k8s.io/v1/namespaces/[^/]+/leases(?:/([^/]+))?",
                             path):
            return self._lease(m.group(1), method, patch)
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/eviction", path):
            key = f"{m.group(1)}/{m.group(2)}"
            self.evictions[key] += 1
            if key not in self.pods:
                raise KubeError(404, "not found")
            if key in self.pdb_blocked:
                raise KubeError(429, "Cannot evict pod as it would violate the pod's "
                                     "disruption budget.")
            pod = self.pods[key]
            if pod["spec"]["nodeName"] in self.hung:
                pod["metadata"].setdefault("deletionTimestamp", self.stamp())
            else:
                del self.pods[key]
            return {}
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/events", path):
            self.events.append(patch)
            return patch
        if m := re.fullmatch(_API + r"/remediationpolicies(?:/([^/]+))?(/status)?", path):
            out = self._object(self.policies, m.group(1), method, patch)
            name = m.group(1)
            if name and method == "PATCH" and self.policies[name]["metadata"].get(
                    "deletionTimestamp") and not self.policies[name]["metadata"].get("finalizers"):
                del self.policies[name]
            return out
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
            if method == "DELETE":
                if m.group(1) not in self.nrs:
                    raise KubeError(404, "not found")
                return self.nrs.pop(m.group(1))
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

    def _lease(self, name: str | None, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if name is None and method == "GET":
            return {"items": [copy.deepcopy(o) for o in self.leases.values()]}
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.leases:
                raise KubeError(409, f"leases {name} already exists")
            obj = copy.deepcopy(body)
            obj["metadata"]["resourceVersion"] = str(next(self.rv))
            self.leases[name] = obj
            return copy.deepcopy(obj)
        assert name is not None
        if name not in self.leases:
            raise KubeError(404, f"lease {name} not found")
        cur = self.leases[name]
        want = (body.get("metadata") or {}).get("resourceVersion")
        if method in ("PUT", "PATCH") and want and want != cur["metadata"]["resourceVersion"]:
            raise KubeError(409, f"lease {name}: the object has been modified")
        if method == "PUT":
            cur = copy.deepcopy(body)
        elif method == "PATCH":
            merge(cur, body)
        if method in ("PUT", "PATCH"):
            cur["metadata"]["resourceVersion"] = str(next(self.rv))
            self.leases[name] = cur
        return copy.deepcopy(cur)

    def node_writes(self) -> int:
        """Writes to Nodes and Pods (cordons, labels, evictions)."""
        return sum(v for k, v in self.writes.items() if "/nodes" in k or "/pods" in k)

    def held(self) -> set[str]:
        """Nodes whose Lease nodeprobe holds right now."""
        return {n.removeprefix("node-") for n, o in self.leases.items()
                if (o.get("spec") or {}).get("holderIdentity")}

    def delete_policy(self, name: str) -> None:
        """kubectl delete: with finalizers the object stays, marked for deletion."""
        meta = self.policies[name]["metadata"]
        if meta.get("finalizers"):
            meta["deletionTimestamp"] = self.created_at
        else:
            del self.policies[name]

    # ---- helpers for tests ---------------------------------------------------------------------

    def add_node(self, name: str, *, sick_since: str | None = None, labels: dict[str, str]
                 | None = None, boot_id: str = "boot-1", heartbeat: str | None = None) -> None:
        conds = [{"type": "Ready", "status": "True", "lastTransitionTime": "2027-01-01T00:00:00Z"}]
        conds.append({"type": "ContainerRuntimeUnavailable",
                      "status": "True" if sick_since else "False",
                      "lastTransitionTime": sick_since or "2027-01-01T00:00:00Z",
                      "lastHeartbeatTime": heartbeat or self.created_at})
        self.nodes[name] = {"metadata": {"name": name, "uid": f"uid-{name}",
                                         "labels": labels or {}},
                            "spec": {}, "status": {"conditions": conds,
                                                   "nodeInfo": {"bootID": boot_id}}}

    def set_condition(self, node: str, status: str, at: str) -> None:
        for c in self.nodes[node]["status"]["conditions"]:
            if c["type"] == "ContainerRuntimeUnavailable":
                c.update(status=status, lastTransitionTime=at)

    def add_pod(self, node: str, ns: str, name: str, *, daemonset: bool = False,
                mirror: bool = False, controller: bool = True, empty_dir: bool = False,
                annotations: dict[str, str] | None = None,
                labels: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {},
                                "annotations": dict(annotations or {})}
        if daemonset:
            meta["ownerReferences"] = [{"kind": "DaemonSet", "name": "ds", "controller": True}]
        elif controller:
            meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "controller": True}]
        if mirror:
            meta["annotations"]["kubernetes.io/config.mirror"] = "x"
        spec: dict[str, Any] = {"nodeName": node}
        if empty_dir:
            spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
        self.pods[f"{ns}/{name}"] = {"metadata": meta, "spec": spec,
                                     "status": {"phase": "Running"}}

    def unhang(self, node: str) -> None:
        """The runtime answers again: Terminating pods on the node finish."""
        self.hung.discard(node)
        for key in [k for k, p in self.pods.items() if p["spec"]["nodeName"] == node
                    and p["metadata"].get("deletionTimestamp")]:
            del self.pods[key]

    def heartbeat(self, at: str) -> None:
        """Every node's agent reports (its conditions' lastHeartbeatTime)."""
        for obj in self.nodes.values():
            for c in obj["status"]["conditions"]:
                if c["type"] != "Ready":
                    c["lastHeartbeatTime"] = at

    def cordoned(self) -> set[str]:
        return {n for n, o in self.nodes.items() if o["spec"].get("unschedulable")}
