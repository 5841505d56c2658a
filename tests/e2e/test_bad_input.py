"""Hostile and malformed requests. Each test checks the S3 error (code and status) AND that the
store is unchanged afterwards. Raw requests are signed with the SigV4 signer in e2e_util so paths
reach the server exactly as written."""

from __future__ import annotations

import datetime as dt
import re
import socket
import time

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import make_client
from e2e_util import (
    REGION,
    SECRET_KEY,
    aws_chunked_signed,
    aws_chunked_unsigned,
    chunk_files,
    client_error_code,
    client_error_status,
    crc32_b64,
    encode_key,
    md5_b64,
    md5_hex,
    rand_bytes,
    raw_request,
    sha256_hex,
    sign_v4,
    signing_key,
    unique_name,
)

MiB = 1024 * 1024


VALID_FOR_BOTOCORE = re.compile(r"^[a-zA-Z0-9.\-_]{1,255}$")


def _bucket_state(s3, b):
    objs = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b):
        objs += [(o["Key"], o["ETag"], o["Size"]) for o in page.get("Contents", [])]
    uploads = s3.list_multipart_uploads(Bucket=b).get("Uploads", [])
    return objs, sorted((u["Key"], u["UploadId"]) for u in uploads)


@pytest.fixture(scope="module")
def canary(s3):
    """A bucket no test writes to: hostile paths must never reach it."""
    b = unique_name("canary")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="etc/passwd", Body=b"canary")
    s3.put_object(Bucket=b, Key="existing", Body=b"canary")
    return b


class Snapshot:
    """The set of bucket names, plus the contents and open uploads of the watched buckets."""

    def __init__(self, s3, watched):
        self.watched = list(watched)
        names = sorted(x["Name"] for x in s3.list_buckets()["Buckets"])
        self.state = {"buckets": names}
        for b in self.watched:
            if VALID_FOR_BOTOCORE.match(b) and b in names:
                self.state[b] = _bucket_state(s3, b)

    def __eq__(self, other):
        return self.state == other.state

    def __repr__(self):
        return repr(self.state)


_WATCHED: list[str] = []


def snapshot(s3):
    return Snapshot(s3, _WATCHED)


@pytest.fixture
def populated(s3, canary):
    """A bucket with a couple of objects, and a snapshot of the store."""
    b = unique_name("bad")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="existing", Body=b"existing data")
    s3.put_object(Bucket=b, Key="dir/big", Body=rand_bytes(300_000, "bad-big"))
    _WATCHED[:] = [b, canary]
    return b, snapshot(s3)


def assert_unchanged(s3, before):
    assert snapshot(s3) == before


