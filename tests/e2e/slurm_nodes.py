"""A multi-node Slurm on one machine: each node its own network, hostname and processes.

``MultiNodeSlurm(root, nodes=3).start()`` builds (issue 16, part 1):

* a bridge in this machine's network namespace holding the *head* address, an address of
  the benchmarking range 198.18.0.0/15 (RFC 2544), used only on the bridge and inside the
  namespaces made here: ``munged``, ``slurmctld`` and the manager run on the head;
* per node, a network namespace joined to the bridge by a veth pair (``eth0`` inside, with
  the node's own address), in which ``slurmd -D -N <node>`` runs under a small init that
  is PID 1 of its own PID namespace and has its own UTS namespace (hostname = node name, so
  ``slurmd`` finds its NodeName; runners report it as their host). ``slurmd`` is started
  under ``nsenter --net=/run/netns/NAME``, not ``ip netns exec``, which remounts /sys and
  would hide the cgroup tree from it.

So a node can fail the ways a machine does: ``kill_node`` cuts its link and then kills its
PID 1, which takes every process of the node with it at once (a power cut: nothing it
says while dying reaches anyone); ``cut``/``heal`` take its link down and up (a network
partition, its processes untouched).

Cleaning up (``stop``) ends every daemon by pid, then deletes every namespace and link it
made; it runs even when a test fails. If the test run itself is killed, the kernel ends
the daemons (PR_SET_PDEATHSIG: SIGTERM, and SIGKILL for each node's ``unshare``, which
then kills the node's PID 1, ``--kill-child``); only the namespaces and links are left, and
a later cluster picks an unused /24, so they are in nobody's way.

``SlurmdTimeout`` is short (``SLURMD_TIMEOUT``) so that Slurm marks a dead node down, and
fails its jobs (NODE_FAIL), within seconds; a partition shorter than that is one Slurm
survives.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.slurm_cluster import SlurmCluster, missing_tools

NETWORK = ipaddress.ip_network("198.18.0.0/15")
"""The benchmarking range (RFC 2544): never routed, so it clashes with no real network."""

SLURMD_TIMEOUT = 12
"""Seconds without a word from a node before slurmctld marks it down (it pings every
third of that). Partitions the tests survive must be well shorter."""

NODE_CPUS = 2
NODE_MEMORY_MB = 2048

NODE_INIT = r"""
import os, signal, socket, subprocess, sys
socket.sethostname(sys.argv[1])
child = subprocess.Popen(sys.argv[2:])
for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda sig, frame: child.send_signal(sig))
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        sys.exit(0)
    if pid == child.pid:
        sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
"""
"""PID 1 of a node: names the node, runs slurmd, reaps every orphan of the namespace, and
passes SIGTERM on to slurmd. When it ends, the kernel kills the rest of its namespace."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "ip"
    return subprocess.run([ip, *args], capture_output=True, text=True, timeout=30,
                          check=check)


NET_TOOLS = ("ip", "nsenter", "unshare")
"""What building the nodes needs in PATH (Debian's iproute2 and util-linux)."""


def missing_net_tools() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [tool for tool in NET_TOOLS if shutil.which(tool, path=path) is None]


def namespaces_problem() -> str:
    """Why network namespaces cannot be made here, or "" if they can."""
    if os.geteuid() != 0:
        return "network namespaces and bridges need root (run the tests as root, as CI does)"
    missing = missing_net_tools()
    if missing:
        return f"{', '.join(missing)} not found (Debian: apt-get install iproute2)"
    probe = f"wrprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    _ip("netns", "del", probe, check=False)
    return ""


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of the benchmarking range that no interface of this machine uses."""
    used = _ip("-o", "-4", "addr", "show").stdout
    subnets = list(NETWORK.subnets(new_prefix=24))
    rng = secrets.SystemRandom()
    rng.shuffle(subnets)
    for subnet in subnets:
        if str(subnet.network_address)[:-1] not in used:
            return subnet
    raise RuntimeError("every /24 of 198.18.0.0/15 is in use on this machine")


class NodeNetwork:
    """The bridge (head address) and one network namespace per node; see the module
    docstring. Names carry a random tag, so clusters of parallel test runs never meet."""

    def __init__(self, nodes: list[str]) -> None:
        tag = secrets.token_hex(2)
        subnet = _free_subnet()
        hosts = list(subnet.hosts())
        self.bridge = f"wr{tag}br"
        self.prefix = subnet.prefixlen
        self.head = str(hosts[0])
        self.addrs = {node: str(hosts[9 + i]) for i, node in enumerate(nodes)}
        self.netns = {node: f"wr{tag}{node}" for node in nodes}
        self.links = {node: f"wr{tag}{node}h" for node in nodes}
        """The host-side end of each node's veth pair, on the bridge."""
        self._made: list[tuple[str, str]] = []

    def create(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        _ip("addr", "add", f"{self.head}/{self.prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for node, ns in self.netns.items():
            _ip("netns", "add", ns)
            self._made.append(("netns", ns))
            link = self.links[node]
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._made.append(("link", link))
            _ip("link", "set", link, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.addrs[node]}/{self.prefix}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, node: str) -> None:
        """Take the node's link down: nothing passes either way until ``heal``."""
        _ip("link", "set", self.links[node], "down")

    def heal(self, node: str) -> None:
        _ip("link", "set", self.links[node], "up")

    def destroy(self) -> None:
        """Delete everything made, newest first (a namespace takes its veth with it)."""
        while self._made:
            kind, name = self._made.pop()
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)


