"""The AWS CLI (`aws s3` high-level commands and `aws s3api`) against Cairn."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, md5_hex, rand_bytes, require_tool, unique_name

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    exe = require_tool("aws")
    cfg_dir = tmp_path_factory.mktemp("awscfg")
    config = cfg_dir / "config"
    config.write_text(
        "[default]\n"
        f"region = {REGION}\n"
        "s3 =\n"
        "    addressing_style = path\n"
        "    multipart_threshold = 8MB\n"
        "    multipart_chunksize = 8MB\n"
    )
    creds = cfg_dir / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_")
    }
    env.update(
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(creds),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
    )

    def run(*args, check=True, timeout=300):
        cmd = [exe, "--endpoint-url", server.endpoint, *map(str, args)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return p

    return run


def make_tree(root: Path, n_dirs=3, per_dir=5) -> dict[str, bytes]:
    files = {}
    for d in range(n_dirs):
        for f in range(per_dir):
            rel = f"dir{d}/sub/file{f}.txt" if f % 2 else f"dir{d}/file{f}.txt"
            data = rand_bytes(100 + d * 1000 + f * 37, ("tree", d, f))
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            # In the past, so `sync` is not confused by second-granular LastModified.
            os.utime(p, (time.time() - 3600, time.time() - 3600))
            files[rel] = data
    return files


def list_keys(s3, bucket):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def test_mb_ls_rb(aws, s3):
    b = unique_name("cli")
    aws("s3", "mb", f"s3://{b}")
    assert b in {x["Name"] for x in s3.list_buckets()["Buckets"]}
    out = aws("s3", "ls").stdout
    assert b in out
    aws("s3", "rb", f"s3://{b}")
    assert b not in {x["Name"] for x in s3.list_buckets()["Buckets"]}


def test_cp_single_file_up_and_down(aws, s3, tmp_path):
    b = unique_name("cli")
    aws("s3", "mb", f"s3://{b}")
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from aws cli\n")
    aws("s3", "cp", src, f"s3://{b}/docs/hello.txt")
    assert s3.get_object(Bucket=b, Key="docs/hello.txt")["Body"].read() == src.read_bytes()
    dst = tmp_path / "back.txt"
    aws("s3", "cp", f"s3://{b}/docs/hello.txt", dst)
    assert dst.read_bytes() == src.read_bytes()
    out = aws("s3", "ls", f"s3://{b}/docs/").stdout
    assert "hello.txt" in out and str(len(src.read_bytes())) in out


def test_cp_recursive_and_ls_recursive(aws, s3, tmp_path):
    b = unique_name("cli")
    aws("s3", "mb", f"s3://{b}")
    files = make_tree(tmp_path / "src")
    aws("s3", "cp", "--recursive", tmp_path / "src", f"s3://{b}/tree/")
    assert list_keys(s3, b) == sorted(f"tree/{k}" for k in files)
    for rel, data in files.items():
        assert s3.get_object(Bucket=b, Key=f"tree/{rel}")["Body"].read() == data
    out = aws("s3", "ls", "--recursive", f"s3://{b}/tree/").stdout
    assert len([ln for ln in out.splitlines() if ln.strip()]) == len(files)
    aws("s3", "cp", "--recursive", f"s3://{b}/tree/", tmp_path / "down")
    for rel, data in files.items():
        assert (tmp_path / "down" / rel).read_bytes() == data


def test_sync_up_changes_and_delete(aws, s3, tmp_path):
    b = unique_name("cli")
    aws("s3", "mb", f"s3://{b}")
    src = tmp_path / "sync"
    files = make_tree(src)
    first = aws("s3", "sync", src, f"s3://{b}").stdout
    assert first.count("upload:") == len(files)
    assert list_keys(s3, b) == sorted(files)
    # No changes -> nothing transferred.
    again = aws("s3", "sync", src, f"s3://{b}").stdout
    assert "upload:" not in again
    # Modify one (size change), add one, delete one.
    (src / "dir0/file0.txt").write_bytes(b"changed content, different size")
    (src / "new.txt").write_bytes(b"new file")
    (src / "dir1/file2.txt").unlink()
    out = aws("s3", "sync", "--delete", src, f"s3://{b}").stdout
    assert "delete:" in out and out.count("upload:") == 2
    expected = set(files) - {"dir1/file2.txt"} | {"new.txt"}
    assert list_keys(s3, b) == sorted(expected)
    assert s3.get_object(Bucket=b, Key="dir0/file0.txt")["Body"].read() == \
        b"changed content, different size"
    # Sync down to an empty dir reproduces the tree.
    down = tmp_path / "down"
    aws("s3", "sync", f"s3://{b}", down)
    for rel in expected:
        assert (down / rel).read_bytes() == (src / rel).read_bytes()


def test_large_file_multipart_cp(aws, s3, tmp_path):
    b = unique_name("cli")
    aws("s3", "mb", f"s3://{b}")
    big = tmp_path / "big.bin"
    data = rand_bytes(21 * MiB + 5, "cli-big")
    big.write_bytes(data)
    aws("s3", "cp", big, f"s3://{b}/big.bin")
    head = s3.head_object(Bucket=b, Key="big.bin")
    assert head["ContentLength"] == len(data)
    # 8 MiB parts -> 3 parts -> multipart ETag.
    parts = [data[i:i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert head["ETag"] == f'"{digest}-3"'
    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{b}/big.bin", back)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_rm_and_rb_force(aws, s3, tmp_path):
    b = unique_name("cli")
    aws("s3", "mb", f"s3://{b}")
    files = make_tree(tmp_path / "t", n_dirs=2, per_dir=3)
    aws("s3", "cp", "--recursive", tmp_path / "t", f"s3://{b}")
    aws("s3", "rm", f"s3://{b}/dir0/file0.txt")
    assert "dir0/file0.txt" not in list_keys(s3, b)
    aws("s3", "rm", "--recursive", f"s3://{b}/dir1/")
    assert list_keys(s3, b) == sorted(k for k in files if k.startswith("dir0/") and
                                      k != "dir0/file0.txt")
    # rb without --force on a non-empty bucket fails and keeps the bucket.
    p = aws("s3", "rb", f"s3://{b}", check=False)
    assert p.returncode != 0 and "BucketNotEmpty" in p.stderr
    aws("s3", "rb", "--force", f"s3://{b}")
    assert b not in {x["Name"] for x in s3.list_buckets()["Buckets"]}


def test_s3api_calls(aws, s3, tmp_path):
    b = unique_name("api")
    aws("s3api", "create-bucket", "--bucket", b)
    body = tmp_path / "body"
    body.write_bytes(b"s3api body")
    put = json.loads(aws("s3api", "put-object", "--bucket", b, "--key", "k/1",
                         "--body", body, "--content-type", "text/plain",
                         "--metadata", "a=1,b=2").stdout)
    assert put["ETag"] == f'"{md5_hex(b"s3api body")}"'
    head = json.loads(aws("s3api", "head-object", "--bucket", b, "--key", "k/1").stdout)
    assert head["ContentLength"] == 10 and head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"a": "1", "b": "2"}
    lst = json.loads(aws("s3api", "list-objects-v2", "--bucket", b, "--prefix", "k/").stdout)
    assert [o["Key"] for o in lst["Contents"]] == ["k/1"]
    out = tmp_path / "out"
    aws("s3api", "get-object", "--bucket", b, "--key", "k/1", "--range", "bytes=0-4", out)
    assert out.read_bytes() == b"s3api"
    aws("s3api", "copy-object", "--bucket", b, "--key", "k/2", "--copy-source", f"{b}/k/1")
    assert s3.get_object(Bucket=b, Key="k/2")["Body"].read() == b"s3api body"
    mpu = json.loads(aws("s3api", "create-multipart-upload", "--bucket", b, "--key", "mp").stdout)
    uploads = json.loads(aws("s3api", "list-multipart-uploads", "--bucket", b).stdout)
    assert [u["UploadId"] for u in uploads["Uploads"]] == [mpu["UploadId"]]
    aws("s3api", "abort-multipart-upload", "--bucket", b, "--key", "mp",
        "--upload-id", mpu["UploadId"])
    delete = json.loads(aws("s3api", "delete-objects", "--bucket", b, "--delete",
                            '{"Objects":[{"Key":"k/1"},{"Key":"k/2"}]}').stdout)
    assert sorted(d["Key"] for d in delete["Deleted"]) == ["k/1", "k/2"]
    missing = aws("s3api", "head-object", "--bucket", b, "--key", "k/1", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr
    aws("s3api", "delete-bucket", "--bucket", b)
    assert b not in {x["Name"] for x in s3.list_buckets()["Buckets"]}
