"""A real node: kubelet over containerd 2.x, joined to a KubeCluster made `for_node=True`.

kubelet and containerd run in a private mount namespace (`unshare -m`, held by one `sleep`), so
the host keeps its own /run, /var/lib, /var/log and sysctls: there, tmpfs mounts cover /run
(containerd's socket is at the default /run/containerd/containerd.sock, which the chart's `auto`
finds), /var/lib (kubelet's root dir and its hard-coded device-plugins dir) and /var/log
(/var/log/pods and the hard-coded /var/log/containers), and the sysctl files kubelet and the CNI
bridge write are bind-mounted copies. /run is a shared mount in that namespace, as on a systemd
node, so the chart's HostToContainer mounts of it work without touching the host's `/`.
Outside the namespace the node adds, and removes on stop: the CNI bridge, a dummy interface
with the API server's service address (relayed to the API server by socat: there is no
kube-proxy, it would edit the host's iptables) and kubelet's cgroups. Their names, addresses and
cgroup root come from the slot its control plane holds (tests/harness/kubecluster/slots.py), so
up to three nodes run side by side.

The node is named `localhost`: kubelet refuses a loopback node IP, and the API server reaches
kubelet (logs, exec) by that hostname on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.harness.gotools import cni_bin, tool
from tests.harness.kubecluster.control import (
    START_TIMEOUT_S,
    ClusterError,
    KubeCluster,
    Process,
    _wait_until,
    free_port,
)
from tests.harness.kubecluster.images import PAUSE_IMAGE, busybox_archive, ctr_import, pause_archive
from tests.harness.kubecluster.slots import CGROUP, Slot
from tests.harness.kubecluster.units import UnitManager, mount_script, standin_script
from tests.harness.runtimes import CONTAINERD_2, Containerd, containerd_build, which

NODE = "localhost"
IN_NS_SOCKET = "/run/containerd/containerd.sock"
IN_NS_CONFIG = "/run/containerd/containerd.toml"
SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
           "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward")
"""What kubelet (and the bridge plugin) write; copies are bind-mounted over them in the node."""
HOST_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods")
"""kubelet's own paths on a host (the node keeps them in its namespace)."""


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


