"""Calls that alternate answered and hung (a proxy in front of the real dockerd holds the reply of
every second connection) raise DockerdHung once and hold it, instead of raising nothing."""

from __future__ import annotations

import threading
import time

import pytest

from nodeprobe.model import ConditionType, Reason, Status
from tests.harness.agent_loop import TransitionSinks, config_for, running_agent, wait_for
from tests.harness.delay_proxy import DelayProxy

WATCH_S = 20.0


@pytest.mark.containerd("1.6")  # dockerd behind a proxy: containerd's version is beside it
def test_every_second_call_hung_raises_once_and_holds(runtimes):
    proxy_path = runtimes.base / "flaky-docker.sock"
    with DelayProxy(proxy_path, runtimes.dockerd.socket, delay_s=600.0, every=2):
        config = config_for(runtimes, **{
            "docker.socket": str(proxy_path),
            "checks.process.enabled": False,  # the proxy is not dockerd's process
            # /_ping alone through the proxy, so its calls strictly alternate OK and HUNG
            "checks.dockerVersion.enabled": False, "checks.dockerInfo.enabled": False,
        })
        sinks = TransitionSinks()
        with running_agent(config, sinks=sinks):
            wait_for(lambda: (c := sinks.condition(ConditionType.UNAVAILABLE)) is not None
                     and c.status is Status.TRUE, timeout_s=60, what="a raise")
            raised_at = time.monotonic()
            threading.Event().wait(WATCH_S)  # watch: it must hold, not flap
            with sinks.lock:
                history = list(sinks.history)
                events = [e for e in sinks.events if e.reason in (
                    Reason.DOCKERD_HUNG, Reason.HEALTHY)]
            cond = sinks.condition(ConditionType.UNAVAILABLE)
    assert cond is not None and (cond.status, cond.reason) == (Status.TRUE, Reason.DOCKERD_HUNG)
    assert [(s, r) for t, s, r in history if t > raised_at] == [], history
    assert [e.reason for e in events] == [Reason.DOCKERD_HUNG], events
