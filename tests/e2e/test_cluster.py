"""Multi-node Cairn: formation, S3 through every node, leader failover, quorum loss, joins,
and a linearizability check of single-key histories under leader kills.

Every test gets its own fresh 3-node cluster (n1..n3 on 127.0.0.11..13, ports 21000-21002; see
cluster_util.py). Timings (formation, failover, catch-up, join) are printed with a
``[cluster]`` prefix; run with ``-s`` to see them live, they are also recorded as test
properties (``--junitxml``).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import subprocess
import threading
import time

import botocore.exceptions
import pytest

import conftest
from cluster_util import (
    ADMIN_PORT,
    Cluster,
    ClusterNode,
    bucket_partition,
    cairn_bin,
    lincheck_bin,
)
from e2e_util import (ACCESS_KEY, SECRET_KEY, client_error_code, client_error_status, md5_hex,
                      rand_bytes, unique_name)
from lin_util import HistoryRecorder, lincheck_form
from lin_util import lin_worker as _lin_worker
from lin_util import lincheck as _lincheck

# The management API needs credentials: the CLI signs with the root key from the environment.
ROOT_ENV = {**os.environ, "ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY}

FAILOVER_LIMIT = 30.0  # seconds a leader kill may interrupt writes
CATCH_UP_LIMIT = 60.0


def log(request, key: str, value) -> None:
    print(f"[cluster] {request.node.name}: {key} = {value}", flush=True)
    request.node.user_properties.append((key, value))


# ---------------------------------------------------------------------------------------------
# Fixture
# ---------------------------------------------------------------------------------------------

class ReportedCluster(Cluster):
    """Registers its nodes with conftest so failing tests get the nodes' log tails."""

    def _register(self):
        for n in self.nodes.values():
            if n not in conftest._RUNNING:
                conftest._RUNNING.append(n)

    def start(self, *a, **kw):
        try:
            return super().start(*a, **kw)
        finally:
            self._register()

    def add_node(self, *a, **kw) -> ClusterNode:
        try:
            return super().add_node(*a, **kw)
        finally:
            self._register()

    def teardown(self):
        try:
            return super().teardown()
        finally:
            for n in self.nodes.values():
                if n in conftest._RUNNING:
                    conftest._RUNNING.remove(n)


@pytest.fixture
def cluster(tmp_path_factory, request):
    """A fresh, converged 3-node cluster (n1..n3)."""
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; run `cargo build -p cairn` or set "
                    "CAIRN_BIN", pytrace=False)
    wd = tmp_path_factory.mktemp("cluster-" + request.node.name[:40])
    c = ReportedCluster(wd)
    t0 = time.monotonic()
    try:
        c.start(3)
        log(request, "formation_s", round(time.monotonic() - t0, 2))
        yield c
    finally:
        problems = c.teardown()
        if not os.environ.get("CAIRN_E2E_KEEP_DATA"):
            import shutil  # noqa: PLC0415

            for n in c.nodes.values():
                shutil.rmtree(n.storage_path, ignore_errors=True)
        else:
            print(f"[cluster] data and logs kept in {wd}")
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def put(node: ClusterNode, bucket: str, key: str, data: bytes, **kw):
    return node.client(**kw).put_object(Bucket=bucket, Key=key, Body=data)


def get_bytes(node: ClusterNode, bucket: str, key: str, **kw) -> bytes:
    return node.client(**kw).get_object(Bucket=bucket, Key=key)["Body"].read()


