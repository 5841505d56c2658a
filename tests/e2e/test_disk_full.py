"""Disk full (issue 13 item 8): one node of three (RF 3, QUORUM) runs on a small tmpfs. It fills
up by its own chunk writes and then refuses new chunks: writes keep succeeding through every
node (the two others make the quorum), an ALL write fails with 503 SlowDown (never 500), reads
go on, and the condition shows in /ready and /metrics. Filled further, its Raft log pauses (it
gives up its leaderships; the cluster keeps writing). Freeing space clears both by themselves,
and the full node then fetches every chunk it missed: no acknowledged object is left with a
missing copy.

Needs root (mounts a tmpfs). Ports: nodes on 127.0.0.11-13 on PORT_BASE+230..+232."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
import requests
from botocore.exceptions import ClientError

import cluster_util
import conftest
from cluster_util import Cluster, cairn_bin, node_ip, s3_client
from e2e_util import chunk_files, expected_chunk_ids, rand_bytes, unique_name

PORT_SHIFT = 230
MiB = 1024 * 1024
CHUNK = int(cluster_util.DEFAULT_ENV["CHUNK_SIZE"])
FS_SIZE = 96 * MiB
RESERVE = 32 * MiB
# The Raft log floor is a quarter of the reserve (cairn::node_admin::raft_log_floor).
LOG_FLOOR = RESERVE // 4


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen within {timeout}s (last: {last!r})")


def metric(node, name: str) -> float:
    text = requests.get(f"{node.admin_url}/metrics", timeout=5).text
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics of {node.node_id}"
    return float(m.group(1))


def reasons(node) -> list[str]:
    return requests.get(f"{node.admin_url}/ready", timeout=5).json()["reasons"]


def free_bytes(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = \
        base, base + 1, base + 2
    c = Cluster(tmp_path_factory.mktemp("disk-full"))
    seeds = ",".join(f"{node_ip(i)}:{cluster_util.RPC_PORT}" for i in (1, 2, 3))
    mounted = None
    try:
        for i in (1, 2, 3):
            env = {"CLUSTER_SEEDS": seeds, "DISK_RESERVE_BYTES": str(RESERVE)}
            node = cluster_util.ClusterNode(c, i, env)
            c.nodes[node.node_id] = node
            conftest._RUNNING.append(node)
        small = c.nodes["n3"].storage_path
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(small)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
        mounted = small
        for node in c.nodes.values():
            node.spawn()
        for node in c.nodes.values():
            node.wait_healthy(90)
        c.wait_converged(3, timeout=60)
        c.wait_partition_leaders(30)
        yield c
    finally:
        problems = c.teardown()
        for n in c.nodes.values():
            if n in conftest._RUNNING:
                conftest._RUNNING.remove(n)
        if mounted is not None:
            subprocess.run(["umount", "-l", str(mounted)], check=False)
        for n in c.nodes.values():
            shutil.rmtree(n.storage_path, ignore_errors=True)
        cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = saved
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


class Ballast:
    """A file on the small file system that takes space away (and gives it back)."""

    def __init__(self, fs_path):
        self.path = os.path.join(str(fs_path), "ballast")

    def leave_free(self, target: int) -> None:
        """Grows the ballast until about `target` bytes are left free."""
        fs = os.path.dirname(self.path)
        with open(self.path, "ab") as f:
            while free_bytes(fs) > target:
                f.write(b"\0" * min(MiB, free_bytes(fs) - target))
                f.flush()

    def remove(self) -> None:
        os.remove(self.path)


def put_checked(client, bucket, key, body, acked, outcomes, **extra):
    """PUT that must succeed or fail with 503; records the outcome."""
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status == 503, f"PUT {key}: {status} {e.response['Error']}"
        outcomes.append(e.response["Error"]["Code"])
        return False
    acked[key] = body
    outcomes.append("ok")
    return True


def with_header(client, name: str, value: str):
    def add(request, **_):
        request.headers[name] = value
    client.meta.events.register("before-sign.s3.PutObject", add)
    return client


def test_full_node_refuses_chunks_writes_go_on_and_it_heals(cluster):
    n1, n2, n3 = (cluster.nodes[f"n{i}"] for i in (1, 2, 3))
    clients = {n.node_id: s3_client(n.endpoint, retries=0) for n in (n1, n2, n3)}
    bucket = unique_name("full")
    clients["n1"].create_bucket(Bucket=bucket)
    acked: dict[str, bytes] = {}
    outcomes: list[str] = []
    ballast = Ballast(n3.storage_path)

    # n3 has a few MiB above its reserve; its own chunk writes take it under.
    assert metric(n3, "cairn_chunk_disk_full") == 0
    ballast.leave_free(RESERVE + 6 * MiB)
    for i in range(12):
        body = rand_bytes(MiB + 512 * 1024, ("fill", i))
        assert put_checked(clients["n1"], bucket, f"fill-{i}", body, acked, outcomes), outcomes
    wait_for(lambda: metric(n3, "cairn_chunk_disk_full") == 1, 10, "n3 reporting its disk full")
    assert free_bytes(n3.storage_path) >= LOG_FLOOR, "chunks stopped at the reserve"
    assert any("DISK_RESERVE_BYTES" in r for r in reasons(n3)), reasons(n3)
    assert metric(n3, "cairn_chunk_disk_refused_total") >= 1

    # Writes go on through every node, the full one included: n1 and n2 make the quorum.
    for i in range(6):
        for nid, c in clients.items():
            body = rand_bytes(2 * MiB + 100, ("while-full", nid, i))
            assert put_checked(c, bucket, f"full-{nid}-{i}", body, acked, outcomes), outcomes
    assert metric(n1, "cairn_chunk_replica_full_total") + \
        metric(n2, "cairn_chunk_replica_full_total") >= 1, "writers saw the full replica"

    # ALL cannot be met while a replica is full: 503 SlowDown, never 500, nothing acked.
    strict = with_header(s3_client(n1.endpoint, retries=0), "x-cairn-write-consistency", "ALL")
    with pytest.raises(ClientError) as e:
        strict.put_object(Bucket=bucket, Key="strict", Body=rand_bytes(MiB + 1, "strict"))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert e.value.response["Error"]["Code"] == "SlowDown", e.value.response["Error"]

    # Reads keep working everywhere, through the full node too.
    for key, body in acked.items():
        assert clients["n3"].get_object(Bucket=bucket, Key=key)["Body"].read() == body, key

    # Fuller still: the Raft log pauses, n3 gives up its leaderships, the cluster keeps going.
    ballast.leave_free(LOG_FLOOR // 2)
    wait_for(lambda: any("raft log writes paused" in r for r in reasons(n3)), 15,
             "n3's Raft log pausing")
    assert metric(n3, "cairn_raft_log_paused") == 1
    deadline = time.monotonic() + 30
    written = 0
    while written < 4 and time.monotonic() < deadline:
        body = rand_bytes(MiB + 7, ("log-paused", written, time.monotonic()))
        if put_checked(clients["n1"], bucket, f"paused-{written}", body, acked, outcomes):
            written += 1
        else:
            time.sleep(0.5)  # a partition n3 led is electing a new leader
    assert written == 4, f"writes stalled while n3's log was paused: {outcomes[-10:]}"

    # n3 holds fewer copies than it should: the ones it refused.
    refused = {cid for b in acked.values() for cid in expected_chunk_ids(b, CHUNK)} \
        - chunk_files(n3.storage_path)
    assert refused, "n3 refused copies while full"

    # Space returns: both conditions clear by themselves, and n3 catches up.
    ballast.remove()
    wait_for(lambda: reasons(n3) == [], 30, "n3 ready again")
    assert metric(n3, "cairn_chunk_disk_full") == 0
    assert metric(n3, "cairn_raft_log_paused") == 0
    body = rand_bytes(MiB + 3, "after")
    assert put_checked(clients["n3"], bucket, "after", body, acked, outcomes)

    # No acknowledged object is left with a missing copy: RF 3 on 3 nodes puts every chunk on
    # every node, and n3's chunk sync fetches what it refused. (The refused ALL write left
    # unreferenced chunks on n1 and n2: GC's business, not a missing copy.)
    needed = {cid for b in acked.values() for cid in expected_chunk_ids(b, CHUNK)}

    def missing():
        return {n.node_id: len(needed - chunk_files(n.storage_path)) for n in (n1, n2, n3)}
    wait_for(lambda: not any(missing().values()), 60, "every acked chunk on every replica")
    assert metric(n3, "cairn_chunk_missing_local") == 0
    for key, b in acked.items():
        for c in clients.values():
            assert c.get_object(Bucket=bucket, Key=key)["Body"].read() == b, key
    assert "InternalError" not in outcomes
