"""The vocabulary must not collide with node-problem-detector's: conditions merge by type."""

from nodeprobe.model import ConditionType, Reason

# Every condition type written by NPD's shipped configs (config/*.json and the health-checker).
NPD_CONDITION_TYPES = {
    "ContainerRuntimeUnhealthy",
    "KubeletUnhealthy",
    "FrequentDockerRestart",
    "FrequentContainerdRestart",
    "FrequentKubeletRestart",
    "CorruptDockerOverlay2",
    "KernelDeadlock",
    "ReadonlyFilesystem",
}


def test_no_condition_type_is_one_npd_writes() -> None:
    assert not {c.value for c in ConditionType} & NPD_CONDITION_TYPES


def test_healthy_reason_is_not_npds() -> None:
    # NPD's health-checker says ContainerRuntimeIsHealthy on its own condition.
    assert Reason.HEALTHY.value != "ContainerRuntimeIsHealthy"
