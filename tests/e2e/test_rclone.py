"""rclone (S3 backend, provider Other, path-style) against Cairn: bulk sync of a nested tree."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, rand_bytes, require_tool, unique_name

N_FILES = 1000


@pytest.fixture(scope="module")
def rclone(server, tmp_path_factory):
    exe = require_tool("rclone")
    cfg = tmp_path_factory.mktemp("rclonecfg") / "rclone.conf"
    cfg.write_text("")  # never read the user's config
    # AWS_* (e.g. AWS_CA_BUNDLE) would be picked up by rclone's S3 SDK; keep them out.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
    env.update(
        RCLONE_CONFIG=str(cfg),
        RCLONE_CONFIG_CAIRN_TYPE="s3",
        RCLONE_CONFIG_CAIRN_PROVIDER="Other",
        RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID=ACCESS_KEY,
        RCLONE_CONFIG_CAIRN_SECRET_ACCESS_KEY=SECRET_KEY,
        RCLONE_CONFIG_CAIRN_ENDPOINT=server.endpoint,
        RCLONE_CONFIG_CAIRN_REGION=REGION,
        RCLONE_CONFIG_CAIRN_FORCE_PATH_STYLE="true",
    )

    def run(*args, check=True, timeout=600):
        cmd = [exe, "--retries", "1", "--low-level-retries", "2", *map(str, args)]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\n"
                f"stderr:\n{p.stderr[-6000:]}"
            )
        return p

    return run


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("rclone-src")
    files = {}
    for i in range(N_FILES):
        rel = f"l1-{i % 10}/l2-{i % 7}/l3-{i % 3}/file-{i:04d}.dat"
        # Mostly small, a few larger than the inline threshold.
        size = 200_000 if i % 100 == 0 else 10 + (i * 37) % 3000
        data = rand_bytes(size, ("rclone", i))
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files[rel] = data
    past = time.time() - 3600
    for rel in files:
        os.utime(root / rel, (past, past))
    return root, files


def remote_keys(s3, bucket) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def copied_count(stderr: str) -> int:
    return sum(1 for ln in stderr.splitlines() if ": Copied (" in ln)


def test_rclone_sync_check_resync_delete(rclone, s3, tree):
    root, files = tree
    b = unique_name("rcl")
    rclone("mkdir", f"cairn:{b}")
    assert b in {x["Name"] for x in s3.list_buckets()["Buckets"]}

    t0 = time.monotonic()
    first = rclone("sync", root, f"cairn:{b}", "-v", "--transfers", "8", "--checkers", "16")
    print(f"rclone first sync of {N_FILES} files: {time.monotonic() - t0:.1f}s")
    assert copied_count(first.stderr) == N_FILES, first.stderr[-3000:]
    assert remote_keys(s3, b) == sorted(files)

    # Spot-check content through boto3.
    for rel in list(sorted(files))[::97]:
        assert s3.get_object(Bucket=b, Key=rel)["Body"].read() == files[rel]

    # `rclone check` compares sizes and MD5 (ETag) of every file.
    chk = rclone("check", root, f"cairn:{b}", check=False)
    assert chk.returncode == 0, chk.stderr[-3000:]
    assert "0 differences found" in chk.stderr
    assert f"{N_FILES} matching files" in chk.stderr

    # Re-sync transfers nothing.
    again = rclone("sync", root, f"cairn:{b}", "-v", "--transfers", "8", "--checkers", "16")
    assert copied_count(again.stderr) == 0, again.stderr[-3000:]
    assert "Deleted" not in again.stderr

    # Delete a few locally; sync removes them remotely.
    gone = sorted(files)[::211]
    for rel in gone:
        (root / rel).unlink()
    third = rclone("sync", root, f"cairn:{b}", "-v", "--transfers", "8", "--checkers", "16")
    assert copied_count(third.stderr) == 0
    assert remote_keys(s3, b) == sorted(set(files) - set(gone))
    chk = rclone("check", root, f"cairn:{b}", check=False)
    assert chk.returncode == 0, chk.stderr[-3000:]

    # Download the whole bucket back and compare byte for byte.
    down = root.parent / "rclone-down"
    rclone("copy", f"cairn:{b}", down, "--transfers", "8")
    for rel in set(files) - set(gone):
        assert (down / rel).read_bytes() == files[rel], rel

    # Purge removes the bucket and everything in it.
    rclone("purge", f"cairn:{b}")
    assert b not in {x["Name"] for x in s3.list_buckets()["Buckets"]}


def test_rclone_lsjson_and_cat(rclone, s3):
    b = unique_name("rcl")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="a/b.txt", Body=b"rclone cat works")
    out = rclone("cat", f"cairn:{b}/a/b.txt").stdout
    assert out == "rclone cat works"
    ls = rclone("lsf", "-R", f"cairn:{b}").stdout.split()
    assert sorted(ls) == ["a/", "a/b.txt"]
