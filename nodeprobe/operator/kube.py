"""A small JSON-in, JSON-out door to the Kubernetes API on top of the official client's auth,
with the operator's error type (`KubeError`, status 0 when unreachable).

Why not the generated models: the operator reads a handful of fields from nodes, pods and its own
custom resources; plain dicts keep that obvious and tolerate fields the models do not know.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from nodeprobe.model import COMPONENT, EventType
from nodeprobe.publish.kube import Timeout, send

log = logging.getLogger(__name__)

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
REQUEST_TIMEOUT_S = 15.0
"""A slow API server must not stall the reconcile loop for long."""


class KubeError(RuntimeError):
    """The API refused or failed a request; `status` is the HTTP status (0 when unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Kube:
    """Raw requests with the credentials of an `ApiClient` (kubeconfig or in-cluster)."""

    def __init__(self, api: client.ApiClient, *, field_manager: str = f"{COMPONENT}-operator"
                 ) -> None:
        self.api = api
        self.field_manager = field_manager
        """Sent with every write, so managedFields and audit logs name the replica."""

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if method in ("POST", "PATCH", "PUT"):
            query = {**(query or {}), "fieldManager": self.field_manager}
        resp = self._send(method, path, query=query, body=body, content_type=content_type,
                          timeout=REQUEST_TIMEOUT_S)
        try:
            raw: bytes = resp.read()
        except (OSError, HTTPError) as e:
            raise KubeError(0, f"{method} {path}: {e}") from e
        _raise_for_status(method, path, resp.status, raw)
        return json.loads(raw) if raw else {}

    def stream(self, path: str, *, query: Mapping[str, str], read_timeout_s: float) -> Any:
        """A GET whose body is read as it comes (a watch): the urllib3 response, unread."""
        resp = self._send("GET", path, query=query, timeout=(REQUEST_TIMEOUT_S, read_timeout_s))
        if not 200 <= resp.status <= 299:
            _raise_for_status("GET", path, resp.status, resp.read())
        return resp.response

    def _send(self, method: str, path: str, *, query: Mapping[str, str] | None,
              body: object = None, content_type: str = "application/json",
              timeout: Timeout) -> Any:
        try:
            return send(self.api, method, path, query=query, body=body,
                        content_type=content_type, timeout=timeout)
        except ApiException as e:
            raise KubeError(e.status or 0, f"{method} {path}: {e.reason}") from e
        except (OSError, HTTPError) as e:
            raise KubeError(0, f"{method} {path}: {e}") from e

    def items(self, path: str, *, query: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        return list(self.request("GET", path, query=query).get("items") or [])

    def event(self, *, involved: Mapping[str, Any], kind: EventType, reason: str, message: str,
              namespace: str = "default", now: str) -> None:
        """Best effort: an Event that cannot be written is logged, never fatal."""
        name = involved.get("name", "x")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": dict(involved), "type": kind.value, "reason": reason,
            "message": message[:1000], "source": {"component": f"{COMPONENT}-operator"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": f"{COMPONENT}-operator",
        }
        try:
            self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=body)
        except KubeError as e:
            log.warning("could not record event %s on %s: %s", reason, name, e)


def _raise_for_status(method: str, path: str, status: int, raw: bytes) -> None:
    if 200 <= status <= 299:
        return
    try:
        message = json.loads(raw).get("message", "")
    except (ValueError, AttributeError):
        message = raw[:200].decode(errors="replace") if raw else ""
    raise KubeError(status, f"{method} {path}: HTTP {status} {message}")