def expect_client_error(fn, code, status, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    assert client_error_code(ei.value) == code, ei.value.response
    assert client_error_status(ei.value) == status, ei.value.response
    return ei.value


# ---------------------------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------------------------

def test_raw_signer_positive_control(server, s3, populated):
    """The hand-rolled signer works, so the negative tests below fail for the intended
    reason."""
    b, _ = populated
    r = raw_request(server.api_port, "PUT", f"/{b}/raw-ok", body=b"raw body",
                    headers={"content-type": "text/plain"})
    assert r.status == 200, r
    assert r.headers.get("etag") == f'"{md5_hex(b"raw body")}"'
    g = raw_request(server.api_port, "GET", f"/{b}/raw-ok")
    assert g.status == 200 and g.body == b"raw body"
    assert s3.get_object(Bucket=b, Key="raw-ok")["Body"].read() == b"raw body"


def test_wrong_secret_is_signature_does_not_match(server, s3, populated):
    b, before = populated
    bad = make_client(server.endpoint, secret_key="not-the-secret", max_attempts=1)
    expect_client_error(bad.put_object, "SignatureDoesNotMatch", 403, Bucket=b, Key="evil",
                        Body=b"x")
    expect_client_error(bad.get_object, "SignatureDoesNotMatch", 403, Bucket=b, Key="existing")
    expect_client_error(bad.delete_object, "SignatureDoesNotMatch", 403, Bucket=b,
                        Key="existing")
    expect_client_error(bad.delete_bucket, "SignatureDoesNotMatch", 403, Bucket=b)
    assert_unchanged(s3, before)


def test_tampered_request_after_signing(server, s3, populated):
    """Signature computed for one key, request sent for another."""
    b, before = populated
    body = b"tampered"
    hdrs, _ = sign_v4("PUT", f"127.0.0.1:{server.api_port}", f"/{b}/signed-key", [], {},
                      sha256_hex(body))
    r = raw_request(server.api_port, "PUT", f"/{b}/other-key", body=body, headers=hdrs,
                    sign=False)
    assert (r.status, r.error_code) == (403, "SignatureDoesNotMatch"), r
    assert_unchanged(s3, before)


def test_unknown_access_key_is_invalid_access_key_id(server, s3, populated):
    b, before = populated
    bad = make_client(server.endpoint, access_key="AKIDONOTEXIST", max_attempts=1)
    expect_client_error(bad.put_object, "InvalidAccessKeyId", 403, Bucket=b, Key="evil",
                        Body=b"x")
    expect_client_error(bad.list_buckets, "InvalidAccessKeyId", 403)
    assert_unchanged(s3, before)


def test_anonymous_request_is_access_denied(server, s3, populated):
    b, before = populated
    r = raw_request(server.api_port, "PUT", f"/{b}/anon", body=b"x", sign=False)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r
    r = raw_request(server.api_port, "GET", f"/{b}/existing", sign=False)
    assert (r.status, r.error_code) == (403, "AccessDenied"), r
    assert_unchanged(s3, before)


def test_expired_presigned_url_is_access_denied(server, s3, populated):
    b, before = populated
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "existing"},
                                        ExpiresIn=1)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "late"},
                                        ExpiresIn=1)
    time.sleep(2.5)
    r = requests.get(get_url, timeout=30)
    assert r.status_code == 403, r.text
    assert "<Code>AccessDenied</Code>" in r.text
    r = requests.put(put_url, data=b"too late", timeout=30)
    assert r.status_code == 403, r.text
    assert "<Code>AccessDenied</Code>" in r.text
    assert_unchanged(s3, before)


def test_presigned_put_and_get_work(server, s3, populated):
    b, _ = populated
    data = rand_bytes(100_000, "presigned")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "pre/signed"},
                                        ExpiresIn=300)
    r = requests.put(put_url, data=data, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{md5_hex(data)}"'
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "pre/signed"},
                                        ExpiresIn=300)
    r = requests.get(get_url, timeout=30)
    assert r.status_code == 200 and r.content == data
    # Tampering with the presigned query string is rejected.
    r = requests.get(get_url.replace("pre/signed", "existing"), timeout=30)
    assert r.status_code == 403, r.text
    assert "SignatureDoesNotMatch" in r.text


@pytest.mark.parametrize("skew_minutes", [-20, 20])
def test_clock_skew_is_request_time_too_skewed(server, s3, populated, skew_minutes):
    b, before = populated
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=skew_minutes)
    r = raw_request(server.api_port, "PUT", f"/{b}/skewed", body=b"skew", when=when)
    assert (r.status, r.error_code) == (403, "RequestTimeTooSkewed"), r
    r = raw_request(server.api_port, "DELETE", f"/{b}/existing", when=when)
    assert (r.status, r.error_code) == (403, "RequestTimeTooSkewed"), r
    assert_unchanged(s3, before)


def test_small_clock_skew_is_accepted(server, s3, populated):
    b, _ = populated
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    r = raw_request(server.api_port, "PUT", f"/{b}/slightly-skewed", body=b"ok", when=when)
    assert r.status == 200, r
    assert s3.get_object(Bucket=b, Key="slightly-skewed")["Body"].read() == b"ok"


def test_payload_hash_mismatch(server, s3, populated):
    b, before = populated
    r = raw_request(server.api_port, "PUT", f"/{b}/hash-mismatch", body=b"actual body",
                    payload_hash=sha256_hex(b"another body"))
    assert r.status in (400, 403), r
    assert r.error_code in ("XAmzContentSHA256Mismatch", "BadDigest", "SignatureDoesNotMatch"), r
    assert_unchanged(s3, before)


# ---------------------------------------------------------------------------------------------
# Malformed bodies
# ---------------------------------------------------------------------------------------------

GARBAGE = [b"this is not xml", b"<Delete><Object><Key>unterminated", b"\x00\xff\xfe garbage"]


