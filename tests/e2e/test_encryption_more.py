"""Server-side encryption beyond single PUTs: SSE-S3, SSE-C and SSE-KMS on multipart uploads
(range and partNumber reads across part boundaries, the SSE-C key on every part), copies in
every direction (CopyObject and UploadPartCopy), the built-in KMS key store (`cairn kms`,
unknown and disabled keys, the default key), bucket default encryption, what lands on disk,
and a 3-node cluster. What stays unimplemented (the KMS encryption context, DSSE) answers 501.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import time
import uuid

import pytest
from botocore.exceptions import ClientError

import cluster_util
from cluster_util import Cluster, cairn_bin
from e2e_util import (ACCESS_KEY, REGION, SECRET_KEY, chunk_files, rand_bytes, raw_request,
                      require_tool, unique_name)

PORT_SHIFT = 740
MIB = 1024 * 1024
MARKER = b"CAIRN-PLAINTEXT-MARKER-kms-91c2"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def ssec(key: bytes = KEY, prefix: str = "SSECustomer") -> dict:
    return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": key}


def copy_ssec(key: bytes = KEY) -> dict:
    return ssec(key, "CopySourceSSECustomer")


def error_of(e: ClientError):
    return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def body_with_markers(n: int, seed: str) -> bytes:
    data = bytearray(rand_bytes(n, seed))
    for off in range(0, n - len(MARKER), 50_000):
        data[off:off + len(MARKER)] = MARKER
    return bytes(data)


def chunk_bytes(storage_path, ids) -> bytes:
    root = os.path.join(str(storage_path), "chunks")
    out = b""
    for cid in ids:
        with open(os.path.join(root, cid[:2], cid[2:4], cid), "rb") as fh:
            out += fh.read()
    return out


def cli(admin_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`cairn <args>` against a management API with the root credentials."""
    env = {k: v for k, v in os.environ.items() if k not in ("CAIRN_TOKEN", "STORAGE_PATH")}
    env.update({"CAIRN_ADMIN": admin_url, "ACCESS_KEY": ACCESS_KEY, "SECRET_KEY": SECRET_KEY})
    out = subprocess.run([str(cairn_bin()), *args], capture_output=True, text=True, timeout=60,
                         env=env, cwd="/")
    if check:
        assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def new_kms_key(admin_url: str, prefix: str = "app") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    out = cli(admin_url, "kms", "create-key", name, "--description", "e2e")
    assert name in out.stdout and "enabled" in out.stdout
    return name


PARTS = [5 * MIB, 5 * MIB, 700_000]


def multipart(s3, bucket: str, key: str, data: bytes, create: dict, part: dict) -> dict:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)
    done, off = [], 0
    for i, size in enumerate(PARTS, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=i,
                           Body=data[off:off + size], **part)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
        off += size
    c = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": done}, **part)
    return {"create": up, "part": r, "complete": c}


def check_reads(s3, bucket: str, key: str, data: bytes, **extra):
    assert s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read() == data
    b1 = PARTS[0]
    b2 = PARTS[0] + PARTS[1]
    for a, b in [(0, 0), (b1 - 10, b1 + 10), (b1 - 1, b1), (b1, b1), (65_530, 65_540),
                 (b1 - 70_000, b2 + 70_000), (b2 - 1, len(data) - 1), (3, len(data) - 3)]:
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={a}-{b}", **extra)
        assert got["Body"].read() == data[a:b + 1], (a, b)
    got = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-100", **extra)["Body"].read()
    assert got == data[-100:]
    g = s3.get_object(Bucket=bucket, Key=key, PartNumber=2, **extra)
    assert g["Body"].read() == data[b1:b2]
    assert g["PartsCount"] == 3


# ---------------------------------------------------------------------------------------------
# Multipart
# ---------------------------------------------------------------------------------------------

