"""Core S3 behaviour through boto3: buckets, objects, metadata, copy, ranges, conditionals,
checksums, addressing styles, unimplemented operations."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from e2e_util import (
    crc32_b64,
    crc32c_b64,
    expect_error,
    md5_hex,
    rand_bytes,
    sha1_b64,
    sha256_b64,
    unique_name,
)


try:
    import awscrt  # noqa: F401

    HAVE_CRT = True
except ImportError:
    HAVE_CRT = False


def bucket_names(s3) -> set[str]:
    return {b["Name"] for b in s3.list_buckets()["Buckets"]}


# ---------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------

def test_bucket_create_head_list_delete(s3):
    name = unique_name("life")
    assert name not in bucket_names(s3)
    resp = s3.create_bucket(Bucket=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    listed = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
    assert name in listed
    created = listed[name]["CreationDate"]
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 300
    s3.delete_bucket(Bucket=name)
    assert name not in bucket_names(s3)
    expect_error(s3.head_bucket, "404", 404, Bucket=name)


def test_head_missing_bucket_404_and_ops_on_missing_bucket_nosuchbucket(s3):
    name = unique_name("missing")
    expect_error(s3.head_bucket, "404", 404, Bucket=name)
    expect_error(s3.list_objects_v2, "NoSuchBucket", 404, Bucket=name)
    expect_error(s3.put_object, "NoSuchBucket", 404, Bucket=name, Key="k", Body=b"x")
    expect_error(s3.delete_bucket, "NoSuchBucket", 404, Bucket=name)
    assert name not in bucket_names(s3)


def test_delete_non_empty_bucket_is_bucket_not_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"data")
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=bucket)
    assert bucket in bucket_names(s3)
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"data"
    s3.delete_object(Bucket=bucket, Key="keep")
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in bucket_names(s3)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "x" * 64,  # too long
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "192.168.1.1",  # IP-address form
        "xn--prefixed",
        "suffixed-s3alias",
    ],
)
def test_invalid_bucket_name_rejected(s3, name):
    before = bucket_names(s3)
    expect_error(s3.create_bucket, "InvalidBucketName", 400, Bucket=name)
    assert bucket_names(s3) == before


def test_duplicate_bucket_is_already_owned_by_you(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    expect_error(s3.create_bucket, "BucketAlreadyOwnedByYou", 409, Bucket=bucket)
    # The existing bucket and its contents are untouched.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert [b for b in bucket_names(s3) if b == bucket] == [bucket]


def test_get_bucket_location_us_east_1(s3, bucket):
    resp = s3.get_bucket_location(Bucket=bucket)
    assert resp.get("LocationConstraint") in (None, "", "us-east-1")


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 1000, 65536, 65537, 5 * 1024 * 1024 + 7])
def test_put_get_head_delete_roundtrip(s3, bucket, size):
    data = rand_bytes(size, ("rt", size))
    put = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert put["ETag"] == f'"{md5_hex(data)}"'
    head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert head["ContentLength"] == size
    assert head["ETag"] == f'"{md5_hex(data)}"'
    assert abs((dt.datetime.now(dt.timezone.utc) - head["LastModified"]).total_seconds()) < 300
    got = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    body = got["Body"].read()
    assert len(body) == size and body == data
    assert got["ETag"] == put["ETag"]
    assert got["ContentLength"] == size
    s3.delete_object(Bucket=bucket, Key=f"obj-{size}")
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key=f"obj-{size}")
    expect_error(s3.get_object, "NoSuchKey", 404, Bucket=bucket, Key=f"obj-{size}")


def test_overwrite_replaces_content(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first version, longer" * 5000)
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 6


def test_delete_missing_key_is_204(s3, bucket):
    resp = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_metadata_and_content_headers_roundtrip(s3, bucket):
    expires = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    s3.put_object(
        Bucket=bucket,
        Key="meta",
        Body=b"<html></html>",
        ContentType="text/html; charset=utf-8",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="x.html"',
        ContentLanguage="en-GB",
        CacheControl="max-age=3600, public",
        Expires=expires,
        Metadata={"color": "blue", "multi-word-key": "some value", "empty": ""},
    )
    for resp in (
        s3.head_object(Bucket=bucket, Key="meta"),
        s3.get_object(Bucket=bucket, Key="meta"),
    ):
        assert resp["ContentType"] == "text/html; charset=utf-8"
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentDisposition"] == 'attachment; filename="x.html"'
        assert resp["ContentLanguage"] == "en-GB"
        assert resp["CacheControl"] == "max-age=3600, public"
        raw_expires = resp["ResponseMetadata"]["HTTPHeaders"].get("expires")
        assert raw_expires is not None
        assert "2031" in raw_expires and "07:08:09" in raw_expires, raw_expires
        assert resp["Metadata"] == {"color": "blue", "multi-word-key": "some value", "empty": ""}


def test_default_content_type(s3, bucket):
    s3.put_object(Bucket=bucket, Key="noct", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="noct")["ContentType"] in (
        "binary/octet-stream",
        "application/octet-stream",
    )


def test_get_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"abc", ContentType="text/plain")
    resp = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
    )
    assert resp["ContentType"] == "application/json"
    assert resp["ContentDisposition"] == "inline"
    assert resp["CacheControl"] == "no-cache"
    assert resp["Body"].read() == b"abc"


def test_etag_is_md5_of_body(s3, bucket):
    for i, data in enumerate([b"", b"hello", rand_bytes(300_000, "etag")]):
        resp = s3.put_object(Bucket=bucket, Key=f"e{i}", Body=data)
        assert resp["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"e{i}")["Contents"][0]
        assert listed["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        assert listed["Size"] == len(data)


# ---------------------------------------------------------------------------------------------
# Copy
# ---------------------------------------------------------------------------------------------

def test_copy_object_copy_directive_keeps_metadata(s3, bucket):
    data = rand_bytes(200_000, "copy")
    s3.put_object(Bucket=bucket, Key="src", Body=data, ContentType="image/png",
                  Metadata={"a": "1"})
    dst_bucket = unique_name("dst")
    s3.create_bucket(Bucket=dst_bucket)
    resp = s3.copy_object(Bucket=dst_bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert resp["CopyObjectResult"]["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=dst_bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"a": "1"}
    # Source still intact.
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == data


def test_copy_object_replace_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", ContentType="text/plain",
                  Metadata={"old": "x"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        ContentType="application/x-new",
        Metadata={"new": "y"},
    )
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"payload"
    assert got["ContentType"] == "application/x-new"
    assert got["Metadata"] == {"new": "y"}


def test_self_copy_without_replace_is_invalid_request(s3, bucket):
    s3.put_object(Bucket=bucket, Key="same", Body=b"v1", Metadata={"m": "1"})
    expect_error(s3.copy_object, "InvalidRequest", 400, Bucket=bucket, Key="same",
                 CopySource={"Bucket": bucket, "Key": "same"})
    got = s3.get_object(Bucket=bucket, Key="same")
    assert got["Body"].read() == b"v1" and got["Metadata"] == {"m": "1"}


def test_self_copy_with_replace_updates_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="same", Body=b"v1", Metadata={"m": "1"})
    s3.copy_object(Bucket=bucket, Key="same", CopySource={"Bucket": bucket, "Key": "same"},
                   MetadataDirective="REPLACE", Metadata={"m": "2"})
    got = s3.get_object(Bucket=bucket, Key="same")
    assert got["Body"].read() == b"v1" and got["Metadata"] == {"m": "2"}


def test_copy_missing_source_is_no_such_key(s3, bucket):
    expect_error(s3.copy_object, "NoSuchKey", 404, Bucket=bucket, Key="dst",
                 CopySource={"Bucket": bucket, "Key": "nope"})
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="dst")


# ---------------------------------------------------------------------------------------------
# DeleteObjects
# ---------------------------------------------------------------------------------------------

def test_delete_objects_batch(s3, bucket):
    keys = [f"batch/{i:03d}" for i in range(25)]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    to_delete = keys[:20] + ["batch/does-not-exist"]
    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in to_delete]}
    )
    assert sorted(d["Key"] for d in resp.get("Deleted", [])) == sorted(to_delete)
    assert not resp.get("Errors")
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert remaining == keys[20:]


def test_delete_objects_quiet(s3, bucket):
    for k in ("q1", "q2"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "q1"}, {"Key": "q2"}], "Quiet": True}
    )
    assert not resp.get("Deleted") and not resp.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ---------------------------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------------------------

RANGE_DATA = rand_bytes(150_000, "range")


@pytest.fixture
def range_obj(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=RANGE_DATA)
    return bucket


@pytest.mark.parametrize(
    "rng,start,end",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=-5", len(RANGE_DATA) - 5, len(RANGE_DATA) - 1),
        ("bytes=10-", 10, len(RANGE_DATA) - 1),
        ("bytes=70000-70000", 70000, 70000),
        ("bytes=149990-999999", 149990, len(RANGE_DATA) - 1),  # end clamped to size
        ("bytes=65530-65545", 65530, 65545),
    ],
)
def test_range_get(s3, range_obj, rng, start, end):
    resp = s3.get_object(Bucket=range_obj, Key="r", Range=rng)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["Body"].read() == RANGE_DATA[start:end + 1]
    assert resp["ContentLength"] == end - start + 1
    assert resp["ContentRange"] == f"bytes {start}-{end}/{len(RANGE_DATA)}"


def test_range_unsatisfiable_is_416_invalid_range(s3, range_obj):
    expect_error(s3.get_object, "InvalidRange", 416, Bucket=range_obj, Key="r",
                 Range=f"bytes={len(RANGE_DATA)}-")


def test_range_on_multi_chunk_object(s3, bucket):
    data = rand_bytes(9 * 1024 * 1024 + 123, "bigrange")
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    for start, end in [(0, 0), (4194300, 4194310), (4194304 * 2 - 1, 4194304 * 2 + 1),
                       (len(data) - 100, len(data) - 1), (1, 8 * 1024 * 1024)]:
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{end}")["Body"].read()
        assert got == data[start:end + 1], (start, end)


# ---------------------------------------------------------------------------------------------
# Conditional requests
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def cond_obj(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    return bucket, put["ETag"], s3.head_object(Bucket=bucket, Key="c")["LastModified"]


def test_get_if_match(s3, cond_obj):
    b, etag, _ = cond_obj
    assert s3.get_object(Bucket=b, Key="c", IfMatch=etag)["Body"].read() == b"conditional"
    expect_error(s3.get_object, "PreconditionFailed", 412, Bucket=b, Key="c",
                 IfMatch='"0123456789abcdef0123456789abcdef"')
    expect_error(s3.head_object, "412", 412, Bucket=b, Key="c",
                 IfMatch='"0123456789abcdef0123456789abcdef"')


def test_get_if_none_match(s3, cond_obj):
    b, etag, _ = cond_obj
    expect_error(s3.get_object, "304", 304, Bucket=b, Key="c", IfNoneMatch=etag)
    expect_error(s3.head_object, "304", 304, Bucket=b, Key="c", IfNoneMatch=etag)
    assert s3.get_object(Bucket=b, Key="c", IfNoneMatch='"ffff"')["Body"].read() == b"conditional"


def test_get_if_modified_since(s3, cond_obj):
    b, _, lm = cond_obj
    future = lm + dt.timedelta(hours=1)
    past = lm - dt.timedelta(days=1)
    expect_error(s3.get_object, "304", 304, Bucket=b, Key="c", IfModifiedSince=future)
    expect_error(s3.head_object, "304", 304, Bucket=b, Key="c", IfModifiedSince=future)
    assert s3.get_object(Bucket=b, Key="c", IfModifiedSince=past)["Body"].read() == b"conditional"


def test_get_if_unmodified_since(s3, cond_obj):
    b, _, lm = cond_obj
    past = lm - dt.timedelta(days=1)
    future = lm + dt.timedelta(hours=1)
    expect_error(s3.get_object, "PreconditionFailed", 412, Bucket=b, Key="c",
                 IfUnmodifiedSince=past)
    expect_error(s3.head_object, "412", 412, Bucket=b, Key="c", IfUnmodifiedSince=past)
    assert s3.get_object(Bucket=b, Key="c", IfUnmodifiedSince=future)["Body"].read() == \
        b"conditional"


def test_put_if_none_match_star(s3, bucket):
    s3.put_object(Bucket=bucket, Key="new", Body=b"one", IfNoneMatch="*")
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=bucket, Key="new",
                 Body=b"two", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"one"


def test_put_if_match(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="cas", Body=b"one")
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=bucket, Key="cas",
                 Body=b"two", IfMatch='"00000000000000000000000000000000"')
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"one"
    s3.put_object(Bucket=bucket, Key="cas", Body=b"three", IfMatch=put["ETag"])
    assert s3.get_object(Bucket=bucket, Key="cas")["Body"].read() == b"three"


# ---------------------------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------------------------

def test_default_crc32_checksum_header(s3, bucket):
    data = rand_bytes(100_000, "crc-default")
    resp = s3.put_object(Bucket=bucket, Key="crc", Body=data)
    assert resp.get("ChecksumCRC32") == crc32_b64(data)
    head = s3.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32") == crc32_b64(data)
    assert s3.get_object(Bucket=bucket, Key="crc")["Body"].read() == data


@pytest.mark.parametrize("size", [10, 100_000, 6 * 1024 * 1024 + 1])
def test_default_crc32_trailer_aws_chunked(s3_trailer, s3, bucket, size):
    """boto3 over HTTPS sends PutObject bodies aws-chunked with an x-amz-checksum-crc32
    trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER)."""
    data = rand_bytes(size, ("trailer", size))
    resp = s3_trailer.put_object(Bucket=bucket, Key="tr", Body=data)
    assert resp["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=bucket, Key="tr", ChecksumMode="ENABLED")
    body = got["Body"].read()
    assert len(body) == size and body == data, "aws-chunked framing must not leak into data"
    assert got.get("ChecksumCRC32") == crc32_b64(data)
    assert s3.head_object(Bucket=bucket, Key="tr")["ContentLength"] == size


@pytest.mark.parametrize(
    "algo,field,fn",
    [
        ("SHA256", "ChecksumSHA256", sha256_b64),
        ("CRC32C", "ChecksumCRC32C", crc32c_b64),
        ("SHA1", "ChecksumSHA1", sha1_b64),
        ("CRC32", "ChecksumCRC32", crc32_b64),
    ],
)
@pytest.mark.parametrize("trailer", [False, True], ids=["header", "trailer"])
def test_explicit_checksum_algorithm_roundtrip(s3, s3_trailer, bucket, algo, field, fn,
                                               trailer):
    client = s3_trailer if trailer else s3
    data = rand_bytes(70_000, ("ck", algo))
    if algo == "CRC32C" and not HAVE_CRT:
        # botocore computes CRC32C only with awscrt; send the precomputed value instead.
        kwargs = {field: fn(data)}
    else:
        kwargs = {"ChecksumAlgorithm": algo}
    put = client.put_object(Bucket=bucket, Key=f"ck-{algo}", Body=data, **kwargs)
    assert put.get(field) == fn(data)
    head = s3.head_object(Bucket=bucket, Key=f"ck-{algo}", ChecksumMode="ENABLED")
    assert head.get(field) == fn(data), head
    got = s3.get_object(Bucket=bucket, Key=f"ck-{algo}", ChecksumMode="ENABLED")
    assert got.get(field) == fn(data)
    assert got["Body"].read() == data


# ---------------------------------------------------------------------------------------------
# Versions, addressing styles, unimplemented operations
# ---------------------------------------------------------------------------------------------

def test_list_object_versions_unversioned_bucket(s3, bucket):
    for k in ("v/a", "v/b", "w"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.list_object_versions(Bucket=bucket)
    versions = resp.get("Versions", [])
    assert sorted(v["Key"] for v in versions) == ["v/a", "v/b", "w"]
    for v in versions:
        assert v["IsLatest"] is True
        assert v["VersionId"] == "null"
        assert v["Size"] == len(v["Key"])
    assert not resp.get("DeleteMarkers")
    pref = s3.list_object_versions(Bucket=bucket, Prefix="v/")
    assert sorted(v["Key"] for v in pref.get("Versions", [])) == ["v/a", "v/b"]
    status = s3.get_bucket_versioning(Bucket=bucket)
    assert status.get("Status") in (None, "")


def test_virtual_host_style_client(s3_vhost, s3):
    name = unique_name("vhost")
    s3_vhost.create_bucket(Bucket=name)
    assert name in bucket_names(s3)
    s3_vhost.put_object(Bucket=name, Key="dir/file.txt", Body=b"via vhost")
    # Visible through both addressing styles.
    assert s3.get_object(Bucket=name, Key="dir/file.txt")["Body"].read() == b"via vhost"
    assert s3_vhost.get_object(Bucket=name, Key="dir/file.txt")["Body"].read() == b"via vhost"
    keys = [o["Key"] for o in s3_vhost.list_objects_v2(Bucket=name)["Contents"]]
    assert keys == ["dir/file.txt"]
    s3_vhost.delete_object(Bucket=name, Key="dir/file.txt")
    s3_vhost.delete_bucket(Bucket=name)
    assert name not in bucket_names(s3)


def test_unimplemented_get_bucket_website_is_501(s3, bucket):
    expect_error(s3.get_bucket_website, "NotImplemented", 501, Bucket=bucket)


def test_get_bucket_policy_without_one_is_404(s3, bucket):
    expect_error(s3.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=bucket)


def test_unimplemented_lifecycle_transition_is_501(s3, bucket):
    # Lifecycle expiration is implemented (test_lifecycle.py); transitions need storage classes.
    expect_error(
        s3.put_bucket_lifecycle_configuration,
        "NotImplemented",
        501,
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}]
        },
    )
    # Server still serves normally afterwards.
    s3.put_object(Bucket=bucket, Key="after", Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"ok"


def test_object_survives_graceful_restart(server, s3, bucket):
    small, big = b"small object", rand_bytes(5 * 1024 * 1024, "restart")
    s3.put_object(Bucket=bucket, Key="small", Body=small, Metadata={"k": "v"})
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    server.restart()
    got = s3.get_object(Bucket=bucket, Key="small")
    assert got["Body"].read() == small and got["Metadata"] == {"k": "v"}
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big
    assert bucket in bucket_names(s3)


# ---------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------

def test_range_on_empty_object_is_416(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    expect_error(s3.get_object, "InvalidRange", 416, Bucket=bucket, Key="empty", Range="bytes=0-0")


@pytest.mark.parametrize("rng", ["bytes=abc", "bytes=5-2", "items=0-1"])
def test_unparseable_range_is_a_clear_error(s3, range_obj, rng):
    """AWS ignores a syntactically invalid Range header; Cairn answers 400 InvalidArgument
    instead (the Range header is signed, so it cannot be dropped before s3s verifies the
    signature and parses it). Either way nothing changes and the object stays intact."""
    expect_error(s3.get_object, "InvalidArgument", 400, Bucket=range_obj, Key="r", Range=rng)
    assert s3.get_object(Bucket=range_obj, Key="r")["Body"].read() == RANGE_DATA


def test_head_with_range(s3, range_obj):
    resp = s3.head_object(Bucket=range_obj, Key="r", Range="bytes=100-199")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["ContentLength"] == 100
    assert resp["ContentRange"] == f"bytes 100-199/{len(RANGE_DATA)}"


def test_conditional_precedence(s3, cond_obj):
    """RFC 7232 / S3: If-Match true wins over If-Unmodified-Since false; If-None-Match false
    wins over If-Modified-Since true."""
    b, etag, lm = cond_obj
    past = lm - dt.timedelta(days=1)
    resp = s3.get_object(Bucket=b, Key="c", IfMatch=etag, IfUnmodifiedSince=past)
    assert resp["Body"].read() == b"conditional"
    expect_error(s3.get_object, "304", 304, Bucket=b, Key="c", IfNoneMatch=etag,
                 IfModifiedSince=past)


def test_copy_source_conditionals(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"copy me")
    expect_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst",
                 CopySource=f"{bucket}/src", CopySourceIfMatch='"00000000000000000000000000000000"')
    expect_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst",
                 CopySource=f"{bucket}/src", CopySourceIfNoneMatch=put["ETag"])
    expect_error(s3.head_object, "404", 404, Bucket=bucket, Key="dst")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src",
                   CopySourceIfMatch=put["ETag"])
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copy me"


def test_copy_large_object_shares_chunks(server, s3, bucket):
    from e2e_util import chunk_files  # noqa: PLC0415

    data = rand_bytes(9 * 1024 * 1024, "copy-dedup")
    s3.put_object(Bucket=bucket, Key="big-src", Body=data)
    before = chunk_files(server.storage_path)
    s3.copy_object(Bucket=bucket, Key="big-dst", CopySource=f"{bucket}/big-src")
    assert chunk_files(server.storage_path) == before, "copy rewrote chunk files"
    s3.delete_object(Bucket=bucket, Key="big-src")
    assert s3.get_object(Bucket=bucket, Key="big-dst")["Body"].read() == data


def test_delete_objects_over_1000_keys_rejected(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k0", Body=b"x")
    expect_error(s3.delete_objects, "MalformedXML", 400, Bucket=bucket,
                 Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert s3.get_object(Bucket=bucket, Key="k0")["Body"].read() == b"x"


def test_max_keys_capped_at_1000(s3, bucket):
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"m{i:04d}", Body=b""),
                      range(1005)))
    resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert len(resp["Contents"]) == 1000 and resp["IsTruncated"] is True


def test_plus_and_space_in_raw_path(server, s3, bucket):
    from e2e_util import raw_request  # noqa: PLC0415

    r = raw_request(server.api_port, "PUT", f"/{bucket}/a+b%20c", body=b"plus")
    assert r.status == 200, r
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["a+b c"], "'+' in a path is a literal plus, %20 is a space"
    assert s3.get_object(Bucket=bucket, Key="a+b c")["Body"].read() == b"plus"


def test_presigned_get_with_response_overrides(s3, bucket):
    import requests  # noqa: PLC0415

    s3.put_object(Bucket=bucket, Key="dl", Body=b"download", ContentType="text/plain")
    url = s3.generate_presigned_url("get_object", ExpiresIn=300, Params={
        "Bucket": bucket, "Key": "dl",
        "ResponseContentDisposition": 'attachment; filename="x.txt"',
        "ResponseContentType": "application/octet-stream",
    })
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"download"
    assert r.headers["Content-Disposition"] == 'attachment; filename="x.txt"'
    assert r.headers["Content-Type"] == "application/octet-stream"
