"""kopf wiring: what is registered where, and that nothing could write kopf state onto Nodes."""

from __future__ import annotations

import threading
from pathlib import Path

import kopf
import pytest
from kubernetes import client

from nodeprobe.operator import run
from nodeprobe.operator.handlers import PassLoop, connection_info, register
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.unit.operator.fake_kube import FakeKube


def test_kopf_watches_nothing_and_one_loop_reconciles() -> None:
    registry = kopf.OperatorRegistry()
    api = client.ApiClient()
    loop = register(registry, reconciler=Reconciler(FakeKube(),
                                                    settings=OperatorSettings(tick_s=3)),
                    nodes=NodeCache(FakeKube()), api=api, stop=threading.Event())
    # no resource handler at all: kopf writes no annotation, finalizer or status anywhere
    assert list(registry._indexing.get_all_handlers()) == []
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._watching.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    assert len(list(registry._activities.get_all_handlers())) >= 3  # login, startup, cleanup
    assert loop.reconciler.settings.tick_s == 3


def test_the_loop_skips_passes_until_the_node_view_is_live() -> None:
    kube = FakeKube()
    kube.add_node("a")
    loop = PassLoop(Reconciler(kube), NodeCache(kube))
    loop.once()
    assert not any(path.endswith("/remediationpolicies") for path in kube.log)
    loop.nodes._set_live(True, {"a": kube.nodes["a"]})
    loop.once()
    assert "GET /apis/nodeprobe.io/v1alpha1/remediationpolicies" in kube.log


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


def test_operator_flags_budget_and_standalone_no_peering() -> None:
    from nodeprobe.cli import build_parser

    args = build_parser().parse_args(["operator", "--max-concurrent", "3", "--standalone"])
    assert (args.max_concurrent, args.standalone) == (3, True)
    assert build_parser().parse_args(["operator"]).max_concurrent == 1  # conservative default
    with pytest.raises(SystemExit):
        build_parser().parse_args(["operator", "--peering", "x"])
