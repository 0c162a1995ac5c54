"""Discovery documents and server-side Tables (what `kubectl get` prints).

Only legacy discovery is served: kubectl asks for aggregated discovery, gets plain JSON back
and falls back, as it does against older servers.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from typing import Any

from benchmarks.apidouble.resources import ALL_VERBS, Registry, ResourceType
from benchmarks.apidouble.store import Obj

VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "0" * 40,
    "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
    "compiler": "gc", "platform": "linux/amd64",
}


def api_versions(address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}


def _group(name: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(registry: Registry) -> Obj:
    groups = [_group(g, vs) for g, vs in registry.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> Obj | None:
    versions = registry.group_versions().get(group)
    if not group or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def resource_list(registry: Registry, group: str, version: str) -> Obj | None:
    resources: list[Obj] = []
    for rt in registry.in_group_version(group, version):
        entry: Obj = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                      "kind": rt.kind, "verbs": list(ALL_VERBS)}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            if sub == "eviction":
                resources.append({"name": f"{rt.plural}/eviction", "singularName": "",
                                  "namespaced": True, "group": "policy", "version": "v1",
                                  "kind": "Eviction", "verbs": ["create"]})
            else:
                resources.append({"name": f"{rt.plural}/{sub}", "singularName": "",
                                  "namespaced": rt.namespaced, "kind": rt.kind,
                                  "verbs": ["get", "patch", "update"]})
    if not resources:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


# -- Tables ---------------------------------------------------------------------------------
def human_age(created: str | None, now: float) -> str:
    """kubectl's short duration ("12s", "5m3s", "4h", "3d") since an RFC 3339 time."""
    if not created:
        return "<unknown>"
    seconds = int(now - calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S")))
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{days}d{hours % 24}h" if days < 8 and hours % 24 else f"{days}d"


_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.]+)\s*==\s*['\"]([^'\"]*)"
                   r"['\"]\)\]")


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: `.a.b`, `[0]`, `[?(@.type=="Ready")]`."""
    value, pos = obj, 0
    path = path.strip().strip("{}")
    while pos < len(path):
        m = _STEP.match(path, pos)
        if not m:
            return None
        pos = m.end()
        if m.group(1) is not None:
            value = value.get(m.group(1)) if isinstance(value, Mapping) else None
        elif m.group(2) is not None:
            i = int(m.group(2))
            value = value[i] if isinstance(value, list) and i < len(value) else None
        else:
            field, want = m.group(3), m.group(4)
            value = next((e for e in value or [] if isinstance(e, Mapping)
                          and str(jsonpath(e, "." + field)) == want), None)
        if value is None:
            return None
    return value


def _col(name: str, kind: str = "string", *, priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": kind, "format": fmt, "description": "", "priority": priority}


def _node_cells(o: Obj, age: str) -> list[Any]:
    status, spec = o.get("status") or {}, o.get("spec") or {}
    ready = jsonpath(o, '.status.conditions[?(@.type=="Ready")].status')
    state = {"True": "Ready", "False": "NotReady"}.get(str(ready), "Unknown")
    if spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = (o.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = status.get("nodeInfo") or {}
    addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    return [o["metadata"]["name"], state, ",".join(roles) or "<none>", age,
            info.get("kubeletVersion", ""), addrs.get("InternalIP", "<none>"),
            addrs.get("ExternalIP", "<none>"), info.get("osImage", "<unknown>"),
            info.get("kernelVersion", "<unknown>"), info.get("containerRuntimeVersion", "")]


_NODE_COLS = [_col("Name", fmt="name"), _col("Status"), _col("Roles"), _col("Age"),
              _col("Version"), _col("Internal-IP", priority=1), _col("External-IP", priority=1),
              _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
              _col("Container-Runtime", priority=1)]


def _pod_cells(o: Obj, age: str) -> list[Any]:
    status = o.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len((o.get("spec") or {}).get("containers") or [])
    ready = len([c for c in statuses if c.get("ready")])
    phase = "Terminating" if o["metadata"].get("deletionTimestamp") else status.get("phase", "")
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    return [o["metadata"]["name"], f"{ready}/{total}", phase, restarts, age,
            status.get("podIP", "<none>"), (o.get("spec") or {}).get("nodeName", "<none>")]


_POD_COLS = [_col("Name", fmt="name"), _col("Ready"), _col("Status"), _col("Restarts", "integer"),
             _col("Age"), _col("IP", priority=1), _col("Node", priority=1)]


def table(rt: ResourceType, items: list[Obj], list_meta: Obj, *, include: str,
          now: float) -> Obj:
    """A meta.k8s.io/v1 Table: built-in columns for nodes and pods, printer columns for CRs."""
    if rt.storage == ("", "nodes"):
        cols, cells = _NODE_COLS, _node_cells
    elif rt.storage == ("", "pods"):
        cols, cells = _POD_COLS, _pod_cells
    else:
        printer = list(rt.printer_columns) or [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        cols = [_col("Name", fmt="name")] + [
            _col(c["name"], "string" if c.get("type") == "date" else c.get("type", "string"),
                 priority=int(c.get("priority", 0))) for c in printer]

        def cells(o: Obj, age: str) -> list[Any]:
            out: list[Any] = [o["metadata"]["name"]]
            for c in printer:
                value = jsonpath(o, c.get("jsonPath", ""))
                out.append(human_age(value, now) if c.get("type") == "date" and value else value)
            return out

    rows = []
    for o in items:
        row: Obj = {"cells": cells(o, human_age(o["metadata"].get("creationTimestamp"), now))}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": cols, "rows": rows}


# -- OpenAPI v3 (only what kubectl reads: does the server take `fieldValidation`?) -----------
def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_index(registry: Registry) -> Obj:
    paths = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            gv = _gv_path(group, version)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={len(registry.types)}"}
    return {"paths": paths}


def openapi_v3_spec(registry: Registry, gv_path: str) -> Obj | None:
    """Paths with a PATCH operation tagged by GVK and taking `fieldValidation`, no schemas.

    kubectl then validates server-side (fieldValidation=Strict) instead of downloading
    schemas; the double accepts unknown fields (the real server would reject them).
    """
    paths: Obj = {}
    param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
             "uniqueItems": True}
    for rt in registry.types.values():
        if _gv_path(rt.group, rt.version) != gv_path:
            continue
        scope = "namespaces/{namespace}/" if rt.namespaced else ""
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        op = {"x-kubernetes-group-version-kind": gvk, "parameters": [param],
              "responses": {"200": {"description": "OK"}}}
        paths[f"/{gv_path}/{scope}{rt.plural}/{{name}}"] = {"patch": op}
        paths[f"/{gv_path}/{scope}{rt.plural}"] = {"post": op}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}
