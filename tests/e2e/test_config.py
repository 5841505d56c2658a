"""The replicated cluster configuration on a 3-node cluster: `cairn config set` changes a setting
cluster-wide and says which nodes applied it live (every node logs and gossips the version it
applied), `cairn config history` shows who changed what and why, `cairn config rollback N`
restores a version as a new one, invalid changes are refused with the setting named and
nothing changed, settings read at start are reported as waiting for a restart, and `cairn
audit --since` shows the changes with their actor."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import requests

import cluster_util
from cluster_util import cairn_bin
from e2e_util import ACCESS_KEY, SECRET_KEY

# Ports of their own, so this module can run beside the other cluster suites.
PORT_SHIFT = 170


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    saved = (cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT)
    base = cluster_util.PORT_BASE + PORT_SHIFT
    cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = base, base + 1, base + 2
    c = ReportedCluster(tmp_path_factory.mktemp("config-cluster"))
    try:
        c.start(3)
        yield c
    finally:
        try:
            _finish(c)
        finally:
            cluster_util.API_PORT, cluster_util.RPC_PORT, cluster_util.ADMIN_PORT = saved


def cli(node, *args: str, token: str | None = None, root: bool = False,
        check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACCESS_KEY", "SECRET_KEY", "CAIRN_TOKEN", "STORAGE_PATH")}
    env["CAIRN_ADMIN"] = node.admin_url
    if root:
        env.update({"ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY})
    if token:
        env["CAIRN_TOKEN"] = token
    out = subprocess.run([str(cairn_bin()), *args], capture_output=True, text=True, timeout=60,
                         env=env, cwd="/")
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


@pytest.fixture(scope="module")
def tokens(cluster):
    n1 = cluster.node("n1")
    ops = cli(n1, "token", "create", "--name", "cfg-ops", "--scope", "operator",
              root=True).stdout.strip()
    reader = cli(n1, "token", "create", "--name", "cfg-reader", "--scope", "read",
                 root=True).stdout.strip()
    # Tokens are checked against each node's replica of the system group: wait until every
    # node has them.
    deadline = time.time() + 20
    for n in cluster.nodes.values():
        while api(n, "GET", "/cluster/config", reader).status_code == 401 or \
                api(n, "GET", "/cluster/config", ops).status_code == 401:
            assert time.time() < deadline, f"tokens never reached {n.node_id}"
            time.sleep(0.2)
    return {"ops": ops, "read": reader}


def api(node, method: str, path: str, token: str | None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, node.admin_url + path, headers=headers, timeout=15, **kw)


def config(node, token: str) -> dict:
    r = api(node, "GET", "/cluster/config", token)
    assert r.status_code == 200, r.text
    return r.json()


def setting(doc: dict, key: str):
    return next(s for s in doc["settings"] if s["key"] == key)["value"]


def wait_all_applied(cluster, token: str, version: int, timeout: float = 15) -> dict:
    """Every node reports (through any node's answer) that it applied `version`."""
    deadline = time.time() + timeout
    while True:
        docs = {n.node_id: config(n, token) for n in cluster.nodes.values()}
        ok = all(
            sorted(x["node_id"] for x in d["nodes"] if (x["applied_version"] or 0) >= version)
            == ["n1", "n2", "n3"]
            for d in docs.values()
        )
        if ok:
            return docs
        assert time.time() < deadline, json.dumps(docs, indent=1)
        time.sleep(0.3)


def test_a_live_setting_applies_on_every_node_and_is_in_the_history(cluster, tokens):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    before = config(n2, tokens["read"])
    assert {s["key"] for s in before["settings"]} >= {
        "partitions", "replication.factor", "replication.voters",
        "replication.write_consistency", "placement.require", "gc.grace_secs",
    }
    assert setting(before, "partitions") == 8
    assert setting(before, "replication.factor") == 3

    out = cli(n1, "config", "set", "replication.write_consistency", "ALL",
              "--message", "every replica before ack", "--json", token=tokens["ops"])
    answer = json.loads(out.stdout)
    version = answer["version"]
    assert version == before["version"] + 1
    assert answer["diff"] == [{"key": "replication.write_consistency", "from": None,
                               "to": "ALL", "apply": "live"}]
    assert sorted(answer["applied"]) == ["n1", "n2", "n3"], answer
    assert answer["pending"] == [] and answer["restart_required"] == []

    # Visible on every node: each answers with the new value, reports that all applied it,
    # and logged that it applied it.
    docs = wait_all_applied(cluster, tokens["read"], version)
    for d in docs.values():
        assert setting(d, "replication.write_consistency") == "ALL"
    for n in (n1, n2, n3):
        log = re.sub(r"\x1b\[[0-9;]*m", "", n.log_text()).replace('"', "")
        assert f"version={version} write_consistency=ALL" in log, n.log_tail()
    # Writes still succeed (all three replicas are up).
    s3 = n3.client()
    s3.create_bucket(Bucket="cfg-live")
    s3.put_object(Bucket="cfg-live", Key="k", Body=b"x" * (2 << 20))

    human = cli(n2, "config", "history", token=tokens["read"]).stdout
    assert f"v{version}" in human and "token cfg-ops: every replica before ack" in human, human
    assert "replication.write_consistency: unset -> ALL (live)" in human, human
    hist = json.loads(cli(n3, "config", "history", "--json", token=tokens["read"]).stdout)
    assert hist[0]["version"] == 1 and hist[0]["actor"] is None
    last = hist[-1]
    assert (last["version"], last["actor"], last["message"]) == \
        (version, "token cfg-ops", "every replica before ack")

    # Human output of set names the nodes that applied it.
    out = cli(n3, "config", "set", "replication.write_consistency", "one",
              token=tokens["ops"]).stdout
    assert "applied on: n1, n2, n3" in out, out
    assert cli(n1, "config", "get", "replication.write_consistency",
               token=tokens["read"]).stdout.strip() == "ONE"


def test_rollback_restores_a_version_as_a_new_one(cluster, tokens):
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    start = config(n1, tokens["read"])
    r = api(n1, "PATCH", "/cluster/config", tokens["ops"], json={
        "settings": {"placement.avoid": ["disk=hdd"], "replication.write_consistency": "QUORUM"},
        "message": "avoid hdd",
    })
    assert r.status_code == 200, r.text
    changed = r.json()["version"]
    assert setting(config(n2, tokens["read"]), "placement.avoid") == ["disk=hdd"]

    out = json.loads(cli(n2, "config", "rollback", str(start["version"]), "--json",
                         token=tokens["ops"]).stdout)
    assert out["version"] == changed + 1
    assert {d["key"] for d in out["diff"]} == {"placement.avoid", "replication.write_consistency"}
    doc = wait_all_applied(cluster, tokens["read"], out["version"])["n1"]
    assert setting(doc, "placement.avoid") is None
    assert setting(doc, "replication.write_consistency") == \
        setting(start, "replication.write_consistency")
    hist = json.loads(cli(n1, "config", "history", "--json", token=tokens["read"]).stdout)
    assert hist[-1]["rollback_of"] == start["version"]
    assert hist[-1]["message"] == f"rollback to v{start['version']}"
    # Rolling back to what is already current changes nothing: refused.
    r = api(n1, "POST", f"/cluster/config/rollback/{start['version']}", tokens["ops"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "NoChange", r.text
    r = api(n1, "POST", "/cluster/config/rollback/9999", tokens["ops"])
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("settings,field", [
    ({"replication.factor": 4}, "replication.factor"),
    ({"replication.voters": 2}, "replication.voters"),
    ({"replication.fctor": 3}, "replication.fctor"),
    ({"gc.grace_secs": "soon"}, "gc.grace_secs"),
    ({"gc.grace_secs": True}, "gc.grace_secs"),
    ({"replication.write_consistency": "MOST"}, "replication.write_consistency"),
    ({"placement.require": ["zone in (a"]}, "placement.require"),
    ({"partitions": 16}, "partitions"),
])
def test_invalid_changes_are_refused_naming_the_field(cluster, tokens, settings, field):
    n2 = cluster.node("n2")
    before = config(n2, tokens["read"])
    r = api(n2, "PATCH", "/cluster/config", tokens["ops"], json={"settings": settings})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "InvalidConfig" and err["field"] == field, err
    assert field in err["message"], err
    assert config(n2, tokens["read"])["version"] == before["version"]


def test_the_cli_names_the_field_and_scopes_are_enforced(cluster, tokens):
    n1 = cluster.node("n1")
    out = cli(n1, "config", "set", "replication.factor", "5", token=tokens["ops"], check=False)
    assert out.returncode != 0 and "replication.factor" in out.stderr and "3 nodes" in out.stderr, \
        out.stderr
    r = api(n1, "PATCH", "/cluster/config", tokens["read"],
            json={"settings": {"gc.grace_secs": 60}})
    assert r.status_code == 403, r.text
    r = api(n1, "PATCH", "/cluster/config", None, json={"settings": {"gc.grace_secs": 60}})
    assert r.status_code == 401, r.text
    r = api(n1, "GET", "/cluster/config", None)
    assert r.status_code == 401, r.text


def test_start_time_settings_wait_for_a_restart(cluster, tokens):
    n1 = cluster.node("n1")
    out = json.loads(cli(n1, "config", "set", "gc.grace_secs", "1200", "--json",
                         token=tokens["ops"]).stdout)
    assert out["restart_required"] == ["gc.grace_secs"], out
    docs = wait_all_applied(cluster, tokens["read"], out["version"])
    for d in docs.values():
        assert all(x["restart_required"] == ["gc.grace_secs"] for x in d["nodes"]), d["nodes"]
    human = cli(n1, "config", "get", token=tokens["read"]).stdout
    assert "gc.grace_secs" in human and "restart" in human, human
    # Unset again: every node runs with its own value, nothing waits for a restart.
    out = json.loads(cli(n1, "config", "unset", "gc.grace_secs", "--json",
                         token=tokens["ops"]).stdout)
    docs = wait_all_applied(cluster, tokens["read"], out["version"])
    for d in docs.values():
        assert all(x["restart_required"] == [] for x in d["nodes"]), d["nodes"]


def test_audit_since_shows_config_changes_with_their_actor(cluster, tokens):
    n3 = cluster.node("n3")
    cli(n3, "config", "set", "uploads.expiry_secs", "7200", "-m", "audit me",
        token=tokens["ops"])
    entries = json.loads(cli(n3, "audit", "--since", "1h", "--json",
                             token=tokens["read"]).stdout)
    mine = [e for e in entries if "uploads.expiry_secs" in e["what"]]
    assert mine and mine[-1]["actor"] == "token cfg-ops" and "audit me" in mine[-1]["what"], \
        entries
    # Refused changes are audited too, with the actor and why.
    refused = [e for e in entries if e.get("outcome") and "replication.factor=4" in e["what"]]
    assert refused and refused[-1]["actor"] == "token cfg-ops", entries
    assert "replication.factor" in refused[-1]["outcome"], refused
    # Formation-time entries are older than a second ago's window.
    recent = json.loads(cli(n3, "audit", "--since", "1s", "--json",
                            token=tokens["read"]).stdout)
    assert all("form cluster" not in e["what"] for e in recent), recent
    human = cli(n3, "audit", "--since", "1h", token=tokens["read"]).stdout
    assert "token cfg-ops" in human and "uploads.expiry_secs" in human, human
    assert "refused" in human and "applied" in human, human


def test_replication_factor_changes_the_layout(cluster, tokens):
    n1, n2 = cluster.node("n1"), cluster.node("n2")

    def replicas_per_partition() -> set[int]:
        st = n2.status()
        return {len(p["replicas"]) for p in st["partitions"]}

    def wait_replicas(n: int, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while replicas_per_partition() != {n}:
            assert time.time() < deadline, n2.status()["partitions"]
            time.sleep(0.5)

    assert replicas_per_partition() == {3}
    out = json.loads(cli(n1, "config", "set", "replication.factor", "2", "-m", "save space",
                         "--json", token=tokens["ops"]).stdout)
    assert out["diff"][0]["apply"] == "cluster", out
    wait_replicas(2)
    cli(n1, "config", "set", "replication.factor", "3", token=tokens["ops"])
    wait_replicas(3)
    # The layout is written first; each partition's leader then moves its voters. Settled when
    # no move is left and every partition has a leader again (a leader that left a group's
    # voters leaves it leaderless for an election timeout).
    deadline = time.time() + 30
    while True:
        moves = api(n1, "GET", "/admin/rebalances", tokens["read"]).json()
        leaders = [p.get("leader") for p in n2.status()["partitions"]]
        if not moves["moves"] and all(leaders):
            break
        assert time.time() < deadline, (moves, leaders)
        time.sleep(0.5)
    s3 = n1.client()
    s3.create_bucket(Bucket="cfg-rf")
    s3.put_object(Bucket="cfg-rf", Key="k", Body=b"still writable")
    assert s3.get_object(Bucket="cfg-rf", Key="k")["Body"].read() == b"still writable"


def test_put_replaces_the_whole_document(cluster, tokens):
    n3 = cluster.node("n3")
    doc = config(n3, tokens["read"])
    whole = {s["key"]: s["value"] for s in doc["settings"]}
    whole["gc.interval_secs"] = 30
    r = api(n3, "PUT", "/cluster/config", tokens["ops"],
            json={"settings": whole, "expected_version": doc["version"]})
    assert r.status_code == 200, r.text
    assert [d["key"] for d in r.json()["diff"]] == ["gc.interval_secs"], r.json()
    # A stale expected version is refused.
    r = api(n3, "PUT", "/cluster/config", tokens["ops"],
            json={"settings": whole, "expected_version": doc["version"]})
    assert r.status_code == 409, r.text
    del whole["replication.factor"]
    r = api(n3, "PUT", "/cluster/config", tokens["ops"], json={"settings": whole})
    assert r.status_code == 400 and r.json()["error"]["field"] == "replication.factor", r.text
    r = api(n3, "PUT", "/cluster/config", tokens["ops"], data=b"not json")
    assert r.status_code == 400, r.text


def test_s3_limits_apply_live(cluster, tokens):
    """With `limits.s3_max_inflight` 1, a download that is not being read holds the only slot
    and the next request is refused with 503 SlowDown; raising it again admits requests at once
    (no restart)."""
    import botocore.exceptions  # noqa: PLC0415

    n1, n2 = cluster.node("n1"), cluster.node("n2")
    # No retries (a 503 must surface), but an SDK's usual patience while a body is sent.
    s3 = n2.client(retries=0, connect_timeout=30)
    s3.create_bucket(Bucket="cfg-limits")
    s3.put_object(Bucket="cfg-limits", Key="big", Body=os.urandom(48 << 20))
    out = json.loads(cli(n1, "config", "set", "limits.s3_max_inflight", "1", "--json",
                         token=tokens["ops"]).stdout)
    assert out["diff"][0]["apply"] == "live" and out["restart_required"] == [], out
    assert sorted(out["applied"]) == ["n1", "n2", "n3"], out
    try:
        held = s3.get_object(Bucket="cfg-limits", Key="big")["Body"]  # not read: stays in flight
        with pytest.raises(botocore.exceptions.ClientError) as e:
            s3.head_object(Bucket="cfg-limits", Key="big")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, e.value.response
        cli(n1, "config", "set", "limits.s3_max_inflight", "64", token=tokens["ops"])
        assert s3.head_object(Bucket="cfg-limits", Key="big")["ContentLength"] == 48 << 20
        held.close()
    finally:
        cli(n1, "config", "unset", "limits.s3_max_inflight", token=tokens["ops"], check=False)


def test_voters_follow_the_configuration(cluster, tokens):
    n1, n3 = cluster.node("n1"), cluster.node("n3")

    def wait_voters(n: int, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while len(n3.status()["system_voters"]) != n:
            assert time.time() < deadline, n3.status()["system_voters"]
            time.sleep(0.5)

    assert len(n3.status()["system_voters"]) == 3
    cli(n1, "config", "set", "replication.voters", "1", token=tokens["ops"])
    wait_voters(1)
    cli(n1, "config", "set", "replication.voters", "3", token=tokens["ops"])
    wait_voters(3)
    # The system group still takes changes.
    out = json.loads(cli(n3, "config", "set", "gc.interval_secs", "45", "--json",
                         token=tokens["ops"]).stdout)
    assert sorted(out["applied"]) == ["n1", "n2", "n3"], out