@pytest.mark.parametrize("body", GARBAGE, ids=["text", "truncated-xml", "binary"])
def test_delete_objects_malformed_xml(server, s3, populated, body):
    b, before = populated
    r = raw_request(server.api_port, "POST", f"/{b}", query=[("delete", "")], body=body,
                    headers={"content-md5": md5_b64(body), "content-type": "application/xml"})
    assert (r.status, r.error_code) == (400, "MalformedXML"), r
    assert_unchanged(s3, before)


def test_delete_objects_wrong_root_element(server, s3, populated):
    b, before = populated
    body = b"<NotDelete><Object><Key>existing</Key></Object></NotDelete>"
    r = raw_request(server.api_port, "POST", f"/{b}", query=[("delete", "")], body=body,
                    headers={"content-md5": md5_b64(body)})
    assert (r.status, r.error_code) == (400, "MalformedXML"), r
    assert_unchanged(s3, before)


@pytest.mark.parametrize("body", GARBAGE, ids=["text", "truncated-xml", "binary"])
def test_complete_multipart_malformed_xml(server, s3, populated, body):
    b, _ = populated
    uid = s3.create_multipart_upload(Bucket=b, Key="mpu")["UploadId"]
    part = s3.upload_part(Bucket=b, Key="mpu", UploadId=uid, PartNumber=1, Body=b"part")
    before = snapshot(s3)
    r = raw_request(server.api_port, "POST", f"/{b}/mpu", query=[("uploadId", uid)], body=body)
    assert (r.status, r.error_code) == (400, "MalformedXML"), r
    assert_unchanged(s3, before)
    # The upload is intact and can still be completed.
    s3.complete_multipart_upload(Bucket=b, Key="mpu", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.get_object(Bucket=b, Key="mpu")["Body"].read() == b"part"


# ---------------------------------------------------------------------------------------------
# Names and keys
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "raw_name",
    ["a", "Bad_Bucket", "has%20space", "%C3%BCnicode", "bucket..name", "-x-", "b" * 70],
)
def test_invalid_bucket_name_raw(server, s3, populated, raw_name):
    _, before = populated
    r = raw_request(server.api_port, "PUT", f"/{raw_name}")
    assert (r.status, r.error_code) == (400, "InvalidBucketName"), r
    assert_unchanged(s3, before)


def test_key_too_long(s3, populated):
    b, before = populated
    expect_client_error(s3.put_object, "KeyTooLongError", 400, Bucket=b, Key="k" * 1025,
                        Body=b"x")
    # 342 three-byte characters = 1026 bytes although only 342 characters.
    expect_client_error(s3.put_object, "KeyTooLongError", 400, Bucket=b, Key="€" * 342,
                        Body=b"x")
    expect_client_error(s3.create_multipart_upload, "KeyTooLongError", 400, Bucket=b,
                        Key="m" * 1100)
    assert_unchanged(s3, before)
    # Exactly 1024 bytes is fine.
    s3.put_object(Bucket=b, Key="k" * 1024, Body=b"max")
    assert s3.get_object(Bucket=b, Key="k" * 1024)["Body"].read() == b"max"


HOSTILE_PATHS = [
    "../../etc/passwd",
    "..",
    ".",
    "a/../b",
    "a/./b",
    "a/..",
    "./x",
    "%2E%2E/%2E%2E/etc/passwd",
    "%2E",
    "a/%2E%2E/b",
    "a%00b",
    "%00",
    "ctl%01char",
    "new%0Aline",
    "tab%09key",
    "del%7Fkey",
]


@pytest.mark.parametrize("raw_key", HOSTILE_PATHS)
@pytest.mark.parametrize("method", ["PUT", "GET"])
def test_hostile_keys_rejected(server, s3, populated, raw_key, method):
    b, before = populated
    files_before = chunk_files(server.storage_path)
    # '.' is unreserved, so a canonical request always spells it literally: sign that form
    # while sending the percent-encoded one (an encoded dot must not slip past validation).
    r = raw_request(server.api_port, method, f"/{b}/{raw_key}",
                    body=b"pwned" * 20_000 if method == "PUT" else b"",
                    canonical_path=f"/{b}/{raw_key.replace('%2E', '.')}")
    assert r.status == 400, r
    assert r.error_code == "InvalidArgument", r
    assert_unchanged(s3, before)
    assert chunk_files(server.storage_path) <= files_before


