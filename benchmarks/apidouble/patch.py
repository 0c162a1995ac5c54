"""The three patch types the API server accepts, applied to plain JSON objects.

Strategic merge is implemented for the lists nodeprobe and kubectl touch, by the patchMergeKey
the Go types declare (see STRATEGIC_KEYS); every other list is replaced, as the real server does
for lists without a patch strategy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

SET = "$set"  # a list of primitives merged as a set (patchStrategy=merge, no key)

COMMON_KEYS: dict[str, str] = {
    "metadata.ownerReferences": "uid",
    "metadata.finalizers": SET,
}
# Keyed by (group, plural); dotted paths ignore list indices ("spec.containers.env").
STRATEGIC_KEYS: dict[tuple[str, str], dict[str, str]] = {
    ("", "nodes"): {
        "status.conditions": "type",
        "status.addresses": "type",
        "spec.podCIDRs": SET,
        # spec.taints has no patchStrategy in k8s.io/api (+listType=atomic): replaced whole.
    },
    ("", "pods"): {
        "spec.containers": "name",
        "spec.initContainers": "name",
        "spec.containers.env": "name",
        "spec.containers.ports": "containerPort",
        "spec.containers.volumeMounts": "mountPath",
        "spec.volumes": "name",
        "spec.imagePullSecrets": "name",
        "status.conditions": "type",
    },
    ("", "namespaces"): {"spec.finalizers": SET},
}


class PatchError(ValueError):
    """The patch could not be applied; the server answers 422 (or 400 for a malformed body)."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 via the jsonpatch library; a failed `test` or a bad path is a PatchError."""
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    try:
        return jsonpatch.JsonPatch(ops).apply(target)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
        raise PatchError(str(e)) from e
    except (TypeError, KeyError, AttributeError) as e:
        raise PatchError(f"invalid json patch: {e}") from e


def strategic_merge(target: Any, patch: Any, *, keys: Mapping[str, str]) -> Any:
    """Strategic merge patch with `$patch`, `$retainKeys` and `$deleteFromPrimitiveList`."""
    if not isinstance(patch, Mapping):
        raise PatchError("strategic merge patch must be a JSON object")
    merged = _merge_map(target if isinstance(target, Mapping) else {}, patch, "", keys)
    return {} if merged is None else merged


def _strip(value: Any) -> Any:
    """Drop directive keys from a value that replaces rather than merges."""
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, Mapping) and "$patch" in v)]
    return value


def _merge_map(
    orig: Mapping[str, Any], patch: Mapping[str, Any], path: str, keys: Mapping[str, str]
) -> dict[str, Any] | None:
    directive = patch.get("$patch", "merge")
    if directive == "delete":
        return None
    if directive == "replace":
        return dict(_strip(patch))
    if directive != "merge":
        raise PatchError(f"unknown patch directive {directive!r} at {path or '<root>'}")
    result = copy.deepcopy(dict(orig))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [x for x in result[field] if x not in value]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        sub = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            merged = _merge_map(current if isinstance(current, Mapping) else {}, value, sub, keys)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, sub, keys)
        else:
            result[key] = value
    return result


def _merge_list(orig: Any, patch: list[Any], path: str, keys: Mapping[str, str]) -> list[Any]:
    strategy = keys.get(path)
    current = list(orig) if isinstance(orig, list) else []
    if strategy is None:
        return list(_strip(patch))
    if strategy == SET:
        return current + [x for x in patch if x not in current]
    if any(isinstance(e, Mapping) and e.get("$patch") == "replace" for e in patch):
        return list(_strip(patch))
    for element in patch:
        if not isinstance(element, Mapping) or strategy not in element:
            raise PatchError(f"{path}: list element lacks its merge key {strategy!r}")
        found = next(
            (i for i, e in enumerate(current)
             if isinstance(e, Mapping) and e.get(strategy) == element[strategy]),
            None,
        )
        if element.get("$patch") == "delete":
            current = [e for e in current
                       if not (isinstance(e, Mapping) and e.get(strategy) == element[strategy])]
        elif found is None:
            current.append(_merge_map({}, element, path, keys))
        else:
            merged = _merge_map(current[found], element, path, keys)
            if merged is None:
                del current[found]
            else:
                current[found] = merged
    return current
