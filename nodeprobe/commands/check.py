"""`nodeprobe check`: probe once, judge, print, exit 0/1/2 (node-problem-detector's convention)."""

from __future__ import annotations

import argparse
import sys

from nodeprobe.commands.common import build_probes, disabled_checks, resolve, runtime_overrides
from nodeprobe.config import ConfigError, load
from nodeprobe.diagnose import Limits, run_once
from nodeprobe.judge.verdict import one_line, verdict
from nodeprobe.model import Check
from nodeprobe.publish import report

UNKNOWN = 2


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config, overrides=runtime_overrides(args))
    except ConfigError as e:
        print(f"unknown: bad configuration: {e}", file=sys.stdout if args.summary else sys.stderr)
        return UNKNOWN

    endpoints = resolve(config)
    probes = build_probes(config, endpoints, process=not args.no_process)
    disabled_checks(config, probes)

    def limits(check: Check) -> Limits:
        settings = config.checks.for_check(check)
        deadline = args.deadline if args.deadline else settings.deadline
        return Limits(deadline_s=deadline, slow_s=settings.slow)

    try:
        observations = run_once(probes, limits)
    finally:
        for probe in probes:
            probe.close()
    result = verdict(observations, config=config)
    summary = result.summary
    if not observations and endpoints.misplaced:
        summary = one_line(f"unknown: no container runtime found; {endpoints.misplaced[0]}")

    if args.summary:
        print(summary)
    elif args.json:
        print(report.as_json(summary, result.code, observations))
    else:
        print(report.table(summary, observations))
        for note in endpoints.notes:
            print(f"note: {note}")
    return result.code