def test_multipart_sse_s3(server, s3, bucket):
    data = body_with_markers(sum(PARTS), "mp-s3")
    r = multipart(s3, bucket, "m", data, {"ServerSideEncryption": "AES256"}, {})
    assert r["create"]["ServerSideEncryption"] == "AES256"
    assert r["part"]["ServerSideEncryption"] == "AES256"
    assert r["complete"]["ServerSideEncryption"] == "AES256"
    # The multipart ETag is computed from the parts' plaintext MD5s, as AWS does for SSE-S3.
    md5s = b"".join(hashlib.md5(data[o:o + n]).digest()
                    for o, n in zip([0, PARTS[0], PARTS[0] + PARTS[1]], PARTS))
    assert r["complete"]["ETag"].strip('"') == f"{hashlib.md5(md5s).hexdigest()}-3"
    h = s3.head_object(Bucket=bucket, Key="m")
    assert h["ServerSideEncryption"] == "AES256" and h["ContentLength"] == len(data)
    check_reads(s3, bucket, "m", data)


def test_multipart_sse_c_and_part_keys(server, s3, bucket):
    data = body_with_markers(sum(PARTS), "mp-c")
    up = s3.create_multipart_upload(Bucket=bucket, Key="c", **ssec())
    assert up["SSECustomerAlgorithm"] == "AES256"
    uid = up["UploadId"]
    # A part without the key, or with another one, is refused as by AWS.
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=1, Body=b"x" * 100)
    assert error_of(e.value) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=1, Body=b"x" * 100,
                       **ssec(OTHER_KEY))
    assert error_of(e.value) == (400, "InvalidArgument")
    # A customer key on a part of an upload that has none.
    plain = s3.create_multipart_upload(Bucket=bucket, Key="p")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="p", UploadId=plain["UploadId"], PartNumber=1,
                       Body=b"x", **ssec())
    assert error_of(e.value)[0] == 400
    s3.abort_multipart_upload(Bucket=bucket, Key="p", UploadId=plain["UploadId"])
    # Part 1 uploaded twice (the second replaces the first; each gets its own part key).
    s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=1,
                   Body=data[:PARTS[0]][::-1], **ssec())
    done, off = [], 0
    for i, size in enumerate(PARTS, start=1):
        r = s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=i,
                           Body=data[off:off + size], **ssec())
        assert r["SSECustomerAlgorithm"] == "AES256"
        # SSE-C ETags do not reveal the plaintext MD5.
        assert r["ETag"].strip('"') != hashlib.md5(data[off:off + size]).hexdigest()
        done.append({"PartNumber": i, "ETag": r["ETag"]})
        off += size
    s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid,
                                 MultipartUpload={"Parts": done}, **ssec())
    check_reads(s3, bucket, "c", data, **ssec())
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", Range="bytes=0-10")
    assert error_of(e.value) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **ssec(OTHER_KEY))
    assert error_of(e.value) == (403, "AccessDenied")
    h = s3.head_object(Bucket=bucket, Key="c", **ssec())
    assert h["SSECustomerAlgorithm"] == "AES256"


