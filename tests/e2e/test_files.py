"""The native client: `cairn mb|rb|cp|ls|rm` against a real server's FileService (RPC port),
cross-checked with boto3 over S3 (a file is an ordinary object, both ways), and the failures a
user will meet (missing file, bad URL, wrong secret, unknown bucket) with clear messages and a
non-zero exit code."""

from __future__ import annotations

import hashlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import cluster_util
from conftest import cairn_bin
from e2e_util import ACCESS_KEY, SECRET_KEY, rand_bytes, unique_name

# Ports of this module's cluster: PORT_BASE + 30 .. + 32.
PORT_SHIFT = 30


def cli(server, *args, env=None, input=None, check=True, cwd=None, timeout=180):
    """Runs `cairn <args>` against `server`'s RPC port (a test server, a cluster node, or a
    `host:port`) with its credentials, verifying the node with the CA in its data directory."""
    if isinstance(server, str):
        endpoint = server
    elif isinstance(server, cluster_util.ClusterNode):
        endpoint = server.rpc_addr
    else:
        endpoint = f"127.0.0.1:{server.rpc_port}"
    e = {k: v for k, v in os.environ.items()
         if k not in ("ACCESS_KEY", "SECRET_KEY", "STORAGE_PATH", "CAIRN_ENDPOINT",
                      "CAIRN_CA_FILE", "CAIRN_CA_FINGERPRINT")}
    e.update({
        "CAIRN_ENDPOINT": endpoint,
        "ACCESS_KEY": ACCESS_KEY,
        "SECRET_KEY": SECRET_KEY,
    })
    if not isinstance(server, str):
        e["CAIRN_CA_FILE"] = str(server.storage_path / "tls" / "ca.pem")
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    r = subprocess.run(
        [str(cairn_bin()), *args],
        env=e, input=input, capture_output=True, timeout=timeout, cwd=cwd,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"cairn {' '.join(args)} exited {r.returncode}\n"
            f"stdout: {r.stdout.decode(errors='replace')}\n"
            f"stderr: {r.stderr.decode(errors='replace')}"
        )
    return r


def fails(server, *args, **kwargs) -> str:
    """Runs a command that must fail; returns its stderr (one clear line, no backtrace)."""
    r = cli(server, *args, check=False, **kwargs)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, f"cairn {' '.join(args)} succeeded: {r.stdout!r}"
    assert "panicked" not in err and "backtrace" not in err.lower(), err
    return err


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ------------------------------------------------------------------------------------ buckets

def test_mb_ls_rb_buckets(server, s3):
    name = unique_name("mb")
    r = cli(server, "mb", name)
    assert name in r.stdout.decode()
    s3.head_bucket(Bucket=name)  # visible over S3
    assert name in cli(server, "ls").stdout.decode().split()

    assert "already exists" in fails(server, "mb", name)
    assert "invalid bucket name" in fails(server, "mb", "Not_A_Bucket")

    s3.put_object(Bucket=name, Key="x", Body=b"1")
    assert "not empty" in fails(server, "rb", f"cairn://{name}")
    s3.delete_object(Bucket=name, Key="x")
    cli(server, "rb", f"cairn://{name}")
    assert name not in cli(server, "ls").stdout.decode().split()


# ------------------------------------------------------------------------------ cp both ways

def test_cli_upload_is_readable_over_s3(server, s3, bucket, tmp_path):
    data = rand_bytes(9 * 1024 * 1024 + 17, "cli-up")  # several chunks and pieces
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    out = cli(server, "cp", str(src), f"cairn://{bucket}/dir/big.bin").stdout.decode()
    assert f"cairn://{bucket}/dir/big.bin" in out and str(len(data)) in out

    obj = s3.get_object(Bucket=bucket, Key="dir/big.bin")
    assert obj["Body"].read() == data
    assert obj["ETag"].strip('"') == md5(data)
    assert obj["ContentLength"] == len(data)

    # Key from the file name when the URL ends in `/`; type from the extension; metadata.
    txt = tmp_path / "notes.txt"
    txt.write_bytes(b"hello from the cli\n")
    cli(server, "cp", str(txt), f"cairn://{bucket}/docs/", "--meta", "color=blue")
    head = s3.head_object(Bucket=bucket, Key="docs/notes.txt")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"color": "blue"}

    # From stdin.
    cli(server, "cp", "-", f"cairn://{bucket}/stdin.bin", input=data[:100_000])
    assert s3.get_object(Bucket=bucket, Key="stdin.bin")["Body"].read() == data[:100_000]


