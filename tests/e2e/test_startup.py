"""Server start-up: configuration from the environment, refusal of invalid settings, and the
management endpoints."""

from __future__ import annotations

import subprocess

import pytest
import requests

from conftest import CairnServer, cairn_bin


@pytest.fixture
def fresh(tmp_path):
    servers = []

    def make(**env):
        srv = CairnServer("startup", tmp_path / f"s{len(servers)}", {k: str(v) for k, v in env.items()})
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.mark.parametrize("env", [
    {"NODE_ID": "1"},
    {"NODE_ID": "42"},
    {"ACCESS_KEY": "12345", "SECRET_KEY": "1234567890"},
], ids=["node-id-1", "node-id-42", "numeric-credentials"])
def test_numeric_looking_string_settings_accepted(fresh, env):
    """NODE_ID / ACCESS_KEY / SECRET_KEY are strings even when they look like numbers."""
    srv = fresh(**env)
    srv.start()
    kwargs = {}
    if "ACCESS_KEY" in env:
        kwargs = {"access_key": env["ACCESS_KEY"], "secret_key": env["SECRET_KEY"]}
    c = srv.client(**kwargs)
    c.create_bucket(Bucket="numeric-settings")
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["numeric-settings"]


@pytest.mark.parametrize("setting,value", [
    ("CHUNK_SIZE", "10"),
    ("INLINE_THRESHOLD", "999999999"),
    ("GC_INTERVAL_SECS", "0"),
    ("NODE_BIND_ADDR", "not-an-ip"),
])
def test_invalid_setting_refused_with_its_name(fresh, setting, value):
    srv = fresh(**{setting: value})
    p = subprocess.run([str(cairn_bin()), "server"], env=srv.env(), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0
    assert setting in p.stdout + p.stderr, p.stdout + p.stderr


def test_management_endpoints(server):
    assert requests.get(f"{server.admin_url}/health", timeout=5).status_code == 200
    assert requests.get(f"{server.admin_url}/ready", timeout=5).status_code == 200
    m = requests.get(f"{server.admin_url}/metrics", timeout=5)
    assert m.status_code == 200 and "# EOF" in m.text


def test_data_survives_sigterm_restart_cycle(server):
    c = server.client()
    c.create_bucket(Bucket="cycle")
    for i in range(3):
        c.put_object(Bucket="cycle", Key=f"k{i}", Body=f"v{i}".encode())
        server.restart()
        c = server.client()
        keys = [o["Key"] for o in c.list_objects_v2(Bucket="cycle")["Contents"]]
        assert keys == [f"k{j}" for j in range(i + 1)]