def test_multipart_kms(server, s3, bucket):
    name = new_kms_key(server.admin_url)
    data = body_with_markers(sum(PARTS), "mp-kms")
    r = multipart(s3, bucket, "k", data,
                  {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": name}, {})
    for step in ("create", "part", "complete"):
        assert r[step]["ServerSideEncryption"] == "aws:kms", step
        assert r[step]["SSEKMSKeyId"] == name, step
    h = s3.head_object(Bucket=bucket, Key="k")
    assert h["ServerSideEncryption"] == "aws:kms" and h["SSEKMSKeyId"] == name
    check_reads(s3, bucket, "k", data)


def test_upload_part_copy_between_encryptions(server, s3, bucket):
    src = rand_bytes(6 * MIB, "upc-src")
    s3.put_object(Bucket=bucket, Key="src-c", Body=src, **ssec())
    s3.put_object(Bucket=bucket, Key="src-s3", Body=src, ServerSideEncryption="AES256")
    # SSE-C source into an SSE-S3 upload, then SSE-S3 source into an SSE-C upload.
    up = s3.create_multipart_upload(Bucket=bucket, Key="d1", ServerSideEncryption="AES256")
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="d1", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src-c"})
    assert error_of(e.value) == (400, "InvalidRequest")
    r1 = s3.upload_part_copy(Bucket=bucket, Key="d1", UploadId=up["UploadId"], PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src-c"}, **copy_ssec())
    r2 = s3.upload_part_copy(Bucket=bucket, Key="d1", UploadId=up["UploadId"], PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src-c"},
                             CopySourceRange="bytes=100-200099", **copy_ssec())
    assert r1["ServerSideEncryption"] == "AES256"
    s3.complete_multipart_upload(Bucket=bucket, Key="d1", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
                                     {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]}]})
    want = src + src[100:200100]
    assert s3.get_object(Bucket=bucket, Key="d1")["Body"].read() == want
    got = s3.get_object(Bucket=bucket, Key="d1", Range=f"bytes={len(src) - 5}-{len(src) + 5}")
    assert got["Body"].read() == want[len(src) - 5:len(src) + 6]

    up = s3.create_multipart_upload(Bucket=bucket, Key="d2", **ssec(OTHER_KEY))
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="d2", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src-s3"})
    assert error_of(e.value) == (400, "InvalidRequest")
    r = s3.upload_part_copy(Bucket=bucket, Key="d2", UploadId=up["UploadId"], PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src-s3"}, **ssec(OTHER_KEY))
    s3.complete_multipart_upload(Bucket=bucket, Key="d2", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="d2", **ssec(OTHER_KEY))["Body"].read() == src


# ---------------------------------------------------------------------------------------------
# CopyObject
# ---------------------------------------------------------------------------------------------

def test_copy_in_every_direction(server, s3, bucket):
    name = new_kms_key(server.admin_url)
    data = rand_bytes(400_000, "copy-dirs")
    kinds = {
        "plain": ({}, {}, {}),
        "s3": ({"ServerSideEncryption": "AES256"}, {}, {}),
        "c": (ssec(), ssec(), copy_ssec()),
        "kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": name}, {}, {}),
    }
    for k, (put, _, _) in kinds.items():
        s3.put_object(Bucket=bucket, Key=f"src-{k}", Body=data, **put)
    for sk, (_, _, src_copy) in kinds.items():
        for dk, (dst_put, dst_get, _) in kinds.items():
            key = f"dst-{sk}-{dk}"
            r = s3.copy_object(Bucket=bucket, Key=key,
                               CopySource={"Bucket": bucket, "Key": f"src-{sk}"},
                               **src_copy, **dst_put)
            g = s3.get_object(Bucket=bucket, Key=key, **dst_get)
            assert g["Body"].read() == data, key
            if dk == "s3":
                assert r["ServerSideEncryption"] == "AES256" == g["ServerSideEncryption"]
            if dk == "kms":
                assert g["ServerSideEncryption"] == "aws:kms" and g["SSEKMSKeyId"] == name
                assert r["SSEKMSKeyId"] == name
            if dk == "c":
                assert r["SSECustomerAlgorithm"] == "AES256"
                with pytest.raises(ClientError):
                    s3.get_object(Bucket=bucket, Key=key)
            if dk == "plain":
                # No headers: the source's protection is kept (SSE-C becomes SSE-S3).
                want = {"plain": None, "s3": "AES256", "c": "AES256", "kms": "aws:kms"}[sk]
                assert g.get("ServerSideEncryption") == want, key
    # The source key: missing (400) or wrong (403).
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src-c"})
    assert error_of(e.value) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src-c"},
                       **copy_ssec(OTHER_KEY))
    assert error_of(e.value) == (403, "AccessDenied")
    # Re-encrypting an object in place (copy onto itself with new encryption) is allowed.
    s3.copy_object(Bucket=bucket, Key="src-plain",
                   CopySource={"Bucket": bucket, "Key": "src-plain"},
                   ServerSideEncryption="AES256")
    assert s3.head_object(Bucket=bucket, Key="src-plain")["ServerSideEncryption"] == "AES256"