def test_s3_upload_is_readable_via_cli(server, s3, bucket, tmp_path):
    data = rand_bytes(6 * 1024 * 1024 + 5, "s3-up")
    s3.put_object(Bucket=bucket, Key="from-s3.bin", Body=data)
    dst = tmp_path / "got.bin"
    cli(server, "cp", f"cairn://{bucket}/from-s3.bin", str(dst))
    assert dst.read_bytes() == data

    # To stdout.
    r = cli(server, "cp", f"cairn://{bucket}/from-s3.bin", "-")
    assert r.stdout == data

    # Into a directory: the key's last segment names the file.
    d = tmp_path / "into"
    d.mkdir()
    cli(server, "cp", f"cairn://{bucket}/from-s3.bin", str(d))
    assert (d / "from-s3.bin").read_bytes() == data

    # A multipart object (its ETag is not an MD5; the size is still verified).
    part1, part2 = rand_bytes(5 * 1024 * 1024, "p1"), rand_bytes(1234, "p2")
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp.bin")
    parts = []
    for n, p in enumerate([part1, part2], start=1):
        e = s3.upload_part(Bucket=bucket, Key="mp.bin", UploadId=up["UploadId"],
                           PartNumber=n, Body=p)["ETag"]
        parts.append({"PartNumber": n, "ETag": e})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp.bin", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    cli(server, "cp", f"cairn://{bucket}/mp.bin", str(tmp_path / "mp.bin"))
    assert (tmp_path / "mp.bin").read_bytes() == part1 + part2

    # No temporary files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["got.bin", "into", "mp.bin"]


def test_overwrite_replaces_content(server, s3, bucket, tmp_path):
    f = tmp_path / "f"
    for i in range(2):
        data = rand_bytes(70_000 + i, ("ow", i))
        f.write_bytes(data)
        cli(server, "cp", str(f), f"cairn://{bucket}/same")
        assert s3.get_object(Bucket=bucket, Key="same")["Body"].read() == data


# ------------------------------------------------------------------------------------- ls/rm

def test_ls_prefix_delimiter_recursive_and_pages(server, s3, bucket):
    for k in ["a/1", "a/b/2", "c"]:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    top = cli(server, "ls", f"cairn://{bucket}").stdout.decode().splitlines()
    assert any(l.split()[-2:] == ["PRE", "a/"] for l in top), top
    assert any(l.split()[-1] == "c" and l.split()[-2] == "1" for l in top), top
    assert len(top) == 2

    sub = cli(server, "ls", f"cairn://{bucket}/a/").stdout.decode().splitlines()
    assert [l.split()[-1] for l in sub] == ["a/b/", "a/1"]

    rec = cli(server, "ls", "-r", f"cairn://{bucket}").stdout.decode().splitlines()
    assert [l.split()[-1] for l in rec] == ["a/1", "a/b/2", "c"]

    # More than one page (1000 per page): the CLI follows the continuation token.
    keys = [f"many/{i:05d}" for i in range(1050)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))
    listed = cli(server, "ls", "-r", f"cairn://{bucket}/many/").stdout.decode().splitlines()
    assert [l.split()[-1] for l in listed] == keys


def test_rm(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="gone", Body=b"bye")
    s3.put_object(Bucket=bucket, Key="also", Body=b"bye")
    out = cli(server, "rm", f"cairn://{bucket}/gone", f"cairn://{bucket}/also").stdout.decode()
    assert "gone" in out and "also" in out
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert f"no such file `{bucket}/gone`" in fails(server, "rm", f"cairn://{bucket}/gone")
    assert "names a bucket, not a file" in fails(server, "rm", f"cairn://{bucket}")


# ----------------------------------------------------------------------------- credentials

