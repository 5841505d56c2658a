#!/usr/bin/env python3
"""Chaos driver for Cairn (issue 13 item 9): a real cluster (4-5 nodes, RF 3, short
REPAIR_GRACE_SECS, GC_GRACE_SECS=1) under a mixed S3 workload while a seeded random schedule
injects faults, then a heal and a full verification of every acknowledged write and delete.

Faults (one at a time, each for a few seconds; every enabled kind once per round, in a seeded
order, with seeded victims and durations):

* ``kill``      kill -9 of a node, restart after 2 s .. 2 x REPAIR_GRACE_SECS (long ones are
                re-homed and placed again when they return)
* ``pause``     SIGSTOP / SIGCONT of a node (a process that stops answering without closing
                anything)
* ``partition`` a node isolated, or a 2 | 3 split (network namespaces + nftables, see
                tests/e2e/netns_util.py; needs root: skipped with a message otherwise)
* ``disk``      the disk node's data dir is a small tmpfs; a ballast file takes it under
                DISK_RESERVE_BYTES (chunks refused) and is removed again (needs root)
* ``bitrot``    one byte flipped in a random chunk file of a random node (scrub or read repair
                must restore it)
* ``clock``     a node restarted under libfaketime with its clock off by 30..240 s, then
                restarted on the real clock (skipped when libfaketime is missing)
* ``slowio``    a node restarted with a slow disk: its chunk reads and writes take 50..400 ms
                and its Raft log writes a fifth of that (failpoints, CAIRN_FAILPOINTS), then
                restarted with a normal one
* ``ioerr``     a node restarted with a failing disk: 20..100 % of its chunk reads and writes
                fail with EIO, and sometimes its Raft log writes too (its groups stop there
                until the restart), then restarted with a working one

The workload: worker threads PUT objects of varied sizes (inline, single- and multi-chunk),
multipart uploads, overwrites, deletes, CopyObject across buckets, identical re-PUTs of shared
contents (dedup) and reads that must agree with the ledger, each through a random node. The
ledger records every acknowledged operation; a key that had an unacknowledged one (which may
still apply later) is retired: its final content must be one of the contents it could hold.
Beside it, a register workload (`--lin-clients` per node, default 1, a few ops a second each)
does single-key Put/Get/Delete on LIN_KEYS of bucket chaos-lin, recorded as in
tests/e2e/lin_util.py (uncertain outcomes as Unknown); after the run cairn-lincheck must find
the history linearizable (a violation is a failure; no checker is said in the summary).

Verification after the heal: every node up and converged, `/cluster/health` says `fully
replicated` on every node, no replica move in flight, no node missing a chunk it should hold
(`cairn_chunk_missing_local`); every ledger key reads back byte for byte through every node
(acknowledged deletes: NoSuchKey), no 5xx; every chunk file on every disk hashes to its name;
no panics and no node exiting on its own.

    python3 tests/chaos/chaos.py --nodes 5 --minutes 30 --seed 7      # the long run
    python3 tests/chaos/chaos.py --seconds 120 --seed 1 --faults kill,pause,bitrot

The binary is $CAIRN_BIN (see tests/e2e/cluster_util.py). Exit status 0 when nothing was lost.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

import blake3  # noqa: E402
import requests  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

import cluster_util  # noqa: E402
import netns_util  # noqa: E402
from cluster_util import Cluster, cairn_bin, lincheck_bin, s3_client  # noqa: E402
from e2e_util import admin_headers, chunk_files, rand_bytes  # noqa: E402
from lin_util import (LIN_KEYS, HistoryRecorder, LincheckUnusable, lin_worker,  # noqa: E402
                      lincheck, lincheck_form)

# botocore's Expect: 100-continue handling makes urllib3 log a header-parsing warning with a
# traceback for many uploads (harmless: the response is read correctly); keep the output
# readable.
logging.getLogger("urllib3.connection").setLevel(logging.ERROR)

ALL_FAULTS = ("kill", "pause", "partition", "disk", "bitrot", "clock", "slowio", "ioerr")
MiB = 1 << 20
CHUNK = int(cluster_util.DEFAULT_ENV["CHUNK_SIZE"])
SIZES = [0, 100, 3000, 9000, 300_000, CHUNK, CHUNK + 1, 1_500_000, 2_600_000, 3_300_000]
POOL_SIZES = [2_200_000, 700, 1_200_000, 5000]
DISK_FS_SIZE = 384 * MiB
DISK_RESERVE = 32 * MiB
FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                 "/usr/local/lib/faketime/libfaketime.so.1")
BUCKETS = ("chaos-a", "chaos-b")
LIN_BUCKET = "chaos-lin"  # the register workload's keys (LIN_KEYS), checked by cairn-lincheck
LIN_PAUSE = 0.3  # seconds between a register client's operations (a few per second)


def say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Contents and the ledger
# ---------------------------------------------------------------------------------------------

def content_bytes(cid) -> bytes:
    """Deterministic content for a content id: ("pool", i) | ("u", w, seq, size) |
    ("mp", w, seq) (a multipart upload's whole object)."""
    if cid[0] == "pool":
        return rand_bytes(POOL_SIZES[cid[1]], cid)
    if cid[0] == "mp":
        return b"".join(multipart_parts(cid))
    return rand_bytes(cid[3], cid)


def multipart_parts(cid) -> list[bytes]:
    return [rand_bytes(5 * MiB, (cid, 1)), rand_bytes(100_000 + cid[2] % 1000, (cid, 2))]


_DIGESTS: dict = {}
_DIGEST_LOCK = threading.Lock()


def digest(cid) -> str | None:
    if cid is None:
        return None
    with _DIGEST_LOCK:
        d = _DIGESTS.get(cid)
    if d is None:
        d = hashlib.sha256(content_bytes(cid)).hexdigest()
        with _DIGEST_LOCK:
            _DIGESTS[cid] = d
    return d


@dataclass
class KeyState:
    # Contents the key may hold (None = absent). One element while every op was acknowledged.
    possible: set = field(default_factory=lambda: {None})
    certain: bool = True
    history: list = field(default_factory=list)

    def acked(self, op: str, cid) -> None:
        self.possible = {cid}
        self.history.append(f"{op}:{short(cid)}:ok@{time.strftime('%H:%M:%S')}")

    def unacked(self, op: str, cid, err: str) -> None:
        self.possible.add(cid)
        self.certain = False
        self.history.append(f"{op}:{short(cid)}:?({err})@{time.strftime('%H:%M:%S')}")


def short(cid) -> str:
    return "-" if cid is None else "/".join(str(x) for x in cid)


def err_text(e: Exception) -> str:
    if isinstance(e, ClientError):
        md = e.response.get("ResponseMetadata", {})
        return f"{md.get('HTTPStatusCode')} {e.response.get('Error', {}).get('Code')}"
    return type(e).__name__


# ---------------------------------------------------------------------------------------------
# Cluster plumbing shared with scripts/bench-heal.py
# ---------------------------------------------------------------------------------------------

def metric_sum(node, name: str) -> float | None:
    """Sum of the samples of metric `name` in the node's /metrics (None: no answer)."""
    try:
        text = requests.get(f"{node.admin_url}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    vals = re.findall(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return sum(float(v) for v in vals) if vals else 0.0


def cluster_health(node) -> dict | None:
    try:
        r = requests.get(f"{node.admin_url}/cluster/health", timeout=5,
                         headers=admin_headers("GET", "/cluster/health"))
        return r.json() if r.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None


def moves_in_progress(node) -> int | None:
    try:
        r = requests.get(f"{node.admin_url}/admin/rebalances", timeout=5,
                         headers=admin_headers("GET", "/admin/rebalances"))
        return r.json()["in_progress"] if r.status_code == 200 else None
    except (requests.RequestException, ValueError, KeyError):
        return None


def healed(cluster: Cluster, nodes=None) -> tuple[bool, str]:
    """Fully replicated and settled, as every given node sees it: health `fully replicated`,
    no replica move in flight, no chunk missing on any node."""
    nodes = list(nodes) if nodes is not None else cluster.alive()
    for n in nodes:
        h = cluster_health(n)
        if h is None:
            return False, f"{n.node_id}: no /cluster/health"
        if h.get("redundancy") != "fully replicated":
            return False, f"{n.node_id}: {h.get('redundancy')} {h.get('problems')}"
    moving = moves_in_progress(nodes[0])
    if moving != 0:
        return False, f"{moving} replica moves in progress"
    for n in nodes:
        missing = metric_sum(n, "cairn_chunk_missing_local")
        if missing != 0:
            return False, f"{n.node_id}: cairn_chunk_missing_local {missing}"
    return True, ""


def wait_healed(cluster: Cluster, timeout: float, nodes=None, stable: float = 0) -> float:
    """Seconds until `healed` holds (and keeps holding for `stable` seconds: the missing-chunk
    gauge is only as fresh as the last chunk-sync pass, every 5 s)."""
    t0 = time.monotonic()
    since = None
    why = ""
    while time.monotonic() - t0 < timeout:
        ok, why = healed(cluster, nodes)
        now = time.monotonic()
        if not ok:
            since = None
        elif since is None:
            since = now
        if since is not None and now - since >= stable:
            return since - t0
        cluster.assert_no_crash()
        time.sleep(0.5)
    raise AssertionError(f"not fully replicated within {timeout:.0f}s: {why}")


def faketime_lib() -> str | None:
    for p in FAKETIME_LIBS:
        if os.path.exists(p):
            return p
    return None


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

@dataclass
class Config:
    nodes: int = 5
    seconds: float = 120
    seed: int = 1
    port_shift: int = 440
    faults: tuple = ALL_FAULTS
    workers: int = 3
    keys_per_worker: int = 6
    repair_grace: int = 8
    workdir: Path | None = None
    keep: bool = False
    heal_timeout: float = 180
    lin_clients: int = 1  # register clients per node (0: no linearizability check)


@dataclass
class Result:
    seed: int
    faults: list = field(default_factory=list)        # "t+12.3s kill n2 for 4.1s"
    skipped: dict = field(default_factory=dict)       # fault -> why
    ops: dict = field(default_factory=dict)           # "put:ok" -> count
    failures: list = field(default_factory=list)      # anything that must not happen
    notes: list = field(default_factory=list)
    keys: int = 0
    heal_s: float | None = None
    lin: str = "-"                                    # the linearizability check's outcome
    workdir: str = ""

    def summary(self) -> str:
        acked = sum(v for k, v in self.ops.items() if k.endswith(":ok"))
        unacked = sum(v for k, v in self.ops.items() if k.endswith(":err"))
        kinds: dict[str, int] = {}
        for f in self.faults:
            k = f.split()[1].rstrip(":")
            if k != "heal":
                kinds[k] = kinds.get(k, 0) + 1
        lines = [f"seed {self.seed}: {sum(kinds.values())} faults {kinds}",
                 f"ops: {acked} acknowledged, {unacked} not acknowledged "
                 f"{dict(sorted(self.ops.items()))}",
                 f"keys in the ledger: {self.keys}; heal to fully replicated: "
                 f"{'-' if self.heal_s is None else f'{self.heal_s:.1f}s'}"]
        lines.append(f"linearizability: {self.lin}")
        for k, why in self.skipped.items():
            lines.append(f"fault {k} skipped: {why}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"failures: {len(self.failures)}")
        lines += [f"  FAIL {f}" for f in self.failures[:50]]
        lines.append(f"data and logs: {self.workdir}")
        return "\n".join(lines)


class Chaos:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rng = random.Random(f"chaos-{cfg.seed}")
        self.result = Result(seed=cfg.seed)
        self.ledger: dict[tuple[str, str], KeyState] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.faulty: set[str] = set()
        self.paused: set[str] = set()
        self.net = None
        self.cluster: Cluster | None = None
        self.disk_node: str | None = None
        self.ballast: Path | None = None
        self.mounted: Path | None = None
        self.t0 = time.monotonic()
        self.history = HistoryRecorder()

    # -- bookkeeping ---------------------------------------------------------------------------
    def count(self, what: str) -> None:
        with self.lock:
            self.result.ops[what] = self.result.ops.get(what, 0) + 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.result.failures.append(what)
        say(f"FAILURE: {what}")

    def fault_log(self, what: str) -> None:
        line = f"t+{time.monotonic() - self.t0:.1f}s {what}"
        self.result.faults.append(line)
        say(line)

    # -- set-up --------------------------------------------------------------------------------
    def plan_faults(self) -> list[str]:
        enabled = []
        root = os.geteuid() == 0
        for f in self.cfg.faults:
            if f in ("partition", "disk") and not root:
                self.result.skipped[f] = "needs root (network namespaces / a tmpfs mount)"
            elif f == "partition" and not (shutil.which("ip") and shutil.which("nft")):
                self.result.skipped[f] = "needs iproute2 and nftables (ip, nft)"
            elif f == "clock" and faketime_lib() is None:
                self.result.skipped[f] = ("libfaketime not installed (apt-get install "
                                          "faketime)")
            else:
                enabled.append(f)
        return enabled

    def start_cluster(self, workdir: Path, enabled: list[str]) -> None:
        n = self.cfg.nodes
        env = {"REPAIR_GRACE_SECS": str(self.cfg.repair_grace), "GC_GRACE_SECS": "1",
               "GC_INTERVAL_SECS": "2", "SCRUB_INTERVAL_SECS": "5", "SCRUB_RATE_MBPS": "64",
               "DISK_RESERVE_BYTES": str(DISK_RESERVE), "PARTITIONS": "8"}
        if "partition" in enabled:
            _, NetnsCluster = netns_util.netns_cluster_classes()
            shift = self.cfg.port_shift
            self.net = netns_util.NetnsNetwork(n, prefix=f"cairnch{shift % 1000}",
                                               subnet=f"10.232.{shift % 250}")
            self.net.setup()
            self.cluster = NetnsCluster(workdir, self.net, env=env)
        else:
            self.cluster = Cluster(workdir, env=env)
        if "disk" in enabled:
            # The last node's data dir is a small tmpfs (mounted before the node starts, so
            # a node in a network namespace sees it too).
            self.disk_node = f"n{n}"
            path = workdir / self.disk_node / "data"
            path.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_FS_SIZE}", "tmpfs",
                                str(path)], capture_output=True, text=True)
            if r.returncode != 0:
                self.result.skipped["disk"] = f"cannot mount a tmpfs: {r.stderr.strip()}"
                enabled.remove("disk")
                self.disk_node = None
            else:
                self.mounted = path
                self.ballast = path / "chaos-ballast"
        self.cluster.start(n, timeout=180)
        self.cluster.wait_partition_leaders(60)
        c = self.cluster.node("n1").client(retries=3)
        for b in BUCKETS + ((LIN_BUCKET,) if self.cfg.lin_clients else ()):
            c.create_bucket(Bucket=b)

    def teardown(self) -> None:
        for nid in list(self.paused):
            self._cont(nid)
        problems: list[str] = []
        if self.net is not None:
            try:
                self.net.heal()
            except Exception as e:  # noqa: BLE001 - best effort, keep tearing down
                problems.append(f"heal: {e}")
        if self.cluster is not None:
            problems += self.cluster.teardown()
        if self.net is not None:
            problems += self.net.teardown()
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], check=False)
        for p in problems:
            self.fail(f"teardown: {p}")

    # -- workload ------------------------------------------------------------------------------
    def pick_node(self, rng: random.Random):
        nodes = list(self.cluster.nodes.values())
        healthy = [x for x in nodes if x.node_id not in self.faulty]
        if healthy and rng.random() < 0.85:
            return rng.choice(healthy)
        return rng.choice(nodes)

    def worker(self, w: int) -> None:
        rng = random.Random(f"chaos-{self.cfg.seed}-worker-{w}")
        clients: dict[str, object] = {}
        gen = 0
        active: list[tuple[str, str]] = []

        def new_key():
            nonlocal gen
            gen += 1
            k = (rng.choice(BUCKETS), f"w{w}/k{gen:04d}")
            with self.lock:
                self.ledger[k] = KeyState()
            return k

        for _ in range(self.cfg.keys_per_worker):
            active.append(new_key())
        seq = 0
        while not self.stop.is_set():
            node = self.pick_node(rng)
            c = clients.get(node.node_id)
            if c is None:
                c = clients[node.node_id] = s3_client(node.endpoint, retries=0,
                                                      connect_timeout=3, read_timeout=20)
            key = rng.choice(active)
            st = self.ledger[key]
            r = rng.random()
            seq += 1
            op, cid = "", None
            try:
                if r < 0.30:
                    op, cid = "put", ("u", w, seq, rng.choice(SIZES))
                    c.put_object(Bucket=key[0], Key=key[1], Body=content_bytes(cid))
                elif r < 0.45:
                    op, cid = "reput", ("pool", rng.randrange(len(POOL_SIZES)))
                    c.put_object(Bucket=key[0], Key=key[1], Body=content_bytes(cid))
                elif r < 0.50:
                    op, cid = "multipart", ("mp", w, seq)
                    self._multipart(c, key, cid)
                elif r < 0.63:
                    op, cid = "delete", None
                    c.delete_object(Bucket=key[0], Key=key[1])
                elif r < 0.75:
                    srcs = [k for k in active if k != key and self.ledger[k].certain
                            and None not in self.ledger[k].possible]
                    if not srcs:
                        continue
                    src = rng.choice(srcs)
                    op, (cid,) = "copy", tuple(self.ledger[src].possible)
                    c.copy_object(Bucket=key[0], Key=key[1],
                                  CopySource={"Bucket": src[0], "Key": src[1]})
                else:
                    op = "get"
                    self._check_read(c, node, key, st)
                    continue
            except Exception as e:  # noqa: BLE001 - any failure: not acknowledged
                self.count(f"{op}:err")
                if op == "get":
                    continue
                with self.lock:
                    st.unacked(op, cid, f"{node.node_id} {err_text(e)}")
                # It may still apply later: the key is retired, a fresh one takes its place.
                active[active.index(key)] = new_key()
                time.sleep(0.2)
                continue
            with self.lock:
                st.acked(op, cid)
            self.count(f"{op}:ok")

    def _multipart(self, c, key, cid) -> None:
        up = c.create_multipart_upload(Bucket=key[0], Key=key[1])["UploadId"]
        parts = []
        for i, body in enumerate(multipart_parts(cid), start=1):
            r = c.upload_part(Bucket=key[0], Key=key[1], UploadId=up, PartNumber=i, Body=body)
            parts.append({"PartNumber": i, "ETag": r["ETag"]})
        c.complete_multipart_upload(Bucket=key[0], Key=key[1], UploadId=up,
                                    MultipartUpload={"Parts": parts})

    def _check_read(self, c, node, key, st: KeyState) -> None:
        """A successful read of a key whose every operation was acknowledged must return its
        last acknowledged content (reads are linearizable)."""
        with self.lock:
            certain, possible = st.certain, set(st.possible)
        try:
            got = hashlib.sha256(c.get_object(Bucket=key[0], Key=key[1])["Body"].read())
            got = got.hexdigest()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "NoSuchKey":
                raise
            got = None
        self.count("get:ok")
        want = {digest(x) for x in possible}
        with self.lock:
            still = st.certain and st.possible == possible
        if certain and still and got not in want:
            self.fail(f"read of {key[0]}/{key[1]} via {node.node_id} during the run returned "
                      f"{'absent' if got is None else got[:12]}, ledger says "
                      f"{[short(x) for x in possible]}; history {st.history[-5:]}")

    # -- faults --------------------------------------------------------------------------------
    def _stop_sig(self, nid: str) -> None:
        node = self.cluster.node(nid)
        os.kill(node.proc.pid, signal.SIGSTOP)
        self.paused.add(nid)

    def _cont(self, nid: str) -> None:
        node = self.cluster.node(nid)
        if node.alive():
            os.kill(node.proc.pid, signal.SIGCONT)
        self.paused.discard(nid)

    def _sleep(self, secs: float) -> None:
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.cluster.assert_no_crash()
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))

    def _restart(self, nid: str, **env: str) -> None:
        node = self.cluster.node(nid)
        for k in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC", "CAIRN_FAILPOINTS"):
            node.env_overrides.pop(k, None)
        node.env_overrides.update(env)
        node.start(timeout=120)

    def inject(self, kind: str) -> None:
        cfg = self.cfg
        rng = self.rng
        ids = sorted(self.cluster.nodes)
        nid = rng.choice(ids)
        node = self.cluster.node(nid)
        if kind == "kill":
            secs = rng.uniform(2, 2 * cfg.repair_grace)
            self.fault_log(f"kill -9 {nid}, restart after {secs:.1f}s"
                           + (" (past REPAIR_GRACE_SECS: re-homed)" if secs > cfg.repair_grace
                              else ""))
            self.faulty.add(nid)
            node.kill()
            self._sleep(secs)
            self._restart(nid)
        elif kind == "pause":
            secs = rng.uniform(2, 10)
            self.fault_log(f"pause (SIGSTOP) {nid} for {secs:.1f}s")
            self.faulty.add(nid)
            self._stop_sig(nid)
            self._sleep(secs)
            self._cont(nid)
        elif kind == "partition":
            secs = rng.uniform(4, 15)
            idx = [self.cluster.node(x).index for x in ids]
            if rng.random() < 0.5 or len(idx) < 4:
                self.fault_log(f"partition: isolate {nid} for {secs:.1f}s")
                self.faulty.add(nid)
                self.net.isolate(node.index)
            else:
                rng.shuffle(idx)
                minority = sorted(idx[:len(idx) // 2])
                majority = sorted(idx[len(idx) // 2:])
                self.fault_log(f"partition: {['n%d' % i for i in majority]} | "
                               f"{['n%d' % i for i in minority]} for {secs:.1f}s")
                self.faulty.update(f"n{i}" for i in minority)
                self.net.partition(majority, minority)
            self._sleep(secs)
            self.net.heal()
        elif kind == "disk":
            secs = rng.uniform(5, 15)
            nid = self.disk_node
            self.fault_log(f"disk full on {nid} (tmpfs under DISK_RESERVE_BYTES) for "
                           f"{secs:.1f}s")
            self._fill(DISK_RESERVE // 2)
            self._sleep(secs)
            self.ballast.unlink(missing_ok=True)
        elif kind == "bitrot":
            # A fixed number of draws, whatever is on disk: the rest of the schedule stays
            # the seed's.
            pick, where, secs = rng.random(), rng.random(), rng.uniform(1, 4)
            files = sorted(chunk_files(node.storage_path))
            if not files:
                return
            cid = files[int(pick * len(files))]
            path = node.storage_path / "chunks" / cid[:2] / cid[2:4] / cid
            try:
                with open(path, "r+b") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size == 0:
                        return
                    off = int(where * size)
                    f.seek(off)
                    b = f.read(1)
                    f.seek(off)
                    f.write(bytes([b[0] ^ 0x5A]))
            except FileNotFoundError:
                return  # collected meanwhile
            self.fault_log(f"bitrot: flipped byte {off} of chunk {cid[:12]} on {nid}")
            self._sleep(secs)
        elif kind == "clock":
            secs = rng.uniform(8, 20)
            skew = rng.choice([-1, 1]) * rng.randint(30, 240)
            self.fault_log(f"clock: {nid} restarted with its clock {skew:+d}s off for "
                           f"{secs:.1f}s")
            self.faulty.add(nid)
            node.stop()
            # Wall clock only: the monotonic clock keeps running as it does.
            self._restart(nid, LD_PRELOAD=faketime_lib(), FAKETIME=f"{skew:+d}",
                          FAKETIME_DONT_FAKE_MONOTONIC="1")
            self._sleep(secs)
            node.stop()
            self._restart(nid)
        elif kind == "slowio":
            secs = rng.uniform(8, 20)
            ms = rng.choice([50, 150, 400])
            self.fault_log(f"slowio: {nid} restarted with {ms} ms chunk I/O and {ms // 5} ms "
                           f"Raft log writes for {secs:.1f}s")
            self.faulty.add(nid)
            node.stop()
            self._restart(nid, CAIRN_FAILPOINTS=f"chunk-write=sleep({ms});chunk-read=sleep({ms});"
                                                f"raft-log-write=sleep({ms // 5})")
            self._sleep(secs)
            node.stop()
            self._restart(nid)
        elif kind == "ioerr":
            secs = rng.uniform(8, 20)
            pct = rng.choice([20, 50, 100])
            log_too = rng.random() < 0.5
            points = f"chunk-write={pct}%return;chunk-read={pct}%return"
            if log_too:
                points += ";raft-log-write=2%return"
            self.fault_log(f"ioerr: {nid} restarted with {pct}% of chunk I/O failing"
                           + (" and some Raft log writes" if log_too else "")
                           + f" for {secs:.1f}s")
            self.faulty.add(nid)
            node.stop()
            self._restart(nid, CAIRN_FAILPOINTS=points)
            self._sleep(secs)
            node.stop()
            self._restart(nid)
        self.faulty.clear()

    def _fill(self, leave_free: int) -> None:
        fs = str(self.mounted)
        with open(self.ballast, "ab") as f:
            while True:
                st = os.statvfs(fs)
                free = st.f_bavail * st.f_frsize
                if free <= leave_free:
                    break
                try:
                    f.write(b"\0" * min(4 * MiB, free - leave_free))
                    f.flush()
                except OSError:
                    break

    # -- verification --------------------------------------------------------------------------
    def heal_all(self) -> None:
        for nid in list(self.paused):
            self._cont(nid)
        if self.net is not None:
            self.net.heal()
        if self.ballast is not None:
            self.ballast.unlink(missing_ok=True)
        for nid, node in sorted(self.cluster.nodes.items()):
            if not node.alive() or "FAKETIME" in node.env_overrides \
                    or "CAIRN_FAILPOINTS" in node.env_overrides:
                if node.alive():
                    node.stop()
                self._restart(nid)

    def verify(self) -> None:
        c = self.cluster
        n = len(c.nodes)
        c.wait_converged(n, timeout=120)
        try:
            self.result.heal_s = wait_healed(c, self.cfg.heal_timeout, stable=12)
            say(f"fully replicated {self.result.heal_s:.1f}s after the heal")
        except AssertionError as e:
            self.fail(f"cluster did not heal: {e}{self.unfetchable()}")
        with self.lock:
            ledger = {k: (set(v.possible), v.certain, list(v.history))
                      for k, v in self.ledger.items()}
        self.result.keys = len(ledger)
        for node in sorted(c.alive(), key=lambda x: x.node_id):
            cl = node.client(retries=0, read_timeout=60)
            for key, (possible, certain, hist) in sorted(ledger.items()):
                got, err = None, None
                for attempt in range(4):
                    try:
                        data = cl.get_object(Bucket=key[0], Key=key[1])["Body"].read()
                        got, err = hashlib.sha256(data).hexdigest(), None
                        break
                    except ClientError as e:
                        if e.response.get("Error", {}).get("Code") == "NoSuchKey":
                            got, err = None, None
                            break
                        err = err_text(e)
                    except Exception as e:  # noqa: BLE001 - connection trouble: retry
                        err = err_text(e)
                    time.sleep(1 + attempt)
                where = f"{key[0]}/{key[1]} via {node.node_id}"
                if err is not None:
                    self.fail(f"{where}: read failed after the heal: {err}; history {hist}")
                    continue
                want = {digest(x) for x in possible}
                if got not in want:
                    kind = "acknowledged" if certain else "possible"
                    self.fail(f"{where}: {'absent' if got is None else 'sha256 ' + got[:12]}"
                              f", {kind} contents {[short(x) for x in possible]}; "
                              f"history {hist[-6:]}")
        self.check_chunk_files()
        lost = sum(metric_sum(x, "cairn_chunk_lost_total") or 0 for x in c.alive())
        if lost:
            self.result.notes.append(f"cairn_chunk_lost_total summed over nodes: {lost:.0f} "
                                     f"(reads no replica could serve, during faults)")

    def unfetchable(self) -> str:
        """Chunks chunk sync keeps failing to fetch (referenced, on no replica), from the logs:
        chunk -> the nodes looking for it and when they first logged it."""
        seen: dict[str, dict] = {}
        pat = re.compile(r"^(\S+) +WARN chunk sync could not fetch a missing chunk "
                         r"chunk=(\w+)")
        for nid, node in sorted(self.cluster.nodes.items()):
            for line in node.log_text().splitlines():
                m = pat.match(line)
                if m:
                    d = seen.setdefault(m.group(2), {"first": m.group(1), "nodes": set()})
                    d["nodes"].add(nid)
                    d["last"] = max(d.get("last", ""), m.group(1))
        if not seen:
            return ""
        parts = [f"{cid[:16]} (partition {int(cid[:16], 16) % 8}, sought by "
                 f"{sorted(d['nodes'])} from {d['first']} to {d['last']})"
                 for cid, d in sorted(seen.items(), key=lambda x: x[1]["last"])]
        return f"; chunk sync could not fetch, from any replica: {'; '.join(parts[-10:])}"

    def dump_ledger(self, path: Path) -> None:
        with self.lock:
            data = {f"{b}/{k}": {"certain": st.certain,
                                 "possible": [short(x) for x in st.possible],
                                 "history": st.history}
                    for (b, k), st in sorted(self.ledger.items())}
        path.write_text(json.dumps({"seed": self.cfg.seed, "faults": self.result.faults,
                                    "keys": data}, indent=1))

    def check_chunk_files(self, timeout: float = 90) -> None:
        """Every chunk file on every disk hashes to its name (bit rot repaired or collected);
        scrub passes run every few seconds, so this waits a little."""
        deadline = time.monotonic() + timeout
        while True:
            bad = []
            for node in self.cluster.nodes.values():
                for cid in chunk_files(node.storage_path):
                    p = node.storage_path / "chunks" / cid[:2] / cid[2:4] / cid
                    try:
                        if blake3.blake3(p.read_bytes()).hexdigest() != cid:
                            bad.append(f"{node.node_id}:{cid[:12]}")
                    except FileNotFoundError:
                        pass
            if not bad or time.monotonic() > deadline:
                break
            time.sleep(2)
        if bad:
            self.fail(f"corrupt chunk files left {timeout:.0f}s after the heal: {bad[:10]}")

    def check_linearizability(self, workdir: Path) -> None:
        """The register workload's history through cairn-lincheck: a violation is a failure
        (with the checker's explanation); no checker, or a search that timed out, is said in
        the summary and is no failure."""
        if not self.cfg.lin_clients:
            self.result.lin = "no register workload (lin_clients 0)"
            return
        ops = list(self.history.ops)
        stats: dict[str, int] = {}
        for op in ops:
            kind = op["input"] if isinstance(op["input"], str) else "Put"
            out = op["output"] if isinstance(op["output"], str) else "Value"
            stats[f"{kind}:{out}"] = stats.get(f"{kind}:{out}", 0) + 1
        what = f"{len(ops)} ops on {len(LIN_KEYS)} keys {dict(sorted(stats.items()))}"
        checker = lincheck_bin()
        if checker is None:
            self.result.lin = (f"NOT CHECKED: cairn-lincheck not found next to {cairn_bin()} "
                               f"(cargo build -p cairn-lincheck); {what}")
            return
        try:
            form = lincheck_form(checker, workdir)
            res = lincheck(checker, ops, workdir / "lin-history.jsonl", form)
        except LincheckUnusable as e:
            self.fail(f"linearizability not checked: {e}")
            self.result.lin = "NOT CHECKED: the checker failed its probe histories"
            return
        except subprocess.TimeoutExpired:
            self.result.lin = f"undecided: cairn-lincheck ran over 300 s; {what}"
            return
        if res.returncode == 0:
            self.result.lin = f"linearizable ({what})"
        elif res.returncode == 1:
            self.result.lin = f"VIOLATION ({what})"
            self.fail(f"linearizability violation in the register history "
                      f"({workdir / 'lin-history.jsonl'}): {res.stdout.strip()[:3000]}")
        else:
            self.result.lin = (f"undecided: cairn-lincheck exit {res.returncode} "
                               f"{(res.stdout + res.stderr).strip()[-300:]!r}; {what}")
        say(f"linearizability: {self.result.lin}")

    # -- main ----------------------------------------------------------------------------------
    def run(self) -> Result:
        cfg = self.cfg
        if not cairn_bin().exists():
            raise FileNotFoundError(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN")
        own_dir = cfg.workdir is None
        workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix=f"cairn-chaos-{cfg.seed}-"))
        self.result.workdir = str(workdir)
        enabled = self.plan_faults()
        recorded = False
        with cluster_util.shifted_ports(cfg.port_shift):
            try:
                self.start_cluster(workdir, enabled)
                say(f"seed {cfg.seed}: {cfg.nodes} nodes up, faults {enabled}, "
                    f"{cfg.seconds:.0f}s of chaos")
                self.t0 = time.monotonic()
                threads = [threading.Thread(target=self.worker, args=(w,), daemon=True)
                           for w in range(cfg.workers)]
                # The register workload: a few single-key ops a second per client, each
                # client on one node, for cairn-lincheck after the run.
                lin_rng = random.Random(f"chaos-{cfg.seed}-lin")
                threads += [threading.Thread(
                    target=lin_worker, daemon=True,
                    args=(self.history, node, LIN_BUCKET, self.stop,
                          random.Random(lin_rng.random())),
                    kwargs={"pause": LIN_PAUSE})
                    for node in sorted(self.cluster.nodes.values(), key=lambda x: x.node_id)
                    for _ in range(cfg.lin_clients)]
                for t in threads:
                    t.start()
                end = self.t0 + cfg.seconds
                time.sleep(min(3, cfg.seconds))
                bag: list[str] = []
                while time.monotonic() < end and enabled:
                    if not bag:  # every enabled kind once per round, in a seeded order
                        bag = list(enabled)
                        self.rng.shuffle(bag)
                    self.inject(bag.pop())
                    self._sleep(min(self.rng.uniform(2, 6), max(0, end - time.monotonic())))
                self.stop.set()
                for t in threads:
                    t.join(timeout=90)
                if any(t.is_alive() for t in threads):
                    self.fail("workload threads hung after the run")
                recorded = True
                self.fault_log("heal: every node running, network whole, disk freed")
                self.heal_all()
                self.verify()
            except Exception as e:  # noqa: BLE001 - report, then tear down
                self.fail(f"chaos run aborted: {type(e).__name__}: {e}")
            finally:
                self.stop.set()
                self.teardown()
                self.dump_ledger(workdir / "ledger.json")
        if recorded:  # the register history is complete: check it, whatever else happened
            try:
                self.check_linearizability(workdir)
            except Exception as e:  # noqa: BLE001
                self.fail(f"linearizability check aborted: {type(e).__name__}: {e}")
        ok = not self.result.failures
        if ok and own_dir and not cfg.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            self.result.workdir += " (removed)"
        return self.result


def run(cfg: Config) -> Result:
    return Chaos(cfg).run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=5, choices=(4, 5))
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--faults", default=",".join(ALL_FAULTS),
                    help=f"comma-separated subset of {','.join(ALL_FAULTS)}")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--port-shift", type=int, default=440)
    ap.add_argument("--repair-grace", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep data and logs after a pass")
    ap.add_argument("--lin-clients", type=int, default=1,
                    help="register clients per node for the linearizability check (0: none)")
    a = ap.parse_args(argv)
    faults = tuple(f for f in a.faults.split(",") if f)
    unknown = set(faults) - set(ALL_FAULTS)
    if unknown:
        ap.error(f"unknown faults {sorted(unknown)}")
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    cfg = Config(nodes=a.nodes, seconds=a.minutes * 60 if a.minutes else a.seconds, seed=seed,
                 port_shift=a.port_shift, faults=faults, workers=a.workers,
                 repair_grace=a.repair_grace, workdir=a.workdir, keep=a.keep,
                 lin_clients=a.lin_clients)
    res = run(cfg)
    print(res.summary(), flush=True)
    return 1 if res.failures else 0


if __name__ == "__main__":
    sys.exit(main())