class RealNode:
    """kubelet + containerd 2.x in a private mount namespace under `base` (keep it short)."""

    name = NODE

    def __init__(self, cluster: KubeCluster, base: Path, *, containerd: str = CONTAINERD_2
                 ) -> None:
        if not cluster.for_node:
            raise ClusterError("a real node needs KubeCluster(..., for_node=True)")
        self.cluster = cluster
        self.slot: Slot = cluster.slot
        """Names, addresses and cgroup root on the host, from the control plane's slot."""
        self.base = base
        self._holder: subprocess.Popen[bytes] | None = None
        self.kubelet = Process("kubelet", [], base / "kubelet.log")
        self._relay = Process("service-relay", [], base / "relay.log")
        self.containerd: Containerd | None = None
        self.containerd_label = containerd
        """Which containerd runs the node (runtimes.CONTAINERDS: 2.x by default, or 1.6)."""
        self.host_sysctls: dict[str, str] = {}
        """The host's values of SYSCTLS when the node started (the node writes copies)."""
        self._host_paths = {p: Path(p).exists() for p in HOST_PATHS}
        self.units = UnitManager(base / "units.sock", {"containerd": lambda: self.containerd})
        """The node's service manager for `systemctl restart containerd` (units.py)."""

    # the mount namespace

    @property
    def ns_pid(self) -> int:
        if self._holder is None:
            raise ClusterError("the node's mount namespace is not set up")
        return self._holder.pid

    def host_path(self, in_node: str) -> Path:
        """A path as the node sees it, reached from the host (through the holder's root)."""
        return Path(f"/proc/{self.ns_pid}/root{in_node}")

    def in_node(self, *argv: str) -> list[str]:
        """argv run inside the node's mount namespace (nsenter execs it: same pid)."""
        return [which("nsenter"), "-t", str(self.ns_pid), "-m", "--", *argv]

    def _systemctl(self) -> None:
        """`systemctl` in the node's namespace restarts its real containerd (units.py)."""
        standin = self.base / "systemctl"
        standin.write_text(standin_script(self.units.sock_path))
        standin.chmod(0o755)
        self.units.start()
        subprocess.run(self.in_node("sh", "-c", "set -e\n" + "\n".join(mount_script(standin))),
                       check=True, capture_output=True)

    def _namespace(self) -> None:
        self._holder = subprocess.Popen(
            [which("unshare"), "-m", "--propagation", "private", "sleep", "infinity"],
            start_new_session=True, stdin=subprocess.DEVNULL)
        _wait_until(lambda: os.readlink(f"/proc/{self.ns_pid}/ns/mnt")
                    != os.readlink("/proc/self/ns/mnt"),
                    timeout_s=10, what="the node's mount namespace", log=self.base / "none")
        sysctl = self.base / "sysctl"
        sysctl.mkdir()
        script = ["set -e"]
        for path, name in (("/run", "np-run"), ("/var/lib", "np-varlib"), ("/var/log", "np-log")):
            script += [f"mount -t tmpfs -o mode=755 {name} {path}", f"mount --make-shared {path}"]
        for key in SYSCTLS:
            copy = sysctl / key.replace("/", ".")
            self.host_sysctls[key] = Path("/proc/sys", key).read_text()
            copy.write_text(self.host_sysctls[key])
            script.append(f"mount --bind {copy} /proc/sys/{key}")
        script.append("mkdir -p /run/containerd /var/lib/kubelet /var/log/pods")
        subprocess.run(self.in_node("sh", "-c", "\n".join(script)), check=True,
                       capture_output=True)

    # containerd

    def _containerd_config(self) -> str:
        """The config file, written to the node's /run and returned as the node names it: a
        containerd's config says which socket it serves, and the agent pod reads it there
        (the chart mounts the host's /run) as it reads dockerd's managed containerd's
        /var/run/docker/containerd/containerd.toml on a real node."""
        cni_conf = self.base / "cni-conf"
        cni_conf.mkdir()
        (cni_conf / "10-nodeprobe-test.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "nodeprobe-test",
            "plugins": [{
                "type": "bridge", "bridge": self.slot.bridge, "isGateway": True, "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": self.slot.pod_subnet}]],
                         "routes": [{"dst": "0.0.0.0/0"}],
                         "dataDir": "/var/lib/cni/networks"},
            }],  # the CRI sets up each pod's `lo` itself, with the loopback plugin
        }))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        self.host_path(IN_NS_CONFIG).write_text("\n".join([
            "version = 2",
            f'root = "{self.base / "containerd"}"',
            'state = "/run/containerd"',
            'disabled_plugins = ["io.containerd.nri.v1.nri"]',
            f'[grpc]\n  address = "{IN_NS_SOCKET}"',
            f'[ttrpc]\n  address = "{IN_NS_SOCKET}.ttrpc"',
            '[debug]\n  level = "info"',
            f"[{cri}]",
            f'  sandbox_image = "{PAUSE_IMAGE}"',
            # Root here lacks CAP_SYS_RESOURCE: CRI's oom_score_adj of -998 would make runc fail.
            "  restrict_oom_score_adj = true",
            "  netns_mounts_under_state_dir = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            f"[{cri}.cni]",
            f'  bin_dir = "{cni_bin()}"',
            f'  conf_dir = "{cni_conf}"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            "",
        ]))
        return IN_NS_CONFIG

    def _start_containerd(self) -> None:
        build = containerd_build(self.containerd_label)
        self.containerd = Containerd(
            name="containerd", argv=self.in_node(build.binary, "--config",
                                                 self._containerd_config()),
            socket=self.host_path(IN_NS_SOCKET), log=self.base / "containerd.log", env=build.env)
        self.containerd.start()
        for archive in (pause_archive(), busybox_archive()):
            ctr_import(self.containerd.socket, archive)

    def import_image(self, archive: bytes | Path) -> None:
        """An image archive (OCI layout or `docker save`) into the node's containerd."""
        if self.containerd is None:
            raise ClusterError("the node's containerd is not running")
        ctr_import(self.containerd.socket, archive)

    # network: the bridge and the service address (no kube-proxy)

    def _network(self) -> None:
        # On an interface of its own (a port-less bridge): the bridge plugin refuses a bridge with
        # other addresses.
        # A pod's packets to it arrive over the bridge and are delivered locally.
        link, service_ip = self.slot.service_link, self.slot.service_ip
        _ip("link", "add", link, "type", "bridge")  # no dummy module on every VM
        _ip("addr", "add", f"{service_ip}/32", "dev", link)
        _ip("link", "set", link, "up")
        self._relay.argv = [which("socat"), f"TCP-LISTEN:443,bind={service_ip},fork,reuseaddr",
                            f"TCP:127.0.0.1:{self.cluster.port}"]
        self._relay.start()

    # kubelet

    def _kubelet_config(self) -> Path:
        self.kubelet_port, self.healthz_port = free_port(), free_port()
        kubeconfig = self.base / "kubelet.kubeconfig"
        self.cluster.write_kubeconfig(kubeconfig, {
            "client-certificate": str(self.cluster.pki / "kubelet.crt"),
            "client-key": str(self.cluster.pki / "kubelet.key")})
        config = self.base / "kubelet.yaml"
        config.write_text(json.dumps(self.kubelet_configuration()))
        return config

    def kubelet_configuration(self) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": self.kubelet_port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.healthz_port,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.cluster.pki / "ca.crt")}},
            "authorization": {"mode": "AlwaysAllow"},  # only the API server's client reaches it
            "containerRuntimeEndpoint": f"unix://{IN_NS_SOCKET}",
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
            "cgroupRoot": self.slot.cgroup_root,  # kubepods under the slot's own parent
            "makeIPTablesUtilChains": False,  # else it edits the host's INPUT/OUTPUT chains
            "volumePluginDir": "/var/lib/kubelet/volume-plugins",
            "resolvConf": "", "serializeImagePulls": False,
            # The test machine's disk and memory are shared: no eviction, no image GC.
            "evictionHard": {"memory.available": "1%", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        }

    def _start_kubelet(self) -> None:
        config = self._kubelet_config()
        self.kubelet.argv = self.in_node(
            str(tool("kubelet")), f"--config={config}",
            f"--kubeconfig={self.base / 'kubelet.kubeconfig'}",
            f"--hostname-override={NODE}", "--v=1")
        self.kubelet.start()
        _wait_until(self.ready, timeout_s=START_TIMEOUT_S, what="the node Ready",
                    log=self.kubelet.log)

    def restart_kubelet(self) -> None:
        """kubelet stopped and started again (the pods keep running); it forgets its cached
        service account tokens, so it requests new ones and rewrites every pod's token file."""
        self.kubelet.stop()
        self.kubelet.start()
        _wait_until(self.ready, timeout_s=START_TIMEOUT_S, what="the node Ready again",
                    log=self.kubelet.log)

    def condition(self, kind: str) -> dict[str, Any] | None:
        status, node = self.cluster.request("GET", f"/api/v1/nodes/{NODE}")
        if status != 200:
            return None
        for cond in node.get("status", {}).get("conditions") or []:
            if cond.get("type") == kind:
                return dict(cond)
        return None

    def ready(self) -> bool:
        if not self.kubelet.running():
            raise ClusterError(f"kubelet exited\n{self.kubelet.log.read_text()[-4000:]}")
        cond = self.condition("Ready")
        return cond is not None and cond.get("status") == "True"

    # lifecycle

    def start(self) -> RealNode:
        self.base.mkdir(parents=True, exist_ok=True)
        self._clean_slot()
        self._namespace()
        self._network()
        _make_cgroup_root(self.slot)
        self._start_containerd()
        self._systemctl()
        self._start_kubelet()
        return self

    def stop(self) -> None:
        """Everything stopped and removed, the host as it was; safe after a failed start, and
        every step runs even when one before it failed (ExitStack: last registered runs first)."""
        with contextlib.ExitStack() as steps:
            for link in (self.slot.bridge, self.slot.service_link):
                steps.callback(_ip, "link", "del", link, check=False)
            steps.callback(self._relay.stop)
            steps.callback(_remove_cgroup_tree, self.slot)
            if self._holder is not None:
                steps.callback(self._kill_namespace)
            if self.containerd is not None:
                steps.callback(self.containerd.stop)
            steps.callback(_kill_cgroup_tree, self.slot)
            steps.callback(self.kubelet.stop)
            if self.containerd is not None:
                steps.callback(self.containerd.resume)
            steps.callback(self.units.stop)  # first: no restart races the stop

    def leftovers(self) -> list[str]:
        """What of the node is still on the host after stop(): nothing, when all went well."""
        left = [f"cgroup {d}" for d in self.slot.cgroup_dirs() if d.is_dir()]
        left += [f"network interface {link}" for link in (self.slot.bridge,
                                                          self.slot.service_link)
                 if Path("/sys/class/net", link).exists()]
        left += [f"sysctl {k} changed" for k, v in self.host_sysctls.items()
                 if Path("/proc/sys", k).read_text() != v]
        left += [p for p, was in self._host_paths.items() if Path(p).exists() and not was]
        return left

    def _clean_slot(self) -> None:
        """What a node of this slot left when its harness was killed before stop(): the slot is
        ours now, so nobody else's."""
        for link in (self.slot.bridge, self.slot.service_link):
            _ip("link", "del", link, check=False)
        _remove_cgroup_tree(self.slot)

    def pod_cgroup(self, controller: str, pod_uid: str) -> Path | None:
        """A pod's cgroup in one v1 hierarchy (any QoS class), or None when it has none."""
        kubepods = CGROUP / controller / self.slot.cgroup_root.lstrip("/") / "kubepods"
        for found in (*kubepods.glob(f"pod{pod_uid}"), *kubepods.glob(f"*/pod{pod_uid}")):
            return found
        return None

    def _kill_namespace(self) -> None:
        """SIGKILL whatever still runs in the node's mount namespace (shims), then its holder."""
        assert self._holder is not None
        ns = os.readlink(f"/proc/{self.ns_pid}/ns/mnt")
        for pid_dir in Path("/proc").iterdir():
            if pid_dir.name.isdigit() and int(pid_dir.name) != self.ns_pid:
                with contextlib.suppress(OSError):
                    if os.readlink(pid_dir / "ns" / "mnt") == ns:
                        os.kill(int(pid_dir.name), signal.SIGKILL)
        self._holder.kill()
        self._holder.wait()
        self._holder = None


