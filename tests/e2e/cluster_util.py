"""Multi-node Cairn clusters for the cluster end-to-end tests (``test_cluster.py``).

Every node gets its own loopback address (n1 = 127.0.0.11 ... n5 = 127.0.0.15) and the same
three ports on it (S3 21000, gRPC 21001, management 21002 by default; the base port can be moved
with ``CAIRN_CLUSTER_PORT_BASE``), so clusters stay out of the way of the single-node suite, which
uses random ports on 127.0.0.1.

The binary is ``$CAIRN_BIN`` when set, else ``target/debug/cairn`` (``cargo build -p cairn``).

``ClusterNode`` offers the duck-typed interface conftest's failure-report hook expects
(``name``, ``alive()``, ``check_not_crashed()``, ``unexpected_exit``, ``log_tail()``), so the log
tails of every running node are attached to a failing test's report.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import boto3
import requests
from botocore.config import Config

from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, admin_headers

REPO_ROOT = Path(__file__).resolve().parents[2]
PORT_BASE = int(os.environ.get("CAIRN_CLUSTER_PORT_BASE", "21000"))
API_PORT, RPC_PORT, ADMIN_PORT = PORT_BASE, PORT_BASE + 1, PORT_BASE + 2
JOIN_TOKEN = "cairn-e2e-cluster-token"
LOG_FILTER = "info,openraft=error,s3s=off"

# Cluster defaults for the tests: few partitions (fast formation), small chunks (multi-chunk
# objects stay small), and a short heartbeat so health changes show within seconds.
DEFAULT_ENV = {
    "PARTITIONS": "8",
    "CHUNK_SIZE": str(1 << 20),
    "INLINE_THRESHOLD": "4096",
    "REPLICATION_FACTOR": "3",
    "CLUSTER_VOTERS": "3",
    "DEFAULT_WRITE_CONSISTENCY": "QUORUM",
    "HEARTBEAT_INTERVAL_SECS": "2",
    "NODE_TIMEOUT_SECS": "6",
    "LOG": LOG_FILTER,
}


def cairn_bin() -> Path:
    p = Path(os.environ.get("CAIRN_BIN") or "target/debug/cairn")
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


def lincheck_bin() -> Path | None:
    """`cairn-lincheck` next to the cairn binary in use, else in target/debug."""
    for cand in (cairn_bin().parent / "cairn-lincheck", REPO_ROOT / "target/debug/cairn-lincheck"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def node_ip(index: int) -> str:
    assert 1 <= index <= 5, index
    return f"127.0.0.1{index}"


def bucket_partition(bucket: str, partitions: int, shard: int = 0) -> int:
    """The partition holding `bucket`'s object index (mirrors cairn_meta::placement)."""
    import blake3  # noqa: PLC0415

    d = blake3.blake3(bucket.encode() + b"\0" + shard.to_bytes(4, "big")).digest()
    return int.from_bytes(d[:8], "big") % max(partitions, 1)


def s3_client(endpoint: str, *, retries: int = 1, connect_timeout: float = 2,
              read_timeout: float = 10):
    """A path-style boto3 client. `retries` is botocore's `max_attempts`: retries after the
    first attempt (0 = exactly one attempt)."""
    cfg = Config(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": retries, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=16,
        # Plain PUTs: no aws-chunked trailer (the single-node suite covers those).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=cfg,
    )


# Every process started here, so an interrupted run does not leave nodes holding the ports.
_ALL_PROCS: list[subprocess.Popen] = []


@atexit.register
def _kill_leftovers() -> None:
    for p in _ALL_PROCS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except OSError:
                pass


class NodeExited(RuntimeError):
    pass


