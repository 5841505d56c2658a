"""Safe GC by protocol (issue 13 item 2), with GC_GRACE_SECS=1 and a GC pass every second, so
nothing here is protected by timing: slow uploads through nodes that hold no replica of their
chunks, copies across buckets, deletes and re-PUTs of identical content racing each other, and
a node killed in the middle. Every acknowledged object reads back byte for byte from every node,
and GC still collects what nothing references.

One 4-node cluster (RF 3: every partition has exactly one node that is not its replica) serves
the module."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import threading
import time

import blake3
import pytest
from botocore.exceptions import ClientError

import cluster_util
import conftest
from cluster_util import Cluster, cairn_bin
from e2e_util import chunk_files, expected_chunk_ids, rand_bytes, sign_v4, unique_name

# Away from the other cluster modules' ports (test_cluster +0, test_files +30, trust +60,
# tokens +90, node_admin +120, dashboard +140, openapi +150, config +170; round-2 modules
# take +230..+290).
PORT_SHIFT = 320
MiB = 1 << 20
GRACE = 1
# Longer than the grace period plus a GC pass: what the old, timing-based GC lost.
PAUSE = GRACE + 2.5
ENV = {"GC_GRACE_SECS": str(GRACE), "GC_INTERVAL_SECS": "1", "PARTITIONS": "8"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = \
        base, base + 1, base + 2
    c = Cluster(tmp_path_factory.mktemp("safe-gc"), env=ENV)
    try:
        c.start(4, timeout=120)
        for n in c.nodes.values():
            conftest._RUNNING.append(n)
        c.wait_partition_leaders(30)
        yield c
    finally:
        problems = c.teardown()
        for n in c.nodes.values():
            if n in conftest._RUNNING:
                conftest._RUNNING.remove(n)
            shutil.rmtree(n.storage_path, ignore_errors=True)
        cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = saved
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def replicas(cluster: Cluster) -> dict[int, set[str]]:
    """partition -> the nodes the layout places it on."""
    for st in cluster.statuses().values():
        if st and st.get("partitions"):
            return {p["partition"]: set(p["replicas"]) for p in st["partitions"]}
    raise AssertionError("no node reports a layout")


def chunk_partition(chunk_hex: str, partitions: int) -> int:
    """Mirrors cairn_meta::ChunkId::partition."""
    return int.from_bytes(bytes.fromhex(chunk_hex)[:8], "big") % partitions


def foreign_chunks(cluster: Cluster, node_id: str, n: int, seed) -> bytes:
    """`n` full chunks, none of which `node_id` holds a replica of (it only forwards them)."""
    placed = replicas(cluster)
    out, i = [], 0
    while len(out) < n:
        block = rand_bytes(MiB, (seed, i))
        i += 1
        p = chunk_partition(blake3.blake3(block).hexdigest(), cluster.partitions)
        if node_id not in placed[p]:
            out.append(block)
    return b"".join(out)


def slow_put(node, bucket: str, key: str, data: bytes, pause: float) -> int:
    """PUTs `data` through `node` one chunk at a time, pausing `pause` seconds between chunks;
    returns the HTTP status."""
    host = f"{node.ip}:{cluster_util.API_PORT}"
    path = f"/{bucket}/{key}"
    headers, _ = sign_v4("PUT", host, path, [], {"content-length": str(len(data))},
                         "UNSIGNED-PAYLOAD")
    conn = http.client.HTTPConnection(node.ip, cluster_util.API_PORT, timeout=60)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        for off in range(0, len(data), MiB):
            if off:
                time.sleep(pause)
            conn.send(data[off:off + MiB])
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def read(node, bucket: str, key: str) -> bytes | None:
    try:
        return node.client(retries=3).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as e:
        if e.response["Error"]["Code"] == "NoSuchKey":
            return None
        raise


# The state of a key after a request that failed: it may or may not have applied.
UNKNOWN = object()


def assert_all_readable(cluster: Cluster, acked: dict) -> None:
    """Every acknowledged object reads back byte for byte (and every acknowledged delete stays
    deleted) through every live node."""
    for node in cluster.alive():
        for (bucket, key), want in acked.items():
            if want is UNKNOWN:
                continue
            got = read(node, bucket, key)
            if want is None:
                assert got is None, f"{bucket}/{key} deleted but readable via {node.node_id}"
            else:
                assert got is not None, f"{bucket}/{key} missing via {node.node_id}"
                assert hashlib.sha256(got).digest() == hashlib.sha256(want).digest(), \
                    f"{bucket}/{key} differs via {node.node_id}"


def test_slow_uploads_through_non_replica_nodes_lose_nothing(cluster):
    c = cluster.nodes["n1"].client()
    bucket = unique_name("slow")
    c.create_bucket(Bucket=bucket)
    # One slow upload through each node, every chunk placed on the three other nodes only:
    # their GC sees old, unreferenced files it has never been told about by a local request.
    objects = {n.node_id: foreign_chunks(cluster, n.node_id, 3, ("slow", n.node_id)) + b"tail"
               for n in cluster.alive()}
    statuses: dict[str, int] = {}

    def upload(node):
        statuses[node.node_id] = slow_put(node, bucket, node.node_id, objects[node.node_id],
                                          PAUSE)

    threads = [threading.Thread(target=upload, args=(n,)) for n in cluster.alive()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {n: 200 for n in objects}, statuses
    # Give GC several passes over the finished uploads too.
    time.sleep(PAUSE)
    assert_all_readable(cluster, {(bucket, k): v for k, v in objects.items()})


def test_copies_deletes_and_identical_reputs_race_gc_and_a_node_kill(cluster):
    nodes = sorted(cluster.alive(), key=lambda n: n.node_id)
    src, dst = unique_name("src"), unique_name("dst")
    nodes[0].client().create_bucket(Bucket=src)
    nodes[0].client().create_bucket(Bucket=dst)
    # Few distinct contents shared by every worker: maximal dedup of identical chunks.
    contents = [rand_bytes(2 * MiB + 17, ("shared", i)) for i in range(3)]
    acked: dict = {}
    lock = threading.Lock()
    errors: list[str] = []
    victim = nodes[3]
    stop_killing = threading.Event()

    def record(bucket, key, value):
        with lock:
            acked[(bucket, key)] = value

    def worker(w: int):
        via = [n for n in nodes if n is not victim]
        for r in range(4):
            node = via[(w + r) % len(via)]
            c = node.client(retries=3)
            data = contents[(w + r) % len(contents)]
            key = f"w{w}"
            try:
                c.put_object(Bucket=src, Key=key, Body=data)
                record(src, key, data)
                c.copy_object(Bucket=dst, Key=key, CopySource={"Bucket": src, "Key": key})
                record(dst, key, data)
                c.delete_object(Bucket=src, Key=key)
                record(src, key, None)
                # Let GC look at the now unreferenced-by-src chunks.
                time.sleep(GRACE + 0.5)
                c.put_object(Bucket=src, Key=key, Body=data)
                record(src, key, data)
                if r % 2:
                    c.delete_object(Bucket=dst, Key=key)
                    record(dst, key, None)
            except Exception as e:  # noqa: BLE001 - a failed request is not acknowledged
                errors.append(f"w{w} round {r} via {node.node_id}: {e!r}")
                record(src, key, UNKNOWN)
                record(dst, key, UNKNOWN)

    def killer():
        time.sleep(3)
        victim.kill()
        stop_killing.wait(5)
        victim.start()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    kt = threading.Thread(target=killer)
    kt.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_killing.set()
    kt.join()
    cluster.wait_converged(4, timeout=60)
    # Requests may fail while a node is down (then they are not recorded); most must succeed.
    assert len(errors) <= 8, errors
    time.sleep(PAUSE)
    assert_all_readable(cluster, acked)


def test_gc_still_collects_what_nothing_references(cluster):
    c = cluster.nodes["n2"].client()
    bucket = unique_name("gone")
    c.create_bucket(Bucket=bucket)
    data = rand_bytes(2 * MiB + 5, "collected")
    ids = set(expected_chunk_ids(data, MiB))
    c.put_object(Bucket=bucket, Key="k", Body=data)
    holders = [n for n in cluster.alive() if ids & chunk_files(n.storage_path)]
    assert holders, "chunks were not stored anywhere"
    c.delete_object(Bucket=bucket, Key="k")
    deadline = time.monotonic() + 30
    left = ids
    while time.monotonic() < deadline:
        left = set().union(*(ids & chunk_files(n.storage_path) for n in cluster.alive()))
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"unreferenced chunks not collected: {sorted(left)}"
