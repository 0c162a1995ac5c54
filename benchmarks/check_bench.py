"""`nodeprobe check` against real sandboxed runtimes: wall time, peak RSS, time to report HUNG.

Run with `make bench` (or `python -m benchmarks.check_bench`); prints a Markdown section that
docs/performance.md quotes.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.stats import machine, run_child, summarize
from tests.harness.runtimes import Sandbox

RUNS = 20


def _argv(sandbox: Sandbox, *extra: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("nodeprobe")), "check",
        "--docker-socket", str(sandbox.dockerd.socket),
        "--containerd-socket", str(sandbox.containerd.socket), *extra,
    ]


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="np-bench-", dir="/tmp"))
    sandbox = Sandbox(base)
    try:
        sandbox.start()
        run_child(_argv(sandbox))  # warm the page cache once
        healthy = [run_child(_argv(sandbox)) for _ in range(RUNS)]
        assert all(r.exit_code == 0 for r in healthy), [r.exit_code for r in healthy]
        hung = []
        for deadline in (1.0, 2.0, 3.0):
            with sandbox.dockerd.hung():
                runs = [run_child(_argv(sandbox, "--deadline", str(deadline))) for _ in range(5)]
            assert all(r.exit_code == 1 for r in runs)
            hung.append((deadline, summarize([r.wall_s for r in runs])))
    finally:
        sandbox.stop()
        shutil.rmtree(base, ignore_errors=True)

    wall = summarize([r.wall_s for r in healthy])
    rss = summarize([r.peak_rss_bytes for r in healthy])
    print(f"### nodeprobe check ({machine()})\n")
    print(f"- healthy, wall time incl. interpreter start: {wall.row('ms', 1000)}")
    print(f"- healthy, peak RSS: {rss.row('MiB', 1 / 2**20)}")
    for deadline, s in hung:
        print(f"- dockerd SIGSTOPped, `--deadline {deadline:g}`: exit 1 after "
              f"{s.row('s')}; overshoot {(s.median - deadline) * 1000:.0f} ms (median)")


if __name__ == "__main__":
    main()
