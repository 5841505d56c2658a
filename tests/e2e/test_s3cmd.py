"""s3cmd (signature v4, path-style, plain HTTP) against Cairn."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, rand_bytes, require_tool, unique_name

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3cmd(server, tmp_path_factory):
    exe = require_tool("s3cmd")
    cfg = tmp_path_factory.mktemp("s3cmdcfg") / "s3cfg"
    host = f"127.0.0.1:{server.api_port}"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\n"
        f"secret_key = {SECRET_KEY}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        f"bucket_location = {REGION}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
        "check_ssl_certificate = False\n"
        "guess_mime_type = True\n"
        "multipart_chunk_size_mb = 5\n"
        "progress_meter = False\n"
    )

    def run(*args, check=True, timeout=300):
        cmd = [exe, "-c", str(cfg), *map(str, args)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "HOME": str(cfg.parent)})
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\n"
                f"stderr:\n{p.stderr[-4000:]}"
            )
        return p

    return run


def remote_keys(s3, bucket):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def test_s3cmd_mb_put_get_ls_del_rb(s3cmd, s3, tmp_path):
    b = unique_name("s3c")
    s3cmd("mb", f"s3://{b}")
    assert b in {x["Name"] for x in s3.list_buckets()["Buckets"]}
    assert f"s3://{b}" in s3cmd("ls").stdout

    small = tmp_path / "small.txt"
    small.write_text("hello s3cmd\n")
    s3cmd("put", small, f"s3://{b}/docs/small.txt")
    got = s3.get_object(Bucket=b, Key="docs/small.txt")
    assert got["Body"].read() == b"hello s3cmd\n"
    assert got["ContentType"].startswith("text/plain")

    ls = s3cmd("ls", f"s3://{b}/docs/").stdout
    assert f"s3://{b}/docs/small.txt" in ls
    la = s3cmd("ls", "-r", f"s3://{b}").stdout
    assert f"s3://{b}/docs/small.txt" in la

    back = tmp_path / "back.txt"
    s3cmd("get", f"s3://{b}/docs/small.txt", back)
    assert back.read_bytes() == small.read_bytes()

    info = s3cmd("info", f"s3://{b}/docs/small.txt").stdout
    assert hashlib.md5(small.read_bytes()).hexdigest() in info

    s3cmd("del", f"s3://{b}/docs/small.txt")
    assert remote_keys(s3, b) == []
    s3cmd("rb", f"s3://{b}")
    assert b not in {x["Name"] for x in s3.list_buckets()["Buckets"]}


def test_s3cmd_multipart_put_get(s3cmd, s3, tmp_path):
    b = unique_name("s3c")
    s3cmd("mb", f"s3://{b}")
    big = tmp_path / "big.bin"
    data = rand_bytes(12 * MiB + 333, "s3cmd-big")
    big.write_bytes(data)
    s3cmd("put", big, f"s3://{b}/big.bin")  # 5 MiB chunks -> 3-part multipart upload
    head = s3.head_object(Bucket=b, Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3")
    back = tmp_path / "back.bin"
    s3cmd("get", f"s3://{b}/big.bin", back)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_s3cmd_sync(s3cmd, s3, tmp_path):
    b = unique_name("s3c")
    s3cmd("mb", f"s3://{b}")
    src = tmp_path / "src"
    files = {}
    for i in range(40):
        rel = f"d{i % 4}/e{i % 3}/f{i:02d}.bin"
        data = rand_bytes(50 + i * 101, ("s3cmd", i))
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        files[rel] = data
    past = time.time() - 3600
    for rel in files:
        os.utime(src / rel, (past, past))
    s3cmd("sync", f"{src}/", f"s3://{b}/")
    assert remote_keys(s3, b) == sorted(files)
    for rel in sorted(files)[::7]:
        assert s3.get_object(Bucket=b, Key=rel)["Body"].read() == files[rel]
    # Second sync uploads nothing.
    again = s3cmd("sync", f"{src}/", f"s3://{b}/")
    assert "upload:" not in again.stdout, again.stdout
    # Delete locally and change one file, sync with --delete-removed.
    (src / "d0/e0/f00.bin").unlink()
    (src / "d1/e1/f01.bin").write_bytes(b"modified")
    s3cmd("sync", "--delete-removed", f"{src}/", f"s3://{b}/")
    expected = sorted(set(files) - {"d0/e0/f00.bin"})
    assert remote_keys(s3, b) == expected
    assert s3.get_object(Bucket=b, Key="d1/e1/f01.bin")["Body"].read() == b"modified"
    # Sync back down.
    down = tmp_path / "down"
    down.mkdir()
    s3cmd("sync", f"s3://{b}/", f"{down}/")
    for rel in expected:
        assert (down / rel).read_bytes() == (src / rel).read_bytes()
    # rb needs the bucket empty; del --recursive --force then rb.
    s3cmd("del", "--recursive", "--force", f"s3://{b}")
    s3cmd("rb", f"s3://{b}")
    assert b not in {x["Name"] for x in s3.list_buckets()["Buckets"]}


def test_s3cmd_rb_non_empty_fails(s3cmd, s3):
    b = unique_name("s3c")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="x", Body=b"x")
    p = s3cmd("rb", f"s3://{b}", check=False)
    assert p.returncode != 0
    assert "BucketNotEmpty" in p.stdout + p.stderr
    assert b in {x["Name"] for x in s3.list_buckets()["Buckets"]}
