"""The shipped Grafana dashboard (deploy/grafana/cairn.json) against real nodes, and the metrics
it reads.

`scripts/check-dashboard.py` is run against a 3-node cluster after some S3 and FileService
traffic: every metric a panel or variable names must be exported by the nodes (metrics listed
in deploy/grafana/pending-metrics.txt may still be missing) and every label a query filters or
groups by must exist. The checker's PromQL reading is tested on its own first, and the metrics
issue 12 asks for are checked for values that make sense (Raft groups led, gossip members up,
disk free, S3 requests by operation and status).

Ports: nodes on 127.0.0.11-13 on PORT_BASE+140..+142 (21140-21142 by default).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import requests

import cluster_util
from cluster_util import REPO_ROOT, Cluster, cairn_bin
from e2e_util import unique_name

SCRIPT = REPO_ROOT / "scripts" / "check-dashboard.py"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "cairn.json"


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_dashboard", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_dashboard"] = mod
    spec.loader.exec_module(mod)
    return mod


cd = _load_checker()


# ----------------------------------------------------------------------- the checker alone

def names(expr: str) -> dict[str, set[str]]:
    return {s.metric: s.labels for s in cd.selectors(expr)}


def test_selectors_skip_functions_keywords_and_grouping_labels():
    got = names('histogram_quantile(0.99, sum by (le, op) '
                '(rate(cairn_s3_request_duration_seconds_bucket{instance=~"$instance"}'
                '[$__rate_interval])))')
    assert got == {"cairn_s3_request_duration_seconds_bucket": {"le", "op", "instance"}}
    got = names('sum(rate(a_total{status=~"5..", x="}{"}[5m])) / clamp_min(sum(rate(b_total[1m])), 1e-9)')
    assert got == {"a_total": {"status", "x"}, "b_total": set()}
    assert names("time() - cairn_node_start_time_seconds") == {"cairn_node_start_time_seconds": set()}
    assert names("a and on (instance) b offset 5m") == {"a": set(), "b": set()}
    assert names('sum without (state) (m{state=~"x|y"})') == {"m": {"state"}}
    with pytest.raises(ValueError):
        cd.selectors("sum(rate(x[1m])")


def test_label_values_variable():
    sels = cd.label_values_query("label_values(cairn_node_info, instance)")
    assert [(s.metric, s.labels) for s in sels] == [("cairn_node_info", {"instance"})]
    assert cd.label_values_query("up") is None


def test_exposition_expands_families_by_type():
    exp = cd.parse_exposition(
        "# TYPE c counter\n"
        "# TYPE h histogram\n"
        "# TYPE g gauge\n"
        'g{kind="system"} 1\n'
        "# TYPE t_total counter\n"
        "# EOF\n"
    )
    for name in ("c_total", "h_bucket", "h_sum", "h_count", "g", "t_total"):
        assert name in exp, name
    assert exp.labels["g"] == {"kind"}
    assert "c" not in exp


def test_check_reports_missing_metrics_labels_and_stale_pending_entries():
    dash = {
        "title": "t", "uid": "u", "schemaVersion": 39,
        "panels": [
            {"id": 1, "type": "timeseries", "title": "ok", "gridPos": {}, "datasource": {"uid": "x"},
             "targets": [{"refId": "A", "expr": 'sum by (kind) (g{kind="system"})'}]},
            {"id": 2, "type": "timeseries", "title": "missing", "gridPos": {}, "datasource": {"uid": "x"},
             "targets": [{"refId": "A", "expr": "rate(nope_total[1m])"},
                         {"refId": "B", "expr": "sum by (zone) (g)"},
                         {"refId": "C", "expr": "later_total"}]},
            {"id": 2, "type": "timeseries", "title": "dup", "gridPos": {}, "datasource": {"uid": "x"},
             "targets": [{"refId": "A", "expr": "g"}]},
        ],
    }
    exp = cd.parse_exposition('# TYPE g gauge\ng{kind="system"} 1\n')
    errors, warnings = cd.check(dash, exp, {"later_total"})
    text = "\n".join(errors)
    assert "no node exports nope_total" in text
    assert "g has no label zone" in text
    assert "panel id 2 is used twice" in text
    assert any("later_total" in w for w in warnings)
    assert len(errors) == 3, errors
    # A pending metric that is exported now must leave the list.
    exp.add("later_total")
    errors, _ = cd.check(dash, exp, {"later_total"})
    assert any("remove it from the pending list" in e for e in errors)


def test_shipped_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    queries, problems = cd.dashboard_queries(dash)
    assert problems == []
    assert len(queries) >= 30
    titles = " ".join(p.get("title", "") for p in dash["panels"]).lower()
    for topic in ("requests", "latency", "bytes", "raft", "chunk", "worker", "rebalance", "repair"):
        assert topic in titles, f"no panel about {topic}"
    for q in queries:
        assert q.expr == q.expr.strip()
        if q.where.startswith("panel"):
            assert "$instance" in q.expr, f"{q.where} ignores the node selector: {q.expr}"


# --------------------------------------------------------------------- against real nodes

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    mp = pytest.MonkeyPatch()
    base = cluster_util.PORT_BASE + 140
    mp.setattr(cluster_util, "API_PORT", base)
    mp.setattr(cluster_util, "RPC_PORT", base + 1)
    mp.setattr(cluster_util, "ADMIN_PORT", base + 2)
    c = Cluster(tmp_path_factory.mktemp("dashboard-cluster"))
    try:
        c.start(3)
        c.wait_partition_leaders()
        _traffic(c)
        yield c
    finally:
        problems = c.teardown()
        for n in c.nodes.values():
            shutil.rmtree(n.storage_path, ignore_errors=True)
        mp.undo()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def _traffic(c: Cluster) -> None:
    """S3 requests through every node (successes and a 404), and FileService calls."""
    from test_files import cli  # noqa: PLC0415

    bucket = unique_name("dash")
    n1 = c.nodes["n1"]
    n1.client().create_bucket(Bucket=bucket)
    for n in c.nodes.values():
        s3 = n.client()
        s3.put_object(Bucket=bucket, Key=f"k-{n.node_id}", Body=b"x" * 5000)
        s3.get_object(Bucket=bucket, Key=f"k-{n.node_id}")["Body"].read()
        try:
            s3.head_object(Bucket=bucket, Key="missing")
        except Exception:  # noqa: BLE001 - the 404 is the point
            pass
    for n in c.nodes.values():
        cli(n, "ls", f"cairn://{bucket}")


def scrape(node) -> str:
    r = requests.get(f"{node.admin_url}/metrics", timeout=5)
    r.raise_for_status()
    return r.text


def value(text: str, series: str) -> float:
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert m, f"no {series} in /metrics"
    return float(m.group(1))


def test_check_dashboard_passes_against_the_cluster(cluster):
    urls = [n.admin_url for n in cluster.nodes.values()]
    r = subprocess.run([sys.executable, str(SCRIPT), *sum((["--url", u] for u in urls), [])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"check-dashboard failed:\n{r.stdout}\n{r.stderr}"
    assert "every metric they name is exported" in r.stdout


def test_check_dashboard_fails_on_a_metric_no_node_exports(cluster, tmp_path):
    dash = json.loads(DASHBOARD.read_text())
    dash["panels"][1]["targets"][0]["expr"] = 'sum(cairn_no_such_metric{instance=~"$instance"})'
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dash))
    r = subprocess.run([sys.executable, str(SCRIPT), "--dashboard", str(bad),
                        "--url", cluster.nodes["n1"].admin_url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no node exports cairn_no_such_metric" in r.stderr


def test_metrics_describe_the_cluster(cluster):
    texts = {n.node_id: scrape(n) for n in cluster.nodes.values()}
    led = 0.0
    for nid, text in texts.items():
        # Every node holds a replica of the system group and of its partitions (RF 3 of 3).
        assert value(text, 'cairn_raft_groups{kind="system"}') == 1, nid
        assert value(text, 'cairn_raft_groups{kind="partition"}') == cluster.partitions, nid
        assert value(text, 'cairn_raft_groups_leaderless{kind="partition"}') == 0, nid
        led += value(text, 'cairn_raft_leaders{kind="partition"}')
        assert value(text, 'cairn_gossip_members{state="up"}') == 3, nid
        assert value(text, 'cairn_gossip_members{state="down"}') == 0, nid
        assert value(text, "cairn_disk_free_bytes") > 0, nid
        assert value(text, 'cairn_raft_leader_changes_total{kind="system"}') >= 1, nid
        assert re.search(rf'^cairn_node_info\{{node_id="{nid}",version="[^"]+",zone=""\}} 1$',
                         text, re.M), nid
        assert re.search(r'^cairn_s3_requests_total\{op="PutObject",method="PUT",status="200"\} [1-9]',
                         text, re.M), nid
        assert re.search(r'^cairn_s3_requests_total\{op="HeadObject",method="HEAD",status="404"\} [1-9]',
                         text, re.M), nid
    assert led == cluster.partitions, "each partition is led by exactly one node"
    # Partition writes were committed by some leader, and timed.
    commits = sum(value(t, 'cairn_raft_commit_duration_seconds_count{kind="partition"}')
                  for t in texts.values())
    proposals = sum(value(t, 'cairn_raft_proposals_total{kind="partition",outcome="ok"}')
                    for t in texts.values())
    # (Background workers keep proposing: a scrape may fall between the two counters.)
    assert commits >= 3 and abs(commits - proposals) <= 3, (commits, proposals)


def test_data_dir_usage_is_measured(cluster):
    """The data directory's size comes from a background walk (at start, then every 30 s), the
    metadata database's from its file at scrape time."""
    n1 = cluster.nodes["n1"]
    deadline = time.monotonic() + 40
    while True:
        text = scrape(n1)
        m = re.search(r"^cairn_data_dir_bytes (\S+)$", text, re.M)
        if m and float(m.group(1)) > 0:
            break
        assert time.monotonic() < deadline, "cairn_data_dir_bytes never appeared"
        time.sleep(0.5)
    assert value(text, "cairn_meta_db_bytes") > 0
    assert float(m.group(1)) <= value(text, "cairn_disk_total_bytes")
