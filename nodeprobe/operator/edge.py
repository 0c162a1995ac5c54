"""The edge of a pass: raw Node and NodeRemediation objects parsed once into the typed records
of `records` that every decision and write reads. Purely data: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeprobe.model import Status
from nodeprobe.operator.grammar import parse_iso
from nodeprobe.operator.names import GROUP
from nodeprobe.operator.records import NodeCondition, NodeView, Remediation


def node_view(node: Mapping[str, Any]) -> NodeView:
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    conds = {
        str(c.get("type")): NodeCondition(
            str(c.get("status", Status.UNKNOWN.value)),
            parse_iso(c.get("lastTransitionTime")) or 0.0,
            parse_iso(c.get("lastHeartbeatTime")) or 0.0)
        for c in status.get("conditions") or []
    }
    return NodeView(
        name=str(meta.get("name", "")),
        labels=dict(meta.get("labels") or {}),
        unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
        conditions=conds,
        boot_id=str((status.get("nodeInfo") or {}).get("bootID", "")),
        uid=str(meta.get("uid", "")),
        annotations={k: v for k, v in (meta.get("annotations") or {}).items()
                     if k.startswith(f"{GROUP}/")},
        cordon_managers=cordon_managers(meta),
    )


def cordon_managers(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Managers whose managedFields entry owns `spec.unschedulable`."""
    return tuple(sorted({
        str(m.get("manager", "")) for m in meta.get("managedFields") or []
        if isinstance(m, Mapping) and "f:unschedulable" in
        ((m.get("fieldsV1") or {}).get("f:spec") or {})}))


def remediation(nr: Mapping[str, Any]) -> Remediation:
    meta, spec, status = nr.get("metadata") or {}, nr.get("spec") or {}, nr.get("status") or {}
    plan = spec.get("plan")
    return Remediation(
        name=str(meta.get("name", "")), node=str(spec.get("nodeName", "")),
        policy=str(spec.get("policy", "")), status=dict(status),
        plan=plan if isinstance(plan, Mapping) else None,
        created=(parse_iso(spec.get("openedAt")) or parse_iso(meta.get("creationTimestamp"))
                 or 0.0),
        episode_start=parse_iso(spec.get("episodeStart")),
        flapping=int(spec.get("flapping", 0) or 0), spec_rung=int(spec.get("rung", 0) or 0))