def _cgroup_dirs(root: Path) -> list[Path]:
    """Every cgroup under `root`, deepest first (os.walk skips those kubelet removes meanwhile)."""
    return [Path(d) for d, _, _ in os.walk(root, topdown=False)]


def _make_cgroup_root(slot: Slot) -> None:
    """The slot's cgroup root in every hierarchy (kubelet refuses a `cgroupRoot` that does not
    exist); a new cpuset cgroup has no cpus or mems until given its parent's."""
    for d in slot.cgroup_dirs():
        d.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (d / name).exists() and not (d / name).read_text().strip():
                (d / name).write_text((d.parent / name).read_text())


def _kill_cgroup_tree(slot: Slot) -> None:
    """SIGKILL every container process kubelet started (they live under the slot's root)."""
    for root in slot.cgroup_dirs():
        for d in _cgroup_dirs(root):
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)


def _remove_cgroup_tree(slot: Slot) -> None:
    """rmdir kubelet's cgroups and the slot's root, deepest first, once their processes are
    gone."""
    deadline = time.monotonic() + 20
    for root in slot.cgroup_dirs():
        for d in _cgroup_dirs(root):
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    _kill_cgroup_tree(slot)
                    time.sleep(0.1)


@contextlib.contextmanager
def real_node(cluster: KubeCluster, base: Path, *, containerd: str = CONTAINERD_2
              ) -> Iterator[RealNode]:
    """A started node in the slot `cluster` holds (a control plane made `for_node=True` takes
    one: with every slot taken, it waits)."""
    node = RealNode(cluster, base, containerd=containerd)
    try:
        yield node.start()
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)
    left = node.leftovers()
    if left:
        raise ClusterError(f"the node left on the host: {', '.join(left)}")
