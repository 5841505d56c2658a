"""True network partitions: a 3-node cluster whose nodes run in their own Linux network
namespaces (see netns_util.py), partitioned by dropping packets between node addresses while
the test client keeps reaching every node.

* ``test_minority_partition``: isolates one node (the system leader, or the node leading most
  partitions). Its S3 requests must fail with an error within a bounded time and never be
  acknowledged, nor return data contradicting writes the majority acknowledged; the majority
  must keep serving writes and reads; after the heal the isolated node must read everything
  the majority acknowledged, byte-identical.
* ``test_isolated_system_leader_answers_create_bucket``: a system-group proposal on the
  isolated system leader itself; must fail within a bounded time (the leader refuses
  proposals once it has not heard from a quorum for 2.5 s), never succeed.
* ``test_linearizable_under_partitions``: concurrent single-key PUT/GET/DELETE clients through
  every node while the test isolates the partition's leader, heals, isolates another node,
  heals, then cuts only the link between the partition's leader and one follower (the third
  node reaches both), and heals; the recorded history must be linearizable
  (``cairn-lincheck``), the connected majority must keep committing during every fault, and
  an isolated node must not answer any request successfully.

Needs root, iproute2 and nftables; it fails (never skips) when namespaces cannot be built.
Timings are printed with a ``[partition]`` prefix (``-s`` shows them live) and recorded as
test properties.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time

import botocore.exceptions
import pytest

import conftest
import netns_util
from cluster_util import RPC_PORT, bucket_partition, cairn_bin, lincheck_bin, s3_client
from e2e_util import client_error_code, client_error_status, md5_hex, rand_bytes, unique_name

_, NetnsCluster = netns_util.netns_cluster_classes()

MAJORITY_WRITE_LIMIT = 20.0   # s from the cut to the first write acknowledged by the majority
ISOLATED_ANSWER_LIMIT = 45.0  # s the isolated node may take to answer a request with an error
CATCH_UP_LIMIT = 30.0         # s from the heal until the isolated node reads everything


def log(request, key: str, value) -> None:
    print(f"[partition] {request.node.name}: {key} = {value}", flush=True)
    request.node.user_properties.append((key, value))


def _err(e: Exception) -> str:
    if isinstance(e, botocore.exceptions.ClientError):
        return f"HTTP {client_error_status(e)} {client_error_code(e)}"
    return type(e).__name__


def client(node, timeout: float = 10):
    """A client that makes exactly one attempt per request (botocore's `max_attempts` counts
    retries, so 0 here)."""
    return s3_client(node.endpoint, retries=0, connect_timeout=2, read_timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    """The namespace network (3 nodes), built once per module and always torn down."""
    network = netns_util.NetnsNetwork(3)
    try:
        network.setup()
    except (netns_util.NetnsError, OSError, subprocess.SubprocessError) as e:
        problems = network.teardown()
        pytest.fail(f"cannot build the network-namespace test network: {e}"
                    + (f"; teardown: {problems}" if problems else ""), pytrace=False)
    if network.leftovers:
        print(f"[partition] removed leftovers of an earlier run: {network.leftovers}")
    yield network
    problems = network.teardown()
    if problems:
        pytest.fail(f"network teardown problems: {problems}", pytrace=False)


class ReportedNetnsCluster(NetnsCluster):
    """Registers its nodes with conftest so failing tests get the nodes' log tails."""

    def start(self, *a, **kw):
        try:
            return super().start(*a, **kw)
        finally:
            for n in self.nodes.values():
                if n not in conftest._RUNNING:
                    conftest._RUNNING.append(n)

    def teardown(self):
        try:
            return super().teardown()
        finally:
            for n in self.nodes.values():
                if n in conftest._RUNNING:
                    conftest._RUNNING.remove(n)


@pytest.fixture
def cluster(net, tmp_path_factory, request):
    """A fresh, converged 3-node cluster, node i in namespace i; healed and stopped after."""
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    net.heal()
    wd = tmp_path_factory.mktemp("partition-" + request.node.name[:40])
    c = ReportedNetnsCluster(wd, net)
    t0 = time.monotonic()
    try:
        c.start(3)
        log(request, "formation_s", round(time.monotonic() - t0, 2))
        yield c
    finally:
        try:
            net.heal()
        finally:
            problems = c.teardown()
        if not os.environ.get("CAIRN_E2E_KEEP_DATA"):
            for n in c.nodes.values():
                shutil.rmtree(n.storage_path, ignore_errors=True)
        else:
            print(f"[partition] data and logs kept in {wd}")
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def bucket_in(partitions_wanted, partitions: int, prefix: str) -> str:
    wanted = set(partitions_wanted)
    for _ in range(10_000):
        name = unique_name(prefix)
        if bucket_partition(name, partitions) in wanted:
            return name
    raise AssertionError(f"no bucket name maps to partitions {wanted}")


