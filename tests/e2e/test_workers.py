"""Background workers and the chunk layer in /metrics: every worker of a node runs under one
runner and shows its state, items and errors (`cairn_worker_*`); the chunk store reports what
it holds and what GC deleted (`cairn_chunk_*`)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from e2e_util import chunk_files, expected_chunk_ids, rand_bytes, unique_name
from test_cluster import cluster  # noqa: F401  (fixture: a fresh 3-node cluster)

MiB = 1024 * 1024
WORKERS = ("controller", "ref-sync", "gc", "chunk-sync", "upload-reaper", "scrub", "disk")


@pytest.fixture(scope="module")
def node(server_factory):
    return server_factory("workers", CHUNK_SIZE=MiB, GC_GRACE_SECS=1, GC_INTERVAL_SECS=1)


def metrics(node) -> str:
    return requests.get(f"{node.admin_url}/metrics", timeout=5).text


def value(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def test_every_worker_reports_a_state(node):
    text = metrics(node)
    for w in WORKERS:
        states = {s: value(text, "cairn_worker_state", f'{{worker="{w}",state="{s}"}}')
                  for s in ("busy", "throttled", "idle", "paused", "done")}
        assert sum(states.values()) == 1, f"{w}: exactly one state must be 1: {states}"
        assert states["done"] == 0, f"{w} stopped"
        assert value(text, "cairn_worker_errors_total", f'{{worker="{w}"}}') == 0
    # The controller steps every 500 ms.
    assert value(text, "cairn_worker_items_total", '{worker="controller"}') >= 1


def test_gc_progress_and_chunk_metrics(node):
    c = node.client()
    b = unique_name("workers")
    c.create_bucket(Bucket=b)
    data = rand_bytes(3 * MiB, "workers-gc")
    ids = set(expected_chunk_ids(data, MiB))
    c.put_object(Bucket=b, Key="k", Body=data)
    before = metrics(node)
    assert value(before, "cairn_chunk_writes_total") >= len(ids)
    assert value(before, "cairn_chunk_written_bytes_total") >= len(data)
    deleted_before = value(before, "cairn_chunk_deleted_total")
    gc_items_before = value(before, "cairn_worker_items_total", '{worker="gc"}')

    c.delete_object(Bucket=b, Key="k")
    deadline = time.monotonic() + 30
    while ids & chunk_files(node.storage_path) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not ids & chunk_files(node.storage_path), "GC did not collect the deleted object"
    # Counters are updated as the files go; give the scrape a moment to catch up.
    time.sleep(0.5)
    after = metrics(node)
    assert value(after, "cairn_chunk_deleted_total") - deleted_before >= len(ids)
    assert value(after, "cairn_worker_items_total", '{worker="gc"}') - gc_items_before >= len(ids)
    assert value(after, "cairn_worker_items_total", '{worker="ref-sync"}') >= 2 * len(ids)
    # The next GC pass scans the store: the gauges describe what is left.
    time.sleep(2.5)
    final = metrics(node)
    assert value(final, "cairn_chunk_stored_chunks") == len(chunk_files(node.storage_path))
    assert value(final, "cairn_chunk_quarantined") == 0
    assert value(final, "cairn_worker_queue_length", '{worker="gc"}') == 0


def test_chunk_sync_restores_a_lost_copy_without_any_read(cluster):  # noqa: F811
    """Anti-entropy: a replica whose chunk file disappears gets it back from the others within
    a chunk-sync pass or two, with no read touching the object."""
    n1, n3 = cluster.node("n1"), cluster.node("n3")
    b = unique_name("sync")
    n1.client().create_bucket(Bucket=b)
    before = chunk_files(n3.storage_path)
    data = rand_bytes(200_000, "chunk-sync")
    n1.client().put_object(Bucket=b, Key="k", Body=data)
    # RF 3 on 3 nodes: n3 holds every chunk once the background third write lands.
    deadline = time.monotonic() + 20
    while not chunk_files(n3.storage_path) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    new = chunk_files(n3.storage_path) - before
    assert new, "the chunk never reached n3"
    for cid in new:
        (n3.storage_path / "chunks" / cid[:2] / cid[2:4] / cid).unlink()
    assert not new & chunk_files(n3.storage_path)

    deadline = time.monotonic() + 30
    while new - chunk_files(n3.storage_path) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not new - chunk_files(n3.storage_path), "chunk sync did not restore the lost copy"
    text = metrics(n3)
    assert value(text, "cairn_worker_items_total", '{worker="chunk-sync"}') >= len(new)
    assert n1.client().get_object(Bucket=b, Key="k")["Body"].read() == data