def test_copies_never_share_chunks_across_keys(server, s3, bucket):
    data = body_with_markers(3 * MIB, "copy-chunks")
    s3.put_object(Bucket=bucket, Key="plain", Body=data)
    before = chunk_files(server.storage_path)
    s3.copy_object(Bucket=bucket, Key="enc", CopySource={"Bucket": bucket, "Key": "plain"},
                   ServerSideEncryption="AES256")
    added = chunk_files(server.storage_path) - before
    assert added, "an encrypted copy must write its own chunks"
    assert MARKER not in chunk_bytes(server.storage_path, added)


# ---------------------------------------------------------------------------------------------
# KMS key store
# ---------------------------------------------------------------------------------------------

def test_kms_errors_disable_and_default_key(server, s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="x", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="no-such-key")
    assert error_of(e.value) == (400, "KMS.NotFoundException")
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="x", ServerSideEncryption="aws:kms",
                                   SSEKMSKeyId="no-such-key")
    assert error_of(e.value) == (400, "KMS.NotFoundException")
    # A key id without aws:kms is refused.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="x", Body=b"x", SSEKMSKeyId="k")
    assert error_of(e.value) == (400, "InvalidArgument")

    name = new_kms_key(server.admin_url)
    # Every id form AWS clients send names the same key.
    for i, kid in enumerate([name, f"alias/{name}",
                             f"arn:aws:kms:{REGION}:000000000000:key/{name}"]):
        s3.put_object(Bucket=bucket, Key=f"form{i}", Body=b"v", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=kid)
        assert s3.head_object(Bucket=bucket, Key=f"form{i}")["SSEKMSKeyId"] == name
    data = rand_bytes(100_000, "kms-dis")
    r = s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=name)
    assert r["ServerSideEncryption"] == "aws:kms" and r["SSEKMSKeyId"] == name
    assert r["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    out = cli(server.admin_url, "kms", "disable", name)
    assert "disabled" in out.stdout
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_of(e.value) == (400, "KMS.DisabledException")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=name)
    assert error_of(e.value) == (400, "KMS.DisabledException")
    listing = cli(server.admin_url, "kms", "list").stdout
    assert any(line.split()[:2] == [name, "disabled"] for line in listing.splitlines())
    cli(server.admin_url, "kms", "enable", name)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    # Creating a key twice is refused; bad names too.
    assert cli(server.admin_url, "kms", "create-key", name, check=False).returncode != 0
    assert cli(server.admin_url, "kms", "create-key", "/bad", check=False).returncode != 0

    # No key id: the default key aws/s3, created on first use.
    r = s3.put_object(Bucket=bucket, Key="d", Body=b"default", ServerSideEncryption="aws:kms")
    assert r["SSEKMSKeyId"] == "aws/s3"
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == b"default"
    listing = cli(server.admin_url, "kms", "list", "--json").stdout
    assert '"aws/s3"' in listing
    # A name with a slash works through the CLI (URL-encoded path segment).
    assert "disabled" in cli(server.admin_url, "kms", "disable", "aws/s3").stdout
    cli(server.admin_url, "kms", "enable", "aws/s3")


def test_kms_api_requires_admin(server):
    import requests  # noqa: PLC0415

    r = requests.get(f"{server.admin_url}/kms/keys", timeout=10)
    assert r.status_code == 401
    doc = requests.get(f"{server.admin_url}/openapi.json", timeout=10).json()
    assert "/kms/keys" in doc["paths"] and "/kms/keys/{name}/disable" in doc["paths"]


# ---------------------------------------------------------------------------------------------
# Bucket default encryption
# ---------------------------------------------------------------------------------------------

