"""A TCP proxy that closes a connection after it has been idle for `idle_s`, as kube-apiserver
does after 90 s: put in front of the real API server so the idle close takes a second."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from tests.integration.publish.tcp_server import Listener


class IdleClosingProxy(Listener):
    def __init__(self, target: tuple[str, int], *, idle_s: float) -> None:
        self.target, self.idle_s = target, idle_s
        self.closed_idle = threading.Event()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        with contextlib.closing(client), socket.create_connection(self.target) as upstream, \
                selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                ready = sel.select(self.idle_s)
                if not ready:
                    self.closed_idle.set()  # idle: close both sides, as the API server does
                    return
                for key, _ in ready:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
