"""One typed config tree: YAML file (camelCase keys) -> defaults -> overrides -> validate.

Plain frozen dataclasses, not pydantic: the tree is small, `nodeprobe check` must start fast, and
every error must name the file and the key path. This package reads no env and no flags: the
entry point turns those into an `overrides` mapping of dotted camelCase keys.
"""

from nodeprobe.config.judge import (
    JudgeSettings,
    LeakSettings,
    LeakSignalSettings,
    MemorySignalSettings,
    RestartSettings,
)
from nodeprobe.config.loader import (
    ConfigError,
    camel,
    load,
    read_yaml,
    reference_table,
)
from nodeprobe.config.tree import (
    CheckSettings,
    ChecksSettings,
    Config,
    ContainerdSettings,
    DockerSettings,
    KubernetesSettings,
    MetricsSettings,
    PathSettings,
    RepairSettings,
    RestartCommands,
)
from nodeprobe.durations import parse_duration

__all__ = [
    "CheckSettings",
    "ChecksSettings",
    "Config",
    "ConfigError",
    "ContainerdSettings",
    "DockerSettings",
    "JudgeSettings",
    "KubernetesSettings",
    "LeakSettings",
    "LeakSignalSettings",
    "MemorySignalSettings",
    "MetricsSettings",
    "PathSettings",
    "RepairSettings",
    "RestartCommands",
    "RestartSettings",
    "camel",
    "load",
    "parse_duration",
    "read_yaml",
    "reference_table",
]
