"""Regenerate the committed CRI stubs from the .proto subsets beside this file.

    python -m nodeprobe.cri.regenerate [--out DIR]

The stubs are committed so the agent needs only grpcio + protobuf at run time; grpcio-tools (a
test dependency) is needed only here. protoc is run from the repository root so the descriptors
are registered as `nodeprobe/cri/<name>.proto` (unique in the process-wide descriptor pool), and
the generated `*_pb2_grpc.py` import is rewritten to a package-relative one. No `.pyi`: the probe
reads replies through a few fields it checks itself, and generated stubs would not pass ruff.
A unit test runs this into a temp dir and compares byte for byte, so the committed files cannot
drift from the protos.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTOS = ("runtime_v1.proto", "runtime_v1alpha2.proto")
_PKG_PATH = "nodeprobe/cri"
_ABS_IMPORT = re.compile(r"^from nodeprobe\.cri import (\w+_pb2) as ", re.MULTILINE)


class RegenerateError(RuntimeError):
    """protoc is missing or rejected a proto; the message says what to do."""


def generated_names() -> tuple[str, ...]:
    """File names this tool writes, for the drift test and for cleanup."""
    stems = [p.removesuffix(".proto") for p in PROTOS]
    return tuple(f"{s}{suffix}" for s in stems for suffix in ("_pb2.py", "_pb2_grpc.py"))


def regenerate(out_dir: Path) -> list[Path]:
    """Write the stubs for every proto in `PROTOS` into `out_dir`; return the files written."""
    try:
        from grpc_tools import protoc  # test-only dependency, imported only when regenerating
    except ImportError as e:
        raise RegenerateError(
            "grpcio-tools is not installed; it is a test dependency: pip install -e '.[test]'"
        ) from e
    root = PACKAGE_DIR.parent.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="np-protoc-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={root}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(f"{_PKG_PATH}/{name}" for name in PROTOS),
        ]
        code = protoc.main(args)
        if code != 0:
            raise RegenerateError(f"protoc failed with exit code {code} (its message is above)")
        written = []
        for name in generated_names():
            src = Path(tmp) / _PKG_PATH / name
            text = src.read_text()
            if name.endswith("_pb2_grpc.py"):
                text = _ABS_IMPORT.sub(r"from . import \1 as ", text)
            dest = out_dir / name
            dest.write_text(text)
            written.append(dest)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodeprobe.cri.regenerate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR,
                        help="directory to write the stubs into (default: beside the protos)")
    args = parser.parse_args(argv)
    try:
        written = regenerate(args.out)
    except (RegenerateError, OSError) as e:
        print(f"regenerate: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