def assert_objects(node: ClusterNode, bucket: str, objects: dict[str, bytes]) -> None:
    """Every object reads back byte-identical through `node`."""
    c = node.client(read_timeout=30)
    for key, data in objects.items():
        try:
            got = c.get_object(Bucket=bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as e:
            raise AssertionError(f"GET {bucket}/{key} ({len(data)} B) through {node.node_id}: "
                                 f"{client_error_status(e)} {client_error_code(e)}") from None
        assert len(got) == len(data) and got == data, (
            f"GET {bucket}/{key} through {node.node_id}: {len(got)} B, expected {len(data)} B "
            f"(md5 {md5_hex(got)} vs {md5_hex(data)})"
        )


def try_until(fn, timeout: float, interval: float = 0.2):
    """Calls fn() until it returns without raising; returns (result, seconds). Raises the last
    error after `timeout`."""
    t0 = time.monotonic()
    while True:
        try:
            return fn(), time.monotonic() - t0
        except Exception:  # noqa: BLE001 - any failure means: not yet
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(interval)


def write_through_until_ok(nodes, bucket: str, key: str, data: bytes, t_start: float,
                           limit: float) -> tuple[ClusterNode, float, list[str]]:
    """PUTs (no client retries, short timeouts) through `nodes` in turn until one succeeds;
    returns (node, seconds since t_start, errors seen)."""
    errors = []
    i = 0
    while True:
        node = nodes[i % len(nodes)]
        i += 1
        try:
            put(node, bucket, key, data, connect_timeout=2, read_timeout=5)
            return node, time.monotonic() - t_start, errors
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            errors.append(f"{time.monotonic() - t_start:.2f}s {node.node_id}: {_err(e)}")
        if time.monotonic() - t_start > limit:
            raise AssertionError(f"no PUT succeeded within {limit}s after the kill; errors:\n"
                                 + "\n".join(errors[-20:]))
        time.sleep(0.1)


def _err(e: Exception) -> str:
    if isinstance(e, botocore.exceptions.ClientError):
        return f"HTTP {client_error_status(e)} {client_error_code(e)}"
    return type(e).__name__


def seed_objects(nodes, bucket: str, tag: str, sizes=(10, 4096, 4097, 300_000, 2_500_000)):
    """PUTs one object of every size through every node; returns key -> bytes (acked only)."""
    objs = {}
    for node in nodes:
        for size in sizes:
            key = f"{tag}/{node.node_id}/{size}"
            data = rand_bytes(size, (bucket, key))
            put(node, bucket, key, data, read_timeout=30)
            objs[key] = data
    return objs


def bucket_in(partitions_wanted, partitions: int, prefix: str = "c") -> str:
    """A fresh bucket name whose object index lives in one of `partitions_wanted`."""
    wanted = set(partitions_wanted)
    for _ in range(10_000):
        name = unique_name(prefix)
        if bucket_partition(name, partitions) in wanted:
            return name
    raise AssertionError(f"no bucket name maps to partitions {wanted}")


def bucket_on_partition(leaders: dict[int, str], node_id: str, partitions: int,
                        prefix: str = "c") -> str:
    """A fresh bucket name whose object index partition is led by `node_id`."""
    return bucket_in([p for p, l in leaders.items() if l == node_id], partitions, prefix)


def wait_health(cluster: Cluster, observers, node_id: str, want, timeout: float) -> float:
    """Waits until every observer reports `node_id`'s health in `want`."""
    t0 = time.monotonic()
    seen = {}
    while time.monotonic() - t0 < timeout:
        seen = {}
        for o in observers:
            st = o.try_status()
            if st:
                seen[o.node_id] = next((n["health"] for n in st["nodes"]
                                        if n["node_id"] == node_id), None)
        if seen and all(seen.get(o.node_id) in want for o in observers):
            return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"{node_id} health as seen by {[o.node_id for o in observers]} is "
                         f"{seen} after {timeout}s, wanted one of {want}")


# ---------------------------------------------------------------------------------------------
# Formation
# ---------------------------------------------------------------------------------------------

