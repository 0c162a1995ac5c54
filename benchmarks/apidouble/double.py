"""KubeDouble: the test-facing object — start/stop, pause/resume, kubeconfig, counters, state."""

from __future__ import annotations

import copy
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from benchmarks.apidouble.api import Api
from benchmarks.apidouble.resources import Registry, ResourceType, builtin_types
from benchmarks.apidouble.server import Request, Server
from benchmarks.apidouble.store import Obj, Store

KUBECTL = "/usr/bin/kubectl"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class KubeDouble:
    """A Kubernetes API server on 127.0.0.1 with its state in memory.

    Tests talk to it through real clients (kubectl, the `kubernetes` package, kopf) via
    `kubeconfig`, and read/arrange state directly with get()/put_object() (not counted).
    """

    def __init__(self, *, directory: Path, clock: Callable[[], float] = time.time,
                 history: int = 50_000) -> None:
        self.directory = directory
        self.clock = clock
        self.registry = Registry()
        for rt in builtin_types():
            self.registry.add(rt)
        self.store = Store(history=history)
        self.api = Api(store=self.store, registry=self.registry, clock=clock)
        self.evictions: list[tuple[str, str, int | None]] = []
        """(namespace, pod, deleteOptions.gracePeriodSeconds) of every allowed eviction."""
        self.errors: list[Exception] = []
        """Unexpected exceptions inside the double (answered 500); the fixture asserts none."""
        self.port = 0
        self._log: list[Request] = []
        self._log_lock = threading.Lock()
        self._watches: dict[str, int] = {}
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        for ns in DEFAULT_NAMESPACES:
            self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                             "status": {"phase": "Active"}})

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def paused(self) -> bool:
        return self._server is None

    def start(self) -> KubeDouble:
        self._listen()
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        self.pause()

    def pause(self) -> None:
        """Close the listener and every open connection; state stays. Clients get refused."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut()
        with self.store.cond:
            self.store.cond.notify_all()
        if thread is not None:
            thread.join(timeout=5)

    def resume(self) -> None:
        """Listen again on the same port with the same state."""
        if self._server is None:
            self._listen()

    def _listen(self) -> None:
        server = Server(("127.0.0.1", self.port), self)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name=f"kube-double-{self.port}", daemon=True)
        thread.start()
        self._server, self._thread = server, thread

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "double",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "double", "user": {"token": "ignored-by-the-double"}}],
            "contexts": [{"name": "double",
                          "context": {"cluster": "double", "user": "double",
                                      "namespace": "default"}}],
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def kubectl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against the double (own discovery cache, no host config)."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.directory)}
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.kubeconfig),
             "--cache-dir", str(self.directory / "kubectl-cache"), *args],
            capture_output=True, text=True, timeout=timeout, env=env, check=False)

    # -- bookkeeping ------------------------------------------------------------------------
    def record(self, request: Request) -> None:
        with self._log_lock:
            self._log.append(request)

    def log(self, *, verb: str | None = None, resource: str | None = None,
            group: str | None = None, writes_only: bool = False) -> list[Request]:
        """Requests seen since the last reset, filtered.

        `resource="nodes"` matches nodes and all its subresources; `"nodes/status"` only those.
        """
        plural, _, sub = (resource or "").partition("/")
        with self._log_lock:
            entries = list(self._log)
        return [r for r in entries
                if (verb is None or r.verb == verb)
                and (not plural or r.resource == plural)
                and (not sub or r.subresource == sub)
                and (group is None or r.group == group)
                and (r.write or not writes_only)]

    def counts(self, *, writes_only: bool = False) -> Counter[tuple[str, str]]:
        """Requests per (verb, "plural[/subresource]") since the last reset."""
        return Counter((r.verb, f"{r.resource}/{r.subresource}" if r.subresource else r.resource)
                       for r in self.log(writes_only=writes_only))

    def requests(self, *, verb: str | None = None, resource: str | None = None,
                 group: str | None = None) -> int:
        return len(self.log(verb=verb, resource=resource, group=group))

    def writes(self, *, verb: str | None = None, resource: str | None = None,
               group: str | None = None) -> int:
        """Writes (create/update/patch/delete/deletecollection) received, whatever the answer."""
        return len(self.log(verb=verb, resource=resource, group=group, writes_only=True))

    def watch_opened(self, resource: str, delta: int) -> None:
        with self._log_lock:
            self._watches[resource] = self._watches.get(resource, 0) + delta

    def open_watches(self, resource: str) -> int:
        """Watches on `resource` (plural) being streamed right now."""
        with self._log_lock:
            return self._watches.get(resource, 0)

    def reset_counters(self) -> None:
        with self._log_lock:
            self._log.clear()
        self.evictions.clear()

    # -- direct state -----------------------------------------------------------------------
    def _type(self, resource: str, group: str, version: str | None) -> ResourceType:
        for rt in self.registry.types.values():
            if rt.plural == resource and rt.group == group and version in (None, rt.version):
                return rt
        raise KeyError(f"the double serves no resource {resource!r} in group {group!r}")

    def get(self, resource: str, name: str, *, namespace: str = "", group: str = "",
            version: str | None = None) -> Obj | None:
        """A copy of the stored object, or None; not counted as a request."""
        rt = self._type(resource, group, version)
        with self.store.cond:
            obj = self.store.get(rt.storage, namespace if rt.namespaced else "", name)
            return copy.deepcopy(self.api.view(rt, obj)) if obj is not None else None

    def list(self, resource: str, *, namespace: str | None = None, group: str = "",
             version: str | None = None) -> list[Obj]:
        rt = self._type(resource, group, version)
        with self.store.cond:
            return [copy.deepcopy(self.api.view(rt, o))
                    for o in self.store.items(rt.storage, namespace)]

    def put_object(self, obj: Obj) -> Obj:
        """Create or replace as-is (status included), as kubelet or a controller would have.

        Fills uid/creationTimestamp/resourceVersion, creates a missing namespace, wakes watches.
        """
        rt = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise KeyError(f"the double serves no {obj.get('apiVersion')}/{obj.get('kind')}")
        return copy.deepcopy(self.api.put(rt, obj))

    def delete_object(self, resource: str, name: str, *, namespace: str = "",
                      group: str = "") -> None:
        """Remove now, ignoring finalizers (a test's hand, not a client's request)."""
        rt = self._type(resource, group, None)
        with self.store.cond:
            obj = self.store.get(rt.storage, namespace, name)
            if obj is not None:
                self.store.remove(rt.storage, namespace, name)

    def api_client(self) -> Any:
        """A `kubernetes.client.ApiClient` configured from the kubeconfig."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)
