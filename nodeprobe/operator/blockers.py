"""Blockers that need I/O: pods matching a selector on the node, and firing Prometheus alerts.

kured's behaviour: an alert query that matches anything blocks, and so does a failure to ask
Prometheus (a monitoring outage is no time to start draining nodes).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from nodeprobe.operator.grammar import Selector
from nodeprobe.operator.kube import Kube

PROMETHEUS_TIMEOUT_S = 5.0


def firing_alerts(url: str, query: str, *, timeout_s: float = PROMETHEUS_TIMEOUT_S) -> str | None:
    """Why the alerts `query` finds block new episodes, or None when it finds nothing."""
    full = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(full, timeout=timeout_s) as resp:
            reply = json.loads(resp.read())
        if reply.get("status") != "success":
            raise ValueError(f"status {reply.get('status')!r}: {reply.get('error', '')}")
        series = reply["data"]["result"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return (f"cannot ask Prometheus at {url} ({e}); blocking new episodes until it answers "
                "(blockers.prometheus)")
    if not series:
        return None
    names = sorted({str(s.get("metric", {}).get("alertname", "?")) for s in series})
    return (f"{len(series)} firing alert(s) match {query} ({', '.join(names[:5])}): not starting "
            "new episodes (blockers.prometheus)")


def blocking_pods(kube: Kube, selector: Selector) -> dict[str, str]:
    """node -> why pods matching a policy's blockers.podSelector on it block an episode.

    One LIST for the whole cluster, filtered by the API server on the selector (a node's pods
    would cost a LIST per candidate node: 50 per pass with 50 sick nodes). An empty selector
    matches every pod, and lists them all."""
    query = {"labelSelector": q} if (q := selector.query()) else None
    out: dict[str, str] = {}
    for pod in sorted(kube.items("/api/v1/pods", query=query), key=_key):
        meta = pod.get("metadata") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        if node and node not in out and selector.matches(meta.get("labels") or {}):
            out[node] = (f"blocking pod {meta.get('namespace')}/{meta.get('name')} on the node "
                         "matches blockers.podSelector")
    return out


def _key(pod: Mapping[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))
