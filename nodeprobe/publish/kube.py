"""The official `kubernetes` client, for the operator: credentials and JSON requests on it.

The agent does not import this module: its few calls go through `kubeclient.py` on the standard
library, which saves ~14 MiB per node. What both share (back-off, timestamps, error texts,
`SMP`, timeouts) lives in `kubeclient.py` and is re-exported here.

Why JSON requests and not the generated API classes: `CoreV1Api` alone builds ~250 pydantic
models at import, +22 MiB of resident memory and 0.6 s of CPU at start. The client's
configuration, auth, TLS and `ApiException` are used as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from nodeprobe.publish import kubeclient
from nodeprobe.publish.kubeclient import (
    REQUEST_TIMEOUT_S,
    SMP,
    Backoff,
    KubeConfigError,
    RetrySettings,
    Timeout,
    describe_status,
    rfc3339,
)

__all__ = ["API_ERRORS", "REQUEST_TIMEOUT_S", "SMP", "Backoff", "KubeConfigError",
           "RetrySettings", "Timeout", "describe_error", "new_api_client", "request_json",
           "rfc3339", "send"]

API_ERRORS: tuple[type[BaseException], ...] = (
    ApiException,
    urllib3.exceptions.HTTPError,
    *kubeclient.API_ERRORS,
)
"""What a failed call may raise; anything else is a bug and should surface."""


def describe_error(e: BaseException, *, what: str) -> str:
    """One line a person can act on, naming the call that failed."""
    if isinstance(e, ApiException):
        return describe_status(int(e.status or 0), str(e.reason), what=what)
    return kubeclient.describe_error(e, what=what)


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