def test_bucket_default_encryption(server, s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(e.value) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    r = s3.put_object(Bucket=bucket, Key="a", Body=b"aaa")
    assert r["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket=bucket, Key="a")["ServerSideEncryption"] == "AES256"
    # Explicit headers win over the default.
    s3.put_object(Bucket=bucket, Key="c", Body=b"ccc", **ssec())
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="c", **ssec())

    name = new_kms_key(server.admin_url)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": name},
                   "BucketKeyEnabled": True}]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                           "KMSMasterKeyID": name}
    assert rule["BucketKeyEnabled"] is True
    data = rand_bytes(sum(PARTS), "default-mp")
    r = multipart(s3, bucket, "m", data, {}, {})
    assert r["create"]["ServerSideEncryption"] == "aws:kms"
    h = s3.head_object(Bucket=bucket, Key="m")
    assert h["ServerSideEncryption"] == "aws:kms" and h["SSEKMSKeyId"] == name
    assert s3.get_object(Bucket=bucket, Key="m", Range="bytes=5242870-5242889")["Body"].read() \
        == data[5242870:5242890]
    s3.put_object(Bucket=bucket, Key="plain-src", Body=b"x" * 1000, ServerSideEncryption="AES256")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "plain-src"})
    assert s3.head_object(Bucket=bucket, Key="copy")["SSEKMSKeyId"] == name

    # Invalid configurations.
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256",
                                                              "KMSMasterKeyID": name}}]})
    assert error_of(e.value)[0] == 400
    s3.delete_bucket_encryption(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_of(e.value) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    r = s3.put_object(Bucket=bucket, Key="after", Body=b"zzz")
    assert "ServerSideEncryption" not in r
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=unique_name("none"))
    assert error_of(e.value) == (404, "NoSuchBucket")


# ---------------------------------------------------------------------------------------------
# On disk
# ---------------------------------------------------------------------------------------------

def test_disk_holds_no_plaintext_and_keys_scope_chunks(server, s3, bucket):
    name_a = new_kms_key(server.admin_url, "a")
    name_b = new_kms_key(server.admin_url, "b")
    data = body_with_markers(sum(PARTS), "disk")
    ids = {}
    for label, create, part in [
        ("s3", {"ServerSideEncryption": "AES256"}, {}),
        ("c", ssec(), ssec()),
        ("c2", ssec(OTHER_KEY), ssec(OTHER_KEY)),
        ("kms-a", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": name_a}, {}),
        ("kms-b", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": name_b}, {}),
        ("kms-a2", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": name_a}, {}),
    ]:
        before = chunk_files(server.storage_path)
        multipart(s3, bucket, label, data, create, part)
        ids[label] = chunk_files(server.storage_path) - before
        assert ids[label], label
        assert MARKER not in chunk_bytes(server.storage_path, ids[label]), label
    # Equal plaintexts under different keys (and under one KMS key, different data keys)
    # share no chunk.
    labels = list(ids)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            assert not ids[a] & ids[b], (a, b)
    # A plaintext copy does deduplicate (control: the check above is not vacuous).
    s3.put_object(Bucket=bucket, Key="p1", Body=data[:3 * MIB])
    before = chunk_files(server.storage_path)
    s3.put_object(Bucket=bucket, Key="p2", Body=data[:3 * MIB])
    assert chunk_files(server.storage_path) - before == set()


# ---------------------------------------------------------------------------------------------
# Still 501, and the AWS CLI
# ---------------------------------------------------------------------------------------------

def test_unimplemented_variants_answer_501(server, s3, bucket):
    ctx = base64.b64encode(b'{"a":"b"}').decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSEncryptionContext=ctx)
    assert error_of(e.value) == (501, "NotImplemented")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms:dsse")
    assert error_of(e.value) == (501, "NotImplemented")
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}]})
    assert error_of(e.value) == (501, "NotImplemented")
    # Nothing was stored.
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(e.value)[0] == 404


