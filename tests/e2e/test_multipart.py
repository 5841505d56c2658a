"""Multipart uploads: lifecycle, listing, copy, validation errors, ETags, a 1 GiB upload and the
expiry of abandoned uploads."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from e2e_util import (
    chunk_files,
    client_error_code,
    expected_chunk_ids,
    client_error_status,
    expect_error,
    md5_hex,
    multipart_etag,
    rand_bytes,
    unique_name,
)

MiB = 1024 * 1024
PART = 5 * MiB


def upload_parts(s3, bucket, key, parts, upload_id=None):
    upload_id = upload_id or s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for i, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=i, Body=data)
        assert r["ETag"] == f'"{md5_hex(data)}"'
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return upload_id, done


def test_multipart_create_upload_complete(s3, bucket):
    parts = [rand_bytes(PART, ("mp", i)) for i in range(2)] + [rand_bytes(1234, "mp-last")]
    uid, done = upload_parts(s3, bucket, "mp/obj", parts)
    # Not visible before completion.
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="mp/obj")
    resp = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp/obj", UploadId=uid, MultipartUpload={"Parts": done}
    )
    expected_etag = multipart_etag(parts)
    assert resp["ETag"] == f'"{expected_etag}"'
    assert resp["Key"] == "mp/obj" and resp["Bucket"] == bucket
    whole = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="mp/obj")
    assert got["ContentLength"] == len(whole)
    assert got["ETag"] == f'"{expected_etag}"'
    assert got["Body"].read() == whole
    # The upload is gone.
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=bucket, Key="mp/obj", UploadId=uid)
    # Range across a part boundary.
    rng = s3.get_object(Bucket=bucket, Key="mp/obj", Range=f"bytes={PART - 10}-{PART + 9}")
    assert rng["Body"].read() == whole[PART - 10:PART + 10]


def test_get_object_part_number(s3, bucket):
    parts = [rand_bytes(PART, ("pn", i)) for i in range(2)] + [b"last part"]
    uid, done = upload_parts(s3, bucket, "pn", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="pn", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    for n, data in enumerate(parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="pn", PartNumber=n)
        assert got["Body"].read() == data, n
        assert got.get("PartsCount") == 3
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206


def test_multipart_metadata_from_create(s3, bucket):
    uid = s3.create_multipart_upload(
        Bucket=bucket, Key="meta", ContentType="video/mp4", Metadata={"owner": "e2e"},
        CacheControl="no-store",
    )["UploadId"]
    _, done = upload_parts(s3, bucket, "meta", [b"only part"], upload_id=uid)
    s3.complete_multipart_upload(Bucket=bucket, Key="meta", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    head = s3.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"owner": "e2e"}
    assert head["CacheControl"] == "no-store"
    assert head["ETag"] == f'"{multipart_etag([b"only part"])}"'


def test_abort_multipart_upload(s3, bucket):
    uid, _ = upload_parts(s3, bucket, "aborted", [rand_bytes(PART, "ab")])
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=uid)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    expect_error(s3.upload_part, "NoSuchUpload", 404, Bucket=bucket, Key="aborted",
                 UploadId=uid, PartNumber=2, Body=b"x")
    expect_error(s3.complete_multipart_upload, "NoSuchUpload", 404, Bucket=bucket,
                 Key="aborted", UploadId=uid,
                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]})
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="aborted")


def test_unknown_upload_id_is_no_such_upload(s3, bucket):
    expect_error(s3.upload_part, "NoSuchUpload", 404, Bucket=bucket, Key="k",
                 UploadId="no-such-upload-id", PartNumber=1, Body=b"x")
    expect_error(s3.abort_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="k",
                 UploadId="no-such-upload-id")


def test_list_parts(s3, bucket):
    parts = [rand_bytes(PART, ("lp", i)) for i in range(3)]
    uid, done = upload_parts(s3, bucket, "lp", parts)
    resp = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid)
    assert [p["PartNumber"] for p in resp["Parts"]] == [1, 2, 3]
    assert [p["ETag"] for p in resp["Parts"]] == [d["ETag"] for d in done]
    assert all(p["Size"] == PART for p in resp["Parts"])
    assert resp["IsTruncated"] is False
    # Pagination.
    page1 = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, MaxParts=2)
    assert [p["PartNumber"] for p in page1["Parts"]] == [1, 2]
    assert page1["IsTruncated"] is True
    assert int(page1["NextPartNumberMarker"]) == 2
    page2 = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid, MaxParts=2,
                          PartNumberMarker=page1["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in page2["Parts"]] == [3]
    assert page2["IsTruncated"] is False
    # Re-uploading a part replaces it.
    new2 = rand_bytes(PART, "lp-new2")
    r = s3.upload_part(Bucket=bucket, Key="lp", UploadId=uid, PartNumber=2, Body=new2)
    resp = s3.list_parts(Bucket=bucket, Key="lp", UploadId=uid)
    assert [p["ETag"] for p in resp["Parts"]][1] == r["ETag"] == f'"{md5_hex(new2)}"'
    done[1]["ETag"] = r["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="lp", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="lp")["Body"].read() == parts[0] + new2 + parts[2]


def test_list_multipart_uploads(s3, bucket):
    ids = {}
    for key in ("up/a", "up/b", "up/b", "other/c"):
        ids.setdefault(key, []).append(
            s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        )
    resp = s3.list_multipart_uploads(Bucket=bucket)
    listed = [(u["Key"], u["UploadId"]) for u in resp["Uploads"]]
    assert sorted(listed) == sorted((k, u) for k, us in ids.items() for u in us)
    assert [k for k, _ in listed] == sorted(k for k, _ in listed)  # key order
    pref = s3.list_multipart_uploads(Bucket=bucket, Prefix="up/")
    assert sorted(u["Key"] for u in pref["Uploads"]) == ["up/a", "up/b", "up/b"]
    delim = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in delim.get("CommonPrefixes", [])] == ["other/", "up/"]
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2)
    assert len(page["Uploads"]) == 2 and page["IsTruncated"] is True
    rest = s3.list_multipart_uploads(Bucket=bucket, KeyMarker=page["NextKeyMarker"],
                                     UploadIdMarker=page["NextUploadIdMarker"])
    assert len(page["Uploads"]) + len(rest["Uploads"]) == 4
    for key, us in ids.items():
        for u in us:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=u)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_upload_part_copy_with_range(s3, bucket):
    src = rand_bytes(12 * MiB, "copy-src")
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    r1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes=0-{PART - 1}")
    assert r1["CopyPartResult"]["ETag"] == f'"{md5_hex(src[:PART])}"'
    r2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes={7 * MiB}-{12 * MiB - 1}")
    tail = b"tail-bytes"
    r3 = s3.upload_part(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=3, Body=tail)
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=uid,
        MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
            {"PartNumber": 3, "ETag": r3["ETag"]},
        ]},
    )
    expected = src[:PART] + src[7 * MiB:] + tail
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == expected
    assert got["ETag"] == f'"{multipart_etag([src[:PART], src[7 * MiB:], tail])}"'


def test_upload_part_copy_whole_small_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="small-src", Body=b"small")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="d2")["UploadId"]
    r = s3.upload_part_copy(Bucket=bucket, Key="d2", UploadId=uid, PartNumber=1,
                            CopySource=f"{bucket}/small-src")
    s3.complete_multipart_upload(Bucket=bucket, Key="d2", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="d2")["Body"].read() == b"small"


def test_upload_part_copy_bad_range(s3, bucket):
    s3.put_object(Bucket=bucket, Key="s", Body=b"0123456789")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="d")["UploadId"]
    with pytest.raises(ClientError) as ei:
        s3.upload_part_copy(Bucket=bucket, Key="d", UploadId=uid, PartNumber=1,
                            CopySource=f"{bucket}/s", CopySourceRange="bytes=5-100")
    assert client_error_code(ei.value) in ("InvalidRange", "InvalidArgument")
    assert client_error_status(ei.value) in (400, 416)
    assert not s3.list_parts(Bucket=bucket, Key="d", UploadId=uid).get("Parts")


def test_entity_too_small(s3, bucket):
    parts = [b"a" * 1024, b"b" * 1024]
    uid, done = upload_parts(s3, bucket, "small", parts)
    expect_error(s3.complete_multipart_upload, "EntityTooSmall", 400, Bucket=bucket,
                 Key="small", UploadId=uid, MultipartUpload={"Parts": done})
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="small")
    # Upload still open and usable.
    assert len(s3.list_parts(Bucket=bucket, Key="small", UploadId=uid)["Parts"]) == 2


def test_invalid_part_order(s3, bucket):
    parts = [rand_bytes(PART, "o1"), rand_bytes(PART, "o2")]
    uid, done = upload_parts(s3, bucket, "order", parts)
    expect_error(s3.complete_multipart_upload, "InvalidPartOrder", 400, Bucket=bucket,
                 Key="order", UploadId=uid, MultipartUpload={"Parts": list(reversed(done))})
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="order")
    s3.complete_multipart_upload(Bucket=bucket, Key="order", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="order")["Body"].read() == b"".join(parts)


def test_invalid_part_bad_etag(s3, bucket):
    parts = [rand_bytes(PART, "e1"), b"last"]
    uid, done = upload_parts(s3, bucket, "badetag", parts)
    bad = [dict(done[0]), {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}]
    expect_error(s3.complete_multipart_upload, "InvalidPart", 400, Bucket=bucket,
                 Key="badetag", UploadId=uid, MultipartUpload={"Parts": bad})
    missing = [dict(done[0]), {"PartNumber": 3, "ETag": done[1]["ETag"]}]
    expect_error(s3.complete_multipart_upload, "InvalidPart", 400, Bucket=bucket,
                 Key="badetag", UploadId=uid, MultipartUpload={"Parts": missing})
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="badetag")


def test_complete_with_subset_of_parts(s3, bucket):
    parts = [rand_bytes(PART, "s1"), rand_bytes(PART, "s2"), rand_bytes(100, "s3")]
    uid, done = upload_parts(s3, bucket, "subset", parts)
    chosen = [done[0], done[2]]
    resp = s3.complete_multipart_upload(Bucket=bucket, Key="subset", UploadId=uid,
                                        MultipartUpload={"Parts": chosen})
    assert resp["ETag"] == f'"{multipart_etag([parts[0], parts[2]])}"'
    assert s3.get_object(Bucket=bucket, Key="subset")["Body"].read() == parts[0] + parts[2]


def test_multipart_with_trailer_checksums(s3_trailer, s3, bucket):
    parts = [rand_bytes(PART, "t1"), rand_bytes(777, "t2")]
    uid, done = upload_parts(s3_trailer, bucket, "trl", parts)
    s3_trailer.complete_multipart_upload(Bucket=bucket, Key="trl", UploadId=uid,
                                         MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="trl")["Body"].read() == b"".join(parts)


# ---------------------------------------------------------------------------------------------
# 1 GiB through boto3's managed transfer
# ---------------------------------------------------------------------------------------------

GiB_MIB = 1024


def make_big_file(path, mib: int) -> tuple[str, str]:
    """Writes `mib` MiB: one random 1 MiB block, with each MiB's first 8 bytes replaced by its
    index so no two MiB (and no two chunks) are identical. Returns (sha256, md5)."""
    block = bytearray(os.urandom(MiB))
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "wb") as f:
        for i in range(mib):
            block[0:8] = i.to_bytes(8, "big")
            f.write(block)
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


@pytest.mark.slow
def test_1gib_multipart_upload_file(s3, bucket, tmp_path):
    path = tmp_path / "big.bin"
    try:
        sha, _ = make_big_file(path, GiB_MIB)
        assert path.stat().st_size == GiB_MIB * MiB
        cfg = TransferConfig(multipart_threshold=64 * MiB, multipart_chunksize=64 * MiB,
                             max_concurrency=4)
        t0 = time.monotonic()
        s3.upload_file(str(path), bucket, "big/1gib.bin", Config=cfg)
        upload_s = time.monotonic() - t0
        head = s3.head_object(Bucket=bucket, Key="big/1gib.bin")
        assert head["ContentLength"] == GiB_MIB * MiB
        assert head["ETag"].strip('"').endswith("-16"), head["ETag"]
        # Expected multipart ETag from the 64 MiB parts.
        part_md5s = []
        with open(path, "rb") as f:
            while piece := f.read(64 * MiB):
                part_md5s.append(hashlib.md5(piece).digest())
        expected_etag = f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"
        assert head["ETag"] == f'"{expected_etag}"'
        # Streamed download + hash, never the whole object in memory.
        t0 = time.monotonic()
        body = s3.get_object(Bucket=bucket, Key="big/1gib.bin")["Body"]
        h, n = hashlib.sha256(), 0
        for piece in body.iter_chunks(chunk_size=MiB):
            h.update(piece)
            n += len(piece)
        download_s = time.monotonic() - t0
        assert n == GiB_MIB * MiB
        assert h.hexdigest() == sha
        print(f"1 GiB upload {upload_s:.1f}s, download {download_s:.1f}s")
        # A ranged read deep inside the object.
        off = 700 * MiB + 12345
        rng = s3.get_object(Bucket=bucket, Key="big/1gib.bin",
                            Range=f"bytes={off}-{off + 99}")["Body"].read()
        with open(path, "rb") as f:
            f.seek(off)
            assert rng == f.read(100)
    finally:
        path.unlink(missing_ok=True)
        try:
            s3.delete_object(Bucket=bucket, Key="big/1gib.bin")
        except ClientError:
            pass


# ---------------------------------------------------------------------------------------------
# Abandoned uploads are expired
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def expiry_server(server_factory):
    return server_factory(
        "expiry",
        MULTIPART_EXPIRY_SECS=6,
        GC_INTERVAL_SECS=1,
        GC_GRACE_SECS=1,
        CHUNK_SIZE=MiB,
        INLINE_THRESHOLD=1024,
    )


def test_abandoned_multipart_upload_expires(expiry_server):
    s3 = expiry_server.client()
    b = unique_name("exp")
    s3.create_bucket(Bucket=b)
    uid = s3.create_multipart_upload(Bucket=b, Key="abandoned")["UploadId"]
    data = rand_bytes(3 * MiB, "abandon")
    s3.upload_part(Bucket=b, Key="abandoned", UploadId=uid, PartNumber=1, Body=data)
    ids = set(expected_chunk_ids(data, MiB))
    assert ids <= chunk_files(expiry_server.storage_path), "part chunks not on disk"
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b)["Uploads"]] == [uid]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not s3.list_multipart_uploads(Bucket=b).get("Uploads"):
            break
        time.sleep(0.5)
    else:
        pytest.fail("abandoned upload still listed 60 s after MULTIPART_EXPIRY_SECS=6")
    expect_error(s3.upload_part, "NoSuchUpload", 404, Bucket=b, Key="abandoned",
                 UploadId=uid, PartNumber=2, Body=b"late")
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=b, Key="abandoned", UploadId=uid)
    # Its part's chunk files are garbage collected once the grace period has passed.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ids & chunk_files(expiry_server.storage_path):
        time.sleep(0.5)
    assert not ids & chunk_files(expiry_server.storage_path), "expired part's chunks remain"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="abandoned")


def test_fresh_upload_not_expired_early(expiry_server):
    """An upload younger than MULTIPART_EXPIRY_SECS survives GC passes and completes."""
    s3 = expiry_server.client()
    b = unique_name("fresh")
    s3.create_bucket(Bucket=b)
    uid = s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    data = rand_bytes(2 * MiB, "fresh")
    r = s3.upload_part(Bucket=b, Key="k", UploadId=uid, PartNumber=1, Body=data)
    time.sleep(2.0)  # several GC passes, still younger than MULTIPART_EXPIRY_SECS (6 s)
    s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]})
    time.sleep(3.0)  # grace (1 s) + passes: completed object's chunks must stay
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == data
