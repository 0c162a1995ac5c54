"""`python -m tools.render`: render the chart, validate it, regenerate or check manifests/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.render import (
    CHART,
    MANIFESTS,
    RenderError,
    render,
    stale_manifests,
    sync_crds,
    validate_objects,
    write_manifests,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__)
    parser.add_argument("-f", "--values", action="append", type=Path, default=[],
                        metavar="FILE", help="values file, as helm -f (repeatable)")
    parser.add_argument("--chart", type=Path, default=CHART)
    parser.add_argument("--no-crds", action="store_true", help="leave out crds/")
    parser.add_argument("--notes", action="store_true", help="print the rendered NOTES.txt")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--validate", action="store_true",
                      help="validate the objects against the Kubernetes schemas, print nothing")
    mode.add_argument("--write-manifests", action="store_true",
                      help="copy the operator's CRDs into the chart, then regenerate "
                      f"{MANIFESTS.name}/ from the default values")
    mode.add_argument("--check-manifests", action="store_true",
                      help=f"exit 1 when {MANIFESTS.name}/ differs from a fresh render")
    args = parser.parse_args(argv)
    try:
        if args.write_manifests:
            for path in [*sync_crds(chart=args.chart), *write_manifests(chart=args.chart)]:
                print(f"wrote {path}")
            return 0
        if args.check_manifests:
            stale = stale_manifests(chart=args.chart)
            if stale:
                print(f"{MANIFESTS}: out of date ({', '.join(stale)}); run "
                      "`python -m tools.render --write-manifests`", file=sys.stderr)
                return 1
            return 0
        rendered = render(args.chart, args.values, include_crds=not args.no_crds,
                          notes=args.notes)
        if args.validate:
            problems = validate_objects(rendered.objects)
            for p in problems:
                print(p, file=sys.stderr)
            return 1 if problems else 0
        sys.stdout.write(rendered.text)
        return 0
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
