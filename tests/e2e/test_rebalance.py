"""Rebalance on join (issue 13 item 4): 3 nodes RF 3 with multi-chunk objects, then nodes join.
The partitions the new layout moves form a plan; with `rebalance.max_moves` 1 never more than one
move is in flight; pause stops new moves from starting, resume lets the plan finish; a move is
done only once the new holders hold the chunks (bytes moved > 0); every object reads back
byte-for-byte through every node. Cancel drops the planned moves: their partitions stay where
they are, the layout is not recomputed behind the operator's back, and the cluster serves.

Each test starts its own cluster (they need different node counts on the same addresses)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

import cluster_util
from cluster_util import cairn_bin
from e2e_util import ACCESS_KEY, SECRET_KEY, admin_headers, rand_bytes, unique_name

# Ports of their own, so this module can run beside the other cluster suites.
PORT_SHIFT = 350
MiB = 1 << 20


@pytest.fixture
def make_cluster(tmp_path_factory):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = base, base + 1, base + 2
    made = []

    def make(n: int):
        c = ReportedCluster(tmp_path_factory.mktemp("rebalance-cluster"))
        made.append(c)
        return c.start(n)

    try:
        yield make
    finally:
        try:
            for c in made:
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


def rebalances(node) -> dict:
    r = requests.get(f"{node.admin_url}/admin/rebalances",
                     headers=admin_headers("GET", "/admin/rebalances"), timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(what: str, cond, cluster, timeout: float = 60, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        cluster.assert_no_crash()
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def write_objects(node) -> dict[str, bytes]:
    """Multi-chunk objects (1 MiB chunks) spread over partitions, plus a small inline one."""
    c = node.client()
    out = {}
    for i in range(5):
        b = unique_name(f"rb{i}")
        c.create_bucket(Bucket=b)
        data = rand_bytes(MiB + 300_000 * i if i else 2000, ("rebalance", b))
        c.put_object(Bucket=b, Key="k", Body=data)
        out[b] = data
    return out


def read_all(nodes, objects, timeout: float = 45):
    for node in nodes:
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
            assert got == data, (node.node_id, b)


def placed(node) -> set[str]:
    return {r for p in node.status()["partitions"] for r in p["replicas"]}


def test_join_moves_within_the_bound_pauses_resumes_and_copies_chunks(make_cluster):
    cluster = make_cluster(3)
    n1 = cluster.node("n1")
    objects = write_objects(n1)
    cli(n1, "config", "set", "rebalance.max_moves", "1", "-m", "e2e: one move at a time")
    # Paused before the join: the plan is made, and nothing starts.
    out = cli(n1, "rebalance", "pause")
    assert "paused" in out.stdout, out
    cluster.add_node(4)
    cluster.add_node(5)
    plan = wait_for("a plan with n4 and n5", lambda: (
        (p := rebalances(n1)["plan"])["planned"] > 0
        and any("n5" in m["to"] for m in p["partitions"]) and p), cluster)
    assert plan["state"] == "paused" and plan["max_moves"] == 1, plan
    t_end = time.monotonic() + 4
    while time.monotonic() < t_end:
        p = rebalances(n1)["plan"]
        assert p["moving"] == 0 and p["done"] == 0, p
        time.sleep(0.3)

    out = cli(n1, "rebalance", "resume")
    assert "running" in out.stdout or "done" in out.stdout, out
    # Watch the whole run: at most one move in flight, as the plan and as the leaders say.
    paused_once = False
    most = 0
    deadline = time.monotonic() + 150
    while True:
        r = rebalances(n1)
        p = r["plan"]
        # Leaders' reports come through gossip and may still show a move the plan already
        # counts as done: the plan's states are the truth.
        state = {m["partition"]: m["state"] for m in p["partitions"]}
        active = [m for m in r["moves"]
                  if m["phase"] != "planned" and state.get(m["partition"]) != "done"]
        most = max(most, p["moving"], len(active))
        assert p["moving"] <= 1 and len(active) <= 1, json.dumps(r, indent=1)
        if p["state"] == "done":
            break
        if not paused_once and p["done"] >= 1 and p["planned"] >= 1:
            # Pause mid-run: the move in flight finishes, no other one starts.
            paused_once = True
            cli(n1, "rebalance", "pause")
            wait_for("the move in flight to finish",
                     lambda: rebalances(n1)["plan"]["moving"] == 0, cluster)
            done = rebalances(n1)["plan"]["done"]
            t_end = time.monotonic() + 4
            while time.monotonic() < t_end:
                q = rebalances(n1)["plan"]
                assert q["moving"] == 0 and q["done"] == done and q["state"] == "paused", q
                time.sleep(0.3)
            cli(n1, "rebalance", "resume")
        assert time.monotonic() < deadline, r
        cluster.assert_no_crash()
        time.sleep(0.2)
    # Every poll saw at most one move in flight (asserted above). A move over this little data
    # can start and finish between two polls, so seeing one in flight is not required.
    assert most <= 1
    assert paused_once, "the plan finished before it could be paused mid-run"
    assert p["bytes_moved"] > 0 and p["bytes_total"] >= p["bytes_moved"], p
    assert p["planned"] == 0 and p["cancelled"] == 0 and p["eta_secs"] == 0, p
    assert all(m["state"] == "done" for m in p["partitions"]), p
    # The status through the CLI: the human table and --json agree.
    table = cli(n1, "rebalance", "status").stdout
    assert f"{p['done']} done" in table and "PARTITION" in table, table
    js = json.loads(cli(n1, "rebalance", "status", "--json").stdout)
    assert js["plan"]["state"] == "done" and js["in_progress"] == 0, js
    follow = cli(n1, "rebalance", "status", "--follow").stdout
    assert "done" in follow, follow
    # The new nodes hold replicas, and every object reads back through every node.
    assert {"n4", "n5"} <= placed(n1)
    read_all(cluster.alive(), objects)
    # Pause, resume and the bound are in the audit log with who changed them.
    audit = cli(n1, "audit").stdout
    assert "rebalance paused" in audit and "rebalance resumed" in audit, audit
    # The metrics say the same.
    metrics = requests.get(f"{n1.admin_url}/metrics",
                           headers=admin_headers("GET", "/metrics"), timeout=5).text
    assert f'cairn_rebalance_moves{{state="done"}} {p["done"]}' in metrics, metrics
    moved = sum(
        float(line.split()[-1])
        for node in cluster.alive()
        for line in requests.get(f"{node.admin_url}/metrics",
                                 headers=admin_headers("GET", "/metrics"), timeout=5).text
        .splitlines()
        if line.startswith("cairn_rebalance_bytes_moved_total")
    )
    assert moved > 0


def test_cancel_keeps_planned_partitions_in_place(make_cluster):
    cluster = make_cluster(3)
    n1 = cluster.node("n1")
    objects = write_objects(n1)
    cli(n1, "rebalance", "pause")
    cluster.add_node(4)
    plan = wait_for("a plan with n4", lambda: (
        (p := rebalances(n1)["plan"])["planned"] > 0 and p), cluster)
    planned = plan["planned"]
    assert "n4" in placed(n1)
    out = cli(n1, "rebalance", "cancel", "--json")
    after = json.loads(out.stdout)
    assert after["planned"] == 0 and after["cancelled"] == planned, after
    assert after["state"] == "paused" and after["moving"] == 0, after
    version = after["layout_version"]
    # The cancel's layout keeps every partition on its three voters: n4 holds nothing.
    wait_for("a layout without n4", lambda: "n4" not in placed(n1), cluster, timeout=15)
    cli(n1, "rebalance", "resume")
    # The controller does not plan the cancelled moves again while the nodes stay the same.
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end:
        r = rebalances(n1)
        assert r["layout_version"] == version and r["in_progress"] == 0, r
        assert "n4" not in placed(n1)
        time.sleep(0.5)
    health = requests.get(f"{n1.admin_url}/cluster/health",
                          headers=admin_headers("GET", "/cluster/health"), timeout=5).json()
    assert health["status"] == "healthy", health
    audit = cli(n1, "audit").stdout
    assert "rebalance cancelled" in audit, audit
    read_all(cluster.alive(), objects)
