"""What `pip install kube-nodeprobe` and `pip install 'kube-nodeprobe[operator]'` bring: packages,
site-packages size and install time, each into a fresh venv.

The project's wheel is built once from this checkout; every run installs that wheel with its
dependencies from the index, as a user installs the release (pip's cache is left as it is, so a
warm cache measures resolving and unpacking, not the download). The two installs alternate so
the machine's load falls on both alike. docs/install.md and docs/performance.md quote the output.

    python -m benchmarks.install_footprint [RUNS]   # default 3 of each
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import loadavg, machine, summarize

ROOT = Path(__file__).resolve().parents[1]
RUNS = 3
INSTALLS = ("", "[operator]")
"""The base install (agent, `nodeprobe check`, `kubectl nodeprobe`) and the operator's extra."""
TOOLING = {"pip", "setuptools", "wheel"}
"""What a venv has before anything is installed: not counted."""


@dataclass(frozen=True)
class Install:
    packages: frozenset[str]
    site_packages_bytes: int
    seconds: float


def _wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                    "--disable-pip-version-check", "-w", str(out), str(ROOT)], check=True)
    [wheel] = out.glob("kube_nodeprobe-*.whl")
    return wheel


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()
               and not p.is_symlink())


def install(wheel: Path, extra: str, base: Path) -> Install:
    """One fresh venv, one `pip install WHEEL[extra]`, timed."""
    venv = Path(tempfile.mkdtemp(prefix="np-install-", dir=base))
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        started = time.monotonic()
        subprocess.run([*pip, "install", "--quiet", f"{wheel}{extra}"], check=True)
        seconds = time.monotonic() - started
        listed = json.loads(subprocess.run([*pip, "list", "--format=json"], check=True,
                                           capture_output=True, text=True).stdout)
        purelib = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True).stdout.strip()
        names = frozenset(p["name"].lower() for p in listed) - TOOLING
        return Install(names, _size(Path(purelib)), seconds)
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def _report(runs: dict[str, list[Install]], loads: list[str]) -> None:
    print(f"### pip installs ({machine()}; load before each run: {', '.join(loads)})\n")
    print("| install | packages (without pip/setuptools) | site-packages | time |")
    print("|---|---|---|---|")
    for extra, done in runs.items():
        counts = {len(r.packages) for r in done}
        size = summarize([r.site_packages_bytes for r in done])
        secs = summarize([r.seconds for r in done])
        print(f"| `kube-nodeprobe{extra}` | {'/'.join(map(str, sorted(counts)))} | "
              f"{size.median / 1e6:.0f} MB | {secs.row('s')} |")
    base, operator = (runs[e][0].packages for e in INSTALLS)
    print(f"\nOnly with the extra: {', '.join(sorted(operator - base))}.")


def main(argv: list[str] | None = None) -> None:
    n = int(argv[0]) if argv else RUNS
    base = Path(tempfile.mkdtemp(prefix="np-install-bench-", dir="/tmp"))
    try:
        wheel = _wheel(base)
        runs: dict[str, list[Install]] = {e: [] for e in INSTALLS}
        loads = []
        for _ in range(n):
            for extra in INSTALLS:
                loads.append(loadavg().split()[0])
                runs[extra].append(install(wheel, extra, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _report(runs, loads)


if __name__ == "__main__":
    main(sys.argv[1:])
