"""`nodeprobe repair-executor`: the privileged container of repair mode, and nothing else.

It serves orders from the agent on a unix socket (`repair.executorSocket`), verifies each
again against the NodeRemediation and the Node it reads itself, and restarts a runtime or
reboots (`nodeprobe/repair/channel.py`). It probes nothing, serves no HTTP, and writes nothing
to the API server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from nodeprobe.config import ConfigError, load

log = logging.getLogger("nodeprobe.repair_executor")

EXIT_CONFIG = 2


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=os.environ.get("NODEPROBE_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from nodeprobe.publish.kubeclient import KubeConfigError, new_client
    from nodeprobe.repair.actions import ActionSettings
    from nodeprobe.repair.channel import ExecutorServer
    from nodeprobe.repair.executor import KubeLookup
    from nodeprobe.repair.guard import AdmissionGuard, kube_fetch
    from nodeprobe.repair.verify import Ledger

    overrides: dict[str, object] = {"nodeName": args.node_name} if args.node_name else {}
    try:
        config = load(args.config, overrides=overrides)
        api = new_client(kubeconfig=args.kubeconfig, in_cluster=args.kubeconfig is None)
    except (ConfigError, KubeConfigError) as e:
        log.error("bad configuration: %s", e)
        return EXIT_CONFIG
    path = args.socket or config.repair.executor_socket
    if not path or not config.node_name:
        log.error("repair-executor needs repair.executorSocket (or --socket) and a node name "
                  "(--node-name or NODE_NAME)")
        return EXIT_CONFIG
    # It checks the admission guard itself too, as it verifies everything else itself.
    guard = AdmissionGuard(kube_fetch(api), name=config.repair.admission_guard)
    server = ExecutorServer(
        Path(path), ActionSettings.from_config(config), KubeLookup(api, config.node_name),
        ledger=Ledger(Path(config.repair.ledger) if config.repair.ledger else None),
        guard=guard.check, dry_run=config.repair.dry_run)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("repair executor for node %s on %s", config.node_name, path)
    server.serve()
    return 0
