"""What the double serves: resource types, the built-in set, CRD-defined ones, and conversions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
READ_VERBS = ("get", "list", "watch")
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One (group, version, plural); objects live in `storage` so versions can share them."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    """True when a `status` subresource exists: main writes then keep status, /status the rest."""
    subresources: tuple[str, ...] = ()
    strategic: bool = True
    """Built-ins accept strategic merge patches; custom resources answer 415, as the real server."""
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    storage: tuple[str, str] = ("", "")
    to_view: Callable[[Obj], Obj] | None = None
    from_view: Callable[[Obj], Obj] | None = None
    crd: str = ""
    """Name of the CRD that defined this type; empty for built-ins."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _rt(group: str, version: str, plural: str, kind: str, namespaced: bool,
        **kw: Any) -> ResourceType:
    kw.setdefault("singular", kind.lower())
    kw.setdefault("storage", (group, plural))
    return ResourceType(group, version, plural, kind, namespaced, **kw)


# core/v1 Event <-> events.k8s.io/v1 Event: the real server stores one and converts.
_EVENT_RENAMES = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def event_to_events_v1(obj: Obj) -> Obj:
    out = dict(obj)
    for new, old in _EVENT_RENAMES:
        if old in out:
            out[new] = out.pop(old)
    out["apiVersion"] = "events.k8s.io/v1"
    return out


def event_from_events_v1(obj: Obj) -> Obj:
    out = dict(obj)
    for new, old in _EVENT_RENAMES:
        if new in out:
            out[old] = out.pop(new)
    out["apiVersion"] = "v1"
    return out


def builtin_types() -> list[ResourceType]:
    """The groups nodeprobe, kopf and kubectl (get/describe/cordon/drain/apply) need."""
    return [
        _rt("", "v1", "namespaces", "Namespace", False, short_names=("ns",), status=True,
            subresources=("status",)),
        _rt("", "v1", "nodes", "Node", False, short_names=("no",), status=True,
            subresources=("status",)),
        _rt("", "v1", "pods", "Pod", True, short_names=("po",), categories=("all",), status=True,
            subresources=("status", "eviction")),
        _rt("", "v1", "events", "Event", True, short_names=("ev",)),
        _rt("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
        _rt("events.k8s.io", "v1", "events", "Event", True, short_names=("ev",),
            storage=("", "events"), to_view=event_to_events_v1, from_view=event_from_events_v1),
        _rt("coordination.k8s.io", "v1", "leases", "Lease", True),
        _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True,
            short_names=("pdb",), status=True, subresources=("status",)),
        _rt("apps", "v1", "daemonsets", "DaemonSet", True, short_names=("ds",),
            categories=("all",), status=True, subresources=("status",)),
        _rt("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
            False, short_names=("crd", "crds"), categories=("api-extensions",), status=True,
            subresources=("status",)),
    ]


def crd_types(crd: Mapping[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves: one per served version, all sharing one storage."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec["group"], names["plural"]
    types = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True):
            continue
        has_status = "status" in (ver.get("subresources") or {})
        types.append(_rt(
            group, ver["name"], plural, names["kind"], spec.get("scope") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            status=has_status, subresources=("status",) if has_status else (),
            strategic=False, printer_columns=tuple(ver.get("additionalPrinterColumns") or ()),
            crd=crd["metadata"]["name"],
        ))
    return types


def validate_crd(crd: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) pairs the real server would reject a CRD for; the ones clients hit."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    errors = []
    for key in ("group", "scope"):
        if not spec.get(key):
            errors.append((f"spec.{key}", "Required value"))
    for key in ("plural", "kind"):
        if not names.get(key):
            errors.append((f"spec.names.{key}", "Required value"))
    if not spec.get("versions"):
        errors.append(("spec.versions", "Required value: must have exactly one version marked "
                                        "as storage version"))
    want = f"{names.get('plural')}.{spec.get('group')}"
    if crd.get("metadata", {}).get("name") != want:
        errors.append(("metadata.name", f"Invalid value: must be spec.names.plural+\".\"+"
                                        f"spec.group ({want})"))
    return errors


@dataclass
class Registry:
    """Resource types by (group, version, plural), in discovery order."""

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    def add(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt

    def remove_crd(self, name: str) -> None:
        for key in [k for k, rt in self.types.items() if rt.crd == name]:
            del self.types[key]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return next((rt for rt in self.types.values()
                     if rt.api_version == api_version and rt.kind == kind), None)

    def group_versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rt in self.types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> Iterator[ResourceType]:
        return (rt for rt in self.types.values() if rt.group == group and rt.version == version)
