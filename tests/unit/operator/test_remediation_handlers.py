"""kopf wiring: what is registered where, and that nothing could write kopf state onto Nodes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import kopf
import pytest
from kubernetes import client

from nodeprobe.operator import run
from nodeprobe.operator.handlers import PassLoop, configure, connection_info, register
from nodeprobe.operator.names import FINALIZER
from nodeprobe.operator.nodecache import NodeCache
from nodeprobe.operator.reconcile import OperatorSettings, Reconciler
from tests.unit.operator.fake_kube import FakeKube


def test_kopf_runs_the_policy_lifecycle_and_the_pass_and_never_watches_nodes() -> None:
    registry = kopf.OperatorRegistry()
    api = client.ApiClient()
    loop = register(registry, reconciler=Reconciler(FakeKube(),
                                                    settings=OperatorSettings(tick_s=3)),
                    nodes=NodeCache(FakeKube()), api=api, stop=threading.Event())
    changing = list(registry._changing.get_all_handlers())
    spawning = list(registry._spawning.get_all_handlers())
    resources = {h.selector.any_name for h in changing + spawning if h.selector is not None}
    assert resources == {"remediationpolicies"}  # nothing on Nodes: no kopf annotations there
    assert list(registry._indexing.get_all_handlers()) == []
    assert list(registry._watching.get_all_handlers()) == []
    assert {h.id for h in changing} == {"validate-create", "validate-update/spec",
                                        "validate-resume", "wait-for-episodes"}
    assert [(h.id, h.interval, h.sharp) for h in spawning] == [("pass", 3, True)]
    assert any(h.id == "pass" for h in registry._activities.get_all_handlers())  # the probe
    assert loop.reconciler.settings.tick_s == 3


def test_kopf_settings_finalizer_posting_and_timeouts() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.persistence.finalizer == FINALIZER
    assert (settings.posting.level, settings.posting.loggers) == (logging.INFO, False)
    assert settings.watching.server_timeout == 60 and settings.watching.client_timeout == 90
    assert settings.persistence.progress_storage.prefix == "kopf.nodeprobe.io"


def test_policy_timers_share_one_pass_per_tick() -> None:
    kube = FakeKube()
    kube.add_node("a")
    now = [100.0]
    loop = PassLoop(Reconciler(kube, settings=OperatorSettings(tick_s=2)), NodeCache(kube),
                    clock=lambda: now[0])
    loop.nodes._set_live(True, {"a": kube.nodes["a"]})
    assert loop.tick() is True
    now[0] += 0.5
    assert loop.tick() is False  # a second policy's timer, half a tick later
    now[0] += 1.5
    assert loop.tick() is True
    assert kube.log.count("GET /apis/nodeprobe.io/v1alpha1/remediationpolicies") == 2
    assert loop.health() == {"nodeViewLive": True, "lastPassAgoSeconds": 0.0}


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
