"""The `judge` section of the config tree: hysteresis, windows, restarts and leak detection.

Split from tree.py along its seam (judgement, not endpoints); defaults are named here and only
here, as in the rest of the tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeprobe.config.fields import leaf as _leaf
from nodeprobe.config.fields import section as _doc


@dataclass(frozen=True, slots=True)
class LeakSignalSettings:
    min_growth_per_hour: float = _leaf(
        1000.0,
        "size",
        "Sustained growth slower than this (units per hour) is not a leak.",
    )
    min_relative_growth: float = _leaf(
        0.25,
        "fraction",
        "Growth over the window must also be at least this fraction of the starting value, "
        "so a high but flat or noisy series never raises.",
    )
    ceiling: float = _leaf(0.0, "size", "Raise at once above this absolute value; 0 = none.")


@dataclass(frozen=True, slots=True)
class MemorySignalSettings(LeakSignalSettings):
    percent_of_node_memory: float = _leaf(
        0.0,
        "percent",
        "Raise at once above this share of the node's MemTotal; it replaces `ceiling` when "
        "MemTotal is known (a daemon's legitimate size and the harm it does both scale with "
        "the node: 2 GiB is fatal on 4 GiB, ordinary on 64 GiB); 0 = use `ceiling`.",
    )


@dataclass(frozen=True, slots=True)
class LeakSettings:
    window: float = _leaf(
        3600.0, "duration", "Samples older than this are forgotten.", floor=60.0
    )
    min_span: float = _leaf(
        600.0,
        "duration",
        "Growth is judged only once the samples span at least this long.",
        floor=1.0,
    )
    min_samples: int = _leaf(10, "count", "... and only with at least this many samples.")
    long_window: float = _leaf(
        86400.0,
        "duration",
        "A second, long window (thinned to one sample per longWindow/200), so growth too slow "
        "for `window` (70 MiB/h from 800 MB) is named a leak within hours, not at the ceiling.",
        floor=60.0,
    )
    long_min_span: float = _leaf(
        7200.0,
        "duration",
        "Growth over the long window is judged once samples span this long.",
        floor=1.0,
    )
    long_min_relative_growth: float = _leaf(
        0.1,
        "fraction",
        "Over the long window, growth must be at least this fraction of the starting value "
        "(besides each signal's minGrowthPerHour, in the whole window and its recent half).",
    )
    memory: MemorySignalSettings = field(
        default_factory=lambda: MemorySignalSettings(
            min_growth_per_hour=64 * 2**20, ceiling=2 * 2**30, percent_of_node_memory=25.0
        ),
        metadata=_doc("RssAnon (bytes) of each runtime process; `ceiling` applies only when "
                      "the node's MemTotal is unknown."),
    )
    goroutines: LeakSignalSettings = field(
        default_factory=lambda: LeakSignalSettings(min_growth_per_hour=1000.0, ceiling=50000.0),
        metadata=_doc("dockerd goroutines (GET /info NGoroutines)."),
    )
    fds: LeakSignalSettings = field(
        default_factory=lambda: LeakSignalSettings(min_growth_per_hour=500.0, ceiling=500000.0),
        metadata=_doc("Open file descriptors of each runtime."),
    )
    event_listeners: LeakSignalSettings = field(
        default_factory=lambda: LeakSignalSettings(min_growth_per_hour=50.0, ceiling=1000.0),
        metadata=_doc("dockerd's event stream subscribers (GET /info NEventsListener); a "
                      "handful is normal (cri-dockerd, monitoring)."),
    )
    shims: LeakSignalSettings = field(
        default_factory=lambda: LeakSignalSettings(min_growth_per_hour=2.0),
        metadata=_doc("containerd shims beyond its pods and containers (k8s.io: one per ready "
                      "sandbox; moby: one per running or paused container): 0 on a healthy "
                      "node, so more pods never look like a leak; no ceiling, "
                      "`judge.orphanedShimChecks` judges the level."),
    )


@dataclass(frozen=True, slots=True)
class RestartSettings:
    count: int = _leaf(
        3,
        "count",
        "Restarts within `window` that make a restart loop (NPD's FrequentDockerRestart needs "
        "5 in 20 min).",
    )
    window: float = _leaf(
        600.0, "duration", "Restarts older than this are forgotten.", floor=1.0
    )
    quiet: float = _leaf(
        600.0,
        "duration",
        "A raised restart loop holds until this long has passed without a restart, so a "
        "remediation `for:` counts from its first raise.",
        floor=1.0,
    )
    down_grace: float = _leaf(
        10.0,
        "duration-or-0",
        "A runtime down for less than this (systemd restarts it) is counted as a restart and "
        "changes no condition; down longer, it is DockerdDown / ContainerdDown. 0 = no grace.",
        floor=1.0,
    )


@dataclass(frozen=True, slots=True)
class JudgeSettings:
    raise_after: int = _leaf(2, "count", "Consecutive failed calls of one check to raise.")
    window: int = _leaf(
        10,
        "count",
        "Failures are also counted over the last this many calls of a check ...",
    )
    failures_in_window: int = _leaf(
        3,
        "count",
        "... and this many failures among them raise too (OK/HUNG alternation); a raised "
        "check clears only once fewer than this many of the last `window` failed.",
    )
    clear_after: int = _leaf(
        3,
        "count",
        "Consecutive good calls (or calm leak verdicts) to clear again.",
    )
    horizon: float = _leaf(
        30.0,
        "duration-or-0",
        "A Docker or CRI call that passes its deadline is reported HUNG and kept in flight (one "
        "per check) up to this long; if it answers, the hang is re-judged as slowness with the "
        "measured latency. 0 = off. kubelet's own CRI timeout is 2 minutes.",
        floor=1.0,
    )
    recheck_interval: float = _leaf(
        1.0,
        "duration",
        "A check whose last answers were bad (or whose raised condition has not cleared yet) "
        "runs this often instead of its own interval, until the judge clears it: a GET /info "
        "on its 30 s interval needing `clearAfter` good answers kept a recovered node flagged "
        "for a minute and more. Never longer than the check's own interval.",
        floor=0.1,
    )
    recheck_for: float = _leaf(
        300.0,
        "duration",
        "A check failing longer than this goes back to its own interval until another check "
        "of its runtime answers again, so a runtime that stays down is not polled (nor /proc "
        "scanned) every `recheckInterval` for hours.",
        floor=1.0,
    )
    restart: RestartSettings = field(
        default_factory=RestartSettings,
        metadata=_doc("Restart loops, from the process check's pid + start time and DOWN spells."),
    )
    slow_raise_after: int = _leaf(
        5,
        "count",
        "Consecutive SLOW answers of one check to raise ContainerRuntimeSlow.",
    )
    image_fs_stale_after: float = _leaf(
        120.0,
        "duration",
        "ImageFsInfo stats older than this, and older than `imageFsStaleFactor` times the "
        "refresh period observed (containerd's stats_collect_period, 10s by default, may be "
        "raised), mean containerd's stats syncer is stuck. Until one refresh has been seen, the "
        "bound is `imageFsStaleFactor` times this. At least containerd's default refresh period.",
        floor=10.0,
    )
    image_fs_stale_factor: float = _leaf(
        3.0,
        "positive",
        "How many observed refresh periods ImageFsInfo stats may age before they are stale.",
    )
    fd_limit_percent: float = _leaf(
        80.0,
        "percent",
        "Raise ContainerRuntimeDegraded (RuntimeFdsNearLimit) when a runtime holds this share of "
        "its own `Max open files` (/proc/<pid>/limits): at 100% its accept() and open() fail and "
        "every container operation with them. Above what a busy node reaches in normal use.",
    )
    orphaned_shim_checks: int = _leaf(
        4,
        "count",
        "Containerd process checks in a row (15 s apart) that must see more shims than pods and "
        "containers before ContainerdOrphanedShims is raised: a container starting or stopping "
        "between the counts, or a canary run, lasts one check, not four.",
    )
    leak: LeakSettings = field(
        default_factory=LeakSettings, metadata=_doc("Leak detection: robust slope over a window.")
    )
