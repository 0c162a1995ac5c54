"""Objects by (storage, namespace, name), one global resourceVersion, the log watches read.

Stored dicts are never mutated after `write`: readers may share them; writers pass in new dicts.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
Storage = tuple[str, str]  # (group, plural)


@dataclass(frozen=True)
class Change:
    """One committed write, as a watch reports it; `old` is None for ADDED."""

    rv: int
    type: str
    storage: Storage
    old: Obj | None
    new: Obj


def key_of(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta["name"]


class Store:
    """The state plus a bounded history; watches older than the history get 410 Gone."""

    def __init__(self, *, history: int = 50_000) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.rv = 1000
        self.compacted_rv = self.rv
        self._objects: dict[Storage, dict[tuple[str, str], Obj]] = {}
        self._log: deque[Change] = deque(maxlen=history)

    def get(self, storage: Storage, namespace: str, name: str) -> Obj | None:
        return self._objects.get(storage, {}).get((namespace, name))

    def items(self, storage: Storage, namespace: str | None = None) -> list[Obj]:
        table = self._objects.get(storage, {})
        keys = sorted(k for k in table if namespace is None or k[0] == namespace)
        return [table[k] for k in keys]

    def storages(self) -> Iterator[Storage]:
        return iter(list(self._objects))

    def write(self, storage: Storage, obj: Obj) -> Obj:
        """Store `obj` (ADDED or MODIFIED) with the next resourceVersion; wakes watchers."""
        with self.cond:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = key_of(obj)
            table = self._objects.setdefault(storage, {})
            old = table.get(key)
            table[key] = obj
            self._append(Change(self.rv, "MODIFIED" if old else "ADDED", storage, old, obj))
            return obj

    def remove(self, storage: Storage, namespace: str, name: str, *,
               final: Obj | None = None) -> Obj | None:
        """Delete; the DELETED event carries `final` (the last state) or the stored object."""
        with self.cond:
            old = self._objects.get(storage, {}).pop((namespace, name), None)
            if old is None:
                return None
            self.rv += 1
            last = final or old
            gone = {**last, "metadata": {**last["metadata"], "resourceVersion": str(self.rv)}}
            self._append(Change(self.rv, "DELETED", storage, old, gone))
            return gone

    def _append(self, change: Change) -> None:
        if len(self._log) == self._log.maxlen:
            self.compacted_rv = self._log[0].rv
        self._log.append(change)
        self.cond.notify_all()

    def changes_since(self, rv: int) -> list[Change] | None:
        """Changes after `rv`, or None when some of them were already compacted away."""
        with self.cond:
            if rv < self.compacted_rv:
                return None
            if not self._log or self._log[-1].rv <= rv:
                return []
            lo, hi = 0, len(self._log)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._log[mid].rv <= rv:
                    lo = mid + 1
                else:
                    hi = mid
            return [self._log[i] for i in range(lo, len(self._log))]
