"""Access keys with grants, operator tokens and sealed secrets against a real node: a backup
key writes only to `backups`, a read-only key cannot write, a key without a grant sees nothing,
disabled/deleted/rotated keys are refused, rotating the root key revokes the old one, the
management API refuses missing/low/expired/revoked tokens with nothing changed, and no
secret is stored in plaintext."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import botocore.exceptions
import pytest
import requests

from conftest import cairn_bin, make_client
from e2e_util import ACCESS_KEY, SECRET_KEY, admin_headers, client_error_code, client_error_status, unique_name


def cli(server, *args: str, token: str | None = None, root: bool = True, check: bool = True,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ACCESS_KEY", "SECRET_KEY", "CAIRN_TOKEN", "STORAGE_PATH")}
    env["CAIRN_ADMIN"] = server.admin_url
    # File commands verify the node's RPC port with the cluster CA in its data directory.
    ca = getattr(server, "storage_path", None)
    if ca is not None and (ca / "tls" / "ca.pem").exists():
        env["CAIRN_CA_FILE"] = str(ca / "tls" / "ca.pem")
    if root:
        env.update({"ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY})
    if token:
        env["CAIRN_TOKEN"] = token
    env.update(extra_env or {})
    out = subprocess.run([str(cairn_bin()), *args], capture_output=True, text=True, timeout=60,
                         env=env, cwd="/")
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def create_key(server, name: str, *flags: str) -> tuple[str, str]:
    out = cli(server, "key", "create", "--name", name, *flags).stdout
    lines = dict(l.split("=", 1) for l in out.strip().splitlines())
    return lines["ACCESS_KEY"], lines["SECRET_KEY"]


def expect_denied(fn, code: str = "AccessDenied", status: int = 403):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        fn()
    assert client_error_status(e.value) == status, e.value.response
    assert client_error_code(e.value) == code, e.value.response


def key_client(server, ak: str, sk: str):
    return make_client(server.endpoint, access_key=ak, secret_key=sk, max_attempts=1)


def bucket_names(client) -> list[str]:
    return sorted(b["Name"] for b in client.list_buckets().get("Buckets", []))


@pytest.fixture(scope="module")
def node(server_factory):
    return server_factory("keys")


def test_backup_key_writes_only_to_backups(node):
    root = node.client()
    backups, other = unique_name("backups"), unique_name("other")
    root.create_bucket(Bucket=backups)
    root.create_bucket(Bucket=other)
    root.put_object(Bucket=other, Key="secret.txt", Body=b"not for backup")
    ak, sk = create_key(node, "backup", "--grant", f"{backups}=write")
    c = key_client(node, ak, sk)
    c.put_object(Bucket=backups, Key="db.dump", Body=b"dump")
    assert c.get_object(Bucket=backups, Key="db.dump")["Body"].read() == b"dump"
    assert bucket_names(c) == [backups]
    expect_denied(lambda: c.put_object(Bucket=other, Key="x", Body=b"x"))
    expect_denied(lambda: c.get_object(Bucket=other, Key="secret.txt"))
    expect_denied(lambda: c.list_objects_v2(Bucket=other))
    expect_denied(lambda: c.delete_bucket(Bucket=backups))  # write is not owner
    expect_denied(lambda: c.create_bucket(Bucket=unique_name("new")))
    # Copying out of a bucket it cannot read is refused too.
    expect_denied(lambda: c.copy_object(Bucket=backups, Key="stolen",
                                        CopySource={"Bucket": other, "Key": "secret.txt"}))
    # Nothing changed in the other bucket.
    keys = [o["Key"] for o in root.list_objects_v2(Bucket=other).get("Contents", [])]
    assert keys == ["secret.txt"]


def test_read_only_key_cannot_write_and_prefix_grants(node):
    root = node.client()
    logs = unique_name("logs")
    root.create_bucket(Bucket=logs)
    root.put_object(Bucket=logs, Key="day1", Body=b"1")
    ak, sk = create_key(node, "data-team", "--grant", "logs-*=read")
    c = key_client(node, ak, sk)
    assert c.get_object(Bucket=logs, Key="day1")["Body"].read() == b"1"
    assert [o["Key"] for o in c.list_objects_v2(Bucket=logs)["Contents"]] == ["day1"]
    expect_denied(lambda: c.put_object(Bucket=logs, Key="day2", Body=b"2"))
    expect_denied(lambda: c.delete_object(Bucket=logs, Key="day1"))
    assert "day2" not in [o["Key"] for o in root.list_objects_v2(Bucket=logs)["Contents"]]
    assert logs in bucket_names(c)


def test_key_without_grant_sees_nothing(node):
    root = node.client()
    b = unique_name("private")
    root.create_bucket(Bucket=b)
    root.put_object(Bucket=b, Key="k", Body=b"v")
    ak, sk = create_key(node, "nobody")
    c = key_client(node, ak, sk)
    assert bucket_names(c) == []
    expect_denied(lambda: c.get_object(Bucket=b, Key="k"))
    expect_denied(lambda: c.head_bucket(Bucket=b), code="403")
    expect_denied(lambda: c.put_object(Bucket=b, Key="k", Body=b"overwrite"))
    assert root.get_object(Bucket=b, Key="k")["Body"].read() == b"v"


def test_a_key_allowed_to_create_buckets_owns_them(node):
    ak, sk = create_key(node, "builder", "--allow-create-bucket")
    c = key_client(node, ak, sk)
    mine = unique_name("mine")
    c.create_bucket(Bucket=mine)
    c.put_object(Bucket=mine, Key="a", Body=b"a")
    assert bucket_names(c) == [mine]
    other_ak, other_sk = create_key(node, "stranger")
    expect_denied(lambda: key_client(node, other_ak, other_sk).get_object(Bucket=mine, Key="a"))
    c.delete_object(Bucket=mine, Key="a")
    c.delete_bucket(Bucket=mine)


def test_disabled_deleted_and_rotated_keys_are_refused(node):
    root = node.client()
    b = unique_name("rw")
    root.create_bucket(Bucket=b)
    ak, sk = create_key(node, "leaky", "--grant", f"{b}=write")
    c = key_client(node, ak, sk)
    c.put_object(Bucket=b, Key="k", Body=b"1")
    cli(node, "key", "disable", ak)
    expect_denied(lambda: c.put_object(Bucket=b, Key="k", Body=b"2"))
    expect_denied(lambda: c.list_buckets())
    cli(node, "key", "enable", ak)
    c.put_object(Bucket=b, Key="k", Body=b"3")
    out = cli(node, "key", "rotate", ak).stdout
    new_sk = dict(l.split("=", 1) for l in out.strip().splitlines())["SECRET_KEY"]
    assert new_sk != sk
    expect_denied(lambda: c.get_object(Bucket=b, Key="k"), code="SignatureDoesNotMatch")
    key_client(node, ak, new_sk).get_object(Bucket=b, Key="k")
    cli(node, "key", "rm", ak)
    expect_denied(lambda: key_client(node, ak, new_sk).get_object(Bucket=b, Key="k"),
                  code="InvalidAccessKeyId")
    assert root.get_object(Bucket=b, Key="k")["Body"].read() == b"3"
    listed = cli(node, "key", "ls", "--json").stdout
    assert ak not in listed


def test_file_service_uses_the_same_grants(node):
    root = node.client()
    b = unique_name("files")
    root.create_bucket(Bucket=b)
    root.put_object(Bucket=b, Key="readme", Body=b"hello")
    ak, sk = create_key(node, "reader", "--grant", f"{b}=read")
    env = {"ACCESS_KEY": ak, "SECRET_KEY": sk, "CAIRN_ENDPOINT": f"127.0.0.1:{node.rpc_port}"}
    got = cli(node, "cp", f"cairn://{b}/readme", "-", root=False, extra_env=env)
    assert got.stdout == "hello"
    src = Path(node.workdir) / "upload.txt"
    src.write_bytes(b"should not land")
    up = cli(node, "cp", str(src), f"cairn://{b}/new", root=False, extra_env=env, check=False)
    assert up.returncode != 0 and "denied" in up.stderr.lower(), up.stderr
    ls = cli(node, "ls", root=False, extra_env=env)
    assert b in ls.stdout
    stranger_ak, stranger_sk = create_key(node, "files-stranger")
    env2 = {"ACCESS_KEY": stranger_ak, "SECRET_KEY": stranger_sk,
            "CAIRN_ENDPOINT": f"127.0.0.1:{node.rpc_port}"}
    assert b not in cli(node, "ls", root=False, extra_env=env2).stdout
    denied = cli(node, "cp", f"cairn://{b}/readme", "-", root=False, extra_env=env2, check=False)
    assert denied.returncode != 0 and "denied" in denied.stderr.lower(), denied.stderr
    keys = [o["Key"] for o in root.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["readme"]


def api(node, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{node.admin_url}{path}", headers=headers, timeout=10, **kw)


def test_tokens_scopes_expiry_and_revocation(node):
    # Missing token: 401 with a JSON error; open endpoints stay open.
    for path in ["/cluster/status", "/cluster/audit", "/keys", "/tokens"]:
        r = api(node, "GET", path)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "MissingToken"
    assert api(node, "GET", "/health").status_code == 200
    assert api(node, "GET", "/ready").status_code == 200
    assert api(node, "GET", "/metrics").status_code == 200
    r = api(node, "GET", "/keys", token="cairn_" + "0" * 64)
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidToken"

    read = cli(node, "token", "create", "--name", "dash", "--scope", "read").stdout.strip()
    admin = cli(node, "token", "create", "--name", "ops", "--scope", "admin", "--ttl", "1h").stdout.strip()
    assert read.startswith("cairn_") and "\n" not in read
    assert api(node, "GET", "/cluster/status", read).status_code == 200
    assert api(node, "GET", "/cluster/audit", read).status_code == 200
    before = api(node, "GET", "/keys", admin).json()
    r = api(node, "POST", "/keys", read, json={"name": "sneaky"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "InsufficientScope", r.text
    r = api(node, "POST", "/keys", json={"name": "sneaky"})
    assert r.status_code == 401
    # A refused root signature (wrong secret) is 401 too.
    hdrs = admin_headers("POST", "/keys", b'{"name":"x"}', secret_key="wrong-secret")
    r = requests.post(f"{node.admin_url}/keys", data=b'{"name":"x"}', headers=hdrs, timeout=10)
    assert r.status_code == 401, r.text
    assert api(node, "GET", "/keys", admin).json() == before

    # The CLI says what is wrong.
    out = cli(node, "key", "ls", root=False, check=False)
    assert out.returncode != 0 and "401" in out.stderr and "--token" in out.stderr, out.stderr
    out = cli(node, "key", "ls", root=False, token=read, check=False)
    assert out.returncode != 0 and "403" in out.stderr, out.stderr
    out = cli(node, "cluster", "status", root=False, token=read)
    assert "reported by" in out.stdout

    # A change made with a token is audited with its name.
    ak, _ = create_key(node, "audited")  # root-signed
    r = api(node, "POST", f"/keys/{ak}/disable", admin)
    assert r.status_code == 200, r.text
    audit = api(node, "GET", "/cluster/audit?max=1000", read).json()
    entry = next(e for e in audit if e["what"] == f"access key {ak} disabled")
    assert entry["actor"] == "token ops"
    create = next(e for e in audit if e["what"].startswith(f"create access key {ak}"))
    assert create["actor"] == f"root key {ACCESS_KEY}"

    # Expired and revoked tokens are refused.
    short = cli(node, "token", "create", "--name", "short", "--scope", "admin", "--ttl", "1s").stdout.strip()
    time.sleep(2.2)
    r = api(node, "GET", "/keys", short)
    assert r.status_code == 401 and r.json()["error"]["code"] == "TokenExpired", r.text
    cli(node, "token", "revoke", "dash")
    r = api(node, "GET", "/cluster/status", read)
    assert r.status_code == 401 and r.json()["error"]["code"] == "TokenRevoked", r.text
    listed = cli(node, "token", "ls", "--json").stdout
    assert read not in listed and admin not in listed


def test_metrics_can_require_a_token(server_factory):
    srv = server_factory("metrics", METRICS_REQUIRE_TOKEN="true")
    r = requests.get(f"{srv.admin_url}/metrics", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "MissingToken"
    tok = cli(srv, "token", "create", "--name", "prom", "--scope", "read").stdout.strip()
    r = requests.get(f"{srv.admin_url}/metrics", headers={"Authorization": f"Bearer {tok}"},
                     timeout=10)
    assert r.status_code == 200 and "cairn_" in r.text


def test_no_secret_is_stored_in_plaintext(node):
    ak, sk = create_key(node, "needle")
    b = unique_name("needle")
    node.client().create_bucket(Bucket=b)
    cli(node, "key", "grant", ak, b, "write")
    key_client(node, ak, sk).put_object(Bucket=b, Key="k", Body=b"v")
    token = cli(node, "token", "create", "--name", "needle-token", "--scope", "read").stdout.strip()
    needles = [sk.encode(), token.encode()]
    for path in Path(node.storage_path).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for n in needles:
                assert n not in data, f"secret found in {path}"
    log = Path(node.log_path).read_bytes()
    for n in needles:
        assert n not in log
    mk = Path(node.storage_path) / "master.key"
    assert mk.stat().st_mode & 0o777 == 0o600
    assert len(mk.read_text().strip()) == 64


def test_rotating_the_root_key_revokes_the_old_one(server_factory):
    srv = server_factory("rotate")
    old = make_client(srv.endpoint, max_attempts=1)
    b = unique_name("rot")
    old.create_bucket(Bucket=b)
    new_ak, new_sk = "cairn-e2e-rotated", "cairn-e2e-rotated-secret-0123456789"
    srv.stop()
    srv.start(ACCESS_KEY=new_ak, SECRET_KEY=new_sk)
    new = make_client(srv.endpoint, access_key=new_ak, secret_key=new_sk, max_attempts=1)
    assert b in bucket_names(new)
    deadline = time.time() + 20
    while True:
        try:
            old.list_buckets()
        except botocore.exceptions.ClientError as e:
            assert client_error_code(e) == "InvalidAccessKeyId", e.response
            break
        assert time.time() < deadline, "the old root key still works"
        time.sleep(0.5)
    # Configuring the old key again does not bring it back.
    srv.stop()
    srv.start(ACCESS_KEY=ACCESS_KEY, SECRET_KEY=SECRET_KEY)
    time.sleep(3)
    expect_denied(lambda: old.list_buckets(), code="InvalidAccessKeyId")
    assert "revoked" in Path(srv.log_path).read_text()


def test_keys_and_tokens_apply_on_every_node_of_a_cluster(tmp_path_factory, request):
    """A key created through n1 works on n2; disabled through n3 it is refused on n1 and n2
    as soon as they apply the change; a token made on one node works on the others; the
    master key is the same everywhere and no secret lands in any node's data directory."""
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    c = ReportedCluster(tmp_path_factory.mktemp("keys-cluster"))
    try:
        c.start(3)
        n1, n2, n3 = (c.node(f"n{i}") for i in (1, 2, 3))
        b = unique_name("shared")
        make_client(n1.endpoint).create_bucket(Bucket=b)
        ak, sk = create_key(n1, "team", "--grant", f"{b}=write")
        deadline = time.time() + 20
        while True:
            try:
                make_client(n2.endpoint, access_key=ak, secret_key=sk, max_attempts=1).put_object(
                    Bucket=b, Key="k", Body=b"from n2")
                break
            except botocore.exceptions.ClientError:
                assert time.time() < deadline, "the new key never worked on n2"
                time.sleep(0.5)
        token = cli(n2, "token", "create", "--name", "cluster-ops", "--scope", "admin").stdout.strip()
        r = None
        for _ in range(40):
            r = api(n3, "POST", f"/keys/{ak}/disable", token)
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert r is not None and r.status_code == 200, r.text
        for node in (n1, n2):
            deadline = time.time() + 20
            while True:
                try:
                    make_client(node.endpoint, access_key=ak, secret_key=sk,
                                max_attempts=1).get_object(Bucket=b, Key="k")
                except botocore.exceptions.ClientError as e:
                    assert client_error_code(e) == "AccessDenied", e.response
                    break
                assert time.time() < deadline, f"disabled key still works on {node.node_id}"
                time.sleep(0.5)
        assert make_client(n3.endpoint).get_object(Bucket=b, Key="k")["Body"].read() == b"from n2"
        for node in (n1, n2, n3):
            for path in Path(node.storage_path).rglob("*"):
                if path.is_file():
                    data = path.read_bytes()
                    assert sk.encode() not in data and token.encode() not in data, path
    finally:
        _finish(c)
