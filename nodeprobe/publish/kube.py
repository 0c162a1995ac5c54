"""Kubernetes plumbing shared by the condition writer and the event recorder.

The writers themselves live in `conditions.py` and `events.py`; this module holds what both need:
an API client that never outlasts its timeout, JSON requests on it, the retry back-off, timestamps
and error texts a person can act on.

Why JSON requests and not the generated API classes: `CoreV1Api` alone builds ~250 pydantic
models at import, +22 MiB of resident memory and 0.6 s of CPU at start, for the four calls the
agent makes. The client's configuration, auth, TLS and `ApiException` are used as they are.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

SMP = "application/strategic-merge-patch+json"
"""Conditions merge by `type` only under a strategic merge patch; a JSON merge replaces the list."""

REQUEST_TIMEOUT_S = 5.0
"""Upper bound for one API call (s): the agent loop must keep probing while the API is away."""

Timeout = float | tuple[float, float]
"""Total seconds, or (connect, read) for a response read as it streams."""

API_ERRORS: tuple[type[BaseException], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    OSError,
    ValueError,  # a reply that does not parse, or the client's own validation
)
"""What a failed call may raise; anything else is a bug and should surface."""


class KubeConfigError(Exception):
    """No usable Kubernetes credentials; the message says where we looked."""


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Back-off after a failed write (NPD calls this its resync)."""

    initial_s: float = 1.0
    """First retry delay (s); short so a blip costs one loop iteration or two."""
    max_s: float = 30.0
    """Longest delay (s); an API outage costs at most one call per 30 s per writer."""


class Backoff:
    """Exponential back-off with a cap; pure: the caller passes the time."""

    def __init__(self, settings: RetrySettings) -> None:
        self._settings = settings
        self.failures = 0
        """Consecutive failures since the last success."""
        self._next_try = -math.inf

    def ready(self, now: float) -> bool:
        return now >= self._next_try

    def failed(self, now: float) -> float:
        """Record a failure at `now`; return the delay before the next try."""
        delay = min(self._settings.max_s, self._settings.initial_s * 2.0 ** min(self.failures, 30))
        self.failures += 1
        self._next_try = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self._next_try = -math.inf


def rfc3339(ts: float) -> str:
    """Kubernetes `metav1.Time`: UTC, whole seconds, trailing Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    """Unix seconds from a Kubernetes time (`...Z`, fractions allowed); ValueError if not one."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def describe_error(e: BaseException, *, what: str) -> str:
    """One line a person can act on, naming the call that failed."""
    if isinstance(e, ApiException):
        hint = {
            401: "the service account token is missing or expired",
            403: "RBAC does not allow it; see the chart's ClusterRole",
            404: "it does not exist; is NODE_NAME the node's name?",
        }.get(int(e.status or 0), "")
        text = f"{what}: HTTP {e.status} {e.reason}"
        return f"{text} ({hint})" if hint else text
    return f"{what}: {type(e).__name__}: {e}"


def new_api_client(*, kubeconfig: str | None = None, in_cluster: bool = False) -> k8s.ApiClient:
    """An API client for the writers: in-cluster credentials or a kubeconfig file.

    urllib3 retries are turned off so one call never takes longer than its `_request_timeout`;
    the writers retry on their own schedule.
    """
    cfg = k8s.Configuration()
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=cfg
            )
    except (k8s_config.ConfigException, OSError, ValueError) as e:
        where = "in-cluster service account" if in_cluster else (kubeconfig or "~/.kube/config")
        raise KubeConfigError(f"cannot load Kubernetes credentials from {where}: {e}") from e
    cfg.retries = 0
    return k8s.ApiClient(cfg)


def send(api: k8s.ApiClient, method: str, path: str, *, query: Mapping[str, str] | None = None,
         body: object = None, content_type: str = "application/json",
         timeout: Timeout = REQUEST_TIMEOUT_S) -> Any:
    """One request with the client's credentials; the `RESTResponse`, status unchecked, unread."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    params = api.param_serialize(method, path, query_params=list((query or {}).items()),
                                 header_params=headers, body=body, auth_settings=["BearerToken"])
    return api.call_api(*params, _request_timeout=timeout)


def request_json(api: k8s.ApiClient, method: str, path: str, *,
                 query: Mapping[str, str] | None = None, body: object = None,
                 content_type: str = "application/json",
                 timeout: Timeout = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """The parsed JSON reply; `ApiException` (with the server's status and body) otherwise."""
    resp = send(api, method, path, query=query, body=body, content_type=content_type,
                timeout=timeout)
    raw: bytes = resp.read()
    if not 200 <= resp.status <= 299:
        raise ApiException.from_response(http_resp=resp, body=raw.decode(errors="replace"),
                                         data=None)
    reply: dict[str, Any] = json.loads(raw) if raw else {}
    return reply
