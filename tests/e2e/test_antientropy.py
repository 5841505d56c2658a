"""Anti-entropy with hashed ranges (issue 13 item 7): a replica that was down while objects
were written at QUORUM gets every chunk back from the others by its chunk-sync worker — with
no read touching the objects — after comparing range digests; a steady-state pass afterwards
restores nothing. And the repair throttle: `repair.rate_mbps` (live) bounds how fast a
replica is refilled, and raising it speeds the refill up at once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

import cluster_util
import conftest
from cluster_util import Cluster, cairn_bin, node_ip
from e2e_util import ACCESS_KEY, SECRET_KEY, chunk_files, expected_chunk_ids, rand_bytes, \
    unique_name

# Ports of this module's cluster: PORT_BASE + 380 .. + 382 (no other module uses them).
PORT_SHIFT = 380
MiB = 1024 * 1024
PARTITIONS = 8


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = \
        base, base + 1, base + 2
    c = Cluster(tmp_path_factory.mktemp("antientropy"))
    seeds = ",".join(f"{node_ip(i)}:{cluster_util.RPC_PORT}" for i in (1, 2, 3))
    problems: list[str] = []
    try:
        for i in (1, 2, 3):
            node = cluster_util.ClusterNode(c, i, {"CLUSTER_SEEDS": seeds,
                                                   "PARTITIONS": str(PARTITIONS)})
            c.nodes[node.node_id] = node
            conftest._RUNNING.append(node)
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
            shutil.rmtree(n.storage_path, ignore_errors=True)
        cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = saved
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def metrics(node) -> str:
    return requests.get(f"{node.admin_url}/metrics", timeout=5).text


def value(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def sync_counters(node) -> dict[str, float]:
    text = metrics(node)
    return {
        "compared": value(text, "cairn_chunk_sync_ranges_compared_total"),
        "differing": value(text, "cairn_chunk_sync_ranges_differing_total"),
        "peer_compared": value(text, "cairn_chunk_sync_peer_ranges_compared_total"),
        "restored": value(text, "cairn_worker_items_total", '{worker="chunk-sync"}'),
        "missing": value(text, "cairn_chunk_missing_local"),
    }


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def cli(node, *args: str) -> subprocess.CompletedProcess:
    """`cairn <args>` against `node`'s management API with the root credentials."""
    env = {k: v for k, v in os.environ.items() if k not in ("CAIRN_TOKEN", "STORAGE_PATH")}
    env.update({"CAIRN_ADMIN": node.admin_url, "ACCESS_KEY": ACCESS_KEY,
                "SECRET_KEY": SECRET_KEY})
    out = subprocess.run([str(cairn_bin()), *args], capture_output=True, text=True, timeout=60,
                         env=env, cwd="/")
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def put_while_down(cluster, victim, objects: int, size: int, tag: str) -> set[str]:
    """Kills `victim`, writes `objects` objects of `size` bytes at the default consistency
    (QUORUM) through the others, restarts `victim`; returns the written objects' chunk ids."""
    writer = next(n for n in cluster.nodes.values() if n is not victim)
    b = unique_name(tag)
    writer.client().create_bucket(Bucket=b)
    victim.kill()
    ids: set[str] = set()
    for i in range(objects):
        data = rand_bytes(size, f"{tag}-{i}")
        writer.client().put_object(Bucket=b, Key=f"k{i}", Body=data)
        ids |= set(expected_chunk_ids(data, MiB))
    assert not ids & chunk_files(victim.storage_path), "the victim was down: it has none yet"
    victim.start(90)
    return ids


def test_a_node_that_missed_quorum_writes_gets_them_without_any_read(cluster):
    n3 = cluster.node("n3")
    ids = put_while_down(cluster, n3, objects=4, size=2 * MiB + 4321, tag="ae")
    # No GET anywhere: only chunk sync can bring the chunks to n3.
    wait_for(lambda: ids <= chunk_files(n3.storage_path), 60,
             f"all {len(ids)} chunks restored on n3 by chunk sync")
    c = sync_counters(n3)
    assert c["compared"] >= PARTITIONS * 256, c
    assert c["differing"] >= 1, c
    assert c["restored"] >= len(ids), c

    # Steady state: a whole pass compares every range again and restores nothing.
    before = sync_counters(n3)
    wait_for(lambda: sync_counters(n3)["compared"] - before["compared"] >= 2 * PARTITIONS * 256,
             30, "two more chunk-sync passes' worth of comparisons on n3")
    after = sync_counters(n3)
    assert after["restored"] == before["restored"], (before, after)
    assert after["differing"] == before["differing"], \
        f"a steady-state pass should find every range equal: {before} -> {after}"
    assert after["peer_compared"] > before["peer_compared"], (before, after)
    assert after["missing"] == 0, after
    assert ids <= chunk_files(n3.storage_path)


def test_the_repair_rate_throttles_the_refill_and_is_raised_live(cluster):
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    rate = 1  # MB/s
    out = json.loads(cli(n1, "config", "set", "repair.rate_mbps", str(rate), "--json").stdout)
    assert out["diff"][0]["apply"] == "live" and out["restart_required"] == [], out
    try:
        # 16 chunks of 1 MiB: about 16.8 s at 1 MB/s, well under a second unthrottled.
        ids = put_while_down(cluster, n2, objects=4, size=4 * MiB, tag="throttle")
        first = wait_for(lambda: bool(ids & chunk_files(n2.storage_path)) and time.monotonic(),
                         60, "the refill of n2 to start")
        time.sleep(4)
        have = len(ids & chunk_files(n2.storage_path))
        # At 1 MB/s at most ~5 chunks fit in those 4 s; a generous bound that an unthrottled
        # refill (all 16 within a second) would break.
        elapsed = time.monotonic() - first
        bound = int(elapsed * rate * 1e6 / MiB) + 4
        assert have <= bound < len(ids), \
            f"{have} of {len(ids)} chunks restored {elapsed:.1f}s into a 1 MB/s refill"
        remaining_secs = (len(ids) - have) * MiB / (rate * 1e6)

        raised = time.monotonic()
        cli(n1, "config", "set", "repair.rate_mbps", "1000")
        wait_for(lambda: ids <= chunk_files(n2.storage_path), 60, "the rest of the refill")
        took = time.monotonic() - raised
        # The rest would have needed `remaining_secs` at the old rate.
        assert took < remaining_secs - 2, \
            f"raising the rate live did not speed the refill up: {took:.1f}s for the rest " \
            f"(at 1 MB/s: {remaining_secs:.1f}s)"
    finally:
        cli(n1, "config", "unset", "repair.rate_mbps")
