"""The per-node management plane (issue 12 item 1): /status, /ready, /logs (filters),
/logs/stream (SSE), PUT /log-level, POST /shutdown with Raft leadership hand-off, the
`cairn node` / `cairn logs` CLI, and the log format settings (LOG_FORMAT=json, request ids).

One 3-node cluster (zones a/b/c, different labels) serves the module; the shutdown test runs
last and stops one node. Single-node servers cover the disk reserve and JSON logs."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest
import requests

import cluster_util
import conftest
from cluster_util import Cluster, cairn_bin, node_ip
from e2e_util import admin_headers, rand_bytes, sha256_hex, sign_v4, unique_name

# Away from the other cluster modules' ports (test_cluster: +0, test_files: +30).
PORT_SHIFT = 120

LABELS = {
    "n1": ("a", "disk=ssd,rack=r1"),
    "n2": ("b", "disk=hdd,rack=r2"),
    "n3": ("c", "disk=ssd,rack=r3"),
}


def make_token(url: str, name: str, scope: str) -> str:
    body = json.dumps({"name": name, "scope": scope}).encode()
    r = requests.post(f"{url}/tokens", data=body, timeout=10,
                      headers={**admin_headers("POST", "/tokens", body),
                               "content-type": "application/json"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = \
        base, base + 1, base + 2
    c = Cluster(tmp_path_factory.mktemp("node-admin"))
    seeds = ",".join(f"{node_ip(i)}:{cluster_util.RPC_PORT}" for i in (1, 2, 3))
    try:
        for i in (1, 2, 3):
            zone, labels = LABELS[f"n{i}"]
            node = cluster_util.ClusterNode(c, i, {"CLUSTER_SEEDS": seeds, "NODE_ZONE": zone,
                                                   "NODE_LABELS": labels})
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


@pytest.fixture(scope="module")
def tokens(cluster):
    url = cluster.nodes["n1"].admin_url
    t = {"operator": make_token(url, "e2e-op", "operator"),
         "read": make_token(url, "e2e-read", "read")}
    # Tokens are checked against each node's replica of the system group.
    for n in cluster.nodes.values():
        wait_for(lambda: requests.get(f"{n.admin_url}/status", headers=bearer(t["read"]),
                                      timeout=5).status_code == 200, 10, f"token on {n.node_id}")
    return t


def get(node, path: str, token: str, **kw) -> requests.Response:
    return requests.get(f"{node.admin_url}{path}", headers=bearer(token), timeout=10, **kw)


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen within {timeout}s (last: {last!r})")


def audit_lines(node) -> list[dict]:
    r = requests.get(f"{node.admin_url}/cluster/audit?max=1000", timeout=10,
                     headers=admin_headers("GET", "/cluster/audit?max=1000"))
    r.raise_for_status()
    return r.json()


def cli(node, token: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_ADMIN": node.admin_url, "CAIRN_TOKEN": token})
    return subprocess.run([str(cairn_bin()), *args], env=env, capture_output=True,
                          timeout=timeout, text=True)


# ---------------------------------------------------------------------------------------------


def test_status_reports_the_node(cluster, tokens):
    led = 0
    for nid, node in cluster.nodes.items():
        r = get(node, "/status", tokens["read"])
        assert r.status_code == 200, r.text
        s = r.json()
        zone, labels = LABELS[nid]
        assert s["node_id"] == nid
        assert s["version"]
        assert s["uptime_secs"] >= 0
        assert s["zone"] == zone
        assert s["labels"] == dict(kv.split("=") for kv in labels.split(","))
        assert {"s3", "files", "system-voter"} <= set(s["roles"]), s["roles"]
        assert s["rpc_addr"] == node.rpc_addr
        assert s["admin_addr"] == f"{node.ip}:{cluster_util.ADMIN_PORT}"
        # RF 3 on 3 nodes: every node holds every partition.
        assert s["partitions"]["held"] == cluster.partitions
        led += s["partitions"]["led"]
        assert 0 < s["disk"]["free_bytes"] <= s["disk"]["total_bytes"]
        assert s["disk"]["path"] == str(node.storage_path)
        assert s["ready"] is True and s["not_ready_reasons"] == []
        assert s["log_level"] == cluster_util.LOG_FILTER
    assert led == cluster.partitions, "every partition is led by exactly one node"
    r = requests.get(f"{cluster.nodes['n1'].admin_url}/status", timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "MissingToken"


def test_ready_is_open_and_explains_itself(cluster):
    for node in cluster.nodes.values():
        r = requests.get(f"{node.admin_url}/ready", timeout=5)
        assert r.status_code == 200, r.text
        assert r.json() == {"node_id": node.node_id, "ready": True, "reasons": []}


def test_ready_fails_below_the_disk_reserve(server_factory):
    srv = server_factory("reserve", start=False, DISK_RESERVE_BYTES=str(1 << 60))
    srv.wait_ready = lambda timeout: None  # it never becomes ready: wait for /health instead
    srv.start()

    def healthy():
        assert srv.proc.poll() is None, srv.log_tail()
        try:
            return requests.get(f"{srv.admin_url}/health", timeout=2).ok
        except requests.RequestException:
            return False

    wait_for(healthy, 30, "/health")
    r = requests.get(f"{srv.admin_url}/ready", timeout=5)
    assert r.status_code == 503
    assert any("DISK_RESERVE_BYTES" in x for x in r.json()["reasons"]), r.json()
    # Plain lines written to a file (not a terminal) carry no colour codes.
    assert "\x1b[" not in srv.log_path.read_text(errors="replace")


def test_logs_filter_by_level_and_target(cluster, tokens):
    n1 = cluster.nodes["n1"]
    get(n1, "/status", tokens["read"])  # logs a "management API call" line (cairn::admin_auth)
    r = get(n1, "/logs", tokens["read"], params={"target": "cairn::admin_auth", "limit": 5})
    assert r.status_code == 200, r.text
    lines = r.json()
    assert 0 < len(lines) <= 5
    assert all(l["target"].startswith("cairn::admin_auth") for l in lines)
    call = [l for l in lines if l["message"] == "management API call"][-1]
    assert call["fields"]["actor"] == "token e2e-read"
    assert len(call["fields"]["request_id"]) == 16, "admin requests carry a request id"
    seqs = [l["seq"] for l in lines]
    assert seqs == sorted(seqs)

    warn = get(n1, "/logs", tokens["read"], params={"level": "warn", "limit": 1000}).json()
    assert all(l["level"] in ("WARN", "ERROR") for l in warn)
    info = get(n1, "/logs", tokens["read"], params={"level": "info", "limit": 1000}).json()
    assert len(info) >= len(warn) and any(l["level"] == "INFO" for l in info)

    bad = get(n1, "/logs", tokens["read"], params={"level": "loud"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidArgument"


def test_log_stream_delivers_live_lines(cluster, tokens):
    n2 = cluster.nodes["n2"]
    got: queue.Queue = queue.Queue()

    def reader():
        with requests.get(f"{n2.admin_url}/logs/stream", headers=bearer(tokens["read"]),
                          params={"target": "cairn::admin_auth"}, stream=True,
                          timeout=(5, 20)) as r:
            got.put(("status", r.status_code))
            event = None
            for raw in r.iter_lines(chunk_size=None, decode_unicode=True):
                if raw.startswith("event:"):
                    event = raw.split(":", 1)[1].strip()
                elif raw.startswith("data:") and event == "line":
                    line = json.loads(raw.split(":", 1)[1])
                    got.put(("line", line))
                    if line["fields"].get("path") == "/status":
                        return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert got.get(timeout=10) == ("status", 200)
    time.sleep(0.3)  # the stream is subscribed once its headers are out
    get(n2, "/status", tokens["read"])  # logs a live line (only live lines are streamed)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kind, line = got.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line["target"].startswith("cairn::admin_auth"), line
        if line["fields"].get("path") == "/status":
            break
    else:
        raise AssertionError("the live line never arrived")
    t.join(timeout=5)


def test_log_level_change_takes_effect_and_is_audited(cluster, tokens):
    n3 = cluster.nodes["n3"]
    s3 = n3.client()

    def s3_debug_lines():
        return get(n3, "/logs", tokens["read"],
                   params={"target": "cairn_s3", "level": "debug", "limit": 1000}).json()

    s3.list_buckets()
    assert not [l for l in s3_debug_lines() if l["level"] == "DEBUG"], "debug off at first"

    body = {"level": "info,openraft=error,s3s=off,cairn_s3=debug"}
    r = requests.put(f"{n3.admin_url}/log-level", json=body, headers=bearer(tokens["read"]),
                     timeout=10)
    assert r.status_code == 403, "a read token may not change the log level"
    r = requests.put(f"{n3.admin_url}/log-level", json=body,
                     headers=bearer(tokens["operator"]), timeout=10)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["node_id"] == "n3" and a["previous"] == cluster_util.LOG_FILTER
    assert a["level"] == body["level"] and a["audited"] is True
    assert get(n3, "/status", tokens["read"]).json()["log_level"] == body["level"]

    s3.list_buckets()
    debug = wait_for(lambda: [l for l in s3_debug_lines() if l["level"] == "DEBUG"], 5,
                     "an S3 debug line")
    # Every line logged while serving an S3 request names it.
    assert all(len(l["fields"].get("request_id", "")) > 0 for l in debug), debug

    bad = requests.put(f"{n3.admin_url}/log-level", json={"level": "info,cairn=loud"},
                       headers=bearer(tokens["operator"]), timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidArgument"

    r = requests.put(f"{n3.admin_url}/log-level", json={"level": cluster_util.LOG_FILTER},
                     headers=bearer(tokens["operator"]), timeout=10)
    assert r.status_code == 200
    audit = audit_lines(n3)
    assert any(e["what"].startswith("node n3: log level set to info,openraft=error,s3s=off,"
                                    "cairn_s3=debug")
               and e["actor"] == "token e2e-op" for e in audit), audit[-5:]


def test_cli_node_and_logs(cluster, tokens, tmp_path):
    n1 = cluster.nodes["n1"]
    out = cli(n1, tokens["read"], "node", "status")
    assert out.returncode == 0, out.stderr
    assert "node n1" in out.stdout and "zone a" in out.stdout and "ready" in out.stdout
    js = cli(n1, tokens["read"], "node", "status", "--json")
    assert json.loads(js.stdout)["node_id"] == "n1"

    logs = cli(n1, tokens["read"], "logs", "--target", "cairn::admin_auth", "--limit", "3")
    assert logs.returncode == 0, logs.stderr
    assert 0 < len(logs.stdout.splitlines()) <= 3
    assert "management API call" in logs.stdout and "request_id=" in logs.stdout

    denied = cli(n1, tokens["read"], "node", "log-level", "debug")
    assert denied.returncode == 1 and "403" in denied.stderr and "scope" in denied.stderr
    missing = subprocess.run([str(cairn_bin()), "node", "status", "--admin", n1.admin_url],
                             capture_output=True, text=True, timeout=30,
                             env={k: v for k, v in os.environ.items()
                                  if not k.startswith("CAIRN_") and k not in
                                  ("ACCESS_KEY", "SECRET_KEY", "STORAGE_PATH")},
                             cwd=str(tmp_path))
    assert missing.returncode == 1 and "CAIRN_TOKEN" in missing.stderr, missing.stderr

    # --follow prints lines as they are logged.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({"CAIRN_ADMIN": n1.admin_url, "CAIRN_TOKEN": tokens["read"]})
    p = subprocess.Popen([str(cairn_bin()), "logs", "--follow", "--limit", "0",
                          "--target", "cairn::admin_auth"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()
        time.sleep(1.0)
        get(n1, "/status", tokens["read"])
        deadline = time.monotonic() + 10
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if "path=/status" in line:
                break
    finally:
        p.kill()
        p.wait(timeout=10)


def test_json_logs_carry_request_ids(server_factory):
    srv = server_factory("jsonlog", LOG_FORMAT="json", LOG="info,s3s=off,cairn_s3=debug")
    srv.client().list_buckets()
    deadline = time.monotonic() + 5
    while True:
        text = srv.log_path.read_text(errors="replace")
        objs = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
        reqs = [o for o in objs if o.get("target") == "cairn_s3::serve"
                and o.get("message") == "request"]
        if reqs or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert objs and all({"time", "level", "target", "message"} <= o.keys() for o in objs)
    assert reqs, "no S3 request line"
    assert reqs[-1]["request_id"] and reqs[-1]["method"] == "GET"
    assert "\x1b[" not in text, "no colour codes in a log written to a file"


def test_workers_are_listed_and_paused_by_operators(cluster, tokens):
    n1 = cluster.nodes["n1"]
    names = {w["name"]: w for w in get(n1, "/status", tokens["read"]).json()["workers"]}
    for w in ("controller", "ref-sync", "gc", "chunk-sync", "upload-reaper"):
        assert w in names, f"{w} missing from /status workers: {sorted(names)}"
        assert names[w]["state"] != "done" and names[w]["errors"] == 0, names[w]
    assert {w["name"] for w in get(n1, "/workers", tokens["read"]).json()} == set(names)

    r = requests.post(f"{n1.admin_url}/workers/gc/pause", headers=bearer(tokens["read"]),
                      timeout=10)
    assert r.status_code == 403, "a read token may not pause a worker"
    r = requests.post(f"{n1.admin_url}/workers/gc/pause", headers=bearer(tokens["operator"]),
                      timeout=10)
    assert r.status_code == 200 and r.json()["state"] == "paused", r.text
    listed = cli(n1, tokens["read"], "node", "worker", "ls")
    assert listed.returncode == 0, listed.stderr
    gc_line = next(line for line in listed.stdout.splitlines() if line.startswith("gc "))
    assert "paused" in gc_line, listed.stdout
    resumed = cli(n1, tokens["operator"], "node", "worker", "resume", "gc")
    assert resumed.returncode == 0 and "paused" not in resumed.stdout, resumed
    r = requests.post(f"{n1.admin_url}/workers/nope/pause", headers=bearer(tokens["operator"]),
                      timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NoSuchWorker", r.text
    r = requests.post(f"{n1.admin_url}/workers/gc/explode", headers=bearer(tokens["operator"]),
                      timeout=10)
    assert r.status_code == 400, r.text
    audit = audit_lines(n1)
    assert any(e["what"] == "node n1: worker gc: pause" and e["actor"] == "token e2e-op"
               for e in audit), audit[-5:]
    status = cli(n1, tokens["read"], "cluster", "status")
    assert status.returncode == 0, status.stderr
    assert "workers on n1:" in status.stdout and "chunk-sync" in status.stdout, status.stdout


def test_shutdown_hands_off_leadership_and_exits_zero(cluster, tokens):
    """Runs last: stops the node leading the most groups."""
    statuses = {nid: get(n, "/status", tokens["read"]).json()
                for nid, n in cluster.nodes.items()}
    victim_id = max(statuses, key=lambda k: (statuses[k]["partitions"]["system_leader"],
                                             statuses[k]["partitions"]["led"]))
    victim = cluster.nodes[victim_id]
    others = [n for n in cluster.nodes.values() if n is not victim]
    led_before = statuses[victim_id]["partitions"]["led"]
    assert led_before > 0 or statuses[victim_id]["partitions"]["system_leader"]

    bucket = unique_name("sd")
    others[0].client().create_bucket(Bucket=bucket)
    others[0].client().put_object(Bucket=bucket, Key="before", Body=b"x" * 10_000)

    # An upload in flight on the victim when the shutdown comes: half of its body now, the
    # rest after the node stopped accepting.
    data = rand_bytes(2_000_000, "in-flight")
    host = f"{victim.ip}:{cluster_util.API_PORT}"
    path = f"/{bucket}/in-flight"
    signed, _ = sign_v4("PUT", host, path, [], {"content-length": str(len(data))},
                        sha256_hex(data))
    conn = http.client.HTTPConnection(victim.ip, cluster_util.API_PORT, timeout=30)
    conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
    for k, v in signed.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(data[:len(data) // 2])

    r = requests.post(f"{victim.admin_url}/shutdown", headers=bearer(tokens["read"]), timeout=10)
    assert r.status_code == 403
    t0 = time.monotonic()
    r = requests.post(f"{victim.admin_url}/shutdown", headers=bearer(tokens["operator"]),
                      timeout=10)
    assert r.status_code == 202, r.text
    assert r.json()["shutting_down"] is True and r.json()["node_id"] == victim_id
    ready = requests.get(f"{victim.admin_url}/ready", timeout=5)
    assert ready.status_code == 503 and "shutting down" in ready.json()["reasons"][0]
    time.sleep(0.3)
    with pytest.raises(requests.ConnectionError):
        requests.get(victim.endpoint, timeout=3)  # the S3 port no longer accepts
    conn.send(data[len(data) // 2:])
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    code = victim.wait_exit(30)
    took = time.monotonic() - t0
    assert code == 0, f"exit code {code}\n{victim.log_tail(40)}"
    log = victim.log_text()
    assert "handed off Raft leadership" in log, victim.log_tail(40)
    assert "stopped" in log
    print(f"[node-admin] {victim_id} led {led_before} partitions; exited in {took:.1f}s")

    # Leadership moved to the others, and they keep serving.
    def moved():
        for n in others:
            st = n.try_status()
            if not st or st["system_leader"] in (None, victim_id):
                return False
            if any(p["leader"] in (None, victim_id) for p in st["partitions"]):
                return False
        return True

    wait_for(moved, 10, "every group led by a remaining node")
    c = others[1].client()
    assert c.get_object(Bucket=bucket, Key="before")["Body"].read() == b"x" * 10_000
    assert c.get_object(Bucket=bucket, Key="in-flight")["Body"].read() == data
    c.put_object(Bucket=bucket, Key="after", Body=b"y" * 10_000)
    assert others[0].client().get_object(Bucket=bucket, Key="after")["Body"].read() \
        == b"y" * 10_000
    audit = audit_lines(others[0])
    assert any(e["what"] == f"node {victim_id}: shutdown requested"
               and e["actor"] == "token e2e-op" for e in audit), audit[-5:]
