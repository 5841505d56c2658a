"""Server-side encryption: SSE-S3 and SSE-C through boto3 and the AWS CLI on one node, and
objects written through one node of a 3-node cluster read through another. SSE-KMS, SSE on
multipart uploads and copies, and bucket default encryption are in test_encryption_more.py."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess

import pytest
from botocore.exceptions import ClientError

import cluster_util
from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, rand_bytes, require_tool, unique_name

PORT_SHIFT = 650
MARKER = b"CAIRN-PLAINTEXT-MARKER-7f3a"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def ssec(key: bytes = KEY, prefix: str = "SSECustomer") -> dict:
    return {
        f"{prefix}Algorithm": "AES256",
        f"{prefix}Key": key,  # boto3 base64-encodes it and adds the MD5
    }


def body_with_markers(n: int, seed: str) -> bytes:
    data = bytearray(rand_bytes(n, seed))
    for off in range(0, n - len(MARKER), 100_000):
        data[off:off + len(MARKER)] = MARKER
    return bytes(data)


def chunk_bytes(storage_path) -> bytes:
    out = b""
    root = os.path.join(str(storage_path), "chunks")
    for d, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(d, f), "rb") as fh:
                out += fh.read()
    return out


def error_of(e: ClientError):
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def test_sse_s3_put_get_head_range(server, s3, bucket):
    data = body_with_markers(1_000_000, "sse-s3")
    r = s3.put_object(Bucket=bucket, Key="a", Body=data, ServerSideEncryption="AES256")
    assert r["ServerSideEncryption"] == "AES256"
    assert r["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    g = s3.get_object(Bucket=bucket, Key="a")
    assert g["ServerSideEncryption"] == "AES256"
    assert g["Body"].read() == data
    h = s3.head_object(Bucket=bucket, Key="a")
    assert h["ServerSideEncryption"] == "AES256" and h["ContentLength"] == len(data)
    for a, b in [(0, 0), (1, 10), (65535, 65537), (131071, 300000), (999_000, 999_999)]:
        got = s3.get_object(Bucket=bucket, Key="a", Range=f"bytes={a}-{b}")["Body"].read()
        assert got == data[a:b + 1], (a, b)
    got = s3.get_object(Bucket=bucket, Key="a", Range="bytes=-5")["Body"].read()
    assert got == data[-5:]
    # Empty and inline-sized objects too.
    for k, v in [("empty", b""), ("tiny", b"hello")]:
        s3.put_object(Bucket=bucket, Key=k, Body=v, ServerSideEncryption="AES256")
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == v


def test_chunks_hold_no_plaintext_and_equal_plaintexts_differ(server, s3, bucket):
    data = body_with_markers(2_000_000, "sse-dedup")
    before = chunk_bytes(server.storage_path)
    s3.put_object(Bucket=bucket, Key="x1", Body=data, ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="x2", Body=data, ServerSideEncryption="AES256")
    s3.put_object(Bucket=bucket, Key="x3", Body=data, **ssec())
    stored = chunk_bytes(server.storage_path)
    assert MARKER not in stored, "plaintext found in chunk files"
    # Each copy added its own chunks: about three times the data, not once.
    assert len(stored) - len(before) >= 3 * len(data)
    assert s3.get_object(Bucket=bucket, Key="x2")["Body"].read() == data


def test_sse_c_right_wrong_and_missing_key(server, s3, bucket):
    data = rand_bytes(200_000, "sse-c")
    r = s3.put_object(Bucket=bucket, Key="c", Body=data, **ssec())
    assert r["SSECustomerAlgorithm"] == "AES256"
    assert "ServerSideEncryption" not in r
    assert r["ETag"].strip('"') != hashlib.md5(data).hexdigest()
    g = s3.get_object(Bucket=bucket, Key="c", **ssec())
    assert g["Body"].read() == data
    assert g["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY).digest()).decode()
    got = s3.get_object(Bucket=bucket, Key="c", Range="bytes=70000-70010", **ssec())
    assert got["Body"].read() == data[70000:70011]
    assert s3.head_object(Bucket=bucket, Key="c", **ssec())["ContentLength"] == len(data)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **ssec(OTHER_KEY))
    assert error_of(e.value) == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c")
    assert error_of(e.value) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", **ssec(OTHER_KEY))
    assert error_of(e.value)[0] == 403
    # A customer key on an object that has none.
    s3.put_object(Bucket=bucket, Key="plain", Body=b"p")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **ssec())
    assert error_of(e.value) == (400, "InvalidRequest")
    # Copying an SSE-C source without its key is refused.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="c2", CopySource={"Bucket": bucket, "Key": "c"})
    assert error_of(e.value)[0] == 400


def test_sse_c_bad_headers(server, s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", SSECustomerAlgorithm="AES256",
                      SSECustomerKey=KEY[:16])
    assert error_of(e.value)[0] == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", SSECustomerAlgorithm="AES256",
                      SSECustomerKey=base64.b64encode(KEY).decode(), SSECustomerKeyMD5="AAAA")
    assert error_of(e.value)[0] == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ServerSideEncryption="AES256", **ssec())
    assert error_of(e.value)[0] == 400


def test_sse_s3_copy_keeps_data_readable(server, s3, bucket):
    data = rand_bytes(300_000, "sse-copy")
    s3.put_object(Bucket=bucket, Key="src", Body=data, ServerSideEncryption="AES256")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    g = s3.get_object(Bucket=bucket, Key="dst")
    assert g["Body"].read() == data and g["ServerSideEncryption"] == "AES256"


def test_unimplemented_variants_answer_501(server, s3, bucket):
    # SSE-KMS, multipart, copies and bucket defaults are covered by test_encryption_more.py;
    # the KMS encryption context stays 501.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSEncryptionContext="e30=")
    assert error_of(e.value) == (501, "NotImplemented")


def test_aws_cli_sse(server, bucket, tmp_path):
    exe = require_tool("aws")
    cfg = tmp_path / "config"
    cfg.write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n")
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                     f"aws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(creds),
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")

    def run(*args):
        p = subprocess.run([exe, "--endpoint-url", server.endpoint, *map(str, args)], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        return p

    src = tmp_path / "in.bin"
    data = rand_bytes(500_000, "cli-sse")
    src.write_bytes(data)
    run("s3", "cp", src, f"s3://{bucket}/cli-s3", "--sse", "AES256")
    run("s3", "cp", f"s3://{bucket}/cli-s3", tmp_path / "out1")
    assert (tmp_path / "out1").read_bytes() == data
    key = "k" * 32
    run("s3", "cp", src, f"s3://{bucket}/cli-c", "--sse-c", "AES256", "--sse-c-key", key)
    run("s3", "cp", f"s3://{bucket}/cli-c", tmp_path / "out2", "--sse-c", "AES256",
        "--sse-c-key", key)
    assert (tmp_path / "out2").read_bytes() == data


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with cluster_util.started_cluster(tmp_path_factory.mktemp("sse"), PORT_SHIFT) as c:
        yield c


def test_cluster_write_one_node_read_another(cluster):
    n1, n2 = cluster.node("n1"), cluster.node("n2")
    c1, c2 = n1.client(retries=5), n2.client(retries=5)
    b = unique_name("sse")
    c1.create_bucket(Bucket=b)
    data = rand_bytes(3_000_000, "sse-cluster")
    c1.put_object(Bucket=b, Key="s3", Body=data, ServerSideEncryption="AES256")
    c1.put_object(Bucket=b, Key="c", Body=data, **ssec())
    assert c2.get_object(Bucket=b, Key="s3")["Body"].read() == data
    assert c2.get_object(Bucket=b, Key="c", **ssec())["Body"].read() == data
    got = c2.get_object(Bucket=b, Key="c", Range="bytes=100-70000", **ssec())["Body"].read()
    assert got == data[100:70001]
