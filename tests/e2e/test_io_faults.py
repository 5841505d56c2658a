"""Failing and slow disks (issue 13 items 8 and 9), injected with the node's failpoints
(`CAIRN_FAILPOINTS`, the `fail` crate; see docs/CHAOS.md) into one node of three (RF 3, QUORUM):

* its Raft log writes fail (EIO): the groups it holds stop on that node, which says so in
  /ready and /metrics instead of wedging silently; the two others go on committing; restarted
  with a working disk it catches up and serves everything;
* its chunk reads and writes fail (EIO): PUTs through any node are acknowledged (the two others
  make the quorum), GETs through it are served from the other replicas, the errors show in
  /ready, /status and /metrics; once its disk works again, anti-entropy gives it every chunk it
  missed, with no read touching them.

Ports: nodes on 127.0.0.11-13 on PORT_BASE+470..+472."""

from __future__ import annotations

import pytest
import requests

import cluster_util
from cluster_util import Cluster, cairn_bin
from e2e_util import admin_headers, chunk_files, expected_chunk_ids, rand_bytes, unique_name
from test_disk_full import metric, reasons, wait_for

PORT_SHIFT = 470
CHUNK = int(cluster_util.DEFAULT_ENV["CHUNK_SIZE"])


def restart(node, failpoints: str | None) -> None:
    node.stop()
    node.env_overrides.pop("CAIRN_FAILPOINTS", None)
    if failpoints:
        node.env_overrides["CAIRN_FAILPOINTS"] = failpoints
    node.start(timeout=90)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = Cluster(tmp_path_factory.mktemp("io-faults"))
        try:
            c.start(3, timeout=120)
            c.wait_partition_leaders(60)
            yield c
        finally:
            problems = c.teardown()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def test_unknown_failpoint_is_refused_at_start(cluster):
    """A misspelt point must not silently inject nothing."""
    n3 = cluster.node("n3")
    n3.stop()
    n3.env_overrides["CAIRN_FAILPOINTS"] = "chunk-wrte=return"
    n3.spawn(expect_exit=True)
    code = n3.wait_exit(30)
    assert code not in (None, 0), f"started with an unknown failpoint (exit {code})"
    assert "unknown point `chunk-wrte`" in n3.log_tail(20)
    restart(n3, None)
    cluster.wait_converged(3, timeout=60)


def test_failing_raft_log_on_one_node_shows_and_the_cluster_commits_on(cluster):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    bucket = unique_name("raftlog")
    c1 = n1.client(retries=5)
    c1.create_bucket(Bucket=bucket)
    objects = {f"before/{i}": rand_bytes(1000 + i, f"raftlog-before-{i}") for i in range(5)}
    for k, v in objects.items():
        c1.put_object(Bucket=bucket, Key=k, Body=v)

    restart(n3, "raft-log-write=return")
    # Its groups stop at their first log write: visible, never silent.
    stopped = wait_for(lambda: [r for r in reasons(n3) if "raft" in r], 60,
                       "n3 reporting its failing Raft log")
    assert any("raft log writes failing" in r or "raft groups stopped" in r for r in stopped), \
        stopped
    assert metric(n3, "cairn_raft_log_write_errors_total") > 0

    # The two others hold every quorum: writes and reads go on through them.
    cluster.wait_partition_leaders(60)
    for i in range(10):
        k, v = f"during/{i}", rand_bytes(2000 + i, f"raftlog-during-{i}")
        (n1 if i % 2 else n2).client(retries=5).put_object(Bucket=bucket, Key=k, Body=v)
        objects[k] = v
    for k, v in objects.items():
        assert n2.client(retries=5).get_object(Bucket=bucket, Key=k)["Body"].read() == v, k

    # A working disk again: it catches up and serves everything.
    restart(n3, None)
    wait_for(lambda: reasons(n3) == [], 90, "n3 ready again")
    c3 = n3.client(retries=5)
    for k, v in objects.items():
        assert c3.get_object(Bucket=bucket, Key=k)["Body"].read() == v, k


def test_failing_chunk_disk_on_one_node_loses_nothing_and_is_refilled(cluster):
    n1, n3 = cluster.node("n1"), cluster.node("n3")
    bucket = unique_name("chunkio")
    n1.client(retries=5).create_bucket(Bucket=bucket)
    before = {f"before/{i}": rand_bytes(CHUNK * 2 + 100 * i, f"chunkio-before-{i}")
              for i in range(3)}
    for k, v in before.items():
        n1.client(retries=5).put_object(Bucket=bucket, Key=k, Body=v)

    restart(n3, "chunk-write=return;chunk-read=return")
    # Writes through the failing node itself and through a good one are acknowledged.
    during = {f"during/{i}": rand_bytes(CHUNK * 2 + 7 * i, f"chunkio-during-{i}")
              for i in range(4)}
    for i, (k, v) in enumerate(during.items()):
        (n3 if i % 2 else n1).client(retries=5).put_object(Bucket=bucket, Key=k, Body=v)
    # Reads through it are served from the other replicas.
    c3 = n3.client(retries=5)
    for k, v in {**before, **during}.items():
        assert c3.get_object(Bucket=bucket, Key=k)["Body"].read() == v, k
    assert metric(n3, "cairn_chunk_disk_write_errors_total") > 0
    assert metric(n3, "cairn_chunk_disk_read_errors_total") > 0
    assert any("chunk disk I/O errors" in r for r in reasons(n3)), reasons(n3)
    st = requests.get(f"{n3.admin_url}/status", timeout=5,
                      headers=admin_headers("GET", "/status")).json()
    assert st["disk"]["io_errors"] > 0, st["disk"]
    missing = {cid for v in during.values() for cid in expected_chunk_ids(v, CHUNK)} \
        - chunk_files(n3.storage_path)
    assert missing, "the failing disk stored chunks"

    # Disk works again: anti-entropy restores every copy it missed, without a read.
    restart(n3, None)
    wait_for(lambda: not (missing - chunk_files(n3.storage_path)), 90,
             "n3 holding every chunk it missed")
    for v in {**before, **during}.values():
        for cid in expected_chunk_ids(v, CHUNK):
            for n in cluster.alive():
                assert cid in chunk_files(n.storage_path), f"{cid[:12]} missing on {n.node_id}"
