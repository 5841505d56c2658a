"""Consistency options on a real 3-node cluster (RF 3, so every chunk goes to every node):

- write consistency per request (``x-cairn-write-consistency``) and per bucket (the same header
  on CreateBucket): with one node down, ``ALL`` cannot be met and is refused, ``QUORUM`` is;
- stale-ok reads (``x-cairn-read-consistency: stale``) are served by a lone surviving replica
  that cannot serve linearizable reads any more;
- node health in the catalog: the system leader records up → down → up, audited.

Uses the ``cluster`` fixture of ``test_cluster.py`` (a fresh cluster per test).
"""

from __future__ import annotations

import os
import time

import botocore.exceptions
import pytest
import requests

from e2e_util import (admin_headers, client_error_code, client_error_status, expected_chunk_ids, rand_bytes,
                      unique_name)
from test_cluster import cluster  # noqa: F401  (fixture)
from test_cluster import assert_objects, log, try_until

WRITE = "x-cairn-write-consistency"
READ = "x-cairn-read-consistency"
BIG = 200_000  # above INLINE_THRESHOLD (4 KiB in the cluster tests): stored as chunks


def with_headers(client, operation: str, headers: dict[str, str]):
    """Adds `headers` to every `operation` call of `client`, before signing (so they are signed
    like any other header)."""

    def add(request, **_):
        for k, v in headers.items():
            request.headers[k] = v

    client.meta.events.register_first(f"before-sign.s3.{operation}", add)
    return client


def expect_error(fn, status: int, code: str | None = None):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn()
    assert client_error_status(e.value) == status, (client_error_status(e.value),
                                                    client_error_code(e.value))
    if code is not None:
        assert client_error_code(e.value) == code
    return e.value


def test_write_consistency_per_request_and_per_bucket(cluster, request):  # noqa: F811
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    plain, strict = unique_name("wc"), unique_name("wcall")
    n1.client().create_bucket(Bucket=plain)
    with_headers(n1.client(), "CreateBucket", {WRITE: "ALL"}).create_bucket(Bucket=strict)
    head = n2.client().head_bucket(Bucket=strict)
    assert head["ResponseMetadata"]["HTTPHeaders"].get(WRITE) == "ALL", head
    assert WRITE not in n2.client().head_bucket(Bucket=plain)["ResponseMetadata"]["HTTPHeaders"]

    # All nodes up: ALL is met.
    data = {f"k{i}": rand_bytes(BIG, f"wc-{i}") for i in range(6)}
    n2.client().put_object(Bucket=strict, Key="k0", Body=data["k0"])
    with_headers(n2.client(), "PutObject", {WRITE: "ALL"}).put_object(
        Bucket=plain, Key="k1", Body=data["k1"])

    # A bad value is a clear 400 and stores nothing.
    expect_error(lambda: with_headers(n1.client(), "PutObject", {WRITE: "MOST"}).put_object(
        Bucket=plain, Key="bad", Body=b"x" * BIG), 400, "InvalidArgument")
    expect_error(lambda: n1.client().head_object(Bucket=plain, Key="bad"), 404)

    n3.kill()
    # ALL can no longer be met: per request, and by the bucket's own setting.
    t0 = time.monotonic()
    expect_error(lambda: with_headers(n1.client(read_timeout=30), "PutObject", {WRITE: "ALL"})
                 .put_object(Bucket=plain, Key="all", Body=data["k2"]), 503)
    log(request, "all_refused_s", round(time.monotonic() - t0, 2))
    expect_error(lambda: n1.client(read_timeout=30).put_object(
        Bucket=strict, Key="default", Body=data["k3"]), 503)
    # Neither refused write is visible.
    for b, k in ((plain, "all"), (strict, "default")):
        expect_error(lambda b=b, k=k: n2.client().head_object(Bucket=b, Key=k), 404)

    # QUORUM (the node default, or asked for) still succeeds; the request overrides the bucket.
    try_until(lambda: n1.client(read_timeout=30).put_object(
        Bucket=plain, Key="quorum", Body=data["k4"]), timeout=30)
    with_headers(n2.client(read_timeout=30), "PutObject", {WRITE: "QUORUM"}).put_object(
        Bucket=strict, Key="override", Body=data["k5"])
    with_headers(n2.client(read_timeout=30), "PutObject", {WRITE: "ONE"}).put_object(
        Bucket=strict, Key="one", Body=data["k5"])

    n3.start()
    assert_objects(n3, plain, {"k1": data["k1"], "quorum": data["k4"]})
    assert_objects(n3, strict, {"k0": data["k0"], "override": data["k5"], "one": data["k5"]})


