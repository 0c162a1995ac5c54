"""The decide third of a pass: a `Snapshot` in, the whole `PassDecision` out. Pure: no I/O,
the clock is the snapshot's.

Every episode's move is decided first (`moves`); the gates then decide the openings against
the episodes as they will be after those moves, counting a node as held while its episode held
it before the pass or holds it after (`Move.budget_view`): a slot freed by a write that may yet
be refused is reused on the next pass, never in this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodeprobe.operator.gates import Cluster, PolicyDecision, count_recent, decide_all
from nodeprobe.operator.moves import Move, move
from nodeprobe.operator.policy import DEFAULT_KEEP, DEFAULT_KEEP_FOR_S
from nodeprobe.operator.policystatus import PolicyState
from nodeprobe.operator.records import Remediation
from nodeprobe.operator.snapshot import Snapshot

RATE_WINDOW_S = 3600.0


@dataclass(frozen=True, slots=True)
class PassDecision:
    """Everything a pass will write, decided before its first write."""

    moves: tuple[Move, ...]
    retire: frozenset[str]
    """Finished NodeRemediations past their retention, to delete."""
    policies: Mapping[str, PolicyDecision]
    cluster: Cluster
    """What the gates decided on (the budget views of the episodes that stay)."""


def decide(snap: Snapshot, *, max_held: int,
           storms: Mapping[str, tuple[float | None, float | None]]) -> PassDecision:
    moves = tuple(move(r, snap) for r in snap.remediations)
    retire = frozenset(expired(snap.remediations, snap.policies, snap.now))
    views = [m.budget_view() for m in moves if m.remediation.name not in retire]
    cluster = Cluster(nodes=snap.nodes, remediations=views, records=snap.records,
                      max_held=max_held,
                      recent_starts=count_recent(views, now=snap.now, window_s=RATE_WINDOW_S))
    policies = decide_all(snap.live_policies(), cluster, now=snap.now, storms=storms,
                          blockers=snap.blockers)
    return PassDecision(moves=moves, retire=retire, policies=policies, cluster=cluster)


def expired(rs: Iterable[Remediation], states: Mapping[str, PolicyState],
            now: float) -> set[str]:
    """Finished NodeRemediations (not holding a node) beyond their policy's `retention`: older
    than `for`, or past the newest `keep` of their node (defaults when the policy is gone).
    The node's Lease remembers the last episode, so deleting one never reopens it."""
    by_node: dict[str, list[Remediation]] = {}
    for r in rs:
        if not r.holds:
            by_node.setdefault(r.node, []).append(r)
    gone: set[str] = set()
    for done in by_node.values():
        done.sort(key=lambda r: r.finished or 0.0, reverse=True)
        for i, r in enumerate(done):
            st = states.get(r.policy)
            policy = st.policy if st is not None else None
            keep, keep_for = ((policy.keep, policy.keep_for_s) if policy is not None
                              else (DEFAULT_KEEP, DEFAULT_KEEP_FOR_S))
            if i >= keep or now - (r.finished or now) > keep_for:
                gone.add(r.name)
    return gone