def test_hostile_keys_via_copy_source(server, s3, populated):
    b, before = populated
    for src in (f"/{b}/../../etc/passwd", f"/{b}/a/../existing", f"/{b}/a%00b"):
        r = raw_request(server.api_port, "PUT", f"/{b}/copy-dst",
                        headers={"x-amz-copy-source": src})
        assert r.status in (400, 404), r
        assert r.error_code in ("InvalidArgument", "NoSuchKey"), r
    r = raw_request(server.api_port, "PUT", f"/{b}/{encode_key('a/../b')}",
                    headers={"x-amz-copy-source": f"/{b}/existing"})
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r
    assert_unchanged(s3, before)


def test_hostile_keys_in_delete_objects(server, s3, populated):
    b, before = populated
    body = (b"<Delete><Object><Key>../existing</Key></Object>"
            b"<Object><Key>dir/../existing</Key></Object></Delete>")
    r = raw_request(server.api_port, "POST", f"/{b}", query=[("delete", "")], body=body,
                    headers={"content-md5": md5_b64(body)})
    # Either the whole request is refused, or each key gets a per-key error; never deletes
    # "existing".
    assert r.status in (200, 400), r
    assert_unchanged(s3, before)


def test_dots_inside_segments_are_fine(s3, populated):
    b, _ = populated
    for key in ("a..b", "...", "x/.hidden", "x/..hidden", "x/y.", "trailing.."):
        s3.put_object(Bucket=b, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=b, Key=key)["Body"].read() == key.encode()


# ---------------------------------------------------------------------------------------------
# Bodies that lie
# ---------------------------------------------------------------------------------------------

