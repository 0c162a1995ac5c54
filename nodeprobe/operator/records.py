"""The operator's vocabulary: the typed records a pass reads and decides on (Nodes,
NodeRemediations, node Leases) and the one set of final phases.

Purely data: no I/O, no Kubernetes client types. The shell parses raw objects into these once,
at the edge (`edge.node_view`, `edge.remediation`, `leases.record`); `gates`,
`observe`, `ladder`, `stats` and the kubectl plugin decide and print from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nodeprobe.model import ConditionType, RemediationPhase, Status
from nodeprobe.operator.grammar import parse_iso
from nodeprobe.operator.names import ANNOTATION_CORDONED_BY, LABEL_EXCLUDE

TERMINAL = frozenset({RemediationPhase.SUCCEEDED, RemediationPhase.FAILED,
                      RemediationPhase.ESCALATED})
"""The one set of final phases: a NodeRemediation in one of them never changes phase again."""
OPERATOR_MANAGER = "nodeprobe-operator"
"""Prefix of the operator's field manager (`nodeprobe-operator-<replica>`) in managedFields."""
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@dataclass(frozen=True, slots=True)
class NodeCondition:
    status: str
    since: float
    """lastTransitionTime, Unix seconds."""
    heartbeat: float = 0.0
    """lastHeartbeatTime, Unix seconds (0 when absent)."""


@dataclass(frozen=True, slots=True)
class NodeView:
    """The parts of a Node the operator decides on."""

    name: str
    labels: Mapping[str, str]
    unschedulable: bool
    conditions: Mapping[str, NodeCondition]
    boot_id: str = ""
    uid: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)
    cordon_managers: tuple[str, ...] = ()
    """Field managers that own `spec.unschedulable` (its managedFields): who cordoned it, as
    the API server recorded it. Empty when the server recorded none."""

    def cordon_ours(self, nr: str) -> bool:
        """The node's cordon is the one episode `nr` made: our mark names it, and no one else
        (a person's `kubectl cordon`, even an uncordon+cordon between passes) owns the field."""
        return (self.annotations.get(ANNOTATION_CORDONED_BY) == nr
                and all(m.startswith(OPERATOR_MANAGER) for m in self.cordon_managers))

    @property
    def ready(self) -> bool:
        c = self.conditions.get("Ready")
        return c is not None and c.status == Status.TRUE

    @property
    def control_plane(self) -> bool:
        return any(k in self.labels for k in CONTROL_PLANE_LABELS)

    @property
    def excluded(self) -> bool:
        return LABEL_EXCLUDE in self.labels and self.labels[LABEL_EXCLUDE] != "false"


AGENT_CONDITIONS = frozenset(c.value for c in ConditionType)


def agent_alive(node: NodeView, silence_s: float, now: float) -> bool:
    """The node's agent wrote one of its conditions (heartbeat) within `silence_s`."""
    beats = [max(c.heartbeat, c.since) for t, c in node.conditions.items()
             if t in AGENT_CONDITIONS]
    return bool(beats) and now - max(beats) <= silence_s


@dataclass(frozen=True, slots=True)
class RemediationView:
    """The parts of a NodeRemediation the gates count."""

    name: str
    node: str
    policy: str
    phase: str
    created: float
    finished: float | None
    holds: bool
    """Holds a slot of the budget: live, or Escalated and not yet released by a person."""
    released: float | None = None
    """When a person released it (Escalated only)."""

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """What the node's Lease says: who holds it, and the node's remediation history (kept there
    so that deleting a NodeRemediation forgets nothing)."""

    holder: str | None = None
    """Someone else's holder identity while their lease is unexpired; None when free or ours."""
    last_episode: str | None = None
    finished: float | None = None
    episodes: tuple[float, ...] = ()
    """When recent episodes opened (for the flap limit)."""


@dataclass(frozen=True, slots=True)
class Remediation:
    """A NodeRemediation, parsed once at the edge (`edge.remediation`).

    `status` stays the map the API server holds: the ladder reads and patches it in its own
    terms (`ladder.step`); the shell reads it only through the properties here.
    """

    name: str
    node: str
    policy: str
    status: Mapping[str, Any]
    plan: Mapping[str, Any] | None
    """spec.plan: the snapshot the episode runs by (None on objects from before snapshots)."""
    created: float
    """spec.openedAt, else creationTimestamp (Unix seconds)."""
    episode_start: float | None = None
    """spec.episodeStart: when the trigger began."""
    flapping: int = 0
    spec_rung: int = 0
    """spec.rung of objects from before the rung moved to the status."""

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", RemediationPhase.PENDING))

    @property
    def rung(self) -> int:
        return int(self.status.get("rung", self.spec_rung) or 0)

    @property
    def finished(self) -> float | None:
        return parse_iso(self.status.get("finishedAt"))

    @property
    def released(self) -> float | None:
        return parse_iso(self.status.get("releasedAt"))

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL

    @property
    def holds(self) -> bool:
        """Live, or Escalated and not yet released by a person."""
        return self.active or (self.phase == RemediationPhase.ESCALATED
                               and not self.status.get("releasedAt"))

    def with_status(self, patch: Mapping[str, Any]) -> Remediation:
        """As it is after a merge patch of its status (None removes a key)."""
        merged = {**self.status, **patch}
        return replace(self, status={k: v for k, v in merged.items() if v is not None})

    def view(self) -> RemediationView:
        return RemediationView(name=self.name, node=self.node, policy=self.policy,
                               phase=self.phase, created=self.created, finished=self.finished,
                               holds=self.holds, released=self.released)