def put_objects(nodes, bucket: str, tag: str, sizes=(10, 4097, 1_500_000)) -> dict[str, bytes]:
    objs = {}
    for node in nodes:
        c = client(node, timeout=30)
        for size in sizes:
            key = f"{tag}/{node.node_id}/{size}"
            data = rand_bytes(size, (bucket, key))
            c.put_object(Bucket=bucket, Key=key, Body=data)
            objs[key] = data
    return objs


def assert_objects(node, bucket: str, objects: dict[str, bytes], absent=(),
                   maybe=frozenset()) -> None:
    """Every object reads back byte-identical through `node`; every key in `absent` is 404;
    the listing is `objects` plus perhaps keys of `maybe` (writes with unknown outcome)."""
    c = client(node, timeout=30)
    for key, data in objects.items():
        try:
            got = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise AssertionError(f"GET {bucket}/{key} ({len(data)} B) through {node.node_id}: "
                                 f"{_err(e)}") from None
        assert got == data, (f"GET {bucket}/{key} through {node.node_id}: {len(got)} B "
                             f"md5 {md5_hex(got)}, expected {len(data)} B md5 {md5_hex(data)}")
    for key in absent:
        try:
            got = c.get_object(Bucket=bucket, Key=key)["Body"].read()
            raise AssertionError(f"GET {bucket}/{key} through {node.node_id} returned "
                                 f"{len(got)} B; it was deleted")
        except botocore.exceptions.ClientError as e:
            assert client_error_status(e) == 404, (node.node_id, key, _err(e))
    keys = set()
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    assert set(objects) <= keys and keys - set(objects) <= set(maybe), (
        f"listing {bucket} through {node.node_id}: missing {sorted(set(objects) - keys)}, "
        f"unexpected {sorted(keys - set(objects) - set(maybe))}")


def try_until(fn, timeout: float, interval: float = 0.25):
    t0 = time.monotonic()
    while True:
        try:
            return fn(), time.monotonic() - t0
        except Exception:  # noqa: BLE001 - any failure means: not yet
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(interval)


class FirstWrite:
    """Starts a PUT (one attempt, 10 s timeout, its own key) every 0.5 s through `nodes` in
    turn until one is acknowledged. Staggered attempts measure when the majority could commit
    again, not how long one unlucky request was held (a request forwarded to the lost leader
    waits ~10 s for HTTP/2 keep-alive to give up on the connection)."""

    def __init__(self, nodes, bucket: str, tag: str, t0: float):
        self.nodes, self.bucket, self.tag, self.t0 = nodes, bucket, tag, t0
        self.acked: dict[str, bytes] = {}
        self.keys: set[str] = set()
        self.errors: list[str] = []
        self.first: float | None = None
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def _attempt(self, key: str, node, started: float) -> None:
        data = rand_bytes(5000, (self.bucket, key))
        try:
            client(node, timeout=10).put_object(Bucket=self.bucket, Key=key, Body=data)
            with self.lock:
                self.acked[key] = data
                if self.first is None:
                    self.first = time.monotonic() - self.t0
            self.done.set()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            with self.lock:
                self.errors.append(f"started {started:.1f}s via {node.node_id}: {_err(e)} "
                                   f"after {time.monotonic() - self.t0 - started:.1f}s")

    def run(self, limit: float) -> float:
        """Seconds from t0 to the first acknowledgement."""
        i = 0
        while not self.done.is_set() and time.monotonic() - self.t0 < limit:
            key = f"{self.tag}/{i}"
            self.keys.add(key)
            t = threading.Thread(target=self._attempt, daemon=True,
                                 args=(key, self.nodes[i % len(self.nodes)],
                                       time.monotonic() - self.t0))
            t.start()
            self.threads.append(t)
            i += 1
            self.done.wait(0.5)
        if self.first is None:
            self.join()
            raise AssertionError(f"the majority acknowledged no PUT within {limit}s of the "
                                 f"partition; errors:\n" + "\n".join(self.errors[-20:]))
        return self.first

    def acked_now(self) -> dict[str, bytes]:
        with self.lock:
            return dict(self.acked)

    def maybe(self) -> set[str]:
        """Keys whose PUT is not (yet) known to be acknowledged."""
        with self.lock:
            return self.keys - set(self.acked)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=30)


