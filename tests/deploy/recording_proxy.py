"""A unix-socket proxy that records the method and path of every HTTP request passing through.

Put between a client and dockerd's socket, it shows exactly which Docker Engine API calls the
client made, so a test can prove that probing is read-only (GET/HEAD only). Bytes are forwarded
unchanged in both directions; only the client's side is parsed.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Request:
    method: str
    path: str


class _RequestParser:
    """Incremental parser of a client's byte stream: request lines, headers, bodies skipped."""

    def __init__(self, sink: list[Request], lock: threading.Lock) -> None:
        self._buf = b""
        self._body_left = 0
        self._sink = sink
        self._lock = lock

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            if self._body_left:
                skip = min(self._body_left, len(self._buf))
                self._buf = self._buf[skip:]
                self._body_left -= skip
                if self._body_left:
                    return
            head_end = self._buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self._buf[:head_end].decode("latin-1").split("\r\n")
            self._buf = self._buf[head_end + 4:]
            method, _, rest = head[0].partition(" ")
            path = rest.rpartition(" ")[0] or rest
            with self._lock:
                self._sink.append(Request(method, path))
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self._body_left = int(value.strip() or 0)


@dataclass
class RecordingProxy:
    """Listen on `listen`, forward every connection to `upstream`, record each request."""

    listen: Path
    upstream: Path
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RecordingProxy:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.listen))
        server.listen(64)
        server.settimeout(0.2)
        self._server = server
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.listen)

    def recorded(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def _spawn(self, target: object, *args: object) -> None:
        assert callable(target)
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._pipe, client)

    def _pipe(self, client: socket.socket) -> None:
        parser = _RequestParser(self.requests, self._lock)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.upstream))
        except OSError:
            client.close()
            upstream.close()
            return
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    src: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is client:
                        parser.feed(data)
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            upstream.close()

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def recording(listen: Path, upstream: Path) -> Iterator[RecordingProxy]:
    with RecordingProxy(listen=listen, upstream=upstream) as proxy:
        yield proxy
