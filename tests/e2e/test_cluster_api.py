"""The cluster API on a 3-node cluster whose nodes carry different labels (issue 12 items 2, 3
and the CLI of item 8): health, the node list, usage kept per bucket, metrics summed over
nodes, the dashboard reads, and the label-selector fan-out with per-node results, partial
failures included.

n1: zone a, disk=ssd, tier=hot · n2: zone a, disk=hdd · n3: zone b, disk=ssd (n4, zone b,
disk=hdd, joins near the end).

One cluster serves the whole module (tests run in file order; the last two add n4 and stop n3).
The per-node answers of `POST /cluster/exec` and the status column of `/cluster/nodes` come
from each node's management plane (`LocalNode`, issue 12 item 1): where a node answers
"unsupported" (a build without it), the checks that need real answers are skipped, the
transport, selection, deadlines and audit are still checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

from cluster_util import ADMIN_PORT, Cluster, ClusterNode, RPC_PORT, cairn_bin, node_ip
from e2e_util import ACCESS_KEY, SECRET_KEY, admin_headers, unique_name

LABELS = {
    1: {"NODE_ZONE": "a", "NODE_LABELS": "disk=ssd,tier=hot"},
    2: {"NODE_ZONE": "a", "NODE_LABELS": "disk=hdd"},
    3: {"NODE_ZONE": "b", "NODE_LABELS": "disk=ssd"},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; run `cargo build -p cairn` or set "
                    "CAIRN_BIN", pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("cluster-api"))
    seeds = ",".join(f"{node_ip(i)}:{RPC_PORT}" for i in LABELS)
    for i, env in LABELS.items():
        n = ClusterNode(c, i, {**c.env, **env, "CLUSTER_SEEDS": seeds})
        c.nodes[n.node_id] = n
    try:
        for n in c.nodes.values():
            n.spawn()
        for n in c.nodes.values():
            n.wait_healthy(90)
        c.wait_converged(3, timeout=90)
        yield c
    finally:
        problems = c.teardown()
        assert not problems, "\n".join(problems)


def get(node: ClusterNode, path: str, timeout: float = 15, **kw) -> requests.Response:
    return requests.get(node.admin_url + path, headers=admin_headers("GET", path), timeout=timeout,
                        **kw)


def post(node: ClusterNode, path: str, body: dict, headers: dict | None = None,
         timeout: float = 30) -> requests.Response:
    data = json.dumps(body).encode()
    h = headers if headers is not None else admin_headers("POST", path, data)
    return requests.post(node.admin_url + path, data=data,
                         headers={**h, "content-type": "application/json"}, timeout=timeout)


def exec_(node: ClusterNode, selector: str, action: dict, **extra) -> dict:
    r = post(node, "/cluster/exec", {"selector": selector, "action": action, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY, "NO_COLOR": "1"})
    p = subprocess.run([str(cairn_bin()), *args], env=env, capture_output=True, text=True,
                       timeout=60)
    if check:
        assert p.returncode == 0, f"cairn {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def has_local_node(cluster: Cluster) -> bool:
    """Whether the nodes run the management plane (`LocalNode`) that answers actions."""
    out = exec_(cluster.node("n1"), "node=n1", {"action": "status"})
    return out["results"][0]["ok"] or out["results"][0]["error"]["code"] != "unsupported"


def wait_for(pred, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def test_health_and_the_catalog_view_of_the_nodes(cluster):
    n2 = cluster.node("n2")
    # Read scope at least: no credentials, no answer.
    for path in ["/cluster/health", "/cluster/nodes", "/admin/summary", "/buckets"]:
        r = requests.get(n2.admin_url + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "MissingToken"

    def healthy():
        h = get(n2, "/cluster/health").json()
        return h if h["status"] == "healthy" else None

    h = wait_for(healthy, 30, "a healthy cluster")
    assert h["nodes"] == {"total": 3, "up": 3, "suspect": 0, "down": 0}
    assert h["partitions"]["total"] == cluster.partitions
    assert h["partitions"]["healthy"] == cluster.partitions
    assert h["system_leader"] in {"n1", "n2", "n3"} and h["problems"] == []

    nodes = {n["node_id"]: n for n in get(n2, "/admin/nodes").json()}
    assert set(nodes) == {"n1", "n2", "n3"}
    assert nodes["n1"]["zone"] == "a" and nodes["n1"]["labels"] == {"disk": "ssd", "tier": "hot"}
    assert nodes["n2"]["labels"] == {"disk": "hdd"} and nodes["n3"]["zone"] == "b"
    for n in nodes.values():
        assert n["health"] == "up" and n["state"] == "active"
        assert n["disk_capacity_bytes"] > 0 and n["partitions_held"] == cluster.partitions
        assert n["status"] is None  # the catalog view does not ask the nodes

    out = cli("cluster", "health", "--admin", cluster.node("n3").admin_url)
    assert "cluster is healthy" in out.stdout, out.stdout


def test_bucket_usage_is_kept_per_bucket_and_any_node_answers(cluster):
    s3 = cluster.node("n1").client()
    a, b = unique_name("usage-a"), unique_name("usage-b")
    s3.create_bucket(Bucket=a)
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=a, Key="small", Body=b"x" * 10)
    s3.put_object(Bucket=a, Key="chunked", Body=b"y" * 5000)  # above INLINE_THRESHOLD
    s3.put_object(Bucket=a, Key="gone", Body=b"z" * 100)
    s3.put_object(Bucket=a, Key="small", Body=b"x" * 30)  # overwrite: 10 -> 30 bytes
    s3.delete_object(Bucket=a, Key="gone")
    s3.put_object(Bucket=b, Key="k", Body=b"q" * 7)
    # Multipart: counted once, with the whole size.
    up = s3.create_multipart_upload(Bucket=b, Key="mp")
    part = s3.upload_part(Bucket=b, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                          Body=b"m" * 1000)
    s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": part["ETag"]}]})

    for node in cluster.nodes.values():
        info = get(node, f"/buckets/{a}").json()
        assert (info["objects"], info["bytes"]) == (2, 5030), (node.node_id, info)
    info = get(cluster.node("n3"), f"/buckets/{b}").json()
    assert (info["objects"], info["bytes"]) == (2, 1007), info
    assert info["owner"] is not None and 0 <= info["partition"] < cluster.partitions
    r = get(cluster.node("n2"), "/buckets/" + unique_name("nope"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "NoSuchBucket"

    listed = {x["name"]: x for x in get(cluster.node("n2"), "/buckets").json()}
    assert (listed[a]["objects"], listed[a]["bytes"]) == (2, 5030)

    summary = get(cluster.node("n3"), "/admin/summary").json()
    per_bucket = {x["name"]: x for x in summary["bytes_per_bucket"]}
    assert per_bucket[a]["bytes"] == 5030 and per_bucket[b]["bytes"] == 1007
    assert summary["buckets"] >= 2 and summary["objects"] >= 4 and summary["bytes"] >= 6037
    assert summary["nodes"]["total"] == 3 and summary["health"] in ("healthy", "degraded")
    assert summary["capacity"]["total_bytes"] >= summary["capacity"]["used_bytes"] > 0
    assert summary["rebalances_in_progress"] >= 0 and summary["repairs"] >= 0

    out = json.loads(cli("bucket", "usage", a, "--json", "--admin",
                         cluster.node("n2").admin_url).stdout)
    assert out == [{"bucket": a, "objects": 2, "bytes": 5030}]
    table = cli("bucket", "ls", "--admin", cluster.node("n1").admin_url).stdout
    assert a in table and b in table
    assert "5030" in cli("bucket", "info", a, "--admin", cluster.node("n1").admin_url).stdout


def test_metrics_are_read_from_every_node_and_summed(cluster):
    # Some S3 traffic on every node.
    for node in cluster.nodes.values():
        node.client().list_buckets()
    m = get(cluster.node("n1"), "/cluster/metrics").json()
    nodes = {n["node_id"]: n for n in m["nodes"]}
    assert set(nodes) == {"n1", "n2", "n3"}
    for n in nodes.values():
        assert n["reachable"], n
        assert n["s3_requests"] >= 1 and n["requests"] >= n["s3_requests"]
        assert n["storage_used_bytes"] > 0
        # Replication 3 on 3 nodes: every node holds every partition.
        assert n["objects_held"] == m["total"]["objects"]
    assert m["total"]["requests"] == sum(n["requests"] for n in nodes.values())
    assert m["total"]["nodes_reporting"] == 3 and m["total"]["objects"] >= 4


def test_rebalances_show_the_layout_and_no_moves_at_rest(cluster):
    r = get(cluster.node("n2"), "/admin/rebalances").json()
    assert r["layout_version"] >= 1
    wait_for(lambda: get(cluster.node("n2"), "/admin/rebalances").json()["in_progress"] == 0,
             30, "no replica moves at rest")


def test_exec_refuses_bad_selectors_and_low_scopes(cluster):
    n1 = cluster.node("n1")
    r = post(n1, "/cluster/exec", {"selector": "zone in (a,b", "action": {"action": "status"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidSelector", r.text
    r = post(n1, "/cluster/exec", {"selector": "*", "action": {"action": "reboot"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidArgument", r.text
    # A read token may look but not act.
    name = unique_name("reader")
    body = json.dumps({"name": name, "scope": "read"}).encode()
    t = requests.post(n1.admin_url + "/tokens", data=body,
                      headers={**admin_headers("POST", "/tokens", body),
                               "content-type": "application/json"}, timeout=10)
    assert t.status_code == 201, t.text
    bearer = {"authorization": f"Bearer {t.json()['token']}"}
    r = post(n1, "/cluster/exec", {"selector": "*", "action": {"action": "status"}},
             headers=bearer)
    assert r.status_code == 403 and r.json()["error"]["code"] == "InsufficientScope", r.text
    assert requests.get(n1.admin_url + "/cluster/health", headers=bearer, timeout=10).ok
    # Nothing matches: an empty answer, and the CLI says so.
    out = exec_(n1, "disk=tape", {"action": "status"})
    assert (out["matched"], out["results"]) == (0, [])
    p = cli("node", "exec", "--selector", "disk=tape", "--admin", n1.admin_url, "status",
            check=False)
    assert p.returncode == 1 and "no node matches" in p.stderr, p.stderr


def test_exec_reaches_exactly_the_nodes_the_selector_matches(cluster):
    n2 = cluster.node("n2")
    cases = {
        "zone=a,disk!=hdd": ["n1"],
        "zone in (a,b),disk=ssd": ["n1", "n3"],
        "zone=a": ["n1", "n2"],
        "!tier": ["n2", "n3"],
        "node in (n2,n3),disk=ssd": ["n3"],
        "*": ["n1", "n2", "n3"],
    }
    for sel, want in cases.items():
        out = exec_(n2, sel, {"action": "status"}, deadline_ms=3000)
        assert [r["node_id"] for r in out["results"]] == want, (sel, out)
        assert out["matched"] == len(want) and out["succeeded"] + out["failed"] == len(want)
    if not has_local_node(cluster):
        pytest.skip("nodes answer `unsupported`: per-node answers need LocalNode (issue 12 "
                    "item 1); selection checked")
    out = exec_(n2, "zone in (a,b),disk=ssd", {"action": "status"})
    assert out["failed"] == 0, out
    for r in out["results"]:
        assert r["result"]["node_id"] == r["node_id"]
        assert r["result"]["labels"]["disk"] == "ssd"
    # /cluster/nodes carries each node's own status.
    nodes = {n["node_id"]: n for n in get(n2, "/cluster/nodes").json()}
    for i in LABELS:
        n = nodes[f"n{i}"]
        assert n["status_error"] is None and n["status"]["node_id"] == f"n{i}", n
        assert n["version"] and n["admin_addr"].endswith(f":{ADMIN_PORT}"), n
        assert n["partitions_held"] == cluster.partitions


def test_log_level_fan_out_is_audited_with_actor_and_outcome(cluster):
    n3 = cluster.node("n3")
    before = get(n3, "/cluster/audit?max=1000").json()
    after_seq = before[-1]["seq"] if before else 0
    out = exec_(n3, "zone=a", {"action": "log-level", "level": "info,cairn=debug"})
    assert [r["node_id"] for r in out["results"]] == ["n1", "n2"]

    def audited():
        entries = get(n3, f"/cluster/audit?after={after_seq}&max=1000").json()
        return [e for e in entries if e["what"].startswith("node exec log-level")]

    entries = wait_for(audited, 15, "an audit entry for the exec")
    e = entries[-1]
    assert e["actor"] == f"root key {ACCESS_KEY}", e
    assert "[n1,n2]" in e["what"] and "selector zone in (a)" in e["what"], e
    if has_local_node(cluster):
        assert out["failed"] == 0, out
        assert "n1 ok" in e["what"] and "n2 ok" in e["what"], e
        # Put the default filter back.
        exec_(n3, "zone=a", {"action": "log-level", "level": "info"})


def test_cli_tables(cluster):
    admin = cluster.node("n1").admin_url
    table = cli("cluster", "nodes", "--admin", admin).stdout
    for i in LABELS:
        assert f"n{i}" in table
    assert "disk=ssd,tier=hot" in table and "disk=hdd" in table
    data = json.loads(cli("cluster", "nodes", "--json", "--admin", admin).stdout)
    assert sorted(n["node_id"] for n in data) == ["n1", "n2", "n3"]
    p = cli("node", "exec", "--selector", "zone=b", "--admin", admin, "--json", "status",
            check=False)
    out = json.loads(p.stdout)
    assert [r["node_id"] for r in out["results"]] == ["n3"]
    assert p.returncode == (0 if out["failed"] == 0 else 1)


def test_a_joining_node_gets_replica_moves_that_finish(cluster):
    """Adds n4 (zone b, disk=hdd): the layout changes, partition leaders move replicas (shown
    by /admin/rebalances while they run) and the moves finish."""
    n1 = cluster.node("n1")
    before = get(n1, "/admin/rebalances").json()["layout_version"]
    cluster.add_node(4, NODE_ZONE="b", NODE_LABELS="disk=hdd")
    seen_moves = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = get(n1, "/admin/rebalances").json()
        seen_moves += r["moves"]
        if r["layout_version"] > before and r["in_progress"] == 0:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"moves did not finish: {r}")
    print(f"[rebalances] layout v{before} -> v{r['layout_version']}, "
          f"{len(seen_moves)} move snapshots seen")
    for m in seen_moves:
        assert m["phase"] in ("planned", "pending", "catching_up", "changing_voters",
                              "copying_chunks") and m["to"], m
        assert "n4" in m["to"] or "n4" in m["from"], m
    cluster.wait_converged(4, timeout=60)
    out = exec_(n1, "zone=b,disk=hdd", {"action": "status"})
    assert [r["node_id"] for r in out["results"]] == ["n4"]


def test_an_unreachable_node_is_reported_and_does_not_hide_the_others(cluster):
    """Runs last: stops n3."""
    n1, n3 = cluster.node("n1"), cluster.node("n3")
    n3.stop()
    started = time.monotonic()
    out = exec_(n1, "*", {"action": "status"}, deadline_ms=1500)
    assert time.monotonic() - started < 10
    by_node = {r["node_id"]: r for r in out["results"]}
    assert set(by_node) == {"n1", "n2", "n3", "n4"}
    assert not by_node["n3"]["ok"]
    assert by_node["n3"]["error"]["code"] in ("unreachable", "timeout"), by_node["n3"]
    assert out["failed"] >= 1
    nodes = {n["node_id"]: n for n in get(n1, "/cluster/nodes?deadline_ms=1500").json()}
    assert nodes["n3"]["status"] is None
    assert nodes["n3"]["status_error"]["code"] in ("unreachable", "timeout"), nodes["n3"]
    m = {n["node_id"]: n for n in get(n1, "/cluster/metrics?deadline_ms=1500").json()["nodes"]}
    assert m["n1"]["reachable"] and m["n2"]["reachable"] and not m["n3"]["reachable"]
    h = wait_for(lambda: (lambda h: h if h["nodes"]["up"] == 3 else None)(
        get(n1, "/cluster/health").json()), 30, "n3 seen down")
    assert h["status"] == "degraded" and any("n3" in p for p in h["problems"]), h
    # The CLI shows the node as unreachable rather than failing.
    table = cli("cluster", "nodes", "--admin", n1.admin_url).stdout
    line = next(ln for ln in table.splitlines() if ln.startswith("n3"))
    assert "unreachable" in line or "timeout" in line, table