class Probe:
    """Requests through the isolated node, each recorded as (op, key, start, end, outcome,
    body)."""

    def __init__(self, node, bucket: str, t0: float):
        self.node = node
        self.bucket = bucket
        self.t0 = t0
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def _do(self, op: str, key: str, data: bytes | None = None) -> dict:
        c = client(self.node, timeout=ISOLATED_ANSWER_LIMIT)
        start = time.monotonic()
        rec = {"op": op, "key": key, "start": start}
        try:
            if op == "PUT":
                c.put_object(Bucket=self.bucket, Key=key, Body=data)
                rec["outcome"] = "ok"
            else:
                rec["body"] = c.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                rec["outcome"] = "ok"
        except botocore.exceptions.ClientError as e:
            rec["outcome"] = "404" if client_error_status(e) == 404 else "http-error"
            rec["status"] = client_error_status(e)
            rec["error"] = _err(e)
        except botocore.exceptions.BotoCoreError as e:
            rec["outcome"] = "no-answer"
            rec["error"] = _err(e)
        rec["end"] = time.monotonic()
        with self.lock:
            self.records.append(rec)
        return rec

    def describe(self, r: dict) -> str:
        what = r.get("error") or (f"{len(r['body'])} B" if "body" in r else "ok")
        return (f"{r['op']} {r['key']} via {self.node.node_id}: started "
                f"{r['start'] - self.t0:.1f}s, {what} after {r['end'] - r['start']:.1f}s")


