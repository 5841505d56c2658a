"""Scrub (issue 13 item 6): a flipped byte in one replica's chunk file is found by the scrub
worker, the bad copy is quarantined and restored from a good replica — with no client read
touching the object — and the counts and the last full pass show in /metrics and the worker
note."""

from __future__ import annotations

import hashlib
import re
import shutil
import time

import pytest
import requests

import cluster_util
import conftest
from cluster_util import Cluster, cairn_bin, node_ip
from e2e_util import admin_headers, chunk_files, expected_chunk_ids, rand_bytes, unique_name

# Ports of this module's cluster: PORT_BASE + 290 .. + 292 (no other module uses them).
PORT_SHIFT = 290
MiB = 1024 * 1024
# Unlimited rate and a pass every second: a pass over a few chunks takes well under a second.
SCRUB_ENV = {"SCRUB_RATE_MBPS": "0", "SCRUB_INTERVAL_SECS": "1"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = \
        base, base + 1, base + 2
    c = Cluster(tmp_path_factory.mktemp("scrub"))
    seeds = ",".join(f"{node_ip(i)}:{cluster_util.RPC_PORT}" for i in (1, 2, 3))
    problems: list[str] = []
    try:
        for i in (1, 2, 3):
            node = cluster_util.ClusterNode(c, i, {"CLUSTER_SEEDS": seeds, **SCRUB_ENV})
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


def scrub_status(node) -> dict:
    r = requests.get(f"{node.admin_url}/workers", timeout=5,
                     headers=admin_headers("GET", "/workers"))
    r.raise_for_status()
    return next(w for w in r.json() if w["name"] == "scrub")


def chunk_path(node, cid: str):
    return node.storage_path / "chunks" / cid[:2] / cid[2:4] / cid


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_scrub_passes_and_reports(cluster):
    """Every node runs the scrub worker; with a 1 s interval full passes complete and show."""
    for node in cluster.nodes.values():
        wait_for(lambda n=node: value(metrics(n),
                                      "cairn_chunk_scrub_last_full_pass_timestamp_seconds") > 0,
                 20, f"a full scrub pass on {node.node_id}")
        text = metrics(node)
        assert value(text, "cairn_worker_errors_total", '{worker="scrub"}') == 0
        assert value(text, "cairn_chunk_scrub_corrupt_total") == 0
        st = scrub_status(node)
        assert st["state"] != "done" and st["note"] and "full pass" in st["note"], st


def test_flipped_byte_is_found_quarantined_and_repaired_without_a_read(cluster):
    n1, n3 = cluster.node("n1"), cluster.node("n3")
    b = unique_name("scrub")
    n1.client().create_bucket(Bucket=b)
    data = rand_bytes(2 * MiB + 12345, "scrub-flip")
    ids = expected_chunk_ids(data, MiB)
    n1.client().put_object(Bucket=b, Key="k", Body=data)
    # RF 3 on 3 nodes: n3 holds every chunk once the background writes land.
    wait_for(lambda: set(ids) <= chunk_files(n3.storage_path), 20, "every chunk on n3")

    victim = ids[1]
    path = chunk_path(n3, victim)
    good = path.read_bytes()
    before = metrics(n3)
    reads_before = value(before, "cairn_chunk_reads_total")
    corrupt_before = value(before, "cairn_chunk_scrub_corrupt_total")
    repaired_before = value(before, "cairn_chunk_scrub_repaired_total")
    quarantine = n3.storage_path / "chunks" / "quarantine"
    quarantined_before = len(list(quarantine.iterdir()))

    # Flip one byte in place: same file, same size, same mtime order — only the hash differs.
    with open(path, "r+b") as f:
        f.seek(len(good) // 2)
        byte = f.read(1)
        f.seek(len(good) // 2)
        f.write(bytes([byte[0] ^ 0x01]))
    assert hashlib.sha256(path.read_bytes()).digest() != hashlib.sha256(good).digest()

    def repaired():
        t = metrics(n3)
        return t if value(t, "cairn_chunk_scrub_repaired_total") > repaired_before else None

    after = wait_for(repaired, 30, "the scrubber to repair the flipped chunk on n3")
    assert value(after, "cairn_chunk_scrub_corrupt_total") == corrupt_before + 1
    assert value(after, "cairn_chunk_scrub_unrepaired_total") == 0
    # The copy is back, byte for byte, and the bad one is kept in quarantine.
    assert path.read_bytes() == good
    assert len(list(quarantine.iterdir())) == quarantined_before + 1
    # No read went through n3's store: the scrubber found it, not a client.
    assert value(after, "cairn_chunk_reads_total") == reads_before
    assert "repaired" in (scrub_status(n3)["note"] or "")

    for node in cluster.nodes.values():
        assert node.client().get_object(Bucket=b, Key="k")["Body"].read() == data
