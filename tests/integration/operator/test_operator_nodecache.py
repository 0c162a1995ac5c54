"""The operator's node view against the API double: paged list, live watch, outages, 410, stop."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from nodeprobe.operator.kube import Kube
from nodeprobe.operator.nodecache import Gone, NodeCache
from nodeprobe.operator.reconcile import node_view
from tests.integration.operator.cluster import UNHEALTHY, add_node, set_sick, wait_for
from tests.kube.double import KubeDouble
from tests.kube.fixtures import kube_double


@pytest.fixture
def kube() -> Iterator[KubeDouble]:
    with kube_double() as double:
        for i in range(5):
            add_node(double, f"node-{i}")
        yield double


@pytest.fixture
def cache(kube: KubeDouble) -> Iterator[NodeCache]:
    nodes = NodeCache(Kube(kube.api_client()), page=2, retry_s=(0.1, 0.2))
    nodes.start()
    yield nodes
    nodes.stop()


def names(cache: NodeCache) -> set[str] | None:
    view = cache.snapshot()
    return None if view is None else {n["metadata"]["name"] for n in view}


def sick(cache: NodeCache, name: str) -> bool:
    for n in cache.snapshot() or []:
        if n["metadata"]["name"] == name:
            return node_view(n).conditions[UNHEALTHY].status == "True"
    return False


def test_the_first_list_is_paged_and_makes_the_view_live(kube: KubeDouble,
                                                           cache: NodeCache) -> None:
    wait_for(lambda: names(cache) is not None, timeout_s=10, what="the first list")
    assert names(cache) == {f"node-{i}" for i in range(5)}
    lists = kube.log(verb="list", resource="nodes")
    assert len(lists) == 3  # 5 nodes, 2 a page
    assert all("limit=2" in r.query for r in lists)
    assert kube.log(writes_only=True) == []


def test_the_watch_follows_changes_and_deletions(kube: KubeDouble, cache: NodeCache) -> None:
    wait_for(lambda: kube.open_watches("nodes") == 1, timeout_s=10, what="the node watch")
    set_sick(kube, "node-1", True)
    add_node(kube, "node-9")
    kube.delete_object("nodes", "node-0")
    wait_for(lambda: sick(cache, "node-1"), timeout_s=10, what="node-1 seen sick")
    wait_for(lambda: names(cache) == {"node-1", "node-2", "node-3", "node-4", "node-9"},
             timeout_s=10, what="node-9 added and node-0 gone")
    assert len(kube.log(verb="list", resource="nodes")) == 3  # followed, not re-listed


def test_an_api_outage_takes_the_view_offline_until_a_new_list(kube: KubeDouble,
                                                                cache: NodeCache) -> None:
    wait_for(lambda: kube.open_watches("nodes") == 1, timeout_s=10, what="the node watch")
    kube.pause()
    try:
        wait_for(lambda: cache.snapshot() is None, timeout_s=10, what="the view going offline")
        set_sick(kube, "node-3", True)  # happens while the operator cannot see
        kube.delete_object("nodes", "node-4")
    finally:
        kube.resume()
    wait_for(lambda: sick(cache, "node-3"), timeout_s=10, what="the change made in the outage")
    assert names(cache) == {"node-0", "node-1", "node-2", "node-3"}


def test_a_watch_from_a_compacted_version_is_gone(tmp_path: Any) -> None:
    double = KubeDouble(directory=tmp_path, history=3).start()
    try:
        add_node(double, "node-a")
        old = double.get("nodes", "node-a")["metadata"]["resourceVersion"]  # type: ignore[index]
        for _ in range(5):
            set_sick(double, "node-a", True)
            set_sick(double, "node-a", False)
        cache = NodeCache(Kube(double.api_client()))
        with pytest.raises(Gone, match="too old resource version"):
            cache._watch(old)
        assert cache._relist() == str(double.store.rv)
        assert names(cache) == {"node-a"}
    finally:
        double.stop()


def test_stop_ends_a_waiting_watch_at_once(kube: KubeDouble) -> None:
    cache = NodeCache(Kube(kube.api_client()))
    cache.start()
    wait_for(lambda: kube.open_watches("nodes") == 1, timeout_s=10, what="the node watch")
    started = time.monotonic()
    cache.stop()
    assert time.monotonic() - started < 2
    assert cache._thread is not None and not cache._thread.is_alive()
