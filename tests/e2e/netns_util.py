"""A private network of Linux network namespaces for true network-partition tests
(``test_partition.py``). Needs root and iproute2 + nftables (``ip``, ``nft``).

Topology (names start with ``$CAIRN_NETNS_PREFIX``, default ``cairnpt``; addresses are in
``$CAIRN_NETNS_SUBNET``.0/24, default 10.231.0.0/24)::

    root namespace (the test process)          cairnpt-sw (the "switch")       cairnpt-nI
    cairnpt-h0 10.231.0.1/24  <-- veth -->  h0 --+
                                                 br0 (bridge)
                                            vI --+             <-- veth -->  eth0 10.231.0.1I/24

The bridge lives in its own namespace, so the host's firewall (e.g. Docker's FORWARD policy
DROP with bridge netfilter on) never sees the bridged traffic; the root namespace only has an
ordinary interface on the subnet, so the test client reaches every node directly.

Partitions are silent packet loss, like a broken network: every node namespace has an nftables
set ``blocked`` of peer addresses whose packets are dropped on arrival (input hook). Blocking
both directions between two nodes cuts every TCP connection and UDP (gossip) datagram between
them without any error reaching the processes (no RST, no ICMP): connections hang and time out.
Traffic to and from the root namespace (the test client) is never blocked.

Everything is removed by ``teardown()``: processes still inside the namespaces are killed, the
namespaces deleted (which deletes their veths, the bridge and the nftables rules), and the root
end of the host veth removed. ``setup()`` first removes leftovers of an earlier crashed run with
the same prefix; an ``atexit`` hook tears down networks that are still up when Python exits.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time

PREFIX = os.environ.get("CAIRN_NETNS_PREFIX", "cairnpt")
SUBNET = os.environ.get("CAIRN_NETNS_SUBNET", "10.231.0")  # first three octets of a /24
HOST_IP = f"{SUBNET}.1"
NFT_TABLE = "cairnpt"

_LIVE: list["NetnsNetwork"] = []


class NetnsError(RuntimeError):
    pass


def run(cmd: list[str], check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise NetnsError(f"`{' '.join(cmd)}` failed with exit {r.returncode}: "
                         f"{(r.stderr or r.stdout).strip()}")
    return r


def _list_netns() -> list[str]:
    r = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def _kill_pids_in(ns: str) -> list[int]:
    """SIGKILLs every process inside namespace `ns` (only ever namespaces this module made)."""
    r = run(["ip", "netns", "pids", ns], check=False)
    pids = [int(p) for p in r.stdout.split() if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if pids:
            time.sleep(0.05)
    return pids


def cleanup_leftovers(prefix: str = PREFIX) -> list[str]:
    """Removes namespaces (and the processes in them) and the host veth of an earlier run with
    this prefix; returns what it removed."""
    removed = []
    for ns in _list_netns():
        if ns.startswith(prefix + "-"):
            _kill_pids_in(ns)
            run(["ip", "netns", "del", ns], check=False)
            removed.append(f"netns {ns}")
    host_if = f"{prefix}-h0"
    if run(["ip", "link", "show", host_if], check=False).returncode == 0:
        run(["ip", "link", "del", host_if], check=False)
        removed.append(f"link {host_if}")
    return removed


class NetnsNetwork:
    """n node namespaces on one bridge; node i (1-based) has address ``SUBNET.1i``."""

    def __init__(self, n: int, prefix: str = PREFIX, subnet: str = SUBNET):
        assert 1 <= n <= 9, n
        self.n = n
        self.prefix = prefix
        self.subnet = subnet
        self.switch_ns = f"{prefix}-sw"
        self.host_if = f"{prefix}-h0"
        self.host_ip = f"{subnet}.1"
        self.is_up = False
        # node index -> set of peer indexes whose packets it drops
        self._blocked: dict[int, set[int]] = {i: set() for i in range(1, n + 1)}

    # -- names ---------------------------------------------------------------------------------
    def ns(self, i: int) -> str:
        return f"{self.prefix}-n{i}"

    def ip(self, i: int) -> str:
        return f"{self.subnet}.1{i}"

    def exec_prefix(self, i: int) -> list[str]:
        """Command prefix that runs a program inside node i's namespace."""
        return ["ip", "netns", "exec", self.ns(i)]

    def index_of(self, ip: str) -> int:
        for i in range(1, self.n + 1):
            if self.ip(i) == ip:
                return i
        raise KeyError(ip)

    # -- lifecycle -----------------------------------------------------------------------------
    def setup(self) -> "NetnsNetwork":
        """Builds the network; raises NetnsError (never skips) when it cannot."""
        if os.geteuid() != 0:
            raise NetnsError("network-namespace tests need root (ip netns add)")
        self.leftovers = cleanup_leftovers(self.prefix)
        _LIVE.append(self)
        self.is_up = True  # from here on teardown() has something to remove
        sw = self.switch_ns
        run(["ip", "netns", "add", sw])
        self._in(sw, "ip", "link", "set", "lo", "up")
        self._in(sw, "ip", "link", "add", "br0", "type", "bridge")
        self._in(sw, "ip", "link", "set", "br0", "up")
        # The test process's leg into the switch.
        run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "h0",
             "netns", sw])
        run(["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_if])
        run(["ip", "link", "set", self.host_if, "up"])
        self._in(sw, "ip", "link", "set", "h0", "master", "br0")
        self._in(sw, "ip", "link", "set", "h0", "up")
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            run(["ip", "netns", "add", ns])
            self._in(ns, "ip", "link", "set", "lo", "up")
            self._in(sw, "ip", "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
                     "netns", ns)
            self._in(sw, "ip", "link", "set", f"v{i}", "master", "br0")
            self._in(sw, "ip", "link", "set", f"v{i}", "up")
            self._in(ns, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            self._in(ns, "ip", "link", "set", "eth0", "up")
            r = subprocess.run(
                ["ip", "netns", "exec", ns, "nft", "-f", "-"], capture_output=True, text=True,
                timeout=15,
                input=(f"table inet {NFT_TABLE} {{\n"
                       f"  set blocked {{ type ipv4_addr; }}\n"
                       f"  chain input {{ type filter hook input priority -10; policy accept;\n"
                       f"    ip saddr @blocked drop; }}\n"
                       f"}}\n"))
            if r.returncode != 0:
                raise NetnsError(f"nft in {ns} failed: {r.stderr.strip()}")
        self._wait_reachable()
        return self

    def teardown(self) -> list[str]:
        """Removes everything; returns problems (never raises)."""
        problems = []
        if not self.is_up:
            return problems
        for ns in [self.ns(i) for i in range(1, self.n + 1)] + [self.switch_ns]:
            left = _kill_pids_in(ns)
            if left:
                problems.append(f"processes {left} in {ns} survived SIGKILL")
            r = run(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
        if run(["ip", "link", "show", self.host_if], check=False).returncode == 0:
            run(["ip", "link", "del", self.host_if], check=False)
        self.is_up = False
        if self in _LIVE:
            _LIVE.remove(self)
        leftover = [ns for ns in _list_netns() if ns.startswith(self.prefix + "-")]
        if leftover:
            problems.append(f"namespaces left behind: {leftover}")
        return problems

    def _in(self, ns: str, *cmd: str) -> None:
        run(["ip", "netns", "exec", ns, *cmd])

    # -- partitions ----------------------------------------------------------------------------
    def _apply(self) -> None:
        for i, peers in self._blocked.items():
            script = f"flush set inet {NFT_TABLE} blocked\n"
            if peers:
                elems = ", ".join(self.ip(p) for p in sorted(peers))
                script += f"add element inet {NFT_TABLE} blocked {{ {elems} }}\n"
            r = subprocess.run(["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"],
                               input=script, capture_output=True, text=True, timeout=15)
            if r.returncode != 0:
                raise NetnsError(f"nft in {self.ns(i)} failed: {r.stderr.strip()}")

    def cut(self, a: int, b: int) -> None:
        """Drops every packet between nodes a and b, both ways."""
        self._blocked[a].add(b)
        self._blocked[b].add(a)
        self._apply()

    def isolate(self, i: int) -> None:
        """Cuts node i off from every other node (the test client still reaches it)."""
        for j in range(1, self.n + 1):
            if j != i:
                self._blocked[i].add(j)
                self._blocked[j].add(i)
        self._apply()

    def partition(self, *groups) -> None:
        """Splits the nodes into groups that only reach their own group's members; nodes in
        no group are isolated from all."""
        group_of = {}
        for g, members in enumerate(groups):
            for m in members:
                group_of[m] = g
        for i in range(1, self.n + 1):
            self._blocked[i] = {j for j in range(1, self.n + 1)
                                if j != i and (group_of.get(i, -i) != group_of.get(j, -j))}
        self._apply()

    def heal(self) -> None:
        for peers in self._blocked.values():
            peers.clear()
        self._apply()

    def blocked_pairs(self) -> set[tuple[int, int]]:
        return {(i, j) for i, peers in self._blocked.items() for j in peers}

    def nft_sets(self) -> dict[str, str]:
        """The live nftables sets (for reports)."""
        out = {}
        for i in range(1, self.n + 1):
            r = run(["ip", "netns", "exec", self.ns(i), "nft", "list", "set", "inet",
                     NFT_TABLE, "blocked"], check=False)
            out[self.ns(i)] = " ".join(r.stdout.split())
        return out

    # -- probes --------------------------------------------------------------------------------
    def probe_tcp(self, src: int | None, dst: int, port: int, timeout: float = 1.0) -> str:
        """Connects from node `src`'s namespace (None: the root namespace) to node `dst`:
        'open', 'refused' (reachable, nothing listening) or 'timeout' (packets dropped)."""
        code = (
            "import socket,sys\n"
            f"s=socket.socket(); s.settimeout({timeout})\n"
            "try:\n"
            f"    s.connect(({self.ip(dst)!r}, {port})); print('open')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except (socket.timeout, TimeoutError): print('timeout')\n"
            "except OSError as e: print('error:'+str(e))\n"
        )
        if src is None:
            return _probe_here(self.ip(dst), port, timeout)
        r = run(self.exec_prefix(src) + [sys.executable, "-c", code], check=False,
                timeout=timeout + 15)
        return r.stdout.strip() or f"error:{r.stderr.strip()}"

    def _wait_reachable(self, timeout: float = 10) -> None:
        """Every node reaches every other node and the root namespace reaches every node
        (connection refused = reachable: nothing listens yet on port 9)."""
        deadline = time.monotonic() + timeout
        while True:
            bad = {}
            for d in range(1, self.n + 1):
                res = _probe_here(self.ip(d), 9, 1.0)
                if res not in ("refused", "open"):
                    bad[f"root->n{d}"] = res
            if not bad:
                res = self.probe_tcp(1, self.n, 9) if self.n > 1 else "refused"
                if res not in ("refused", "open"):
                    bad[f"n1->n{self.n}"] = res
            if not bad:
                return
            if time.monotonic() > deadline:
                raise NetnsError(f"namespace network not connected after {timeout}s: {bad}")
            time.sleep(0.1)


def _probe_here(ip: str, port: int, timeout: float) -> str:
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as e:
        return f"error:{e}"
    finally:
        s.close()


@atexit.register
def _teardown_live() -> None:
    for net in list(_LIVE):
        try:
            net.teardown()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# ---------------------------------------------------------------------------------------------
# Cairn nodes inside the namespaces
# ---------------------------------------------------------------------------------------------

def netns_cluster_classes():
    """(NetnsNode, NetnsCluster) built on cluster_util's ClusterNode / Cluster; imported lazily
    so this module's network part has no Cairn dependencies."""
    import cluster_util as cu  # noqa: PLC0415

    class NetnsNode(cu.ClusterNode):
        """A `cairn server` run with `ip netns exec <node ns>`, bound to the namespace's
        address (which it advertises to its peers)."""

        def __init__(self, cluster, index, env, net: NetnsNetwork):
            super().__init__(cluster, index, env)
            self.net = net
            self.ip = net.ip(index)
            self.name = f"netns:{self.node_id}"

        def spawn(self, expect_exit: bool = False) -> None:
            assert not self.alive(), f"{self.node_id} already running"
            binary = cu.cairn_bin()
            if not binary.exists():
                raise FileNotFoundError(f"Cairn binary not found at {binary}; set CAIRN_BIN")
            self._log = open(self.log_path, "ab")
            self.starts += 1
            self._we_stopped = expect_exit
            self._log.write(f"\n===== e2e: start #{self.starts} of {self.node_id} in "
                            f"{self.net.ns(self.index)} =====\n".encode())
            self._log.flush()
            # `ip netns exec` execs the program (no fork), so proc.pid is cairn's pid.
            self.proc = subprocess.Popen(
                self.net.exec_prefix(self.index) + [str(binary), "server"],
                env=self.env(),
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            cu._ALL_PROCS.append(self.proc)

        # While partitioned, openraft logs every failed heartbeat and vote (several lines a
        # second per group); failure reports show the other lines (the log file has all).
        SPAM = ("RPCError", "while requesting vote", "when Vote", "when AppendEntries",
                "confirming leadership")

        def log_tail(self, lines: int = 60) -> str:
            all_lines = self.log_text().splitlines()
            kept = [ln for ln in all_lines if not any(s in ln for s in self.SPAM)]
            tail = kept[-lines:]
            return (f"--- last {len(tail)} lines of {self.log_path} (without "
                    f"{len(all_lines) - len(kept)} openraft RPC-failure lines) ---\n"
                    + "\n".join(tail))

    class NetnsCluster(cu.Cluster):
        """Nodes n1..nN, node i in namespace i of `net`, all seeded with every node."""

        def __init__(self, workdir, net: NetnsNetwork, env=None):
            super().__init__(workdir, env)
            self.net = net

        def start(self, n: int = 3, timeout: float = 90):
            assert n <= self.net.n
            seeds = ",".join(f"{self.net.ip(i)}:{cu.RPC_PORT}" for i in range(1, n + 1))
            for i in range(1, n + 1):
                node = NetnsNode(self, i, {**self.env, "CLUSTER_SEEDS": seeds}, self.net)
                self.nodes[node.node_id] = node
            for node in self.nodes.values():
                node.spawn()
            deadline = time.monotonic() + timeout
            for node in self.nodes.values():
                node.wait_healthy(max(1.0, deadline - time.monotonic()))
            self.wait_converged(n, timeout=max(5.0, deadline - time.monotonic()))
            return self

        def node_at(self, index: int):
            return self.nodes[f"n{index}"]

    return NetnsNode, NetnsCluster
