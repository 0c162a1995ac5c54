"""The operator's node view on the real API server, as the chart's operator identity: a paged
list, a live watch, a real outage (kube-apiserver stopped and started), 410 for a watch from a
resourceVersion the server no longer keeps, and a prompt stop."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from nodeprobe.operator.kube import Kube
from nodeprobe.operator.nodecache import Gone, NodeCache
from nodeprobe.operator.reconcile import node_view
from tests.harness.kubecluster import KubeCluster
from tests.integration.operator.cluster import UNHEALTHY, Fleet, wait_for


def operator_kube(fleet: Fleet, tmp: Path) -> Kube:
    """A Kube with a token of the chart's operator ServiceAccount."""
    path = fleet.cluster.token_kubeconfig(tmp / "cache.kubeconfig", fleet.release.namespace,
                                          fleet.release.service_account("operator"))
    conf = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=conf)  # type: ignore[no-untyped-call]
    return Kube(client.ApiClient(conf))


def node_calls(cluster: KubeCluster, user: str, verb: str, stage: str) -> list[dict[str, object]]:
    """The audit log's `stage` records of `user`'s `verb` on nodes (a watch shows up as
    ResponseStarted while it is open)."""
    out = []
    for line in cluster.audit_log.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("stage") == stage and e.get("verb") == verb and \
                e.get("user", {}).get("username") == user and \
                (e.get("objectRef") or {}).get("resource") == "nodes":
            out.append(e)
    return out


@pytest.fixture
def nodes(fleet: Fleet) -> Fleet:
    for i in range(5):
        fleet.add_node(f"node-{i}")
    return fleet


@pytest.fixture
def cache(nodes: Fleet, tmp_path: Path) -> Iterator[NodeCache]:
    view = NodeCache(operator_kube(nodes, tmp_path), page=2, retry_s=(0.2, 1.0))
    view.start()
    yield view
    view.stop()


def names(fleet: Fleet, cache: NodeCache) -> set[str] | None:
    """This test's Nodes in the view (the session's cluster has others)."""
    view = cache.snapshot()
    return None if view is None else {
        fleet.short(n["metadata"]["name"]) for n in view
        if n["metadata"]["name"] in fleet.nodes.values()}


def sick(fleet: Fleet, cache: NodeCache, short: str) -> bool:
    for n in cache.snapshot() or []:
        if n["metadata"]["name"] == fleet.node(short):
            return node_view(n).conditions[UNHEALTHY].status == "True"
    return False


def watching(fleet: Fleet, since: int) -> bool:
    user = fleet.release.username("operator")
    return len(node_calls(fleet.cluster, user, "watch", "ResponseStarted")) > since


def test_the_first_list_is_paged_and_makes_the_view_live(nodes: Fleet,
                                                           tmp_path: Path) -> None:
    user = nodes.release.username("operator")
    total = len(nodes.cluster.must("GET", "/api/v1/nodes")["items"])
    before = len(node_calls(nodes.cluster, user, "list", "ResponseComplete"))
    view = NodeCache(operator_kube(nodes, tmp_path), page=2)
    view.start()
    try:
        wait_for(lambda: names(nodes, view) is not None, timeout_s=30, what="the first list")
        assert names(nodes, view) == {f"node-{i}" for i in range(5)}
        lists = node_calls(nodes.cluster, user, "list", "ResponseComplete")[before:]
        assert len(lists) == math.ceil(total / 2), lists  # every page, 2 nodes a page
        assert all("limit=2" in str(e["requestURI"]) for e in lists)
        assert nodes.operator_calls(verbs=frozenset({"create", "update", "patch"})) == []
    finally:
        view.stop()


def test_the_watch_follows_changes_and_deletions(nodes: Fleet, cache: NodeCache) -> None:
    wait_for(lambda: names(nodes, cache) is not None, timeout_s=30, what="the first list")
    user = nodes.release.username("operator")
    lists = len(node_calls(nodes.cluster, user, "list", "ResponseComplete"))
    nodes.set_sick("node-1", True)
    nodes.add_node("node-9")
    nodes.cluster.must("DELETE", f"/api/v1/nodes/{nodes.node('node-0')}")
    wait_for(lambda: sick(nodes, cache, "node-1"), timeout_s=30, what="node-1 seen sick")
    wait_for(lambda: names(nodes, cache) == {"node-1", "node-2", "node-3", "node-4", "node-9"},
             timeout_s=30, what="node-9 added and node-0 gone")
    # Followed by the watch, not listed again.
    assert len(node_calls(nodes.cluster, user, "list", "ResponseComplete")) == lists


def test_an_api_outage_takes_the_view_offline_until_a_new_list(nodes: Fleet,
                                                                cache: NodeCache) -> None:
    wait_for(lambda: names(nodes, cache) is not None, timeout_s=30, what="the first list")
    user = nodes.release.username("operator")
    lists = len(node_calls(nodes.cluster, user, "list", "ResponseComplete"))
    with nodes.cluster.outage():  # kube-apiserver stopped: connections refused
        wait_for(lambda: cache.snapshot() is None, timeout_s=60, what="the view going offline")
    nodes.set_sick("node-3", True)
    nodes.cluster.must("DELETE", f"/api/v1/nodes/{nodes.node('node-4')}")
    wait_for(lambda: sick(nodes, cache, "node-3") and names(nodes, cache) == {
        "node-0", "node-1", "node-2", "node-3"}, timeout_s=90,
        what="the view live again with what changed after the outage")
    assert len(node_calls(nodes.cluster, user, "list", "ResponseComplete")) > lists


def test_a_watch_from_a_version_the_server_no_longer_keeps_is_gone(nodes: Fleet,
                                                                     tmp_path: Path) -> None:
    """The API server's watch cache starts at its first list: resourceVersion 1 is older than
    anything it can replay, so it answers 410 Expired ("too old resource version")."""
    view = NodeCache(operator_kube(nodes, tmp_path))
    with pytest.raises(Gone, match="too old resource version"):
        view._watch("1")
    assert int(view._relist()) > 1
    assert names(nodes, view) == {f"node-{i}" for i in range(5)}


def test_stop_ends_a_waiting_watch_at_once(nodes: Fleet, tmp_path: Path) -> None:
    before = len(node_calls(nodes.cluster, nodes.release.username("operator"), "watch",
                            "ResponseStarted"))
    view = NodeCache(operator_kube(nodes, tmp_path))
    view.start()
    wait_for(lambda: watching(nodes, before), timeout_s=30, what="the node watch")
    started = time.monotonic()
    view.stop()
    assert time.monotonic() - started < 2
    assert view._thread is not None and not view._thread.is_alive()
