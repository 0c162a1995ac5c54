"""`nodeprobe operator`: logging and flags, then the kopf operator."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=os.environ.get("NODEPROBE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from nodeprobe.operator import Options
    from nodeprobe.operator import run as run_operator

    run_operator(Options(
        namespace=os.environ.get("POD_NAMESPACE"),
        liveness_endpoint=args.liveness or None,
        standalone=args.standalone,
        kubeconfig=args.kubeconfig,
        metrics_port=args.metrics_port,
        max_concurrent=args.max_concurrent,
        lease_namespace=args.lease_namespace or None,
    ))
    return 0
