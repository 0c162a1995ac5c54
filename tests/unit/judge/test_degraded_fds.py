"""fds against the daemon's own limit: raised before `too many open files`, never on unknowns."""

from __future__ import annotations

from nodeprobe.config import Config
from nodeprobe.judge.degraded import findings
from nodeprobe.model import Check, Observation, Outcome, Reason, Runtime, Value

CONFIG = Config.defaults()


def process(fds: float | None, limit: float | None) -> Observation:
    values = {str(Value.PID): 42.0}
    if fds is not None:
        values[str(Value.FDS)] = fds
    if limit is not None:
        values[str(Value.FD_LIMIT)] = limit
    return Observation(Runtime.DOCKERD, Check.PROCESS, Outcome.OK, 0.01, 0.0, values=values)


def test_eighty_percent_of_its_own_limit_raises_with_what_to_do() -> None:
    (found,) = findings([process(850, 1024)], CONFIG)
    assert found.reason is Reason.RUNTIME_FDS_NEAR_LIMIT
    assert "850 open fds, 83% of its own limit of 1024" in found.message
    assert "LimitNOFILE" in found.message


def test_below_the_share_or_unknown_raises_nothing() -> None:
    assert findings([process(700, 1024)], CONFIG) == []
    assert findings([process(None, 1024)], CONFIG) == []  # fds unreadable: "unknown"
    assert findings([process(850, None)], CONFIG) == []  # no limit read
    assert findings([process(850, 0)], CONFIG) == []


def test_a_busy_default_daemon_is_far_from_it() -> None:
    # dockerd under systemd: LimitNOFILE=infinity (1048576); 50,000 fds is already a leak case.
    assert findings([process(50_000, 1_048_576)], CONFIG) == []