# ---------------------------------------------------------------------------------------------
# 1. Minority partition
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("victim_kind", ["system-leader", "partition-leader"])
def test_minority_partition(cluster, net, request, victim_kind):
    leaders = cluster.wait_partition_leaders(timeout=30)
    system_leader = cluster.system_leader()
    assert system_leader, "no system leader"
    counts = {nid: list(leaders.values()).count(nid) for nid in cluster.nodes}
    if victim_kind == "system-leader":
        victim_id = system_leader
    else:
        victim_id = max((n for n in counts if n != system_leader), key=lambda n: counts[n])
    victim = cluster.node(victim_id)
    majority = [n for n in cluster.alive() if n is not victim]
    log(request, "victim", f"{victim_id} in {net.ns(victim.index)} (leads {counts[victim_id]} "
                           f"of {len(leaders)} partitions; system leader {system_leader})")

    # Bucket A's partition is led by the victim (its leadership must move to the majority);
    # bucket B's by a majority node.
    led_by_victim = [p for p, l in leaders.items() if l == victim_id]
    bucket_a = bucket_in(led_by_victim or leaders, cluster.partitions, "pa")
    bucket_b = bucket_in([p for p, l in leaders.items() if l != victim_id], cluster.partitions,
                         "pb")
    client(majority[0]).create_bucket(Bucket=bucket_a)
    client(majority[1]).create_bucket(Bucket=bucket_b)
    objects = {bucket_a: put_objects(cluster.alive(), bucket_a, "before"),
               bucket_b: put_objects(cluster.alive(), bucket_b, "before")}
    v1 = rand_bytes(5000, "contested-v1")
    v2 = rand_bytes(5000, "contested-v2")
    client(majority[0]).put_object(Bucket=bucket_a, Key="contested", Body=v1)
    client(majority[0]).put_object(Bucket=bucket_a, Key="doomed", Body=b"to be deleted")
    objects[bucket_a]["contested"] = v1
    stable_key = f"before/{victim_id}/4097"
    # The victim serves everything before the cut.
    assert client(victim).get_object(Bucket=bucket_a, Key="contested")["Body"].read() == v1

    # -- the cut -------------------------------------------------------------------------------
    net.isolate(victim.index)
    t_cut = time.monotonic()
    # The cut is real (checked in the background, so nothing delays the majority's writes):
    # the victim and a majority node cannot connect either way, the majority nodes can, the
    # test client reaches the victim.
    peer = majority[0]
    reach: dict[str, str] = {}
    checks = {
        f"{victim_id}->{peer.node_id}": (victim.index, peer.index, "timeout"),
        f"{peer.node_id}->{victim_id}": (peer.index, victim.index, "timeout"),
        f"{majority[1].node_id}->{peer.node_id}": (majority[1].index, peer.index, "open"),
        f"client->{victim_id}": (None, victim.index, "open"),
    }
    reach_thread = threading.Thread(target=lambda: reach.update(
        {k: net.probe_tcp(src, dst, RPC_PORT) for k, (src, dst, _) in checks.items()}),
        daemon=True)
    reach_thread.start()

    # Requests through the isolated node, concurrently with the majority's work below.
    probe = Probe(victim, bucket_a, t_cut)
    t_v2_acked = [None]   # set once the majority acknowledged contested = v2 (and the delete)
    majority_done = threading.Event()
    abort = threading.Event()  # the test failed early: stop before the nodes are stopped
    request.addfinalizer(abort.set)

    def iso_loop(op: str, key: str | None = None):
        """Repeats one request until the majority is done and one of them started after the
        majority acknowledged the overwrite and the delete."""
        i = 0
        while not abort.is_set():
            after_v2 = t_v2_acked[0] is not None
            if op == "PUT":
                probe._do("PUT", f"isolated/{i}", rand_bytes(3000 + i, ("iso", i)))
            else:
                probe._do("GET", key)
            i += 1
            if majority_done.is_set() and after_v2:
                return

    threads = [threading.Thread(target=iso_loop, args=a, daemon=True)
               for a in (("PUT",), ("GET", "contested"), ("GET", "doomed"), ("GET", stable_key))]
    for t in threads:
        t.start()

    # When the majority's status stops reporting the victim up (gossip failure detection).
    victim_seen_down = {}

    def watch_health():
        while time.monotonic() - t_cut < 30:
            seen = {}
            for o in majority:
                st = o.try_status() or {}
                seen[o.node_id] = next((n["health"] for n in st.get("nodes", [])
                                        if n["node_id"] == victim_id), None)
            victim_seen_down["last"] = seen
            if all(h in ("suspect", "down") for h in seen.values()):
                victim_seen_down["secs"] = time.monotonic() - t_cut
                return
            time.sleep(0.25)

    watcher = threading.Thread(target=watch_health, daemon=True)
    watcher.start()

    # The majority: first acknowledged write, then overwrite / delete / more objects.
    fw = FirstWrite(majority, bucket_a, "during/first", t_cut)
    t_first = fw.run(MAJORITY_WRITE_LIMIT)
    objects[bucket_a].update(fw.acked_now())
    maybe = fw.maybe()
    log(request, "majority_first_write_s", round(t_first, 2))
    try:
        client(majority[1]).put_object(Bucket=bucket_a, Key="contested", Body=v2)
        client(majority[0]).delete_object(Bucket=bucket_a, Key="doomed")
    finally:
        t_v2_acked[0] = time.monotonic()
    objects[bucket_a]["contested"] = v2
    t0 = time.monotonic()
    for b in (bucket_a, bucket_b):
        objects[b].update(put_objects(majority, b, "during", sizes=(100, 4097, 1_500_000)))
    bucket_c = unique_name("pc")
    client(majority[1]).create_bucket(Bucket=bucket_c)
    client(majority[0]).put_object(Bucket=bucket_c, Key="new", Body=b"created while split")
    log(request, "majority_writes_s", round(time.monotonic() - t0, 2))
    for node in majority:
        assert_objects(node, bucket_a, objects[bucket_a], absent=["doomed"], maybe=maybe)
        assert_objects(node, bucket_b, objects[bucket_b])
        assert client(node).get_object(Bucket=bucket_c, Key="new")["Body"].read() == \
            b"created while split"
    reach_thread.join(timeout=60)
    log(request, "reachability_during_partition", reach)
    assert {k: reach.get(k) for k in checks} == {k: want for k, (_, _, want) in checks.items()}
    # The majority sees the victim go, and leads bucket A's partition itself.
    watcher.join(timeout=40)
    assert "secs" in victim_seen_down, \
        f"{victim_id} health seen by the majority 30 s after the cut: {victim_seen_down}"
    log(request, "victim_not_up_in_majority_status_s", round(victim_seen_down["secs"], 2))
    p_a = bucket_partition(bucket_a, cluster.partitions)
    st = majority[0].status()
    lead_a = next(p["leader"] for p in st["partitions"] if p["partition"] == p_a)
    assert lead_a in {n.node_id for n in majority}, (p_a, lead_a)
    assert st["system_leader"] in {n.node_id for n in majority}, st["system_leader"]
    log(request, "leaders_in_majority",
        f"system {st['system_leader']}, partition {p_a} (bucket A) {lead_a}")

    fw.join()
    log(request, "majority_first_write_attempts",
        f"{len(fw.acked)} acknowledged, {len(fw.errors)} failed: {fw.errors}")
    # Wait for every request through the isolated node to finish (each is bounded) before
    # healing, so each outcome was decided while the node was cut off.
    majority_done.set()
    for t in threads:
        t.join(timeout=4 * ISOLATED_ANSWER_LIMIT)
        assert not t.is_alive(), "requests through the isolated node did not finish"
    vstatus = victim.try_status()
    log(request, "victim_view_during_partition",
        vstatus and {"system_leader": vstatus.get("system_leader"),
                     "health": {n["node_id"]: n["health"] for n in vstatus["nodes"]}})
    partition_s = time.monotonic() - t_cut
    recs = sorted(probe.records, key=lambda r: r["start"])
    log(request, "isolated_requests", "\n  " + "\n  ".join(probe.describe(r) for r in recs))

    problems = []
    for r in recs:
        took = r["end"] - r["start"]
        if r["outcome"] == "no-answer":
            problems.append(f"no answer within {ISOLATED_ANSWER_LIMIT}s: {probe.describe(r)}")
        elif r["op"] == "PUT" and r["outcome"] != "http-error":
            problems.append(f"ACKNOWLEDGED by the isolated node: {probe.describe(r)}")
        elif r["op"] == "PUT" and r["status"] < 500:
            problems.append(f"unexpected client error: {probe.describe(r)}")
        elif r["op"] == "GET" and r["outcome"] in ("ok", "404"):
            # A read the isolated node answered must not contradict an acknowledged write.
            after_v2 = r["start"] > t_v2_acked[0]
            body = r.get("body")
            if r["key"] == "contested" and after_v2 and body != v2:
                problems.append(f"STALE READ (v1 after v2 was acknowledged): "
                                f"{probe.describe(r)}")
            elif r["key"] == "doomed" and after_v2 and r["outcome"] != "404":
                problems.append(f"STALE READ (deleted object returned): {probe.describe(r)}")
            elif r["key"] == stable_key and body != objects[bucket_a][stable_key]:
                problems.append(f"WRONG BYTES: {probe.describe(r)}")
            elif r["key"] == "contested" and body not in (v1, v2):
                problems.append(f"WRONG BYTES: {probe.describe(r)}")
        assert took <= ISOLATED_ANSWER_LIMIT + 5, probe.describe(r)
    served = [r for r in recs if r["op"] == "GET" and r["outcome"] in ("ok", "404")]
    log(request, "isolated_reads_served", len(served))
    assert any(r["op"] == "PUT" for r in recs), "no PUT went through the isolated node"
    assert any(r["key"] == "contested" and r["start"] > t_v2_acked[0] for r in recs), \
        "no read of the contested key through the isolated node after the overwrite"
    assert not problems, "\n".join(problems)
    puts = [r["end"] - r["start"] for r in recs if r["op"] == "PUT"]
    log(request, "isolated_put_error_s", f"min {min(puts):.2f} max {max(puts):.2f} "
                                         f"({len(puts)} PUTs, all {sorted({r['error'] for r in recs if r['op'] == 'PUT'})})")

    # -- the heal ------------------------------------------------------------------------------
    net.heal()
    t_heal = time.monotonic()
    log(request, "partition_lasted_s", round(partition_s, 2))
    maybe |= {r["key"] for r in recs if r["op"] == "PUT"}
    _, secs = try_until(lambda: assert_objects(victim, bucket_a, objects[bucket_a],
                                               absent=["doomed"], maybe=maybe),
                        timeout=CATCH_UP_LIMIT, interval=0.5)
    assert_objects(victim, bucket_b, objects[bucket_b])
    assert client(victim).get_object(Bucket=bucket_c, Key="new")["Body"].read() == \
        b"created while split"
    log(request, "catch_up_reads_everything_s", round(time.monotonic() - t_heal, 2))
    cluster.wait_converged(3, timeout=CATCH_UP_LIMIT)
    log(request, "converged_after_heal_s", round(time.monotonic() - t_heal, 2))
    # The PUTs the isolated node refused: absent, or (had one been applied after all) exact.
    applied = []
    c = client(victim)
    for r in recs:
        if r["op"] != "PUT":
            continue
        i = int(r["key"].rsplit("/", 1)[1])
        try:
            got = c.get_object(Bucket=bucket_a, Key=r["key"])["Body"].read()
            assert got == rand_bytes(3000 + i, ("iso", i)), r["key"]
            applied.append(r["key"])
        except botocore.exceptions.ClientError as e:
            assert client_error_status(e) == 404, _err(e)
    log(request, "refused_puts_applied_later", applied)
    # And the victim serves writes again, seen by the others.
    client(victim).put_object(Bucket=bucket_a, Key="after-heal", Body=b"back")
    for node in majority:
        assert client(node).get_object(Bucket=bucket_a, Key="after-heal")["Body"].read() == \
            b"back"