def test_stale_reads_are_served_by_a_lone_replica(cluster, request):  # noqa: F811
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    bucket = unique_name("stale")
    n1.client().create_bucket(Bucket=bucket)
    small, big = rand_bytes(100, "stale-s"), rand_bytes(BIG, "stale-b")
    n1.client().put_object(Bucket=bucket, Key="small", Body=small)
    n2.client().put_object(Bucket=bucket, Key="big", Body=big)

    stale_get = with_headers(n1.client(read_timeout=10), "GetObject", {READ: "stale"})
    stale_list = with_headers(n1.client(read_timeout=10), "ListObjectsV2", {READ: "stale"})
    # Stale reads see what this replica has applied: wait until it has both writes.
    try_until(lambda: stale_get.get_object(Bucket=bucket, Key="big"), timeout=10)
    expect_error(lambda: with_headers(n1.client(), "GetObject", {READ: "eventual"}).get_object(
        Bucket=bucket, Key="small"), 400, "InvalidArgument")

    n2.kill()
    n3.kill()
    # n1 alone has no quorum: linearizable reads cannot be answered...
    t0 = time.monotonic()
    expect_error(lambda: n1.client(read_timeout=30).get_object(Bucket=bucket, Key="small"), 503)
    log(request, "linearizable_refused_s", round(time.monotonic() - t0, 2))
    # ...but stale-ok reads are, from n1's own replica, byte-identical.
    assert stale_get.get_object(Bucket=bucket, Key="small")["Body"].read() == small
    assert stale_get.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    keys = [o["Key"] for o in stale_list.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["big", "small"], keys
    expect_error(lambda: stale_get.get_object(Bucket=bucket, Key="missing"), 404, "NoSuchKey")


def audit(node) -> list[str]:
    r = requests.get(f"{node.admin_url}/cluster/audit", timeout=5,
                     headers=admin_headers("GET", "/cluster/audit"))
    r.raise_for_status()
    return [e["what"] for e in r.json()]


def catalog_health(node, node_id: str) -> str | None:
    st = node.try_status(timeout=5)
    if not st:
        return None
    for n in st["nodes"]:
        if n["node_id"] == node_id:
            return n["catalog_health"]
    return None


def test_node_health_is_recorded_in_the_catalog(cluster, request):  # noqa: F811
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    # Gossip may call a node suspect for a moment while the cluster forms: wait for all up.
    def all_up():
        assert all(catalog_health(n1, f"n{i}") == "up" for i in (1, 2, 3)), n1.status()["nodes"]

    try_until(all_up, timeout=20, interval=0.5)
    st = n1.status()
    beats = {n["node_id"]: n["last_heartbeat_ms"] for n in st["nodes"]}
    assert all(v > 0 for v in beats.values()), beats

    t0 = time.monotonic()
    n3.kill()

    def down():
        assert catalog_health(n1, "n3") == "down"
        assert catalog_health(n2, "n3") == "down"

    try_until(down, timeout=60, interval=0.5)
    log(request, "recorded_down_s", round(time.monotonic() - t0, 2))
    what = audit(n2)
    assert any(w.startswith("node n3 health") and w.endswith("-> down") for w in what), what

    n3.start()

    def up():
        assert catalog_health(n1, "n3") == "up"

    try_until(up, timeout=60, interval=0.5)
    assert any(w == "node n3 health down -> up" or w == "node n3 health suspect -> up"
               for w in audit(n1)), audit(n1)
    # Heartbeats keep arriving (HEARTBEAT_INTERVAL_SECS=2 in these tests).
    before = {n["node_id"]: n["last_heartbeat_ms"] for n in n1.status()["nodes"]}
    time.sleep(5)
    after = {n["node_id"]: n["last_heartbeat_ms"] for n in n1.status()["nodes"]}
    assert all(after[k] > before[k] for k in before), (before, after)


def chunk_path(node, chunk_hex: str):
    return node.storage_path / "chunks" / chunk_hex[:2] / chunk_hex[2:4] / chunk_hex


def test_read_repair_restores_missing_and_corrupt_replicas(cluster, request):  # noqa: F811
    """A chunk lost on n1 and flipped on the replica n1 asks first: a GET through n1 still
    returns the right bytes (from the third replica), and read repair gives both n1 and the
    corrupt replica a good copy again."""
    n1 = cluster.node("n1")
    bucket = unique_name("repair")
    n1.client().create_bucket(Bucket=bucket)
    data = rand_bytes(300_000, "repair")  # one chunk (CHUNK_SIZE is 1 MiB in these tests)
    n1.client().put_object(Bucket=bucket, Key="obj", Body=data)
    (chunk,) = expected_chunk_ids(data, 1 << 20)
    # The chunk's partition (first 8 bytes of its id, big-endian, mod P) and its replicas in
    # layout order: with every node up, n1 asks the others in that order.
    p = int(chunk[:16], 16) % cluster.partitions
    replicas = next(x["replicas"] for x in n1.status()["partitions"] if x["partition"] == p)
    first, second = (cluster.node(r) for r in replicas if r != "n1")

    def all_up():  # the order is by catalog health, then layout
        assert all(catalog_health(n1, f"n{i}") == "up" for i in (1, 2, 3))

    try_until(all_up, timeout=20, interval=0.5)

    def on_all():
        for n in (n1, first, second):
            assert chunk_path(n, chunk).is_file(), n.node_id

    try_until(on_all, timeout=10)
    chunk_path(n1, chunk).unlink()
    path = chunk_path(first, chunk)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0x40
    path.write_bytes(bytes(raw))

    got = n1.client(read_timeout=30).get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert got == data

    def repaired():
        assert chunk_path(n1, chunk).read_bytes() == data
        assert chunk_path(first, chunk).read_bytes() == data

    _, secs = try_until(repaired, timeout=10)
    log(request, "read_repair_s", round(secs, 2))
    assert "read repair restored a local chunk copy" in n1.log_text()
    assert "read repair restored a replica's copy" in n1.log_text()
    # Every node serves the object again.
    for n in (n1, first, second):
        assert_objects(n, bucket, {"obj": data})


# ---------------------------------------------------------------------------------------------
# The cluster catalog: configuration, access keys, placement policy
# ---------------------------------------------------------------------------------------------

def start_with(c, per_node: dict[int, dict[str, str]], timeout: float = 90):
    """Like Cluster.start(n), with settings that differ per node."""
    from cluster_util import RPC_PORT, ClusterNode, node_ip  # noqa: PLC0415

    n = len(per_node)
    seeds = ",".join(f"{node_ip(i)}:{RPC_PORT}" for i in range(1, n + 1))
    for i in range(1, n + 1):
        node = ClusterNode(c, i, {**c.env, "CLUSTER_SEEDS": seeds, **per_node[i]})
        c.nodes[node.node_id] = node
    c._register()
    for node in c.nodes.values():
        node.spawn()
    for node in c.nodes.values():
        node.wait_healthy(timeout)
    c.wait_converged(n, timeout=timeout)


def client_as(node, access_key: str, secret_key: str):
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    return boto3.session.Session().client(
        "s3", endpoint_url=node.endpoint, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 0},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))