def test_aws_cli_kms_and_multipart_sse(server, bucket, tmp_path):
    exe = require_tool("aws")
    name = new_kms_key(server.admin_url, "cli")
    cfg = tmp_path / "config"
    cfg.write_text(f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n"
                   "    multipart_threshold = 5MB\n    multipart_chunksize = 5MB\n")
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                     f"aws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(cfg), AWS_SHARED_CREDENTIALS_FILE=str(creds),
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")

    def run(*args):
        p = subprocess.run([exe, "--endpoint-url", server.endpoint, *map(str, args)], env=env,
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr
        return p

    src = tmp_path / "in.bin"
    data = rand_bytes(12 * MIB, "cli-kms")
    src.write_bytes(data)
    # Multipart (12 MiB > threshold) with SSE-KMS and a named key.
    run("s3", "cp", src, f"s3://{bucket}/kms", "--sse", "aws:kms", "--sse-kms-key-id", name)
    head = run("s3api", "head-object", "--bucket", bucket, "--key", "kms").stdout
    assert '"aws:kms"' in head and name in head
    run("s3", "cp", f"s3://{bucket}/kms", tmp_path / "out1")
    assert (tmp_path / "out1").read_bytes() == data
    # Multipart SSE-C up and down (the CLI sends the key with every part).
    key = "k" * 32
    run("s3", "cp", src, f"s3://{bucket}/c", "--sse-c", "AES256", "--sse-c-key", key)
    run("s3", "cp", f"s3://{bucket}/c", tmp_path / "out2", "--sse-c", "AES256",
        "--sse-c-key", key)
    assert (tmp_path / "out2").read_bytes() == data
    # A server-side copy that re-encrypts under SSE-S3.
    run("s3", "cp", f"s3://{bucket}/c", f"s3://{bucket}/c-copy", "--sse-c-copy-source",
        "AES256", "--sse-c-copy-source-key", key, "--sse", "AES256")
    run("s3", "cp", f"s3://{bucket}/c-copy", tmp_path / "out3")
    assert (tmp_path / "out3").read_bytes() == data


# ---------------------------------------------------------------------------------------------
# 3-node cluster
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = Cluster(tmp_path_factory.mktemp("ssemore"))
        try:
            c.start(3, timeout=120)
            c.wait_partition_leaders(60)
            yield c
        finally:
            problems = c.teardown()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def test_cluster_kms_multipart_default_and_disable(cluster):
    n1, n2, n3 = (cluster.node(n) for n in ("n1", "n2", "n3"))
    c1, c2, c3 = (n.client(retries=5) for n in (n1, n2, n3))
    b = unique_name("ssem")
    c1.create_bucket(Bucket=b)
    # A key created through n1 is usable at once through n2 (linearizable key reads).
    name = new_kms_key(n1.admin_url, "cl")
    data = body_with_markers(sum(PARTS), "cluster-mp")
    multipart(c2, b, "kms", data, {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": name}, {})
    check_reads(c3, b, "kms", data)
    # Multipart SSE-C through n3, read through n1.
    multipart(c3, b, "c", data, ssec(), ssec())
    check_reads(c1, b, "c", data, **ssec())
    # Default encryption set through n2 applies to a PUT through n3 at once.
    c2.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": name}}]})
    c3.put_object(Bucket=b, Key="d", Body=b"default")
    h = c1.head_object(Bucket=b, Key="d")
    assert h["ServerSideEncryption"] == "aws:kms" and h["SSEKMSKeyId"] == name
    # A copy through n1 of an SSE-C object into the default (KMS) encryption (small: a
    # copy answers only when done, and debug builds seal slowly).
    small = rand_bytes(600_000, "cluster-copy")
    c3.put_object(Bucket=b, Key="small-c", Body=small, **ssec())
    c1.copy_object(Bucket=b, Key="c-copy", CopySource={"Bucket": b, "Key": "small-c"},
                   **copy_ssec())
    g = c2.get_object(Bucket=b, Key="c-copy")
    assert g["Body"].read() == small and g["SSEKMSKeyId"] == name
    # Disabled through n3: refused everywhere at once.
    cli(n3.admin_url, "kms", "disable", name)
    for c in (c1, c2, c3):
        with pytest.raises(ClientError) as e:
            c.get_object(Bucket=b, Key="kms", Range="bytes=0-9")
        assert error_of(e.value) == (400, "KMS.DisabledException")
    cli(n1.admin_url, "kms", "enable", name)
    assert c2.get_object(Bucket=b, Key="d")["Body"].read() == b"default"
    # Every node lists the key.
    deadline = time.time() + 20
    for n in (n1, n2, n3):
        while name not in cli(n.admin_url, "kms", "list").stdout:
            assert time.time() < deadline
            time.sleep(0.2)