# ---------------------------------------------------------------------------------------------
# 1b. A proposal on the isolated leader itself
# ---------------------------------------------------------------------------------------------

LEADER_PROPOSAL_LIMIT = 35.0  # s; forwarded proposals are bounded by a 30 s deadline


class NoBoundedAnswer(AssertionError):
    """The isolated node held a request without answering (the known bug below)."""


def test_isolated_system_leader_answers_create_bucket(cluster, net, request):
    """CreateBucket is a system-group proposal with no linearizable read before it, so on the
    isolated system leader it goes straight into the leader's own log. It must fail (not
    hang, never succeed), the majority must create buckets meanwhile, and after the heal every
    node must agree on the bucket list."""
    leader = cluster.system_leader()
    assert leader, "no system leader"
    victim = cluster.node(leader)
    majority = [n for n in cluster.alive() if n is not victim]
    log(request, "victim", f"{leader} (system leader)")
    net.isolate(victim.index)
    t_cut = time.monotonic()
    iso_bucket = unique_name("pz-iso")
    outcome = {}

    def create_on_victim():
        t0 = time.monotonic()
        try:
            client(victim, timeout=LEADER_PROPOSAL_LIMIT).create_bucket(Bucket=iso_bucket)
            outcome["result"] = "ok"
        except botocore.exceptions.ClientError as e:
            outcome["result"] = "http-error"
            outcome["status"] = client_error_status(e)
            outcome["error"] = _err(e)
        except botocore.exceptions.BotoCoreError as e:
            outcome["result"] = "no-answer"
            outcome["error"] = _err(e)
        outcome["secs"] = time.monotonic() - t0

    th = threading.Thread(target=create_on_victim, daemon=True)
    th.start()
    # The majority elects a system leader of its own and creates buckets.
    maj_bucket = unique_name("pz-maj")
    t0 = time.monotonic()
    errors = []
    while True:
        node = majority[len(errors) % 2]
        try:
            client(node, timeout=5).create_bucket(Bucket=maj_bucket)
            break
        except botocore.exceptions.ClientError as e:
            if client_error_code(e) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                break  # an earlier attempt that timed out was applied
            errors.append(_err(e))
        except botocore.exceptions.BotoCoreError as e:
            errors.append(_err(e))
        assert time.monotonic() - t0 < MAJORITY_WRITE_LIMIT, \
            f"the majority could not create a bucket: {errors[-5:]}"
        time.sleep(0.2)
    log(request, "majority_create_bucket_s", round(time.monotonic() - t_cut, 2))
    th.join(timeout=LEADER_PROPOSAL_LIMIT + 15)
    assert not th.is_alive()
    log(request, "create_bucket_via_isolated_leader", outcome)
    assert outcome["result"] != "ok", f"the isolated system leader ACKNOWLEDGED {outcome}"

    net.heal()
    t_heal = time.monotonic()
    cluster.wait_converged(3, timeout=CATCH_UP_LIMIT)
    log(request, "converged_after_heal_s", round(time.monotonic() - t_heal, 2))

    def agree():
        lists = {n.node_id: sorted(b["Name"] for b in client(n).list_buckets()["Buckets"])
                 for n in cluster.alive()}
        assert len({tuple(v) for v in lists.values()}) == 1, lists
        assert maj_bucket in lists[victim.node_id], lists
        return lists[victim.node_id]

    names, _ = try_until(agree, timeout=CATCH_UP_LIMIT, interval=0.5)
    log(request, "isolated_bucket_after_heal", "present" if iso_bucket in names else "absent")
    if outcome["result"] == "no-answer":
        raise NoBoundedAnswer(
            f"CreateBucket through the isolated system leader {leader} got no answer within "
            f"{LEADER_PROPOSAL_LIMIT}s ({outcome}); the partition was healed after "
            f"{t_heal - t_cut:.1f}s")
    assert outcome["status"] >= 500, outcome