def test_cluster_config_access_keys_and_placement(tmp_path_factory, request):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    wd = tmp_path_factory.mktemp("cluster-catalog")
    c = ReportedCluster(wd, env={"REPLICATION_FACTOR": "2", "PLACEMENT_REQUIRE": "disk=ssd"})
    n3_key, n3_secret = "n3-own-key", "n3-own-secret-0123456789"
    try:
        start_with(c, {
            1: {"NODE_LABELS": "disk=ssd"},
            2: {"NODE_LABELS": "disk=ssd,rack=r2"},
            3: {"NODE_LABELS": "disk=hdd", "ACCESS_KEY": n3_key, "SECRET_KEY": n3_secret},
        })
        n1, n2, n3 = (c.node(f"n{i}") for i in (1, 2, 3))

        # The placement policy recorded at formation holds: replicas only on disk=ssd nodes.
        # (Layout v1 is written before the peers' own registrations bring their labels; the
        # next layout, a controller tick later, places by them.)
        def placed_by_labels():
            for p in n3.status()["partitions"]:
                assert sorted(p["replicas"]) == ["n1", "n2"], p

        try_until(placed_by_labels, timeout=20)
        what = audit(n3)
        assert any(w.startswith("cluster config v1: partitions=8 replication=2 voters=3")
                   and "require=[disk=ssd]" in w for w in what), what

        # Every node's root key is valid on every node; secrets never reach the audit log.
        def keys_shared():
            log_ = audit(n1)
            assert any(w == f"add root key {n3_key} of node n3" for w in log_), log_

        try_until(keys_shared, timeout=20)
        assert not any(n3_secret in w for w in audit(n1))
        bucket = unique_name("keys")
        client_as(n1, n3_key, n3_secret).create_bucket(Bucket=bucket)
        n3.client().put_object(Bucket=bucket, Key="k", Body=b"from n3 with the shared key")
        got = client_as(n2, n3_key, n3_secret).get_object(Bucket=bucket, Key="k")["Body"].read()
        assert got == b"from n3 with the shared key"
        expect_error(lambda: client_as(n1, n3_key, "wrong-secret-0123456789").list_buckets(),
                     403, "SignatureDoesNotMatch")
        # The native client (FileService) accepts the cluster's keys too.
        import subprocess  # noqa: PLC0415

        from cluster_util import cairn_bin  # noqa: PLC0415

        env = {k: v for k, v in os.environ.items() if k not in ("ACCESS_KEY", "SECRET_KEY")}
        ls = subprocess.run(
            [str(cairn_bin()), "ls", f"cairn://{bucket}", "--endpoint", n1.rpc_addr,
             "--access-key", n3_key, "--secret-key", n3_secret,
             "--ca-file", str(n1.storage_path / "tls" / "ca.pem")],
            capture_output=True, text=True, timeout=30, env=env)
        assert ls.returncode == 0 and "k" in ls.stdout, (ls.returncode, ls.stdout, ls.stderr)
        ls = subprocess.run(
            [str(cairn_bin()), "ls", f"cairn://{bucket}", "--endpoint", n1.rpc_addr,
             "--access-key", n3_key, "--secret-key", "wrong-secret-0123456789",
             "--ca-file", str(n1.storage_path / "tls" / "ca.pem")],
            capture_output=True, text=True, timeout=30, env=env)
        assert ls.returncode != 0 and "signature" in ls.stderr.lower(), (ls.stdout, ls.stderr)
        expect_error(lambda: client_as(n1, "nobody", "whatever-0123456789").list_buckets(),
                     403, "InvalidAccessKeyId")

        # A node with another partition count is refused before it joins, naming the setting.
        bad = c.add_node(4, seed=n2.rpc_addr, wait=False, expect_exit=True, PARTITIONS="16")
        rc = bad.wait_exit(timeout=30)
        assert rc not in (None, 0), bad.log_tail(20)
        assert "PARTITIONS" in bad.log_text(), bad.log_tail(20)
        assert sorted(x["node_id"] for x in n1.status()["nodes"]) == ["n1", "n2", "n3"]
    finally:
        _finish(c)
