"""A dockerd that answers every call in 8 s (a delaying proxy in front of its real socket) is
reported slow with its measured latency, and never hung once the late answers arrive."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from nodeprobe.model import ConditionType, Reason, Status
from tests.harness.agent_loop import TransitionSinks, config_for, running_agent, wait_for
from tests.harness.delay_proxy import DelayProxy

DELAY_S = 8.0
WATCH_S = 60.0
"""How long the slow daemon is watched after the first late answer."""


@pytest.mark.containerd("1.6")  # dockerd behind a proxy: containerd's version is beside it
def test_dockerd_answering_in_8s_is_slow_not_hung(runtimes):
    proxy_path = runtimes.base / "slow-docker.sock"
    with DelayProxy(proxy_path, runtimes.dockerd.socket, delay_s=DELAY_S):
        config = config_for(runtimes, **{
            "docker.socket": str(proxy_path),
            "checks.process.enabled": False,  # the proxy is not dockerd's process
            # the defaults a node runs with for the docker checks: 3s deadline, 1s objective
            "checks.dockerPing.interval": "2s", "checks.dockerPing.deadline": "3s",
            "checks.dockerVersion.interval": "2s", "checks.dockerVersion.deadline": "3s",
            "checks.dockerInfo.interval": "2s", "checks.dockerInfo.deadline": "3s",
        })
        sinks = TransitionSinks()
        with running_agent(config, sinks=sinks):
            took = wait_for(lambda: (c := sinks.condition(ConditionType.SLOW)) is not None
                            and c.status is Status.TRUE, timeout_s=90,
                            what="ContainerRuntimeSlow from the late answers")
            slow_at = time.monotonic()
            slow = sinks.condition(ConditionType.SLOW)
            threading.Event().wait(WATCH_S)  # watch a while: nothing may change meanwhile
            with sinks.lock:
                history = list(sinks.history)
            unavailable = sinks.condition(ConditionType.UNAVAILABLE)
            still_slow = sinks.condition(ConditionType.SLOW)
    assert slow is not None and slow.reason == Reason.DOCKERD_API_SLOW
    assert "past its 3s deadline, not hung" in slow.message, slow.message
    latency = float(slow.message.split("answered in ")[1].split("s")[0])
    assert DELAY_S <= latency < DELAY_S + 3, slow.message
    assert still_slow is not None and still_slow.status is Status.TRUE
    assert unavailable is not None and unavailable.status is Status.FALSE, unavailable
    # Each check looks hung until its own first late answer arrives (today's time for a dead
    # daemon); once they have, nothing raises it again.
    after = [(s, r) for t, s, r in history if t >= slow_at and s is not Status.FALSE]
    assert after == [], f"ContainerRuntimeUnavailable raised again while slow: {after}"
    # That first stretch is shorter than two delayed calls (the first call of /version and /info
    # also negotiates the API version through /_ping) plus a deadline: far below the horizon, so
    # no remediation `for:` can fire.
    for (t0, s0, _), (t1, _, _) in itertools.pairwise(history):
        if s0 is Status.TRUE:
            assert t1 - t0 < 2 * DELAY_S + 6, history
    print(f"\nslow raised {took:.1f}s after start: {slow.message}; history: "
          f"{[(round(t - history[0][0], 1), str(s), r) for t, s, r in history]}")