class MultiNodeSlurm(SlurmCluster):
    """A Slurm of ``nodes`` nodes ``n1``, ``n2``, ... on this machine (module docstring)."""

    def __init__(self, root: Path, *, nodes: int = 3, cpus: int = NODE_CPUS,
                 memory_mb: int = NODE_MEMORY_MB) -> None:
        super().__init__(root)
        self.nodes = [f"n{i + 1}" for i in range(nodes)]
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.net = NodeNetwork(self.nodes)
        self.controller_addr = self.net.head
        self.inits: dict[str, int] = {}
        """Host pid of each live node's PID 1."""

    @property
    def head(self) -> str:
        """The head's address: where slurmctld, munged and the manager are reached."""
        return self.net.head

    def node_config(self) -> str:
        r = self.root
        lines = [
            f"SlurmdSpoolDir={r}/spool/%n",
            f"SlurmdPidFile={r}/slurmd.%n.pid",
            f"SlurmdLogFile={r}/slurmd.%n.log",
            f"SlurmdTimeout={SLURMD_TIMEOUT}",
            "MessageTimeout=5",
        ]
        for node in self.nodes:
            lines.append(f"NodeName={node} NodeHostname={node} NodeAddr={self.net.addrs[node]} "
                         f"CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES "
                     f"MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    def start_nodes(self) -> None:
        self.net.create()
        for node in self.nodes:
            (self.root / "spool" / node).mkdir(parents=True, exist_ok=True)
            proc = self._spawn(node, [
                "nsenter", f"--net=/run/netns/{self.net.netns[node]}",
                "unshare", "--uts", "--pid", "--mount-proc", "--kill-child=SIGKILL", "--",
                sys.executable, "-c", NODE_INIT, node, "slurmd", "-D", "-N", node],
                death=signal.SIGKILL)  # unshare ignores SIGTERM; killed, it kills the node
            self.inits[node] = self._init_of(proc)

    def _init_of(self, proc: subprocess.Popen[bytes]) -> int:
        """The host pid of the node's PID 1: the child ``unshare`` forks."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(proc.pid).children()
                if children:
                    return children[0].pid
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"a node's init did not start:\n{self.logs()}")

    def kill_node(self, node: str) -> None:
        """A power cut: the node's link goes down, then all its processes die at once."""
        self.net.cut(node)
        self._end_node(node)

    def _end_node(self, node: str) -> None:
        """Kill the node's PID 1, and so every process of the node (``unshare`` itself
        ignores SIGTERM, and ``slurmd`` need not save anything of a test's cluster)."""
        pid = self.inits.pop(node, None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).wait(10)
        proc = self.procs.pop(node, None)
        if proc is not None:
            proc.wait(10)

    def cut(self, node: str) -> None:
        """Partition the node from the head (and every other node)."""
        self.net.cut(node)

    def heal(self, node: str) -> None:
        self.net.heal(node)

    def node_states(self) -> dict[str, str]:
        """sinfo's state of each node (``idle``, ``mixed``, ``down*``, ...)."""
        out = self.run("sinfo", "-h", "-N", "-o", "%N|%t").stdout
        return dict(line.split("|", 1) for line in out.split())

    def log_names(self) -> list[str]:
        return [*super().log_names(),
                *(f"{n}.out" for n in self.nodes), *(f"slurmd.{n}.log" for n in self.nodes)]

    def stop(self) -> None:
        """End the nodes, then slurmctld and munged, then remove the network."""
        try:
            for node in list(self.inits):
                self._end_node(node)
            super().stop()
        finally:
            self.net.destroy()


@pytest.fixture
def slurm_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeSlurm]:
    """A fresh 3-node Slurm for one test (a test may kill or cut its nodes); skips, saying
    why, only where network namespaces cannot be made."""
    missing = missing_net_tools()
    if missing and os.geteuid() == 0:
        pytest.fail(f"{', '.join(missing)} not found: scripts/test installs iproute2 when "
                    f"run as root")
    problem = namespaces_problem()
    if problem:
        pytest.skip(f"no multi-node Slurm: {problem}")
    missing = missing_tools()
    if missing:
        pytest.fail(f"Slurm is not installed ({', '.join(missing)} not found); scripts/test "
                    f"installs slurm-wlm and munge when run as root")
    cluster = MultiNodeSlurm(tmp_path_factory.mktemp("slurm_nodes"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