# ---------------------------------------------------------------------------------------------
# 2. Linearizability under partitions
# ---------------------------------------------------------------------------------------------

LIN_KEYS = ("k0", "k1", "k2")
LIN_CLIENTS_PER_NODE = 3
_UNCERTAIN_STATUSES = {0, 408, 429, 500, 502, 503, 504}


class History:
    """Single-key register operations in cairn-lincheck's JSON form (an operation that timed
    out or got a 5xx is `unknown`, return_ns null, and its client continues under a new id)."""

    def __init__(self):
        self.ops: list[dict] = []
        self.lock = threading.Lock()
        self.next_client = 0

    def new_client(self) -> int:
        with self.lock:
            self.next_client += 1
            return self.next_client

    def add(self, op: dict) -> None:
        with self.lock:
            self.ops.append(op)


def _lin_worker(hist: History, node, bucket: str, stop: threading.Event,
                rng: random.Random) -> None:
    c = s3_client(node.endpoint, retries=0, connect_timeout=2, read_timeout=15)
    cid = hist.new_client()
    seq = 0
    while not stop.is_set():
        key = rng.choice(LIN_KEYS)
        r = rng.random()
        if r < 0.4:
            seq += 1
            inp = {"type": "put", "value": f"c{cid}-{seq}"}
        elif r < 0.85:
            inp = {"type": "get"}
        else:
            inp = {"type": "delete"}
        call = time.monotonic_ns()
        ret = None
        try:
            if inp["type"] == "get":
                try:
                    body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
                    out = {"type": "value", "value": body.decode()}
                except botocore.exceptions.ClientError as e:
                    if client_error_status(e) == 404 and client_error_code(e) == "NoSuchKey":
                        out = {"type": "value", "value": None}
                    else:
                        raise
            elif inp["type"] == "delete":
                c.delete_object(Bucket=bucket, Key=key)
                out = {"type": "ok"}
            else:
                c.put_object(Bucket=bucket, Key=key, Body=inp["value"].encode())
                out = {"type": "ok"}
            ret = time.monotonic_ns()
        except botocore.exceptions.ClientError as e:
            status = client_error_status(e)
            if status in _UNCERTAIN_STATUSES or status >= 500:
                out = {"type": "unknown"}
            else:
                out = {"type": "failed"}  # a 4xx: refused, nothing applied
                ret = time.monotonic_ns()
        except Exception:  # noqa: BLE001 - timeouts, refused/reset connections
            out = {"type": "unknown"}
        hist.add({"client": cid, "key": key, "call_ns": call, "return_ns": ret, "input": inp,
                  "output": out, "node": node.node_id})
        if out["type"] == "unknown":
            cid = hist.new_client()
            time.sleep(0.2)


