"""A unix-socket proxy that holds every reply for a set time: a daemon made slow, not hung.

Put in front of a real dockerd (or containerd) socket: requests go through at once, the first
bytes of each answer wait `delay_s` before they are passed on, so every call takes about
`delay_s` plus the daemon's own time and then answers correctly. Used to prove that nodeprobe
reports such a daemon slow, with the measured latency, and not hung; with `every=2` and a delay
beyond any horizon, calls alternate between answered and hung.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path


class DelayProxy:
    """Listens on `listen`, forwards to `target`; replies are held `delay_s`."""

    def __init__(self, listen: Path, target: Path, *, delay_s: float, every: int = 1) -> None:
        self.listen = listen
        self.target = target
        self.delay_s = delay_s
        self.every = every
        """Hold the replies of every `every`-th connection only (2: calls alternate)."""
        self._count = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> DelayProxy:
        if self.listen.exists():
            self.listen.unlink()
        self._server.bind(str(self.listen))
        self._server.listen(128)
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.target))
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
                self._count += 1
                delay = self.delay_s if self._count % self.every == 0 else 0.0
            asked = threading.Event()  # a request went up and its answer has not come down yet
            threading.Thread(target=self._up, args=(client, upstream, asked), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, asked, delay),
                             daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, asked: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                asked.set()
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _down(self, upstream: socket.socket, client: socket.socket,
              asked: threading.Event, delay_s: float) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if asked.is_set():
                    asked.clear()
                    time.sleep(delay_s)  # the fault itself: this daemon answers late
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.close()
