"""Blockers that need I/O: pods matching a selector on the node, and firing Prometheus alerts.

kured's behaviour: an alert query that matches anything blocks, and so does a failure to ask
Prometheus (a monitoring outage is no time to start draining nodes).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable

from nodeprobe.operator.kube import Kube
from nodeprobe.operator.policy import Policy

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


class BlockerChecks:
    """Memoised per pass: Prometheus is asked once per (url, query), each node's pods once."""

    def __init__(self, kube: Kube, *, alerts: Callable[[str, str], str | None] = firing_alerts
                 ) -> None:
        self.kube = kube
        self.alerts = alerts
        self._alerts: dict[tuple[str, str], str | None] = {}

    def cluster(self, policy: Policy) -> str | None:
        url = policy.blockers.prometheus_url
        if url is None:
            return None
        key = (url, policy.blockers.alert_query)
        if key not in self._alerts:
            self._alerts[key] = self.alerts(*key)
        return self._alerts[key]

    def node(self, policy: Policy, node: str) -> str | None:
        selector = policy.blockers.pod_selector
        if selector is None:
            return None
        pods = self.kube.items("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={node}"})
        for pod in pods:
            meta = pod.get("metadata") or {}
            if (pod.get("spec") or {}).get("nodeName") == node \
                    and selector.matches(meta.get("labels") or {}):
                return (f"blocking pod {meta.get('namespace')}/{meta.get('name')} on the node "
                        "matches blockers.podSelector")
        return None