def test_credentials_from_data_dir(server, bucket, tmp_path):
    """`--data-dir` reads the node's credentials.toml (the format `cairn server` writes)."""
    (tmp_path / "credentials.toml").write_text(
        f'access_key = "{ACCESS_KEY}"\nsecret_key = "{SECRET_KEY}"\n'
    )
    r = cli(server, "ls", "--data-dir", str(tmp_path),
            env={"ACCESS_KEY": None, "SECRET_KEY": None})
    assert bucket in r.stdout.decode().split()


def test_wrong_or_missing_credentials(server, s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="k", Body=b"keep")
    f = tmp_path / "f"
    f.write_bytes(b"overwrite attempt")
    err = fails(server, "cp", str(f), f"cairn://{bucket}/k", env={"SECRET_KEY": "wrong-secret"})
    assert "authentication failed" in err and "signature does not match" in err, err
    err = fails(server, "ls", env={"ACCESS_KEY": "nobody"})
    assert "unknown access key `nobody`" in err, err
    err = fails(server, "ls", env={"ACCESS_KEY": None, "SECRET_KEY": None}, cwd=tmp_path)
    assert "no credentials" in err, err
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"keep"


# ------------------------------------------------------------------------------- bad input

def test_bad_input_clear_messages(server, s3, bucket, tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"data")

    err = fails(server, "cp", str(tmp_path / "missing.bin"), f"cairn://{bucket}/x")
    assert "missing.bin" in err and "No such file" in err, err
    assert "is not a regular file" in fails(server, "cp", str(tmp_path), f"cairn://{bucket}/x")
    assert "unsupported scheme `s3://`" in fails(server, "cp", str(f), "s3://b/k")
    assert "no bucket" in fails(server, "cp", str(f), "cairn://")
    assert "must be a cairn://" in fails(server, "cp", str(f), str(tmp_path / "g"))
    assert "not supported" in fails(server, "cp", f"cairn://{bucket}/a", f"cairn://{bucket}/b")
    err = fails(server, "cp", str(f), f"cairn://{bucket}/a/../b")
    assert "'.' or '..'" in err, err
    err = fails(server, "cp", str(f), "cairn://no-such-bucket-x/k")
    assert "no such bucket `no-such-bucket-x`" in err, err

    # A failed download leaves nothing behind.
    dst = tmp_path / "out"
    dst.mkdir()
    err = fails(server, "cp", f"cairn://{bucket}/absent", str(dst / "absent.bin"))
    assert f"no such file `{bucket}/absent`" in err, err
    assert list(dst.iterdir()) == []

    err = fails(server, "ls", env={"CAIRN_ENDPOINT": "127.0.0.1:1"})
    assert "cannot connect to 127.0.0.1:1" in err, err
    # The S3 port does not speak FileService.
    err = fails(server, "ls", env={"CAIRN_ENDPOINT": f"127.0.0.1:{server.api_port}"})
    assert err.strip(), err

    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


# --------------------------------------------------------------------------------- a cluster

@pytest.fixture
def cluster3(tmp_path_factory):
    """A converged 3-node cluster on ports away from test_cluster.py's, so both can run."""
    with cluster_util.started_cluster(tmp_path_factory.mktemp("files-cluster"), PORT_SHIFT) as c:
        yield c


def test_files_through_every_node_of_a_cluster(cluster3, tmp_path):
    """Upload through one node, read through the others (the bucket's partition leader and
    the chunks' replicas are wherever the layout put them), over FileService and S3."""
    n1, n2, n3 = (cluster3.nodes[f"n{i}"] for i in (1, 2, 3))
    bucket = unique_name("fc")
    cli(n1, "mb", bucket)
    data = rand_bytes(3 * 1024 * 1024 + 99, "cluster-file")  # several 1 MiB chunks
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    cli(n2, "cp", str(src), f"cairn://{bucket}/f.bin")

    listed = cli(n3, "ls", f"cairn://{bucket}").stdout.decode().split()
    assert "f.bin" in listed and str(len(data)) in listed
    for node in (n1, n3):
        dst = tmp_path / f"via-{node.node_id}.bin"
        cli(node, "cp", f"cairn://{bucket}/f.bin", str(dst))
        assert dst.read_bytes() == data
    assert n3.client().get_object(Bucket=bucket, Key="f.bin")["Body"].read() == data

    cli(n3, "rm", f"cairn://{bucket}/f.bin")
    assert n2.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
