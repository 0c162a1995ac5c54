"""The Docker probe's mapping from what a call raised to an outcome and an actionable sentence.

Permission denied cannot be produced for real here (the tests run as root, and root passes every
permission check), so the mapping is tested directly, bare and wrapped (chained as `__cause__`).
"""

from __future__ import annotations

import errno
import http.client

import pytest

from nodeprobe.model import Outcome
from nodeprobe.probes.docker import classify_error, permission_message

SOCK = "/var/run/docker.sock"


def wrapped(cause: BaseException) -> BaseException:
    """Chained as `__cause__` under another error: the mapping must find the real cause."""
    outer = OSError("call failed")
    outer.__cause__ = cause
    return outer


def classify(exc: BaseException) -> tuple[Outcome, str]:
    return classify_error(exc, socket_path=SOCK, request="GET /_ping", deadline_s=3)


@pytest.mark.parametrize("wrap", [lambda e: e, wrapped])
def test_permission_denied_says_what_to_do(wrap: object) -> None:
    assert callable(wrap)
    outcome, detail = classify(wrap(PermissionError(errno.EACCES, "Permission denied")))
    assert outcome is Outcome.ERROR
    assert detail == permission_message(SOCK) == (
        "permission denied on /var/run/docker.sock: the socket is root's; run as root "
        "(membership in the docker group is root-equivalent, prefer sudo)")


@pytest.mark.parametrize(
    ("cause", "outcome", "words"),
    [
        (FileNotFoundError(errno.ENOENT, "No such file"), Outcome.DOWN, "no socket at"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Outcome.DOWN, "refused"),
        (TimeoutError("timed out"), Outcome.HUNG, "did not answer GET /_ping within 3s"),
        (BlockingIOError(errno.EAGAIN, "again"), Outcome.HUNG, "listen backlog"),
        (http.client.RemoteDisconnected("closed"), Outcome.ERROR, "mid-reply"),
        (http.client.BadStatusLine("\x00garbage"), Outcome.ERROR, "not HTTP"),
        (ValueError("odd"), Outcome.ERROR, "ValueError: odd"),
    ],
)
def test_mapping(cause: BaseException, outcome: Outcome, words: str) -> None:
    for exc in (cause, wrapped(cause)):
        got, detail = classify(exc)
        assert got is outcome
        assert words in detail


def test_socket_timeout_is_hung() -> None:
    assert classify(TimeoutError("timed out"))[0] is Outcome.HUNG
    assert classify(OSError("wrapper", TimeoutError("timed out")))[0] is Outcome.HUNG
