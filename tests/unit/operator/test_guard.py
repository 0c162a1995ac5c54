"""The admission guard check: the operator acts only while the API server refuses the probe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodeprobe.operator.guard import MARKER, Guard, probe
from nodeprobe.operator.handlers import PassLoop
from nodeprobe.operator.kube import Kube, KubeError
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.reconcile import Reconciler
from tests.unit.operator.fake_kube import FakeKube


class Answer(Kube):
    """Answers the probe's dry-run create with `error` (None: admitted)."""

    def __init__(self, error: KubeError | None) -> None:
        self.error = error
        self.asked: list[Mapping[str, str] | None] = []

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None,
                body: object = None, content_type: str = "application/json") -> dict[str, Any]:
        self.asked.append(query)
        if self.error is not None:
            raise self.error
        return {}


def test_refused_by_our_policy_means_in_place() -> None:
    kube = Answer(KubeError(403, f"POST ...: HTTP 403 {MARKER}: the guard is in place"))
    assert probe(kube) is None
    assert kube.asked == [{"dryRun": "All"}]  # never a real create


def test_admitted_or_refused_by_something_else_means_missing() -> None:
    assert "was admitted" in (probe(Answer(None)) or "")
    assert "not by it" in (probe(Answer(KubeError(403, "RBAC: forbidden"))) or "")


def test_guard_asks_again_only_after_the_recheck_period() -> None:
    t = [0.0]
    kube = Answer(None)
    guard = Guard(kube, recheck_s=60, monotonic=lambda: t[0])
    assert guard.check() is not None
    t[0] = 30
    assert guard.check() is not None and len(kube.asked) == 1
    kube.error = KubeError(403, MARKER)
    t[0] = 61
    assert guard.check() is None and len(kube.asked) == 2


def test_no_pass_runs_while_the_guard_is_missing() -> None:
    kube = FakeKube()  # admits the probe: like a cluster without the policy
    kube.add_node("a")
    loop = PassLoop(Reconciler(kube), NodeCache(kube), guard=Guard(kube))
    loop.nodes._set_live(True, {"a": kube.nodes["a"]})
    loop.once()
    assert "GET /apis/nodeprobe.io/v1alpha1/remediationpolicies" not in kube.log


def test_an_unreachable_api_keeps_the_last_answer() -> None:
    t = [0.0]
    kube = Answer(KubeError(403, MARKER))
    guard = Guard(kube, recheck_s=60, monotonic=lambda: t[0])
    assert guard.check() is None
    kube.error = KubeError(0, "connection refused")
    t[0] = 61
    assert guard.check() is None
    assert Guard(kube).check() is not None  # never asked: not known to be in place
