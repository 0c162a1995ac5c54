"""POST pods/{name}/eviction: the PodDisruptionBudget check the real server makes, then delete.

The real server reads the budget's status (kept by the disruption controller); there is no
controller here, so the same numbers are computed from the pods at the time of the request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from benchmarks.apidouble.api import Api, rfc3339
from benchmarks.apidouble.errors import ApiError, bad_request
from benchmarks.apidouble.resources import ResourceType
from benchmarks.apidouble.store import Obj

_IGNORE_PDB_PHASES = ("Succeeded", "Failed", "Pending")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector; in policy/v1 an empty selector matches every pod."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}.get(op, False)
        if not ok:
            return False
    return True


def _healthy(pod: Obj) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return status.get("phase") == "Running" and all(c.get("status") == "True" for c in ready)


def _scaled(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def budget(pdb: Obj, pods: list[Obj]) -> tuple[int, int, int]:
    """(expected, desiredHealthy, currentHealthy) for the pods the budget selects."""
    spec = pdb.get("spec") or {}
    chosen = [p for p in pods if selector_matches(spec.get("selector"),
                                                  p["metadata"].get("labels") or {})]
    expected = len([p for p in chosen if not p["metadata"].get("deletionTimestamp")])
    healthy = len([p for p in chosen if _healthy(p)])
    if spec.get("maxUnavailable") is not None:
        desired = max(expected - _scaled(spec["maxUnavailable"], expected), 0)
    else:
        desired = _scaled(spec.get("minAvailable", 1), expected)
    return expected, desired, healthy


def evict(api: Api, *, pods: ResourceType, pdbs: ResourceType, ns: str, name: str,
          body: Any) -> Obj:
    """Delete the pod unless a budget forbids it (429 TooManyRequests, as the real server)."""
    if not isinstance(body, dict) or body.get("kind") not in (None, "Eviction"):
        raise bad_request("the request body must be an Eviction object")
    if (body.get("metadata") or {}).get("name", name) != name:
        raise bad_request("name in URL does not match name in Eviction object")
    with api.store.cond:
        pod = api.store.get(pods.storage, ns, name)
        if pod is None:
            api.get(pods, ns, name)  # raises the pods NotFound
            raise AssertionError
        phase = (pod.get("status") or {}).get("phase")
        if not pod["metadata"].get("deletionTimestamp") and phase not in _IGNORE_PDB_PHASES:
            labels = pod["metadata"].get("labels") or {}
            matching = [b for b in api.store.items(pdbs.storage, ns)
                        if selector_matches((b.get("spec") or {}).get("selector"), labels)]
            if len(matching) > 1:
                raise ApiError(500, "InternalError", "This pod has more than one "
                               "PodDisruptionBudget, which the eviction subresource does not "
                               "support.")
            if matching:
                _check(api, pdbs, matching[0], pod, api.store.items(pods.storage, ns))
        api.delete(pods, ns, name, body.get("deleteOptions") or {})
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "code": 201}


def _check(api: Api, pdbs: ResourceType, pdb: Obj, pod: Obj, pods: list[Obj]) -> None:
    expected, desired, healthy = budget(pdb, pods)
    allowed = healthy - desired
    if (allowed <= 0 and _healthy(pod)) or (not _healthy(pod) and healthy < desired):
        pdb_name = pdb["metadata"]["name"]
        raise ApiError(
            429, "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            details={"causes": [{
                "reason": "DisruptionBudget",
                "message": f"The disruption budget {pdb_name} needs {desired} healthy pods "
                           f"and has {healthy} currently",
            }]},
        )
    status = {"currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
              "disruptionsAllowed": max(allowed - 1, 0),
              "disruptedPods": {pod["metadata"]["name"]: rfc3339(api.clock())},
              "observedGeneration": pdb["metadata"].get("generation", 1)}
    updated = {**pdb, "metadata": dict(pdb["metadata"]), "status": status}
    api.update(pdbs, pdb["metadata"]["namespace"], pdb["metadata"]["name"], updated, sub="status")
