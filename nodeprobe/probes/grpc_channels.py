"""gRPC plumbing for the CRI probe: channels handed out by lease, and a tiny protobuf read."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import grpc


class ProbeClosed(RuntimeError):
    pass


class Channels:
    """The current channel, handed out by lease. A replaced channel is closed when its last call
    ends, so one thread's reconnect never cancels another thread's call in flight."""

    def __init__(self, target: str, *, options: Sequence[tuple[str, int]]) -> None:
        self._target = target
        self._options = tuple(options)
        self._lock = threading.Lock()
        self._current: grpc.Channel | None = None
        self._users: dict[grpc.Channel, int] = {}
        self._closed = False

    @contextlib.contextmanager
    def lease(self) -> Iterator[grpc.Channel]:
        with self._lock:
            if self._closed:
                raise ProbeClosed("the probe was closed")
            if self._current is None:
                self._current = grpc.insecure_channel(self._target, options=self._options)
            channel = self._current
            self._users[channel] = self._users.get(channel, 0) + 1
        try:
            yield channel
        finally:
            with self._lock:
                self._users[channel] -= 1
                idle = self._users[channel] == 0
                if idle:
                    del self._users[channel]
                stale = idle and channel is not self._current
            if stale:
                channel.close()

    def replace(self, channel: grpc.Channel) -> None:
        """Drop `channel` if it is still current; the next lease opens a new one."""
        with self._lock:
            current = self._current
            if current is None or current is not channel:
                return
            self._current = None
            idle = current not in self._users
        if idle:
            current.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channel, self._current = self._current, None
            in_use = channel in self._users  # then it is closed when its last lease ends
        if channel is not None and not in_use:
            channel.close()


def first_string(raw: bytes) -> str:
    """Field 1 of a protobuf message when it is a length-delimited string (tag 0x0a), else ''.
    Enough for containerd's VersionResponse without carrying its .proto."""
    if len(raw) < 2 or raw[0] != 0x0A:
        return ""
    length, shift, i = 0, 0, 1
    while i < len(raw):
        byte = raw[i]
        length |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            break
        shift += 7
    return raw[i:i + length].decode("utf-8", errors="replace")
