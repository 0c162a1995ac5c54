"""`make bench`: every benchmark in turn, each printing the Markdown docs/performance.md quotes."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "benchmarks.check_bench",
    "benchmarks.probes_bench",
    "benchmarks.agent_bench",
    "benchmarks.judge_bench",
    "benchmarks.operator_bench",
    "benchmarks.issue11_bench",
    "benchmarks.fault_matrix",
    "benchmarks.install_footprint",
)


def main(argv: list[str] | None = None) -> int:
    names = argv if argv else list(BENCHMARKS)
    for name in names:
        print(f"\n<!-- {name} -->", flush=True)
        importlib.import_module(name).main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
