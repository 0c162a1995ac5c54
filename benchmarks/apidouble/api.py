"""The verbs' semantics, free of HTTP: metadata, preconditions, status subresource, finalizers.

Every method runs under the store's lock, so a request sees and commits one consistent state.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.apidouble import patch as patches
from benchmarks.apidouble import times
from benchmarks.apidouble.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from benchmarks.apidouble.resources import Registry, ResourceType, crd_types, validate_crd
from benchmarks.apidouble.selectors import Predicate
from benchmarks.apidouble.store import Obj, Store

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GENERATION = {("apps", "daemonsets"), ("policy", "poddisruptionbudgets"),
               ("apiextensions.k8s.io", "customresourcedefinitions")}
_IMMUTABLE_META = ("uid", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "generation", "resourceVersion")
NS = ("", "namespaces")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Api:
    """Create/read/update/patch/delete over a Store, answering with the real server's errors."""

    def __init__(self, *, store: Store, registry: Registry,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.registry, self.clock = store, registry, clock

    # -- views ------------------------------------------------------------------------------
    def view(self, rt: ResourceType, obj: Obj) -> Obj:
        """The stored object as this group/version shows it."""
        out = rt.to_view(obj) if rt.to_view else dict(obj)
        out["apiVersion"], out["kind"] = rt.api_version, rt.kind
        return out

    def _from_view(self, rt: ResourceType, obj: Obj) -> Obj:
        return rt.from_view(obj) if rt.from_view else obj

    def _current(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(rt.storage, ns, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    # -- reads ------------------------------------------------------------------------------
    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        with self.store.cond:
            return self.view(rt, self._current(rt, ns, name))

    def list(self, rt: ResourceType, ns: str | None, *, match: Predicate,
             limit: int = 0, cont: str = "") -> Obj:
        with self.store.cond:
            rv = self.store.rv
            items = [self.view(rt, o) for o in self.store.items(rt.storage, ns)]
        items = [o for o in items if match(o)]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            try:
                start = tuple(json.loads(base64.b64decode(cont)))
            except ValueError as e:
                raise bad_request(f"invalid continue token: {e}") from e
            items = [o for o in items if _okey(o) > start]
        if limit and len(items) > limit:
            items = items[:limit]
            token = json.dumps(list(_okey(items[-1]))).encode()
            meta["continue"] = base64.b64encode(token).decode()
            meta["remainingItemCount"] = 0
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": meta,
                "items": items}

    # -- writes -----------------------------------------------------------------------------
    def create(self, rt: ResourceType, ns: str, body: Any, *, dry_run: bool = False) -> Obj:
        obj = self._from_view(rt, _require_object(body))
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", ns):
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        with self.store.cond:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name") or ""
            self._validate(rt, obj, name)
            if "nodeprobe.io/admission-check" in (meta.get("labels") or {}):
                # The chart's admission guard on NodeRemediations, as the operator probes it.
                raise ApiError(403, "Forbidden", "ValidatingAdmissionPolicy denied request: "
                               "nodeprobe-admission-check: the NodeRemediation guard is in place")
            times.normalize(rt, obj)
            if rt.namespaced and self.store.get(NS, "", ns) is None:
                raise ApiError(404, "NotFound", f'namespaces "{ns}" not found',
                               details={"name": ns, "kind": "namespaces"})
            if self.store.get(rt.storage, ns if rt.namespaced else "", name) is not None:
                raise already_exists(rt, name)
            for key in _IMMUTABLE_META:
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = rfc3339(self.clock())
            if rt.storage in _GENERATION or rt.crd:
                meta["generation"] = 1
            self._defaults_on_create(rt, obj)
            if dry_run:
                meta["resourceVersion"] = str(self.store.rv)
                return self.view(rt, obj)
            return self.view(rt, self._commit(rt, obj))

    def put(self, rt: ResourceType, obj: Obj) -> Obj:
        """Direct state write for tests: fills metadata, skips validation and admission."""
        obj = self._from_view(rt, copy.deepcopy(obj))
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            meta.setdefault("namespace", "default")
        ns = meta["namespace"] if rt.namespaced else ""
        with self.store.cond:
            old = self.store.get(rt.storage, ns, meta["name"])
            if rt.namespaced and self.store.get(NS, "", ns) is None:
                self._commit(self._ns_rt(), {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": ns, "uid": str(uuid.uuid4()),
                                                          "creationTimestamp": self._now()},
                                             "status": {"phase": "Active"}})
            meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp",
                            old["metadata"]["creationTimestamp"] if old else self._now())
            if rt.storage == CRDS:
                self._defaults_on_create(rt, obj)
            times.normalize(rt, obj)
            return self.view(rt, self._commit(rt, obj))

    def update(self, rt: ResourceType, ns: str, name: str, body: Any, *, sub: str = "",
               dry_run: bool = False) -> Obj:
        new = self._from_view(rt, _require_object(body))
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name "
                              f"on the URL ({name})")
        with self.store.cond:
            old = self._current(rt, ns, name)
            return self._replace(rt, old, new, sub=sub, dry_run=dry_run)

    def patch(self, rt: ResourceType, ns: str, name: str, body: bytes, content_type: str, *,
              sub: str = "", dry_run: bool = False) -> Obj:
        try:
            doc = json.loads(body or b"null")
        except ValueError as e:
            raise bad_request(f"error decoding patch: {e}") from e
        with self.store.cond:
            old = self._current(rt, ns, name)
            current = copy.deepcopy(self.view(rt, old))
            try:
                if content_type == MERGE:
                    if not isinstance(doc, dict):
                        raise patches.PatchError("merge patch must be a JSON object")
                    result = patches.merge_patch(current, doc)
                elif content_type == JSON_PATCH:
                    result = patches.json_patch(current, doc)
                else:
                    keys = {**patches.COMMON_KEYS, **patches.STRATEGIC_KEYS.get(rt.storage, {})}
                    result = patches.strategic_merge(current, doc, keys=keys)
            except patches.PatchError as e:
                raise invalid(rt, name, [("<patch>", str(e))]) from e
            if not isinstance(result, dict):
                raise invalid(rt, name, [("<patch>", "patched object is not a JSON object")])
            patched_rv = (result.get("metadata") or {}).get("resourceVersion")
            if patched_rv in (None, current["metadata"].get("resourceVersion")):
                result.setdefault("metadata", {}).pop("resourceVersion", None)
            return self._replace(rt, old, self._from_view(rt, result), sub=sub, dry_run=dry_run)

    def delete(self, rt: ResourceType, ns: str, name: str, options: Obj | None = None, *,
               dry_run: bool = False) -> Obj:
        options = options or {}
        pre = options.get("preconditions") or {}
        with self.store.cond:
            old = self._current(rt, ns, name)
            meta = old["metadata"]
            if pre.get("uid") not in (None, meta["uid"]):
                raise conflict(rt, name, f"Precondition failed: UID in precondition: "
                                         f"{pre['uid']}, UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") not in (None, meta["resourceVersion"]):
                raise conflict(rt, name)
            if dry_run:
                return self.view(rt, old)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return self.view(rt, old)
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = self._now()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                return self.view(rt, self._commit(rt, marked))
            return self.view(rt, self._remove(rt, old))

    # -- internals --------------------------------------------------------------------------
    def _now(self) -> str:
        return rfc3339(self.clock())

    def _ns_rt(self) -> ResourceType:
        rt = self.registry.find("", "v1", "namespaces")
        assert rt is not None
        return rt

    def _validate(self, rt: ResourceType, obj: Obj, name: str) -> None:
        causes: list[tuple[str, str]] = []
        if not name:
            causes.append(("metadata.name", "Required value: name or generateName is required"))
        elif len(name) > 253 or not _NAME_RE.match(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
                                            "subdomain must consist of lower case alphanumeric "
                                            "characters, '-' or '.'"))
        if rt.storage == CRDS:
            causes += validate_crd(obj)
        if rt.group == "events.k8s.io":
            view = self.view(rt, obj)
            causes += [(k, "Required value") for k in
                       ("eventTime", "reportingController", "reportingInstance", "action")
                       if not view.get(k)]
        if causes:
            raise invalid(rt, name, causes)

    def _defaults_on_create(self, rt: ResourceType, obj: Obj) -> None:
        if rt.storage == ("", "pods"):
            obj["status"] = {"phase": "Pending"}
        elif rt.storage == NS:
            obj["status"] = {"phase": "Active"}
        elif rt.storage == CRDS:
            names = obj["spec"]["names"]
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
            now = self._now()
            obj["status"] = {
                "acceptedNames": copy.deepcopy(names),
                "storedVersions": [v["name"] for v in obj["spec"]["versions"]
                                   if v.get("storage", True)],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "message": m,
                     "lastTransitionTime": now}
                    for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                    ("Established", "InitialNamesAccepted",
                                     "the initial names have been accepted"))
                ],
            }
        elif rt.status and rt.storage != ("", "nodes"):
            obj.pop("status", None)

    def _replace(self, rt: ResourceType, old: Obj, new: Obj, *, sub: str, dry_run: bool) -> Obj:
        name = old["metadata"]["name"]
        given = new.get("metadata") or {}
        if given.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
            raise conflict(rt, name)
        if given.get("uid") not in (None, "", old["metadata"]["uid"]):
            raise conflict(rt, name, f"Precondition failed: UID in precondition: {given['uid']}"
                                     f", UID in object meta: {old['metadata']['uid']}")
        if sub == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            meta = result.setdefault("metadata", {})
            for key in (*_IMMUTABLE_META, "name", "namespace"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if old["metadata"].get("deletionTimestamp"):
                added = set(meta.get("finalizers") or ()) - set(
                    old["metadata"].get("finalizers") or ())
                if added:
                    raise invalid(rt, name, [("metadata.finalizers", "Forbidden: no new "
                                              "finalizers can be added if the object is being "
                                              "deleted")])
            if rt.status:
                if "status" in old:
                    result["status"] = old["status"]
                else:
                    result.pop("status", None)
            if "generation" in old["metadata"] and _spec(rt, old) != _spec(rt, result):
                meta["generation"] = old["metadata"]["generation"] + 1
        times.normalize(rt, result)
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        result["apiVersion"], result["kind"] = old.get("apiVersion"), old.get("kind")
        if result == old or dry_run:
            return self.view(rt, result)
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get(
                "finalizers"):
            return self.view(rt, self._remove(rt, result))
        return self.view(rt, self._commit(rt, result))

    def _commit(self, rt: ResourceType, obj: Obj) -> Obj:
        obj["apiVersion"], obj["kind"] = (
            ("v1", "Event") if rt.storage == ("", "events") else (rt.api_version, rt.kind))
        stored = self.store.write(rt.storage, obj)
        if rt.storage == CRDS:
            self.registry.remove_crd(obj["metadata"]["name"])
            for crt in crd_types(obj):
                self.registry.add(crt)
        return stored

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        ns, name = obj["metadata"].get("namespace") or "", obj["metadata"]["name"]
        if rt.storage == CRDS:
            spec = obj["spec"]
            storage = (spec["group"], spec["names"]["plural"])
            for item in self.store.items(storage):
                self.store.remove(storage, item["metadata"].get("namespace") or "",
                                  item["metadata"]["name"])
            self.registry.remove_crd(name)
        if rt.storage == NS:
            for storage in self.store.storages():
                for item in self.store.items(storage, name):
                    self.store.remove(storage, name, item["metadata"]["name"])
        gone = self.store.remove(rt.storage, ns, name, final=obj)
        assert gone is not None
        return gone


def _okey(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _spec(rt: ResourceType, obj: Obj) -> Obj:
    """What counts for metadata.generation: all but metadata (and status if it is separate)."""
    skip = {"metadata", "status"} if rt.status else {"metadata"}
    return {k: v for k, v in obj.items() if k not in skip}


def _require_object(body: Any) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return copy.deepcopy(body)