def test_three_nodes_form_one_cluster(cluster, request):
    ids = {"n1", "n2", "n3"}
    statuses = cluster.statuses()
    cluster_ids = {st["cluster_id"] for st in statuses.values()}
    assert len(cluster_ids) == 1 and None not in cluster_ids, statuses
    cluster_id = next(iter(cluster_ids))
    for reporter, st in statuses.items():
        assert st["reporting_node"] == reporter
        assert {n["node_id"] for n in st["nodes"]} == ids, st["nodes"]
        for n in st["nodes"]:
            node = cluster.node(n["node_id"])
            assert n["health"] == "up" and n["state"] == "active", n
            assert n["rpc_addr"] == node.rpc_addr, n
            assert n["api_addr"] == f"{node.ip}:{node.endpoint.rsplit(':', 1)[1]}", n
            assert n["partitions"] == cluster.partitions, n
        assert st["system_leader"] in ids
        assert set(st["system_voters"]) == ids, st["system_voters"]
        assert st["layout_version"] >= 1
        assert st["replication"] == 3
        assert len(st["partitions"]) == cluster.partitions
        for p in st["partitions"]:
            assert sorted(p["replicas"]) == sorted(ids), p
    # One system leader, as every node sees it.
    assert len({st["system_leader"] for st in statuses.values()}) == 1, statuses
    # Every partition group has a leader, and the leaders' counts add up.
    leaders = cluster.wait_partition_leaders(timeout=30)
    log(request, "partition_leaders", dict(sorted(leaders.items())))
    st = cluster.node("n2").status()
    assert sum(n["leads"] for n in st["nodes"]) == cluster.partitions, st["nodes"]

    # The CLI renders the same report.
    for node in cluster.alive():
        out = subprocess.run(
            [str(cairn_bin()), "cluster", "status", "--admin", node.admin_url],
            capture_output=True, text=True, timeout=30, env=ROOT_ENV,
        )
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert cluster_id in text, text
        assert f"reported by {node.node_id}" in text, text
        for nid in sorted(ids):
            line = next((l for l in text.splitlines() if l.startswith(nid + " ")), None)
            assert line is not None, f"no row for {nid} in:\n{text}"
            assert "active" in line and "up" in line and cluster.node(nid).rpc_addr in line, line
        assert "layout version" in text and "PARTITION" in text, text
    out = subprocess.run(
        [str(cairn_bin()), "cluster", "status", "--admin", cluster.node("n3").admin_url,
         "--json"], capture_output=True, text=True, timeout=30, env=ROOT_ENV,
    )
    assert out.returncode == 0, out.stderr
    assert {n["node_id"] for n in json.loads(out.stdout)["nodes"]} == ids
    # Nothing listens where no node runs: the CLI fails cleanly.
    out = subprocess.run(
        [str(cairn_bin()), "cluster", "status", "--admin", f"http://127.0.0.15:{ADMIN_PORT}"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0 and "127.0.0.15" in out.stderr, (out.returncode, out.stderr)


# ---------------------------------------------------------------------------------------------
# S3 through every node
# ---------------------------------------------------------------------------------------------

def test_s3_through_every_node(cluster, request):
    nodes = cluster.alive()
    bucket = unique_name("every")
    nodes[0].client().create_bucket(Bucket=bucket)
    # Inline (<= 4096), just above inline, one chunk, exactly 1 MiB, multi-chunk up to ~5 MB.
    sizes = [0, 1, 4096, 4097, 700_000, 1 << 20, (1 << 20) + 1, 3_000_000, 5_000_000]
    objects: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    t0 = time.monotonic()
    for node in nodes:
        for size in sizes:
            key = f"via-{node.node_id}/obj-{size}"
            data = rand_bytes(size, (bucket, key))
            r = put(node, bucket, key, data, read_timeout=60)
            objects[key] = data
            etags[key] = r["ETag"].strip('"')
            assert etags[key] == md5_hex(data), (key, r["ETag"])
    log(request, "put_s", round(time.monotonic() - t0, 2))

    t0 = time.monotonic()
    for node in nodes:
        c = node.client(read_timeout=60)
        assert bucket in [b["Name"] for b in c.list_buckets()["Buckets"]], node.node_id
        for key, data in objects.items():
            if key.startswith(f"via-{node.node_id}/"):
                continue  # every OTHER node
            r = c.get_object(Bucket=bucket, Key=key)
            got = r["Body"].read()
            assert got == data, f"{key} through {node.node_id}: {len(got)} B vs {len(data)} B"
            assert r["ETag"].strip('"') == etags[key]
            assert r["ContentLength"] == len(data)
        # Ranged read across a chunk boundary through a node that did not write it.
        key = next(k for k in objects if k.endswith("obj-3000000")
                   and not k.startswith(f"via-{node.node_id}/"))
        lo, hi = (1 << 20) - 10, (1 << 20) + 10
        got = c.get_object(Bucket=bucket, Key=key, Range=f"bytes={lo}-{hi}")["Body"].read()
        assert got == objects[key][lo:hi + 1]
        # Listing through every node sees every object with its size and ETag.
        listed = {}
        for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={
                "PageSize": 7}):
            for o in page.get("Contents", []):
                listed[o["Key"]] = (o["Size"], o["ETag"].strip('"'))
        assert listed == {k: (len(v), etags[k]) for k, v in objects.items()}, node.node_id
    log(request, "get_and_list_s", round(time.monotonic() - t0, 2))

    # Overwrite and delete through one node are seen through the others.
    k1, k2 = f"via-n1/obj-{4097}", f"via-n2/obj-{(1 << 20) + 1}"
    put(nodes[2], bucket, k1, b"overwritten")
    nodes[1].client().delete_object(Bucket=bucket, Key=k2)
    for node in nodes:
        assert get_bytes(node, bucket, k1) == b"overwritten", node.node_id
        with pytest.raises(botocore.exceptions.ClientError) as ei:
            node.client().head_object(Bucket=bucket, Key=k2)
        assert client_error_status(ei.value) == 404, node.node_id

    # With RF 3 on 3 nodes, every chunk of every multi-chunk object ends up on every node.
    from e2e_util import chunk_files, expected_chunk_ids  # noqa: PLC0415

    wanted = set()
    for key, data in objects.items():
        if len(data) > 4096 and key not in (k1, k2):
            wanted |= set(expected_chunk_ids(data, 1 << 20))

    def all_replicated():
        missing = {n.node_id: len(wanted - chunk_files(n.storage_path)) for n in nodes}
        assert not any(missing.values()), f"chunks missing per node: {missing}"

    _, secs = try_until(all_replicated, timeout=20, interval=0.5)
    log(request, "chunks_on_every_node_after_s", round(secs, 2))


# ---------------------------------------------------------------------------------------------
# Leader failover
# ---------------------------------------------------------------------------------------------

def _failover(cluster: Cluster, request, victim: ClusterNode, bucket: str,
              objects: dict[str, bytes]) -> None:
    """Kills `victim` (kill -9), checks the survivors keep serving and lose nothing, restarts it
    and checks it catches up."""
    survivors = cluster.others(victim)
    t_kill = time.monotonic()
    victim.kill()
    probe = rand_bytes(5000, "probe")
    node, failover, errors = write_through_until_ok(survivors, bucket, "after-kill/probe", probe,
                                                    t_kill, FAILOVER_LIMIT)
    objects["after-kill/probe"] = probe
    log(request, "failover_s", round(failover, 2))
    log(request, "failed_puts_before_failover", len(errors))
    if errors:
        print("[cluster]   errors before the first successful PUT:\n    "
              + "\n    ".join(errors[-10:]))
    # GET through the other survivor right away.
    other = next(n for n in survivors if n is not node)
    _, secs = try_until(lambda: get_bytes(other, bucket, "after-kill/probe",
                                          connect_timeout=2, read_timeout=5), timeout=10)
    log(request, "first_get_after_put_s", round(secs, 2))

    # Writes keep working through both survivors (inline and multi-chunk).
    objects.update(seed_objects(survivors, bucket, "while-down", sizes=(100, 2_200_000)))
    # Bucket operations (system group) keep working too.
    b2 = unique_name("after-kill")
    survivors[0].client().create_bucket(Bucket=b2)
    assert b2 in [b["Name"] for b in survivors[1].client().list_buckets()["Buckets"]]
    # Every acknowledged object is intact through every survivor.
    for s in survivors:
        assert_objects(s, bucket, objects)
        keys = set()
        for page in s.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys |= {o["Key"] for o in page.get("Contents", [])}
        assert keys == set(objects), (s.node_id, keys ^ set(objects))
    # The survivors elect among themselves and see the victim go.
    st = survivors[0].status()
    assert st["system_leader"] in {s.node_id for s in survivors}, st["system_leader"]
    wait_health(cluster, survivors, victim.node_id, {"suspect", "down"}, timeout=20)
    log(request, "victim_not_up_in_status_after_s", round(time.monotonic() - t_kill, 2))
    leaders = cluster.wait_partition_leaders(timeout=20)
    assert victim.node_id not in leaders.values(), leaders

    # Restart: the node rejoins from its data dir and catches up.
    t_restart = time.monotonic()
    victim.start()
    log(request, "restart_healthy_s", round(time.monotonic() - t_restart, 2))
    cluster.wait_converged(3, timeout=CATCH_UP_LIMIT)
    log(request, "restart_converged_s", round(time.monotonic() - t_restart, 2))
    try_until(lambda: assert_objects(victim, bucket, objects), timeout=CATCH_UP_LIMIT,
              interval=0.5)
    log(request, "restart_reads_everything_s", round(time.monotonic() - t_restart, 2))
    assert b2 in [b["Name"] for b in victim.client().list_buckets()["Buckets"]]
    st = victim.status()
    assert sorted(n["node_id"] for n in st["nodes"] if n["health"] == "up") == ["n1", "n2", "n3"]
    # And it serves writes again.
    put(victim, bucket, "after-restart", b"back")
    objects["after-restart"] = b"back"
    for s in survivors:
        assert get_bytes(s, bucket, "after-restart") == b"back"

    # It really caught up (not just forwarding): kill -9 one of the former survivors; the
    # restarted node is now needed for every quorum, and everything still reads and writes.
    second = survivors[0]
    pair = [victim, survivors[1]]
    t_kill2 = time.monotonic()
    second.kill()
    _, failover2, _ = write_through_until_ok(pair, bucket, "after-second-kill", b"2" * 6000,
                                             t_kill2, FAILOVER_LIMIT)
    objects["after-second-kill"] = b"2" * 6000
    log(request, "second_kill", f"{second.node_id}; failover_s = {round(failover2, 2)}")
    for node in pair:
        try_until(lambda: assert_objects(node, bucket, objects), timeout=10, interval=0.5)


def test_kill_system_leader_keeps_serving(cluster, request):
    leader = cluster.system_leader()
    assert leader, "no system leader"
    victim = cluster.node(leader)
    log(request, "victim", leader)
    bucket = unique_name("sysfail")
    cluster.node("n1").client().create_bucket(Bucket=bucket)
    objects = seed_objects(cluster.alive(), bucket, "before")
    _failover(cluster, request, victim, bucket, objects)


def test_kill_partition_leader_keeps_serving(cluster, request):
    leaders = cluster.wait_partition_leaders()
    counts = {nid: list(leaders.values()).count(nid) for nid in cluster.nodes}
    system_leader = cluster.system_leader()
    # The node leading most partitions; on a tie, prefer one that is not the system leader.
    victim_id = max(counts, key=lambda nid: (counts[nid], nid != system_leader))
    victim = cluster.node(victim_id)
    log(request, "victim", f"{victim_id} (leads {counts[victim_id]} of {len(leaders)} "
                           f"partitions; system leader {system_leader})")
    # A bucket whose object index lives in a partition the victim leads.
    bucket = bucket_on_partition(leaders, victim_id, cluster.partitions)
    cluster.node("n1").client().create_bucket(Bucket=bucket)
    objects = seed_objects(cluster.alive(), bucket, "before")
    _failover(cluster, request, victim, bucket, objects)
    p = bucket_partition(bucket, cluster.partitions)
    log(request, "bucket_partition_leader_after", cluster.partition_leaders().get(p))


# ---------------------------------------------------------------------------------------------
# Quorum loss
# ---------------------------------------------------------------------------------------------

def test_minority_cannot_commit(cluster, request):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    bucket = unique_name("minority")
    n1.client().create_bucket(Bucket=bucket)
    objects = seed_objects(cluster.alive(), bucket, "before", sizes=(50, 1_500_000))

    n2.kill()
    n3.kill()
    t_kill = time.monotonic()
    # A lone node must not acknowledge anything: each attempt errors or times out.
    outcomes = []
    for attempt in range(2):
        key = f"minority/{attempt}"
        t0 = time.monotonic()
        try:
            put(n1, bucket, key, b"must-not-commit", connect_timeout=2, read_timeout=10)
            outcomes.append(f"{key}: SUCCEEDED after {time.monotonic() - t0:.1f}s")
            pytest.fail(f"PUT {key} through the lone node n1 succeeded (2 of 3 nodes are down); "
                        f"outcomes {outcomes}")
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            outcomes.append(f"{key}: {_err(e)} after {time.monotonic() - t0:.1f}s")
    log(request, "minority_put_outcomes", outcomes)
    # Reads in a minority: reported, not asserted (a linearizable store refuses them).
    key0 = next(iter(objects))
    t0 = time.monotonic()
    try:
        got = get_bytes(n1, bucket, key0, connect_timeout=2, read_timeout=10)
        read = f"served ({'correct' if got == objects[key0] else 'WRONG'} bytes)"
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        read = _err(e)
    log(request, "minority_get", f"{read} after {time.monotonic() - t0:.1f}s")
    assert time.monotonic() - t_kill < 45

    # One node back: a majority again, and the PUT goes through.
    t_restart = time.monotonic()
    n2.start()
    try_until(lambda: put(n1, bucket, "majority/ok", b"committed", connect_timeout=2,
                          read_timeout=5), timeout=30)
    log(request, "put_ok_after_restart_s", round(time.monotonic() - t_restart, 2))
    objects["majority/ok"] = b"committed"
    for node in (n1, n2):
        try_until(lambda: assert_objects(node, bucket, objects), timeout=30, interval=0.5)
    # The timed-out minority PUTs had unknown outcomes: either absent or the exact bytes.
    for attempt in range(2):
        try:
            got = get_bytes(n1, bucket, f"minority/{attempt}")
            assert got == b"must-not-commit", got
            log(request, f"minority/{attempt}_after_recovery", "present (applied later)")
        except botocore.exceptions.ClientError as e:
            assert client_error_status(e) == 404, _err(e)
            log(request, f"minority/{attempt}_after_recovery", "absent")
    n3.start()
    cluster.wait_converged(3, timeout=CATCH_UP_LIMIT)
    assert_objects(n3, bucket, objects)


# ---------------------------------------------------------------------------------------------
# Joining
# ---------------------------------------------------------------------------------------------

def test_wrong_join_token_is_refused(cluster, request):
    before = cluster.node("n1").status()
    for token, label in (("not-the-token", "wrong"), ("", "missing")):
        idx = 4 if label == "wrong" else 5
        env = {"CLUSTER_JOIN_TOKEN": token} if token else {"CLUSTER_JOIN_TOKEN": ""}
        node = cluster.add_node(idx, seed=cluster.node("n2").rpc_addr, wait=False,
                                expect_exit=True, **env)
        rc = node.wait_exit(timeout=30)
        log(request, f"{label}_token_exit", rc)
        assert rc is not None, f"n{idx} with a {label} token still running after 30s\n" \
                               f"{node.log_tail(20)}"
        assert rc != 0, node.log_tail(20)
        assert "CLUSTER_JOIN_TOKEN" in node.log_text(), node.log_tail(20)
    time.sleep(1)
    for st in cluster.statuses([cluster.node(f"n{i}") for i in (1, 2, 3)]).values():
        assert sorted(n["node_id"] for n in st["nodes"]) == ["n1", "n2", "n3"], st["nodes"]
        assert sorted(st["system_voters"]) == ["n1", "n2", "n3"]
        assert st["layout_version"] == before["layout_version"]
        assert all(sorted(p["replicas"]) == ["n1", "n2", "n3"] for p in st["partitions"])


def test_fourth_node_joins_and_gets_partitions(cluster, request):
    n1 = cluster.node("n1")
    bucket = unique_name("join")
    n1.client().create_bucket(Bucket=bucket)
    objects = seed_objects(cluster.alive(), bucket, "before", sizes=(64, 4097, 2_500_000))
    v1 = n1.status()["layout_version"]

    t0 = time.monotonic()
    n4 = cluster.add_node(4, seed=cluster.node("n2").rpc_addr)  # joins through one seed
    log(request, "n4_healthy_s", round(time.monotonic() - t0, 2))
    cluster.wait_converged(4, timeout=30)
    log(request, "n4_up_everywhere_s", round(time.monotonic() - t0, 2))

    def new_layout():
        for nid, st in cluster.statuses().items():
            assert st, f"{nid}: no status"
            assert st["layout_version"] > v1, f"{nid}: layout_version {st['layout_version']}"
            mine = next(n for n in st["nodes"] if n["node_id"] == "n4")
            assert mine["partitions"] > 0, f"{nid} sees n4 with no partitions"
            assert all(len(p["replicas"]) == 3 for p in st["partitions"]), st["partitions"]
        return st

    st, _ = try_until(new_layout, timeout=30, interval=0.5)
    log(request, "new_layout_s", round(time.monotonic() - t0, 2))
    log(request, "layout_versions", f"{v1} -> {st['layout_version']}")
    n4_parts = [p["partition"] for p in st["partitions"] if "n4" in p["replicas"]]
    log(request, "n4_partitions", n4_parts)
    assert sum(n["partitions"] for n in st["nodes"]) == 3 * cluster.partitions
    # The replica moves complete: n4 hosts a group with a known leader for each of its
    # partitions.
    def n4_hosts_groups():
        s4 = n4.status()
        missing = [p["partition"] for p in s4["partitions"]
                   if "n4" in p["replicas"] and not p["leader"]]
        assert not missing, f"n4 has no leader for its partitions {missing}"
    try_until(n4_hosts_groups, timeout=60, interval=0.5)
    log(request, "n4_groups_live_s", round(time.monotonic() - t0, 2))

    # Chunk placement after the move (reported, not asserted): how many chunks of the
    # partitions n4 now holds are on n4's disk before anything is read through it.
    from e2e_util import chunk_files, expected_chunk_ids  # noqa: PLC0415

    replicas = {p["partition"]: p["replicas"] for p in n4.status()["partitions"]}
    owed = set()
    for data in objects.values():
        if len(data) > 4096:
            for cid in expected_chunk_ids(data, 1 << 20):
                if "n4" in replicas[int(cid[:16], 16) % cluster.partitions]:
                    owed.add(cid)
    time.sleep(2)
    log(request, "n4_chunks_before_reads", f"{len(owed & chunk_files(n4.storage_path))} of "
                                           f"{len(owed)} owed")

    # Old objects read through the new node; new writes through it are read everywhere.
    assert_objects(n4, bucket, objects)
    log(request, "n4_chunks_after_reads", f"{len(owed & chunk_files(n4.storage_path))} of "
                                          f"{len(owed)} owed")
    new = seed_objects([n4], bucket, "via-n4", sizes=(10, 1_500_000))
    for node in cluster.alive():
        assert_objects(node, bucket, new)
    objects.update(new)

    # n4 really carries its partitions: a bucket in a partition n4 now replicates; kill -9 one
    # of that partition's original replicas, so its quorum needs n4. Reads and writes through
    # the partition's surviving replicas (n4 included) go on and nothing is lost.
    leaders = cluster.wait_partition_leaders()
    p = next(q for q in n4_parts if replicas[q][0] != "n4")
    b2 = bucket_in([p], cluster.partitions, prefix="joinq")
    n4.client().create_bucket(Bucket=b2)
    objs2 = seed_objects(cluster.alive(), b2, "before-kill", sizes=(64, 1_500_000))
    victim = cluster.node(replicas[p][0])
    keepers = [cluster.node(r) for r in replicas[p] if r != victim.node_id]
    log(request, "after_join_kill", f"{victim.node_id} (partition {p} replicas {replicas[p]}, "
                                    f"leader {leaders.get(p)})")
    t_kill = time.monotonic()
    victim.kill()
    _, failover, _ = write_through_until_ok(keepers, b2, "after-kill", b"x" * 5000, t_kill,
                                            FAILOVER_LIMIT)
    objs2["after-kill"] = b"x" * 5000
    log(request, "after_join_failover_s", round(failover, 2))
    for node in keepers:
        try_until(lambda: assert_objects(node, b2, objs2), timeout=10, interval=0.5)
    log(request, "total_s", round(time.monotonic() - t0, 2))


def test_non_replica_node_routes_around_dead_replica(cluster, request):
    """With 4 nodes and RF 3 every partition has one node that is not its replica; requests
    through that node are forwarded. Killing the partition's first replica (in layout order)
    must not make the non-replica node fail requests the surviving replicas serve."""
    cluster.add_node(4, seed=cluster.node("n3").rpc_addr)
    cluster.wait_converged(4, timeout=30)

    def layout_with_n4():
        st = cluster.node("n4").status()
        assert st["layout_version"] >= 2 and any("n4" in p["replicas"]
                                                 for p in st["partitions"]), st["layout_version"]
        missing = [p["partition"] for p in st["partitions"] if "n4" in p["replicas"]
                   and not p["leader"]]
        assert not missing, missing
        return st

    st, _ = try_until(layout_with_n4, timeout=60, interval=0.5)
    replicas = {p["partition"]: p["replicas"] for p in st["partitions"]}
    # A partition whose layout-first replica is an original node (so its record is old).
    p = next(q for q, r in sorted(replicas.items()) if r[0] != "n4")
    outsider = next(n for n in ("n1", "n2", "n3", "n4") if n not in replicas[p])
    first = replicas[p][0]
    bucket = bucket_in([p], cluster.partitions, prefix="route")
    cluster.node("n1").client().create_bucket(Bucket=bucket)
    put(cluster.node(outsider), bucket, "k", b"before")
    assert get_bytes(cluster.node(outsider), bucket, "k") == b"before"
    log(request, "setup", f"partition {p} replicas {replicas[p]}; kill -9 {first}; "
                          f"requests through non-replica {outsider}")

    cluster.node(first).kill()
    t_kill = time.monotonic()
    keepers = [cluster.node(r) for r in replicas[p] if r != first]
    _, failover, _ = write_through_until_ok(keepers, bucket, "via-replica", b"r", t_kill,
                                            FAILOVER_LIMIT)
    log(request, "replicas_serve_after_s", round(failover, 2))
    out = cluster.node(outsider)
    errors = []

    def through_outsider():
        try:
            assert get_bytes(out, bucket, "k", connect_timeout=2, read_timeout=5) == b"before"
            put(out, bucket, "via-outsider", b"o", connect_timeout=2, read_timeout=5)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            errors.append(_err(e))
            raise

    try:
        try_until(through_outsider, timeout=20, interval=1)
    except Exception:  # noqa: BLE001
        lines = [l for l in out.log_text().splitlines() if "forwarding to" in l][-2:]
        pytest.fail(
            f"{outsider} (not a replica of partition {p}) still fails GET/PUT 20 s after "
            f"{first} was killed, while the surviving replicas {[k.node_id for k in keepers]} "
            f"serve them (first success {failover:.1f}s after the kill). Errors: "
            f"{errors[-3:]}; {outsider} log:\n" + "\n".join(lines), pytrace=False)
    log(request, "outsider_serves_after_s", round(time.monotonic() - t_kill, 2))


# ---------------------------------------------------------------------------------------------
# Linearizability
# ---------------------------------------------------------------------------------------------

LIN_DURATION = float(os.environ.get("CAIRN_LIN_SECONDS", "20"))
CLIENTS_PER_NODE = 4


def test_linearizable_single_key_history(cluster, request, tmp_path):
    checker = lincheck_bin()
    if checker is None:
        pytest.skip("cairn-lincheck not built (cargo build -p cairn-lincheck); "
                    "linearizability not checked")
    leaders = cluster.wait_partition_leaders()
    first_victim = max(cluster.nodes, key=lambda nid: list(leaders.values()).count(nid))
    bucket = bucket_on_partition(leaders, first_victim, cluster.partitions, prefix="lin")
    partition = bucket_partition(bucket, cluster.partitions)
    cluster.node("n1").client().create_bucket(Bucket=bucket)
    log(request, "bucket_partition", f"{partition} led by {first_victim}")

    rec = HistoryRecorder()
    stop = threading.Event()
    seed = int(os.environ.get("CAIRN_LIN_SEED", str(random.randrange(1 << 30))))
    log(request, "seed", seed)
    master = random.Random(seed)
    threads = []
    for node in cluster.alive():
        for _ in range(CLIENTS_PER_NODE):
            t = threading.Thread(target=_lin_worker,
                                 args=(rec, node, bucket, stop, random.Random(master.random())),
                                 daemon=True)
            threads.append(t)
    t_start = time.monotonic()
    for t in threads:
        t.start()

    faults = []

    def at(sec: float) -> None:
        time.sleep(max(0.0, t_start + sec - time.monotonic()))

    try:
        # Two rounds: kill -9 the current leader of the bucket's partition, restart it.
        for round_, (kill_at, restart_at) in enumerate(((0.2, 0.45), (0.6, 0.8))):
            at(LIN_DURATION * kill_at)
            lead = cluster.partition_leaders().get(partition) or first_victim
            victim = cluster.node(lead)
            victim.kill()
            faults.append(f"{time.monotonic() - t_start:.1f}s kill -9 {lead}")
            at(LIN_DURATION * restart_at)
            victim.start()
            faults.append(f"{time.monotonic() - t_start:.1f}s {lead} healthy again")
        at(LIN_DURATION)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    log(request, "faults", faults)
    ops = list(rec.ops)
    stats: dict[str, int] = {}
    for op in ops:
        kind = op["input"] if isinstance(op["input"], str) else "Put"
        out = op["output"] if isinstance(op["output"], str) else "Value"
        stats[f"{kind}:{out}"] = stats.get(f"{kind}:{out}", 0) + 1
    log(request, "ops", f"{len(ops)} {dict(sorted(stats.items()))}")
    history = tmp_path / "history.jsonl"
    with open(history, "w") as f:
        for op in ops:
            f.write(json.dumps(op) + "\n")
    keep = os.environ.get("CAIRN_LIN_HISTORY")
    if keep:
        import shutil  # noqa: PLC0415

        shutil.copy(history, keep)

    # Not vacuous: plenty of completed writes and reads that saw values.
    assert stats.get("Put:Ok", 0) >= 30, stats
    assert stats.get("Get:Value", 0) >= 30, stats
    assert any(isinstance(o["output"], dict) and o["output"]["Value"] for o in ops), \
        "no read ever returned a value"

    form = lincheck_form(checker, tmp_path)
    res = _lincheck(checker, ops, tmp_path / f"history.{form}.jsonl", form)
    log(request, "lincheck", f"exit {res.returncode} ({form} form): "
                             f"{res.stdout.strip()[:2000]} {res.stderr.strip()[-300:]}")
    assert res.returncode == 0, (
        f"cairn-lincheck exit {res.returncode} on {len(ops)} ops (history {history}):\n"
        f"{res.stdout}\n{res.stderr}"
    )


# ---------------------------------------------------------------------------------------------
# Larger clusters and log compaction
# ---------------------------------------------------------------------------------------------

def _own_cluster(tmp_path_factory, request, n: int, **env: str) -> "ReportedCluster":
    wd = tmp_path_factory.mktemp("cluster-" + request.node.name[:40])
    c = ReportedCluster(wd, env=env)
    c.start(n)
    return c


def _finish(c: "ReportedCluster") -> None:
    problems = c.teardown()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def test_five_nodes_form_one_cluster(tmp_path_factory, request):
    c = _own_cluster(tmp_path_factory, request, 5)
    try:
        statuses = c.statuses()
        ids = {s["cluster_id"] for s in statuses.values() if s}
        assert len(ids) == 1, statuses
        st = next(iter(s for s in statuses.values() if s))
        assert sorted(n["node_id"] for n in st["nodes"]) == [f"n{i}" for i in range(1, 6)]
        # Desired voters is 3: the other two nodes are learners of the system group.
        assert len(st["system_voters"]) == 3, st["system_voters"]
        for p in st["partitions"]:
            assert len(set(p["replicas"])) == 3, p
        # Every node holds some partitions (capacity-weighted over equal disks).
        holders = {r for p in st["partitions"] for r in p["replicas"]}
        assert holders == {f"n{i}" for i in range(1, 6)}, holders
        bucket = unique_name("five")
        c.node("n5").client().create_bucket(Bucket=bucket)
        objects = seed_objects(c.alive(), bucket, "five", sizes=(100, 1_500_000))
        for node in c.alive():
            reader = node.client()
            for key, data in objects.items():
                assert reader.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
        # A voter that dies is replaced by a healthy learner once gossip reports it down.
        victim = c.node(sorted(st["system_voters"])[0])
        victim.kill()
        t0 = time.monotonic()
        observer = next(n for n in c.alive() if n is not victim)
        while True:
            s = observer.try_status() or {}
            voters = s.get("system_voters") or []
            if len(voters) == 3 and victim.node_id not in voters:
                break
            assert time.monotonic() - t0 < 45, f"voters still {voters} after killing {victim.node_id}"
            time.sleep(0.5)
        log(request, "voter_replaced_s", round(time.monotonic() - t0, 2))
        # And the smaller cluster keeps serving.
        put(observer, bucket, "after-voter-loss", b"still here", read_timeout=30)
        assert get_bytes(observer, bucket, "after-voter-loss") == b"still here"
    finally:
        _finish(c)


def test_restarted_node_catches_up_from_snapshot(tmp_path_factory, request):
    """A node that was down while its partition's log was compacted past its position gets a
    snapshot from the leader (not log entries) and then serves the data."""
    c = _own_cluster(tmp_path_factory, request, 3, RAFT_SNAPSHOT_EVERY="100",
                     LOG="info,openraft=info,s3s=off")
    try:
        n1, n2, n3 = (c.node(f"n{i}") for i in (1, 2, 3))
        bucket = unique_name("snap")
        n1.client().create_bucket(Bucket=bucket)
        n3.kill()
        # Each PUT is one log entry in the bucket's partition (plus reference updates); the
        # leader keeps 500 entries after a snapshot, so 800 PUTs compact past n3's position.
        objects = {f"k{i:04d}": f"value-{i}".encode() for i in range(800)}
        t0 = time.monotonic()
        client = n1.client()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                          objects.items()))
        log(request, "puts_s", round(time.monotonic() - t0, 2))
        t0 = time.monotonic()
        n3.start()
        deadline = time.monotonic() + 60
        while "install_full_snapshot" not in n3.log_text():
            assert time.monotonic() < deadline, "n3 never installed a snapshot:\n" + n3.log_tail()
            time.sleep(0.5)
        log(request, "snapshot_install_s", round(time.monotonic() - t0, 2))
        # Without n1, the partition's majority is n2 + n3: everything must still be there.
        n1.kill()
        t0 = time.monotonic()
        reader = n3.client(read_timeout=30)
        for key, data in objects.items():
            assert reader.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key
        log(request, "reads_s", round(time.monotonic() - t0, 2))
    finally:
        _finish(c)
