"""kopf wiring: what is registered where, and that nothing could write kopf state onto Nodes."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest
from kubernetes import client

from nodeprobe.operator import run
from nodeprobe.operator.handlers import connection_info, register
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.unit.operator.fake_kube import FakeKube


def test_registration_leaves_nodes_to_the_node_cache() -> None:
    registry = kopf.OperatorRegistry()
    api = client.ApiClient()
    register(registry, reconciler=Reconciler(FakeKube(), settings=OperatorSettings(tick_s=3)),
             nodes=NodeCache(FakeKube()), api=api)
    # kopf handles no Node at all; and nothing that stores progress/diff-base annotations
    assert list(registry._indexing.get_all_handlers()) == []
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._watching.get_all_handlers()) == []
    timers = list(registry._spawning.get_all_handlers())
    assert len(timers) == 1
    timer = timers[0]
    assert timer.selector is not None
    assert (timer.selector.group, timer.selector.any_name) == ("nodeprobe.io",
                                                              "remediationpolicies")
    assert timer.interval == 3  # type: ignore[attr-defined]


def test_connection_info_carries_the_client_credentials() -> None:
    cfg = client.Configuration()
    cfg.host = "https://127.0.0.1:6443"
    cfg.api_key = {"BearerToken": "Bearer s3cr3t"}
    cfg.verify_ssl = False
    info = connection_info(client.ApiClient(cfg))
    assert info.server == "https://127.0.0.1:6443"
    assert (info.scheme, info.token, info.insecure) == ("Bearer", "s3cr3t", True)


def test_run_with_missing_kubeconfig_says_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"cannot load Kubernetes credentials \(.*nope"):
        run(kubeconfig=str(tmp_path / "nope"), standalone=True)