def _send_raw_bytes(port: int, head: bytes, body: bytes, timeout: float = 30) -> bytes:
    """Sends the request head and (partial) body, closes our write side, returns what the
    server answered (possibly nothing)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(head + body)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before reading everything
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)
    finally:
        s.close()


@pytest.mark.parametrize("declared,sent", [(1000, 500), (5 * MiB, 3 * MiB + 17)],
                         ids=["inline", "chunked"])
@pytest.mark.parametrize("payload", ["unsigned", "signed"])
def test_truncated_body_not_stored(server, s3, populated, declared, sent, payload):
    b, before = populated
    full = rand_bytes(declared, ("trunc", declared))
    path = f"/{b}/truncated-{payload}-{declared}"
    ph = "UNSIGNED-PAYLOAD" if payload == "unsigned" else sha256_hex(full)
    hdrs, _ = sign_v4("PUT", f"127.0.0.1:{server.api_port}", path, [],
                      {"content-length": str(declared)}, ph)
    head = f"PUT {path} HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in hdrs.items()) + b"\r\n"
    answer = _send_raw_bytes(server.api_port, head, full[:sent])
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status >= 400, answer[:500]
    time.sleep(0.5)
    assert server.alive()
    assert_unchanged(s3, before)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key=path.rsplit("/", 1)[1])


def test_content_md5_mismatch_is_bad_digest(server, populated):
    b, _ = populated
    s3 = make_client(server.endpoint, request_checksum_calculation="when_required")
    before = snapshot(s3)
    expect_client_error(s3.put_object, "BadDigest", 400, Bucket=b, Key="md5",
                        Body=b"the real body", ContentMD5=md5_b64(b"a different body"))
    expect_client_error(s3.put_object, "BadDigest", 400, Bucket=b, Key="existing",
                        Body=b"overwrite attempt", ContentMD5=md5_b64(b"nope"))
    assert_unchanged(s3, before)
    assert s3.get_object(Bucket=b, Key="existing")["Body"].read() == b"existing data"
    # Correct MD5 accepted.
    s3.put_object(Bucket=b, Key="md5", Body=b"the real body", ContentMD5=md5_b64(b"the real body"))


def test_content_md5_not_base64_is_invalid_digest(server, s3, populated):
    b, before = populated
    r = raw_request(server.api_port, "PUT", f"/{b}/md5bad", body=b"body",
                    headers={"content-md5": "!!!not-base64!!!"})
    assert r.status == 400 and r.error_code in ("InvalidDigest", "BadDigest"), r
    assert_unchanged(s3, before)


def test_wrong_crc32_header_is_bad_digest(server, populated):
    b, _ = populated
    s3 = make_client(server.endpoint, request_checksum_calculation="when_required")
    before = snapshot(s3)
    data = rand_bytes(100_000, "crcbad")
    wrong = crc32_b64(b"something else")
    expect_client_error(s3.put_object, "BadDigest", 400, Bucket=b, Key="crc",
                        Body=data, ChecksumCRC32=wrong)
    assert_unchanged(s3, before)
    r = s3.put_object(Bucket=b, Key="crc", Body=data, ChecksumCRC32=crc32_b64(data))
    assert r.get("ChecksumCRC32") == crc32_b64(data)


def test_wrong_crc32_trailer_is_bad_digest(server, s3, populated):
    b, before = populated
    data = rand_bytes(200_000, "trailer-bad")
    body = aws_chunked_unsigned(data, "x-amz-checksum-crc32", crc32_b64(b"other"))
    hdrs = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    r = raw_request(server.api_port, "PUT", f"/{b}/trailer-bad", body=body, headers=hdrs,
                    payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert (r.status, r.error_code) == (400, "BadDigest"), r
    assert_unchanged(s3, before)
    # Same framing with the right checksum is accepted and stored without framing bytes.
    body = aws_chunked_unsigned(data, "x-amz-checksum-crc32", crc32_b64(data))
    r = raw_request(server.api_port, "PUT", f"/{b}/trailer-ok", body=body, headers=hdrs,
                    payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    assert r.status == 200, r
    assert s3.get_object(Bucket=b, Key="trailer-ok")["Body"].read() == data


def _signed_streaming_put(server, path, data, corrupt=False):
    when = dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{when:%Y%m%d}/{REGION}/s3/aws4_request"
    chunk = 64 * 1024
    n_full, rest = divmod(len(data), chunk)
    sizes = [chunk] * n_full + ([rest] if rest else []) + [0]
    encoded_len = sum(len(f"{s:x};chunk-signature=".encode()) + 64 + 2 + s + 2 for s in sizes)
    hdrs_in = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "content-length": str(encoded_len),
    }
    hdrs, _ = sign_v4("PUT", f"127.0.0.1:{server.api_port}", path, [], hdrs_in,
                      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", when=when)
    seed = hdrs["authorization"].rsplit("Signature=", 1)[1]
    body = aws_chunked_signed(data, seed, amz_date, scope,
                              signing_key(SECRET_KEY, f"{when:%Y%m%d}"), chunk)
    assert len(body) == encoded_len
    if corrupt:
        i = body.index(b"\r\n") + 2 + 100  # flip a data byte in the first chunk
        body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
    return raw_request(server.api_port, "PUT", path, body=body, headers=hdrs, sign=False)


def test_signed_streaming_upload(server, s3, populated):
    b, before = populated
    data = rand_bytes(300_000, "streaming")
    r = _signed_streaming_put(server, f"/{b}/streamed", data)
    assert r.status == 200, r
    assert s3.get_object(Bucket=b, Key="streamed")["Body"].read() == data
    r = _signed_streaming_put(server, f"/{b}/streamed-bad", data, corrupt=True)
    assert (r.status, r.error_code) == (403, "SignatureDoesNotMatch"), r
    with pytest.raises(ClientError):
        s3.head_object(Bucket=b, Key="streamed-bad")


@pytest.mark.parametrize("part_number", [10001, 0, -1])
def test_part_number_out_of_range(server, s3, populated, part_number):
    b, _ = populated
    uid = s3.create_multipart_upload(Bucket=b, Key="pn")["UploadId"]
    before = snapshot(s3)
    r = raw_request(server.api_port, "PUT", f"/{b}/pn",
                    query=[("partNumber", str(part_number)), ("uploadId", uid)], body=b"data")
    assert (r.status, r.error_code) == (400, "InvalidArgument"), r
    assert_unchanged(s3, before)
    assert not s3.list_parts(Bucket=b, Key="pn", UploadId=uid).get("Parts")


def test_part_number_10001_via_boto3(s3, populated):
    b, _ = populated
    uid = s3.create_multipart_upload(Bucket=b, Key="pn2")["UploadId"]
    expect_client_error(s3.upload_part, "InvalidArgument", 400, Bucket=b, Key="pn2",
                        UploadId=uid, PartNumber=10001, Body=b"x")
    # 10000 is the maximum and works.
    s3.upload_part(Bucket=b, Key="pn2", UploadId=uid, PartNumber=10000, Body=b"x")
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=b, Key="pn2", UploadId=uid)["Parts"]] \
        == [10000]


# ---------------------------------------------------------------------------------------------
# Oversized headers
# ---------------------------------------------------------------------------------------------

def test_oversized_signed_metadata_header(server, s3, populated):
    b, before = populated
    r = raw_request(server.api_port, "PUT", f"/{b}/bigmeta", body=b"x",
                    headers={"x-amz-meta-big": "v" * (64 * 1024)})
    assert r.status in (400, 431), r
    assert server.alive()
    assert_unchanged(s3, before)


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024])
def test_oversized_unsigned_header(server, s3, populated, size):
    b, before = populated
    head = (f"PUT /{b}/bighdr HTTP/1.1\r\nHost: 127.0.0.1:{server.api_port}\r\n"
            f"X-Junk: {'j' * size}\r\nContent-Length: 1\r\n\r\n").encode()
    answer = _send_raw_bytes(server.api_port, head, b"x")
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 403, 431), answer[:300]
    assert server.alive()
    assert_unchanged(s3, before)
    assert s3.get_object(Bucket=b, Key="existing")["Body"].read() == b"existing data"


def test_too_many_headers(server, s3, populated):
    b, before = populated
    extra = "".join(f"X-H{i}: v\r\n" for i in range(2000))
    head = (f"GET /{b}/existing HTTP/1.1\r\nHost: 127.0.0.1:{server.api_port}\r\n{extra}"
            "\r\n").encode()
    answer = _send_raw_bytes(server.api_port, head, b"")
    if answer:
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 403, 431), answer[:300]
    assert server.alive()
    assert_unchanged(s3, before)


def test_garbage_request_line(server, s3, populated):
    _, before = populated
    answer = _send_raw_bytes(server.api_port, b"\x16\x03\x01garbage not http\r\n\r\n", b"")
    if answer.startswith(b"HTTP/"):
        assert answer.split(b" ", 2)[1].startswith(b"4"), answer[:200]
    assert server.alive()
    assert_unchanged(s3, before)


def test_server_healthy_after_bad_input(server, s3):
    assert server.alive()
    r = requests.get(f"{server.admin_url}/health", timeout=5)
    assert r.status_code == 200
    s3.list_buckets()



def _read_status_line(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            break
        buf += data
    return buf


@pytest.mark.parametrize("good_signature", [True, False], ids=["signed", "bad-signature"])
def test_expect_100_continue(server, s3, populated, good_signature):
    """Signed PUT with `Expect: 100-continue`: the server answers 100 and stores the body; with a
    bad signature it answers 403 without waiting for the body."""
    b, before = populated
    body = rand_bytes(200_000, "expect")
    path = f"/{b}/expect-{good_signature}"
    hdrs, _ = sign_v4("PUT", f"127.0.0.1:{server.api_port}", path, [],
                      {"content-length": str(len(body)), "expect": "100-continue"},
                      sha256_hex(body),
                      secret_key=SECRET_KEY if good_signature else "wrong-secret-123")
    head = f"PUT {path} HTTP/1.1\r\n".encode() + b"".join(
        f"{k}: {v}\r\n".encode() for k, v in hdrs.items()) + b"\r\n"
    s = socket.create_connection(("127.0.0.1", server.api_port), timeout=30)
    try:
        s.sendall(head)
        first = _read_status_line(s, 10)
        if good_signature:
            assert first.startswith(b"HTTP/1.1 100"), first[:200]
            s.sendall(body)
            final = _read_status_line(s, 30)
            assert final.startswith(b"HTTP/1.1 200"), final[:300]
        else:
            assert first.startswith(b"HTTP/1.1 403"), first[:300]
    finally:
        s.close()
    if good_signature:
        assert s3.get_object(Bucket=b, Key=path.rsplit("/", 1)[1])["Body"].read() == body
    else:
        assert_unchanged(s3, before)