class ClusterNode:
    """One `cairn server` process of a cluster."""

    def __init__(self, cluster: "Cluster", index: int, env: dict[str, str]):
        self.cluster = cluster
        self.index = index
        self.node_id = f"n{index}"
        self.name = f"cluster:{self.node_id}"
        self.ip = node_ip(index)
        self.workdir = cluster.workdir / self.node_id
        self.storage_path = self.workdir / "data"
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.env_overrides = dict(env)
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._we_stopped = False
        self.starts = 0
        self.unexpected_exit: str | None = None

    # -- addresses -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{API_PORT}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.ip}:{ADMIN_PORT}"

    @property
    def rpc_addr(self) -> str:
        return f"{self.ip}:{RPC_PORT}"

    def __repr__(self) -> str:
        return f"<{self.node_id} {'up' if self.alive() else 'down'}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        e = {k: v for k, v in os.environ.items()
             if k not in ("RUST_LOG",) and not k.startswith("CAIRN_")}
        e.update(DEFAULT_ENV)
        e.update({
            "STORAGE_PATH": str(self.storage_path),
            "NODE_ID": self.node_id,
            "NODE_BIND_ADDR": self.ip,
            "NODE_API_PORT": str(API_PORT),
            "NODE_RPC_PORT": str(RPC_PORT),
            "NODE_ADMIN_PORT": str(ADMIN_PORT),
            "CLUSTER_JOIN_TOKEN": JOIN_TOKEN,
            "ACCESS_KEY": ACCESS_KEY,
            "SECRET_KEY": SECRET_KEY,
            "S3_DOMAINS": "localhost",
            "RUST_LIB_BACKTRACE": "0",
            "NO_COLOR": "1",
        })
        e.update(self.env_overrides)
        return e

    def spawn(self, expect_exit: bool = False) -> None:
        """Starts the process without waiting for it (`expect_exit`: it is meant to exit on
        its own, which is then not reported as a crash)."""
        assert not self.alive(), f"{self.node_id} already running"
        binary = cairn_bin()
        if not binary.exists():
            raise FileNotFoundError(
                f"Cairn binary not found at {binary}; run `cargo build -p cairn` or set CAIRN_BIN"
            )
        _check_ports_free(self.ip)
        self._log = open(self.log_path, "ab")
        self.starts += 1
        self._we_stopped = expect_exit
        self._log.write(f"\n===== e2e: start #{self.starts} of {self.node_id} =====\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [str(binary), "server"],
            env=self.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _ALL_PROCS.append(self.proc)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise NodeExited(f"{self.node_id} exited with {code} during start-up\n"
                                 f"{self.log_tail(40)}")
            try:
                r = requests.get(f"{self.admin_url}/health", timeout=2)
                if r.status_code == 200:
                    return
                last = f"/health -> {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise TimeoutError(f"{self.node_id} not healthy within {timeout}s (last: {last})\n"
                           f"{self.log_tail(40)}")

    def start(self, timeout: float = 60) -> "ClusterNode":
        self.spawn()
        self.wait_healthy(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_not_crashed(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and not self._we_stopped \
                and self.unexpected_exit is None:
            self.unexpected_exit = (
                f"{self.node_id} exited on its own with code {self.proc.returncode}"
            )

    def kill(self) -> None:
        """kill -9."""
        if self.proc is None:
            return
        self.check_not_crashed()
        self._we_stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close_log()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.proc is None:
            return
        self.check_not_crashed()
        self._we_stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._close_log()

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        finally:
            if self.proc.poll() is not None:
                self._we_stopped = True  # an expected exit (the caller waited for it)
                self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    # -- management plane ----------------------------------------------------------------------
    def status(self, timeout: float = 3) -> dict:
        r = requests.get(f"{self.admin_url}/cluster/status", timeout=timeout,
                         headers=admin_headers("GET", "/cluster/status"))
        r.raise_for_status()
        return r.json()

    def try_status(self, timeout: float = 3) -> dict | None:
        try:
            return self.status(timeout)
        except (requests.RequestException, ValueError):
            return None

    # -- S3 --------------------------------------------------------------------------------------
    def client(self, **kwargs):
        return s3_client(self.endpoint, **kwargs)


def _check_ports_free(ip: str) -> None:
    for port in (API_PORT, RPC_PORT, ADMIN_PORT):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as e:
            raise RuntimeError(
                f"{ip}:{port} is in use ({e}); a node of an earlier run may still be running"
            ) from None
        finally:
            s.close()


class Cluster:
    """Nodes n1..nN started with the same seeds; node objects live in ``self.nodes``."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.env = dict(env or {})
        self.nodes: dict[str, ClusterNode] = {}
        self.partitions = int(self.env.get("PARTITIONS", DEFAULT_ENV["PARTITIONS"]))

    # -- formation -----------------------------------------------------------------------------
    def start(self, n: int = 3, timeout: float = 90) -> "Cluster":
        seeds = ",".join(f"{node_ip(i)}:{RPC_PORT}" for i in range(1, n + 1))
        for i in range(1, n + 1):
            node = ClusterNode(self, i, {**self.env, "CLUSTER_SEEDS": seeds})
            self.nodes[node.node_id] = node
        # All at once: formation waits for every seed to answer.
        for node in self.nodes.values():
            node.spawn()
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            node.wait_healthy(max(1.0, deadline - time.monotonic()))
        self.wait_converged(n, timeout=max(5.0, deadline - time.monotonic()))
        return self

    def add_node(self, index: int, seed: str | None = None, wait: bool = True,
                 expect_exit: bool = False, **env: str) -> ClusterNode:
        """A node joining the running cluster through one seed (n1's rpc address by default)."""
        seed = seed or f"{node_ip(1)}:{RPC_PORT}"
        node = ClusterNode(self, index, {**self.env, "CLUSTER_SEEDS": seed, **env})
        self.nodes[node.node_id] = node
        if wait:
            node.start()
        else:
            node.spawn(expect_exit=expect_exit)
        return node

    def node(self, node_id: str) -> ClusterNode:
        return self.nodes[node_id]

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes.values() if n.alive()]

    def others(self, node: ClusterNode) -> list[ClusterNode]:
        return [n for n in self.alive() if n is not node]

    # -- status --------------------------------------------------------------------------------
    def statuses(self, nodes=None) -> dict[str, dict | None]:
        nodes = list(nodes) if nodes is not None else self.alive()
        return {n.node_id: n.try_status() for n in nodes}

    def converged(self, expected: int, nodes=None, min_layout: int = 1) -> tuple[bool, str]:
        """Whether every given node reports the same cluster of `expected` nodes, all up, with
        a system leader and a layout; returns (ok, why-not)."""
        sts = self.statuses(nodes)
        ids = set()
        for nid, st in sts.items():
            if st is None:
                return False, f"{nid}: no status"
            ids.add(st.get("cluster_id"))
            up = sorted(x["node_id"] for x in st["nodes"] if x["health"] == "up")
            if len(st["nodes"]) != expected or len(up) != expected:
                health = {x["node_id"]: x["health"] for x in st["nodes"]}
                return False, f"{nid}: nodes {health}"
            # A peer's record is written by the bootstrap node; it only has an API address
            # once the peer's own heartbeat has been recorded.
            no_api = sorted(x["node_id"] for x in st["nodes"] if not x.get("api_addr"))
            if no_api:
                return False, f"{nid}: no api_addr yet for {no_api}"
            if st.get("system_leader") is None:
                return False, f"{nid}: no system leader"
            if st.get("layout_version", 0) < min_layout:
                return False, f"{nid}: layout_version {st.get('layout_version')}"
        if len(ids) != 1 or None in ids:
            return False, f"cluster ids differ: {ids}"
        return True, ""

    def wait_converged(self, expected: int, timeout: float = 60, nodes=None,
                       min_layout: int = 1) -> float:
        t0 = time.monotonic()
        why = ""
        while time.monotonic() - t0 < timeout:
            ok, why = self.converged(expected, nodes, min_layout)
            if ok:
                return time.monotonic() - t0
            self.assert_no_crash()
            time.sleep(0.25)
        raise AssertionError(f"cluster did not converge to {expected} up nodes within "
                             f"{timeout}s: {why}")

    def system_leader(self) -> str | None:
        votes = Counter(st.get("system_leader") for st in self.statuses().values() if st)
        votes.pop(None, None)
        return votes.most_common(1)[0][0] if votes else None

    def partition_leaders(self) -> dict[int, str]:
        """partition -> leader, as most live nodes see it."""
        votes: dict[int, Counter] = {}
        for st in self.statuses().values():
            if not st:
                continue
            for p in st["partitions"]:
                if p.get("leader"):
                    votes.setdefault(p["partition"], Counter())[p["leader"]] += 1
        return {p: c.most_common(1)[0][0] for p, c in votes.items()}

    def wait_partition_leaders(self, timeout: float = 30) -> dict[int, str]:
        t0 = time.monotonic()
        while True:
            leaders = self.partition_leaders()
            if len(leaders) == self.partitions:
                return leaders
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"partitions without a leader after {timeout}s: "
                                     f"{sorted(set(range(self.partitions)) - set(leaders))}")
            time.sleep(0.2)

    # -- faults and teardown -------------------------------------------------------------------
    def assert_no_crash(self) -> None:
        for n in self.nodes.values():
            n.check_not_crashed()
            if n.unexpected_exit:
                raise AssertionError(f"{n.unexpected_exit}\n{n.log_tail(60)}")

    def panics(self) -> list[str]:
        out = []
        for n in self.nodes.values():
            for line in n.log_text().splitlines():
                if "panicked at" in line:
                    out.append(f"{n.node_id}: {line.strip()}")
        return out

    def teardown(self) -> list[str]:
        """Stops every node (in parallel); returns problems: nodes that exited on their own
        and panics found in the logs."""
        problems = []
        for n in self.nodes.values():
            n.check_not_crashed()
            if n.unexpected_exit:
                problems.append(f"{n.unexpected_exit}\n{n.log_tail(60)}")
        threads = [threading.Thread(target=n.stop, kwargs={"timeout": 10})
                   for n in self.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        problems += self.panics()
        return problems


class shifted_ports:
    """Context manager: moves the cluster ports to PORT_BASE + `shift` (.. + 2) and restores
    them on exit (for modules and scripts that run beside the other cluster suites)."""

    def __init__(self, shift: int):
        self.shift = shift
        self.saved: tuple[int, int, int] | None = None

    def __enter__(self) -> "shifted_ports":
        global API_PORT, RPC_PORT, ADMIN_PORT
        self.saved = (API_PORT, RPC_PORT, ADMIN_PORT)
        base = PORT_BASE + self.shift
        API_PORT, RPC_PORT, ADMIN_PORT = base, base + 1, base + 2
        return self

    def __exit__(self, *exc) -> None:
        global API_PORT, RPC_PORT, ADMIN_PORT
        API_PORT, RPC_PORT, ADMIN_PORT = self.saved


@contextlib.contextmanager
def started_cluster(workdir: Path, shift: int, nodes: int = 3, timeout: float = 120):
    """A converged ``nodes``-node cluster with a leader for every partition, on ports
    PORT_BASE + ``shift`` (.. + 2), kept in force while it runs (``shifted_ports``). Its nodes are registered with conftest so a
    failing test gets their log tails; on exit it is torn down, its data removed, and the
    test fails if the teardown found problems (a node that died on its own, a panic)."""
    import conftest  # noqa: PLC0415 - the pytest plugin module, loaded by the time tests run
    import pytest  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    problems: list[str] = []
    with shifted_ports(shift):
        c = Cluster(workdir)
        try:
            try:
                c.start(nodes, timeout=timeout)
            finally:
                conftest._RUNNING.extend(n for n in c.nodes.values() if n not in conftest._RUNNING)
            c.wait_partition_leaders(60)
            yield c
        finally:
            problems = c.teardown()
            for n in c.nodes.values():
                if n in conftest._RUNNING:
                    conftest._RUNNING.remove(n)
                shutil.rmtree(n.storage_path, ignore_errors=True)
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)
