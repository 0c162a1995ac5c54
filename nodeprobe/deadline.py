"""Sockets whose every blocking operation ends at one absolute deadline.

Socket timeouts are per operation, so a peer that trickles bytes (or a connect, a TLS handshake
and a read) adds up past any timeout: a reply trickled at 1 byte per 0.5 s never trips a 2 s
timeout. Here each operation is armed with the time left until the deadline of the call in
progress (`Budget`), so a call returns by its deadline however the time is spent. CPython's
`sendall`, TLS handshake and TLS read already treat the socket timeout as a total for that one
operation, so arming before each is enough. Used by the Docker probe (unix socket) and the
agent's API client (TCP, TLS).
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Budget:
    """The absolute (monotonic) deadline of the call in progress on one connection."""

    deadline: float = 0.0

    def start(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; TimeoutError (an OSError) once the deadline has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return left


class _Armed(socket.socket):
    """Arms the socket timeout to the time left before each blocking operation; the shared
    half of `DeadlineSocket` and `DeadlineSSLSocket` (their MROs put the real one after it)."""

    _budget: Budget

    def _arm(self) -> None:
        super().settimeout(self._budget.remaining())

    def settimeout(self, value: float | None) -> None:
        """Ignored: per-op timeouts come from the deadline, armed before each op instead."""

    def connect(self, address: Any) -> None:
        self._arm()
        super().connect(address)

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return super().recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return super().recv_into(*args)

    def send(self, data: Any, flags: int = 0) -> int:
        self._arm()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._arm()
        super().sendall(data, flags)


class DeadlineSocket(_Armed):
    """A socket whose every blocking operation times out at `budget.deadline`."""

    def __init__(self, budget: Budget, family: int = socket.AF_UNIX,
                 kind: int = socket.SOCK_STREAM, *, fileno: int | None = None) -> None:
        super().__init__(family, kind, fileno=fileno)
        self._budget = budget


class DeadlineSSLSocket(_Armed, ssl.SSLSocket):
    """The TLS counterpart; `SSLContext.wrap_socket` builds it (`tls_connect`), so the budget
    is attached after construction and before the handshake."""

    def do_handshake(self, block: bool = False) -> None:
        self._arm()
        super().do_handshake(block)


def tcp_connect(host: str | bytes, port: int, budget: Budget) -> DeadlineSocket:
    """A TCP connection (TCP_NODELAY) made within the budget: each address tried in turn."""
    last: OSError = OSError(f"no address for {host!r}")
    for family, kind, _proto, _name, address in socket.getaddrinfo(host, port,
                                                                   type=socket.SOCK_STREAM):
        sock = DeadlineSocket(budget, family, kind)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect(address)
        except OSError as e:
            sock.close()
            last = e
            if isinstance(e, TimeoutError):
                raise
            continue
        return sock
    raise last


def tls_connect(sock: socket.socket, context: ssl.SSLContext, server_name: str | bytes,
                budget: Budget) -> DeadlineSSLSocket:
    """Wrap `sock` in TLS with the handshake and every later operation under `budget`."""
    context.sslsocket_class = DeadlineSSLSocket
    tls = context.wrap_socket(sock, server_hostname=server_name,
                              do_handshake_on_connect=False)
    assert isinstance(tls, DeadlineSSLSocket)
    tls._budget = budget
    tls.do_handshake()
    return tls
