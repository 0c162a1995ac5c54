"""Orphaned containerd shims: more shims than the pods and containers containerd knows of.

A shim (containerd-shim-runc-v2) outlives containerd by design, so that containers survive a
containerd restart; a containerd that comes back without its state (a crash on a tmpfs state dir,
a wiped /run/containerd) no longer knows them, and nothing ever stops them. What the count should
be, per containerd namespace (from the shim's `-namespace` argument):

- `k8s.io` (CRI, containerd 1.6+ and the runc v2 shim): one shim per pod sandbox, started for
  its pause container; the pod's containers join it (the shim groups by the sandbox id). So one
  per READY sandbox, plus one for each NOTREADY sandbox that still runs a container (the pause
  died, kubelet has not torn the pod down yet): at most min(not ready, running containers).
- `moby` (dockerd on this containerd): one shim per running or paused container.
- any other namespace (`ctr`, buildkit): no count to hold it against, never judged.

A namespace is judged only when all its counts come from answered calls: the shims (containerd's
process check) and, for k8s.io, CRI ListPodSandbox and ListContainers, for moby, Docker GET
/info. A dockerd on its own containerd has its shims on another socket: `moby` then counts 0
shims here, a deficit, which is never judged.

The counts come from different calls at different times (GET /info every 30 s, the process
check every 15 s), so under container churn nearly every check sees a shim of a container that
started or stopped in between. The probe therefore counts only settled shims (alive a minute,
`SHIM_SETTLE_S`), which an orphan always is, and only `judge.orphanedShimChecks` process checks in
a row raise. The sum of the surpluses is also the leak signal
`shim_surplus`: steady growth of shims while pods stay flat.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nodeprobe.config.judge import JudgeSettings
from nodeprobe.judge.degraded import Finding
from nodeprobe.judge.hysteresis import Counter, step
from nodeprobe.model import Check, Observation, Reason, Runtime, Value

PIDS_SHOWN = 8
"""Shim pids a message names (oldest first); the rest are counted."""


@dataclass(frozen=True, slots=True)
class Tally:
    """One namespace: the shims counted and how many its pods and containers account for."""

    namespace: str
    shims: int
    expected: int
    basis: str
    """What `expected` is made of, for messages: "2 ready pod sandboxes"."""
    pids: tuple[int, ...] = ()

    @property
    def surplus(self) -> int:
        return max(0, self.shims - self.expected)


@dataclass(frozen=True, slots=True)
class Orphans:
    """Where the orphan judgement stands, per namespace: its hysteresis and latest tally."""

    counters: Mapping[str, Counter] = field(default_factory=dict)
    tallies: Mapping[str, Tally] = field(default_factory=dict)

    @property
    def raised(self) -> list[Tally]:
        return [self.tallies[ns] for ns, c in sorted(self.counters.items()) if c.raised]


def _answered(latest: Iterable[Observation]) -> dict[tuple[Runtime, Check], Observation]:
    return {(o.runtime, o.check): o for o in latest if not o.outcome.failed}


def _pids(obs: Observation, namespace: str) -> tuple[int, ...]:
    text = obs.info.get(f"shim_pids_{namespace}", "")
    return tuple(int(p) for p in text.split(",") if p.isdigit())


def tallies(latest: Iterable[Observation]) -> tuple[Tally, ...]:
    """The namespaces whose every count is known, from the latest observation of each check."""
    seen = _answered(latest)
    process = seen.get((Runtime.CONTAINERD, Check.PROCESS))
    if process is None:
        return ()
    found = []
    shims_k8s = process.values.get(Value.SHIMS_K8S)
    sandboxes = seen.get((Runtime.CONTAINERD, Check.CRI_LIST_POD_SANDBOX))
    containers = seen.get((Runtime.CONTAINERD, Check.CRI_LIST_CONTAINERS))
    if shims_k8s is not None and sandboxes is not None and containers is not None:
        ready = sandboxes.values.get(Value.POD_SANDBOXES_READY)
        total = sandboxes.values.get(Value.POD_SANDBOXES)
        running = containers.values.get(Value.CONTAINERS_RUNNING)
        if ready is not None and total is not None and running is not None:
            lingering = int(min(total - ready, running))
            basis = f"{ready:.0f} ready pod sandboxes"
            if lingering:
                basis += f" and {lingering} not ready with a running container"
            found.append(Tally("k8s.io", int(shims_k8s), int(ready) + lingering, basis,
                               _pids(process, "k8s.io")))
    shims_moby = process.values.get(Value.SHIMS_MOBY)
    info = seen.get((Runtime.DOCKERD, Check.DOCKER_INFO))
    if shims_moby is not None and info is not None:
        running = info.values.get(Value.CONTAINERS_RUNNING)
        if running is not None:
            paused = info.values.get(Value.CONTAINERS_PAUSED, 0.0)
            expected = int(running + paused)
            basis = f"{expected} running or paused docker containers"
            found.append(Tally("moby", int(shims_moby), expected, basis, _pids(process, "moby")))
    return tuple(found)


def observe(
    state: Orphans, latest: Iterable[Observation], settings: JudgeSettings
) -> tuple[Orphans, int | None]:
    """Step the judgement on one containerd process check (`latest` includes it).

    Returns the new state and the total surplus, None when no namespace could be judged. A
    namespace whose counts are unknown holds still: not knowing is no evidence either way.
    """
    found = tallies(latest)
    if not found:
        return state, None
    counters, known = dict(state.counters), dict(state.tallies)
    for tally in found:
        counters[tally.namespace] = step(
            counters.get(tally.namespace, Counter()), tally.surplus > 0,
            raise_after=settings.orphaned_shim_checks, clear_after=settings.clear_after)
        known[tally.namespace] = tally
    return Orphans(counters, known), sum(t.surplus for t in found)


def _pid_list(pids: tuple[int, ...], shims: int) -> str:
    if not pids:
        return ""
    shown = ", ".join(str(p) for p in pids[:PIDS_SHOWN])
    more = shims - min(len(pids), PIDS_SHOWN)
    return f" (shim pids, oldest first: {shown}{f' and {more} more' if more > 0 else ''})"


def finding(state: Orphans, settings: JudgeSettings) -> Finding | None:
    """ContainerdOrphanedShims while raised, naming each namespace with a surplus."""
    raised = state.raised
    if not raised:
        return None
    parts = [
        f"{t.shims} shims in namespace {t.namespace} for {t.basis}: {t.surplus} orphaned"
        f"{_pid_list(t.pids, t.shims)}"
        for t in raised if t.surplus
    ]
    if not parts:
        parts = ["as many shims as pods and containers again (clearing)"]
    checks = max([state.counters[t.namespace].bad_run for t in raised]
                 + [settings.orphaned_shim_checks])
    text = (f"containerd runs {'; '.join(parts)}, over {checks} process checks in a row. "
            "Shims containerd no longer knows (it lost its state in a crash) keep their "
            "containers running and are never stopped: compare `ps -o pid,lstart,args -p <pids>` "
            "(the shim's -id) with `ctr -n <namespace> tasks ls`, stop the containers of the "
            "shims no task names, then kill those shims")
    return Finding(Reason.CONTAINERD_ORPHANED_SHIMS, text, Runtime.CONTAINERD)
