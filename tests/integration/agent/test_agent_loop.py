"""The agent loop against the real sandboxed runtimes, publishing into recording sinks.

Kubernetes is exercised separately (test_agent_kube.py); here the loop itself: scheduling under
deadlines, judgement, metrics and the hand-off to publishers, with real SIGSTOP/SIGKILL faults.
"""

from __future__ import annotations

from prometheus_client import generate_latest

from nodeprobe.model import ConditionType, Status
from tests.harness.agent_loop import RecordingSinks, config_for, running_agent, wait_for


def _status(sinks: RecordingSinks, kind: ConditionType, status: Status, reason: str | None = None):
    def check() -> bool:
        cond = sinks.condition(kind)
        return (cond is not None and cond.status is status
                and (reason is None or cond.reason == reason))
    return check


def test_sigstop_dockerd_raises_dockerd_hung_then_clears(runtimes):
    with running_agent(config_for(runtimes)) as (_, sinks, registry):
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="healthy start")
        with runtimes.dockerd.hung():
            took = wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.TRUE, "DockerdHung"),
                            timeout_s=10, what="DockerdHung")
            assert took < 5
            cond = sinks.condition(ConditionType.UNAVAILABLE)
            assert cond is not None and "dockerd" in cond.message
            scrape = generate_latest(registry).decode()
            assert ('nodeprobe_condition_status{condition="ContainerRuntimeUnavailable",'
                    'reason="DockerdHung"} 1.0') in scrape
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=10,
                 what="clear after SIGCONT")
        def raised_then_cleared() -> bool:
            reasons = [e.reason for e in sinks.events if e.reason != "ContainerRuntimeIsResponsive"
                       and not e.reason.endswith("Slow")]  # a loaded CI box may be slow too
            return (reasons[-2:] == ["DockerdHung", "ContainerRuntimeIsAvailable"]
                    and set(reasons) == {"DockerdHung", "ContainerRuntimeIsAvailable"})
        wait_for(raised_then_cleared, timeout_s=10, what="a raise Event, then a clear Event")


def test_sigkill_dockerd_is_down_and_clears_when_restarted(runtimes):
    with running_agent(config_for(runtimes)) as (_, sinks, _registry):
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="healthy start")
        runtimes.dockerd.crash()
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.TRUE, "DockerdDown"),
                 timeout_s=25, what="DockerdDown (after judge.restart.downGrace, 10s)")
        runtimes.heal()
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="clear after restart")


def test_sigstop_containerd_names_containerd_as_the_cause(runtimes):
    with running_agent(config_for(runtimes)) as (_, sinks, _registry):
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="healthy start")
        with runtimes.containerd.hung():
            wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.TRUE, "ContainerdHung"),
                     timeout_s=10, what="ContainerdHung")
        wait_for(_status(sinks, ConditionType.UNAVAILABLE, Status.FALSE), timeout_s=15,
                 what="clear after SIGCONT")


class AdoptedSinks(RecordingSinks):
    """The Node already states what the agent judges (a DaemonSet rollout's new pod adopted
    it): the writer has nothing to write, and says the Node's state holds."""

    def sync(self) -> bool:
        return False


def test_ready_without_a_write_when_the_node_already_states_the_first_round(runtimes):
    """Without it a rollout's new agent pod stayed unready until its heartbeat (up to 5 min),
    and every node of a DaemonSet rollout waited that long for the next."""
    with running_agent(config_for(runtimes), sinks=AdoptedSinks()) as (agent, _, _):
        wait_for(lambda: agent.metrics.health().round_done, timeout_s=15, what="a first round")
        wait_for(lambda: agent.metrics.health().node_status_written, timeout_s=5,
                 what="ready: the Node states the first round's judgement")