def _run_lincheck(checker, ops: list[dict], path) -> subprocess.CompletedProcess:
    with open(path, "w") as f:
        for op in ops:
            f.write(json.dumps(op) + "\n")
    return subprocess.run([str(checker), str(path), "--timeout-secs", "90"],
                          capture_output=True, text=True, timeout=300)


def _checker_discriminates(checker, tmp_path) -> None:
    """The checker accepts a fine history and refuses a stale read (so a pass means
    something)."""
    def op(c, t0, t1, inp, out):
        return {"client": c, "key": "k", "call_ns": t0, "return_ns": t1, "input": inp,
                "output": out}

    good = [op(1, 0, 10, {"type": "put", "value": "a"}, {"type": "ok"}),
            op(2, 5, 15, {"type": "get"}, {"type": "value", "value": "a"}),
            op(1, 20, 30, {"type": "delete"}, {"type": "ok"}),
            op(2, 40, 50, {"type": "get"}, {"type": "value", "value": None})]
    bad = [op(1, 0, 10, {"type": "put", "value": "a"}, {"type": "ok"}),
           op(1, 20, 30, {"type": "put", "value": "b"}, {"type": "ok"}),
           op(2, 40, 50, {"type": "get"}, {"type": "value", "value": "a"})]
    g = _run_lincheck(checker, good, tmp_path / "probe-good.jsonl")
    b = _run_lincheck(checker, bad, tmp_path / "probe-bad.jsonl")
    assert g.returncode == 0 and b.returncode == 1, (
        f"cairn-lincheck misjudges tiny histories: good -> {g.returncode} {g.stderr!r}, "
        f"stale read -> {b.returncode} {b.stderr!r}")


