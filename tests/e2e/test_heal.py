"""Self-healing on 5 nodes, RF 3, REPAIR_GRACE_SECS=5: drain empties a node (replicas, then its
chunk files, handed back once the new holders have them) and remove is refused while a node
still holds replicas (issue 13 item 5); a node in maintenance is not re-homed; a node down past
the grace is left out of a new layout, its partitions and chunks move to the others, and a
second kill keeps every object readable because of the re-homing (item 3); the re-homed node
comes back, is placed again, and keeps only the chunks of the partitions it now holds.

The tests run in file order on one module-scoped cluster."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import cluster_util
from cluster_util import cairn_bin
from e2e_util import ACCESS_KEY, SECRET_KEY, chunk_files, expected_chunk_ids, rand_bytes, \
    unique_name

# Ports of their own, so this module can run beside the other cluster suites.
PORT_SHIFT = 260
MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = base, base + 1, base + 2
    c = ReportedCluster(tmp_path_factory.mktemp("heal-cluster"),
                        env={"REPAIR_GRACE_SECS": "5", "HANDBACK_INTERVAL_SECS": "1"})
    try:
        c.start(5)
        yield c
    finally:
        try:
            _finish(c)
        finally:
            cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = saved


def cli(node, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACCESS_KEY", "SECRET_KEY", "CAIRN_TOKEN", "STORAGE_PATH")}
    env.update({"CAIRN_ADMIN": node.admin_url, "ACCESS_KEY": ACCESS_KEY,
                "SECRET_KEY": SECRET_KEY})
    out = subprocess.run([str(cairn_bin()), *args], capture_output=True, text=True, timeout=60,
                         env=env, cwd="/")
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def placed(node) -> set[str]:
    st = node.status()
    return {r for p in st["partitions"] for r in p["replicas"]}


def wait_for(what: str, cond, timeout: float = 60, cluster=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if cluster is not None:
            cluster.assert_no_crash()
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def moves_done(node) -> bool:
    import requests  # noqa: PLC0415

    from e2e_util import admin_headers  # noqa: PLC0415

    r = requests.get(f"{node.admin_url}/admin/rebalances",
                     headers=admin_headers("GET", "/admin/rebalances"), timeout=5)
    return r.status_code == 200 and r.json()["in_progress"] == 0


@pytest.fixture(scope="module")
def objects(cluster):
    """Objects written while all five nodes are up: small (inline) and multi-chunk ones."""
    c = cluster.node("n1").client()
    out = {}
    for i in range(6):
        b = unique_name(f"heal{i}")
        c.create_bucket(Bucket=b)
        data = rand_bytes(MiB * 2 + 1000 * i if i % 2 else 1000 + i, ("heal", i))
        c.put_object(Bucket=b, Key="k", Body=data)
        out[b] = data
    return out


def read_all(node, objects, timeout: float = 45):
    c = node.client()
    for b, data in objects.items():
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = c.get_object(Bucket=b, Key="k")["Body"].read()
                break
            except Exception:  # noqa: BLE001 - a leader election in progress: retry
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert got == data, b


def test_drain_empties_a_node_and_remove_needs_it_empty(cluster, objects):
    n1 = cluster.node("n1")
    assert "n5" in placed(n1)
    # n4 still holds replicas: removing it would drop partitions below RF.
    out = cli(n1, "node", "remove", "n4", check=False)
    assert out.returncode != 0 and "replica" in out.stderr, out
    out = cli(n1, "node", "drain", "n5")
    assert "n5: draining" in out.stdout, out
    wait_for("a layout without n5", lambda: "n5" not in placed(n1), cluster=cluster)
    wait_for("the replica moves off n5", lambda: moves_done(n1), cluster=cluster)
    st = n1.status()
    assert {n["node_id"]: n["state"] for n in st["nodes"]}["n5"] == "draining"
    assert all(len(p["replicas"]) == 3 for p in st["partitions"])
    read_all(n1, objects)
    # Its disk empties too: each chunk copy leaves n5 once every new holder has it.
    n5 = cluster.node("n5")
    assert chunk_files(n5.storage_path), "n5 held no chunks to begin with"
    wait_for("n5's chunk copies handed back", lambda: not chunk_files(n5.storage_path),
             timeout=90, cluster=cluster)
    read_all(n1, objects)

    # Refused while a partition leader still moves a replica off n5, then accepted.
    def removed():
        out = cli(n1, "node", "remove", "n5", check=False)
        assert out.returncode == 0 or "still moving" in out.stderr, out
        return out.returncode == 0 and "n5: removed" in out.stdout
    wait_for("n5 removed", removed, cluster=cluster)
    cluster.node("n5").kill()
    read_all(n1, objects)


def test_maintenance_keeps_a_down_node_placed(cluster, objects):
    n1, n4 = cluster.node("n1"), cluster.node("n4")
    out = cli(n1, "node", "maintenance", "on", "n4")
    assert "in maintenance" in out.stdout, out
    n4.kill()
    t_kill = time.monotonic()
    wait_for("n4 down", lambda: {n["node_id"]: n["health"] for n in n1.status()["nodes"]}
             .get("n4") == "down", cluster=cluster)
    # Well past the grace (5 s) after the failure detector's verdict: still placed.
    time.sleep(8)
    assert "n4" in placed(n1)
    out = cli(n1, "node", "maintenance", "off", "n4")
    assert "in maintenance" not in out.stdout, out
    # Re-homed: a new layout without n4, on the three remaining nodes.
    wait_for("a layout without n4", lambda: "n4" not in placed(n1), timeout=60, cluster=cluster)
    st = n1.status()
    assert all(len(p["replicas"]) == 3 for p in st["partitions"]), st["partitions"]
    assert time.monotonic() - t_kill < 90


def test_rehomed_data_survives_a_second_kill(cluster, objects):
    n1, n2, n3 = (cluster.node(x) for x in ("n1", "n2", "n3"))
    wait_for("the replica moves off n4", lambda: moves_done(n1), cluster=cluster)
    # Chunk sync copies every chunk to its new holders: each of n1..n3 holds them all.
    ids = {cid for d in objects.values() if len(d) > 4096 for cid in expected_chunk_ids(d, MiB)}
    assert ids

    def every_chunk_on_three():
        return all(ids <= chunk_files(n.storage_path) for n in (n1, n2, n3))
    wait_for("every chunk on n1, n2 and n3", every_chunk_on_three, timeout=60, cluster=cluster)
    # Every partition's replicas are up again: fully replicated (n4 is still down, and says so).
    status = cli(n1, "cluster", "status").stdout
    assert "redundancy: fully replicated" in status, status
    # Only two nodes left for RF 3: n3 keeps its slots (degraded) and every partition keeps a
    # majority on n1 and n2, which it would not have had with n4 still in the layout.
    n3.kill()
    read_all(n1, objects)
    read_all(n2, objects)
    time.sleep(8)  # past the grace: the layout must not drop below RF 3
    st = n1.status()
    assert all(len(p["replicas"]) == 3 for p in st["partitions"]), st["partitions"]
    health = cli(n1, "cluster", "health", check=False).stdout
    assert "degraded:" in health, health


def chunk_partition(chunk_hex: str, partitions: int) -> int:
    """`ChunkId::partition`: the first 8 bytes, big-endian, modulo the partition count."""
    return int(chunk_hex[:16], 16) % partitions


def test_a_rehomed_node_comes_back_and_keeps_only_what_is_placed_on_it(cluster, objects):
    n1, n3, n4 = (cluster.node(x) for x in ("n1", "n3", "n4"))
    before = chunk_files(n4.storage_path)
    assert before, "n4 held chunks before it was re-homed"
    n3.start()
    n4.start()
    # n4 is up again: a layout places it on partitions again (data moves back to it).
    wait_for("n4 placed again", lambda: "n4" in placed(n1), timeout=60, cluster=cluster)
    wait_for("the moves settle", lambda: moves_done(n1), timeout=90, cluster=cluster)
    partitions = len(n1.status()["partitions"])

    def only_placed_chunks():
        st = n1.status()
        mine = {p["partition"] for p in st["partitions"] if "n4" in p["replicas"]}
        return all(chunk_partition(c, partitions) in mine for c in chunk_files(n4.storage_path))
    wait_for("n4 keeps only the chunks of partitions placed on it", only_placed_chunks,
             timeout=120, cluster=cluster)
    read_all(n4, objects)
    read_all(n1, objects)
    wait_for("fully replicated", lambda: "redundancy: fully replicated" in
             cli(n1, "cluster", "status").stdout, timeout=90, cluster=cluster)
