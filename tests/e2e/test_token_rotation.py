"""Rotating the join token (the cluster secret) on a live 3-node cluster, with no downtime.

Three rolling restarts, one node at a time, as the README describes:

1. every node gets ``CLUSTER_JOIN_TOKEN_ACCEPT=<new>`` (still proving and sealing with the old);
2. every node gets ``CLUSTER_JOIN_TOKEN=<new>`` and ``CLUSTER_JOIN_TOKEN_ACCEPT=<old>``;
3. every node drops ``CLUSTER_JOIN_TOKEN_ACCEPT``.

After each restart every node must see every node ``up`` and none ``down`` for longer than
``NODE_TIMEOUT_SECS`` (gossip decides health, and nodes on different tokens without the keyring
cannot open each other's packets: they would be ``down`` by then), no node may drop a gossip packet as ``unauthenticated``, and S3
PUT/GET keep working. At the end a stranger holding the old token cannot join.

Ports: nodes on 127.0.0.11-13 like the other cluster tests, on ports PORT_BASE+90..+92 (21090-
21092 by default), which no other test file uses.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

import cluster_util
from cluster_util import JOIN_TOKEN, Cluster
from e2e_util import unique_name

OLD = JOIN_TOKEN
NEW = "cairn-e2e-rotated-token"
NODE_TIMEOUT = float(cluster_util.DEFAULT_ENV["NODE_TIMEOUT_SECS"])
PORT_SHIFT = 90


@pytest.fixture
def cluster(tmp_path_factory):
    with cluster_util.started_cluster(tmp_path_factory.mktemp("rotate-cluster"), PORT_SHIFT) as c:
        yield c


def unauthenticated_drops(node) -> float:
    text = requests.get(f"{node.admin_url}/metrics", timeout=5).text
    m = re.search(r'^cairn_gossip_packets_dropped_total\{reason="unauthenticated"\} (\S+)$',
                  text, re.M)
    assert m, "no cairn_gossip_packets_dropped_total{reason=\"unauthenticated\"} in /metrics"
    return float(m.group(1))


def health_matrix(c: Cluster) -> dict[str, dict[str, str]]:
    out = {}
    for nid, st in c.statuses().items():
        assert st is not None, f"{nid}: no status"
        out[nid] = {x["node_id"]: x["health"] for x in st["nodes"]}
    return out


def assert_all_stay_up(c: Cluster, step: str, seconds: float, drops: bool = True) -> None:
    """For `seconds` (longer than NODE_TIMEOUT_SECS, so a node whose gossip is not heard would
    have turned down) no node sees any node down, and no node drops gossip it cannot open; at
    the end every node sees every node up. A moment of `suspect` right after a restart is
    ordinary failure detection on a busy machine, not a rotation problem."""
    until = time.monotonic() + seconds
    while True:
        m = health_matrix(c)
        bad = {nid: h for nid, h in m.items()
               if len(h) != 3 or any(v not in ("up", "suspect") for v in h.values())}
        assert not bad, f"{step}: a node is down somewhere: {m}"
        for n in c.alive() if drops else []:
            count = unauthenticated_drops(n)
            assert count == 0, f"{step}: {n.node_id} dropped {count} unauthenticated packets"
        if time.monotonic() >= until:
            break
        time.sleep(0.5)
    c.wait_converged(3, timeout=15)


def s3_round_trip(c: Cluster, bucket: str, step: str) -> None:
    body = f"written at {step}".encode()
    key = f"k-{step}"
    nodes = list(c.nodes.values())
    nodes[0].client().put_object(Bucket=bucket, Key=key, Body=body)
    for n in nodes:
        got = n.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == body, (n.node_id, step)
    # What was written before the rotation is still there.
    assert nodes[-1].client().get_object(Bucket=bucket, Key="k-before")["Body"].read() \
        == b"written at before"


def rolling_restart(c: Cluster, bucket: str, step: str, env: dict[str, str]) -> None:
    for node in list(c.nodes.values()):
        node.stop()
        node.env_overrides.update(env)
        node.start()
        c.wait_converged(3, timeout=60)
        assert_all_stay_up(c, f"{step} after {node.node_id}", NODE_TIMEOUT + 2)
        s3_round_trip(c, bucket, f"{step}-{node.node_id}")


def test_join_token_rotates_with_three_rolling_restarts(cluster):
    c = cluster
    bucket = unique_name("rotate")
    c.node("n1").client().create_bucket(Bucket=bucket)
    s3_round_trip(c, bucket, "before")

    # 1. Accept the new token everywhere (still sealing and proving with the old one).
    rolling_restart(c, bucket, "accept-new", {"CLUSTER_JOIN_TOKEN_ACCEPT": NEW})
    # 2. Make the new token primary, still accepting the old one from nodes not yet restarted.
    rolling_restart(c, bucket, "new-primary",
                    {"CLUSTER_JOIN_TOKEN": NEW, "CLUSTER_JOIN_TOKEN_ACCEPT": OLD})
    # 3. Drop the old token.
    rolling_restart(c, bucket, "drop-old", {"CLUSTER_JOIN_TOKEN_ACCEPT": ""})

    # A stranger with the old token cannot join any more: the seed refuses its greeting.
    stranger = c.add_node(4, wait=False, expect_exit=True, CLUSTER_JOIN_TOKEN=OLD)
    code = stranger.wait_exit(60)
    assert code not in (None, 0), stranger.log_tail()
    assert "CLUSTER_JOIN_TOKEN" in stranger.log_text(), stranger.log_tail()
    assert not (stranger.storage_path / "tls" / "node.pem").exists()
    c.nodes.pop("n4")
    # (Its gossip, sealed with the old token, may have reached a seed and been dropped.)
    assert_all_stay_up(c, "after the stranger", 1, drops=False)
    s3_round_trip(c, bucket, "end")