def test_linearizable_under_partitions(cluster, net, request, tmp_path):
    checker = lincheck_bin()
    if checker is None:
        pytest.fail(f"cairn-lincheck not found next to {cairn_bin()} (build cairn-lincheck)",
                    pytrace=False)
    _checker_discriminates(checker, tmp_path)
    leaders = cluster.wait_partition_leaders(timeout=30)
    system_leader = cluster.system_leader()
    counts = {nid: list(leaders.values()).count(nid) for nid in cluster.nodes}
    first = max(counts, key=lambda nid: (counts[nid], nid != system_leader))
    bucket = bucket_in([p for p, l in leaders.items() if l == first], cluster.partitions,
                       "plin")
    partition = bucket_partition(bucket, cluster.partitions)
    client(cluster.node("n1")).create_bucket(Bucket=bucket)
    log(request, "bucket_partition", f"{partition} led by {first}; system leader "
                                      f"{system_leader}")

    hist = History()
    stop = threading.Event()
    seed = int(os.environ.get("CAIRN_LIN_SEED", str(random.randrange(1 << 30))))
    log(request, "seed", seed)
    master = random.Random(seed)
    threads = [threading.Thread(target=_lin_worker,
                                args=(hist, node, bucket, stop, random.Random(master.random())),
                                daemon=True)
               for node in cluster.alive() for _ in range(LIN_CLIENTS_PER_NODE)]
    t_start = time.monotonic()
    for t in threads:
        t.start()

    faults = []
    windows = []  # (label, cut node ids, start_ns, end_ns)

    def at(sec: float) -> None:
        time.sleep(max(0.0, t_start + sec - time.monotonic()))

    def mark(what: str) -> None:
        faults.append(f"{time.monotonic() - t_start:.1f}s {what}")

    try:
        # 1. Isolate the partition's current leader; heal.
        at(2)
        victim1 = cluster.partition_leaders().get(partition) or first
        net.isolate(cluster.node(victim1).index)
        w0 = time.monotonic_ns()  # windows: strictly inside the fault
        mark(f"isolate {victim1} (leader of partition {partition})")
        at(14)
        windows.append((f"isolated {victim1}", {victim1}, w0, time.monotonic_ns()))
        net.heal()
        mark("heal")
        # 2. Isolate another node: the partition's new leader if it moved off, else the
        #    system leader (or any other node).
        at(18)
        new_lead = cluster.partition_leaders().get(partition)
        candidates = [new_lead, cluster.system_leader()] + sorted(cluster.nodes)
        victim2 = next(n for n in candidates if n and n != victim1)
        net.isolate(cluster.node(victim2).index)
        w0 = time.monotonic_ns()
        mark(f"isolate {victim2}")
        at(30)
        windows.append((f"isolated {victim2}", {victim2}, w0, time.monotonic_ns()))
        net.heal()
        mark("heal")
        # 3. Cut one link only: the partition's leader from one follower. The leader keeps
        #    its quorum through the third node; the cut follower campaigns in vain (and its
        #    higher term reaches the others at the heal).
        at(34)
        lead = cluster.partition_leaders().get(partition) or victim2
        other = next(n for n in sorted(cluster.nodes) if n != lead)
        la, lb = cluster.node(lead).index, cluster.node(other).index
        net.cut(la, lb)
        w0 = time.monotonic_ns()
        mark(f"cut {lead} (leader) <-/-> {other}; the third node reaches both")
        at(44)
        windows.append((f"cut {lead}-{other}", set(), w0, time.monotonic_ns()))
        net.heal()
        mark("heal")
        at(47)
    finally:
        net.heal()
        stop.set()
        for t in threads:
            t.join(timeout=40)
    log(request, "faults", faults)
    assert not any(t.is_alive() for t in threads), "client threads did not finish"
    ops = list(hist.ops)
    stats: dict[str, int] = {}
    for op in ops:
        k = f"{op['input']['type']}:{op['output']['type']}"
        stats[k] = stats.get(k, 0) + 1
    log(request, "ops", f"{len(ops)} {dict(sorted(stats.items()))}")

    # Not vacuous: plenty of completed writes and reads that saw values ...
    assert stats.get("put:ok", 0) >= 30, stats
    assert stats.get("get:value", 0) >= 30, stats
    assert any(o["output"]["type"] == "value" and o["output"]["value"] for o in ops), \
        "no read ever returned a value"
    # ... and the cluster kept committing writes during every fault, through nodes that were
    # not cut off (allowing a few seconds for an election).
    for label, cut, w_start, w_end in windows:
        done = [o for o in ops if o["output"]["type"] == "ok" and o["node"] not in cut
                and o["call_ns"] >= w_start and o["return_ns"] and o["return_ns"] <= w_end]
        # Every operation overlapping the window, per node: its outcome if it started and
        # finished inside, else "straddling" (answered, but started before or ended after).
        per_node: dict[str, dict[str, int]] = {}
        for o in ops:
            end = o["return_ns"] or float("inf")
            if o["call_ns"] < w_end and end > w_start:
                inside = o["call_ns"] >= w_start and end <= w_end
                kind = o["output"]["type"] if inside or o["output"]["type"] == "unknown" \
                    else "straddling"
                counts = per_node.setdefault(o["node"], {})
                counts[kind] = counts.get(kind, 0) + 1
        per_node = dict(sorted(per_node.items()))
        log(request, f"during {label}", f"{len(done)} writes issued and acked inside it; "
                                        f"outcomes per node {per_node}")
        assert len(done) >= 3, f"no progress while {label}: {per_node}"
        # A node cut off from every peer cannot confirm anything: no request through it that
        # started and finished inside the window may succeed (reads need a quorum too).
        served = [o for o in ops if o["node"] in cut and o["call_ns"] >= w_start
                  and o["return_ns"] and o["return_ns"] <= w_end
                  and o["output"]["type"] in ("ok", "value")]
        assert not served, (f"{sorted(cut)} answered while cut off ({label}): "
                            + "; ".join(json.dumps(o) for o in served[:10]))

    history = tmp_path / "history.jsonl"
    res = _run_lincheck(checker, ops, history)
    keep = os.environ.get("CAIRN_LIN_HISTORY")
    if keep:
        shutil.copy(history, keep)
    log(request, "lincheck", f"exit {res.returncode}: {res.stdout.strip()[:2000]} "
                             f"{res.stderr.strip()[-300:]}")
    assert res.returncode == 0, (
        f"cairn-lincheck exit {res.returncode} on {len(ops)} ops (history {history}; faults "
        f"{faults}):\n{res.stdout}\n{res.stderr}")
