"""Core S3 behaviours real clients depend on (issue 11 item 0), each checked against what AWS
documents: conditional writes (PutObject, CopyObject and CompleteMultipartUpload, also racing
through three nodes), GET/HEAD by part number, a repeated CompleteMultipartUpload, DeleteBucket with uploads
in progress, `encoding-type=url` everywhere a listing echoes a name, an empty continuation
token, non-ASCII user metadata, `aws-chunked` kept out of the stored Content-Encoding and the
7-day cap on presigned URLs."""

from __future__ import annotations

import email.header
import os
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import unquote_plus

import botocore.handlers
import pytest
import requests
from botocore.exceptions import ClientError

import cluster_util
from e2e_util import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    chunk_files,
    client_error_code,
    client_error_status,
    expect_error,
    expected_chunk_ids,
    md5_hex,
    multipart_etag,
    rand_bytes,
    raw_request,
    require_tool,
    unique_name,
    xml_find_all,
    xml_text,
)

MiB = 1024 * 1024
PART = 5 * MiB
# Ports of the three-node cluster of this module (see tests/e2e/README and PLAN.md).
PORT_SHIFT = 500


def multipart(s3, bucket, key, parts):
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = []
    for i, data in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=data)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


# ---------------------------------------------------------------------------------------------
# 1. Conditional writes
# ---------------------------------------------------------------------------------------------

def test_put_if_none_match_star(s3, bucket):
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    assert r["ETag"] == f'"{md5_hex(b"first")}"'
    expect_error(s3.put_object, "PreconditionFailed", 412,
                 Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_put_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    r = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    assert r["ETag"] == f'"{md5_hex(b"v2")}"'
    # The ETag of v1 no longer matches.
    expect_error(s3.put_object, "PreconditionFailed", 412,
                 Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    # If-Match on a key that does not exist: 404 NoSuchKey, as AWS answers.
    expect_error(s3.put_object, "NoSuchKey", 404,
                 Bucket=bucket, Key="missing", Body=b"x", IfMatch=etag)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="missing")


def test_complete_multipart_conditions(s3, bucket):
    parts = [rand_bytes(PART, "cond-1"), b"tail"]
    # If-Match on a key that does not exist yet: 404, and the upload stays open.
    uid, done = multipart(s3, bucket, "mp", parts)
    expect_error(s3.complete_multipart_upload, "NoSuchKey", 404, Bucket=bucket, Key="mp",
                 UploadId=uid, MultipartUpload={"Parts": done}, IfMatch='"0123"')
    r = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                     MultipartUpload={"Parts": done}, IfNoneMatch="*")
    assert r["ETag"] == f'"{multipart_etag(parts)}"'

    # If-None-Match: * now fails; the upload is still there to complete another way.
    uid2, done2 = multipart(s3, bucket, "mp", [b"again"])
    expect_error(s3.complete_multipart_upload, "PreconditionFailed", 412, Bucket=bucket,
                 Key="mp", UploadId=uid2, MultipartUpload={"Parts": done2}, IfNoneMatch="*")
    expect_error(s3.complete_multipart_upload, "PreconditionFailed", 412, Bucket=bucket,
                 Key="mp", UploadId=uid2, MultipartUpload={"Parts": done2}, IfMatch='"0123"')
    r2 = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid2,
                                      MultipartUpload={"Parts": done2}, IfMatch=r["ETag"])
    assert r2["ETag"] == f'"{multipart_etag([b"again"])}"'
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"again"


def test_copy_object_conditions_on_the_destination(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    src = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, IfNoneMatch="*")
    expect_error(s3.copy_object, "PreconditionFailed", 412, Bucket=bucket, Key="dst",
                 CopySource=src, IfNoneMatch="*")
    expect_error(s3.copy_object, "NoSuchKey", 404, Bucket=bucket, Key="none", CopySource=src,
                 IfMatch='"0123"')
    etag = s3.head_object(Bucket=bucket, Key="dst")["ETag"]
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, IfMatch=etag,
                   MetadataDirective="REPLACE", Metadata={"v": "2"})
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"v": "2"}


def test_conditional_put_with_aws_cli(server, s3, bucket, tmp_path):
    exe = require_tool("aws")
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    body = tmp_path / "body"
    body.write_bytes(b"from the cli")

    def put(*extra):
        return subprocess.run(
            [exe, "--endpoint-url", server.endpoint, "s3api", "put-object", "--bucket", bucket,
             "--key", "cli", "--body", str(body), *extra],
            env=env, capture_output=True, text=True, timeout=120)

    first = put("--if-none-match", "*")
    assert first.returncode == 0, first.stderr
    second = put("--if-none-match", "*")
    assert second.returncode != 0 and "PreconditionFailed" in second.stderr, second.stderr
    assert s3.get_object(Bucket=bucket, Key="cli")["Body"].read() == b"from the cli"


# ---------------------------------------------------------------------------------------------
# 2. GET / HEAD with partNumber
# ---------------------------------------------------------------------------------------------

def test_get_and_head_by_part_number(s3, bucket):
    parts = [rand_bytes(PART, "pn-1"), rand_bytes(PART, "pn-2"), rand_bytes(1234, "pn-3")]
    uid, done = multipart(s3, bucket, "mp", parts)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid,
                                 MultipartUpload={"Parts": done})
    offset = 0
    for n, data in enumerate(parts, start=1):
        g = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert g["Body"].read() == data
        assert g["PartsCount"] == 3
        assert g["ContentLength"] == len(data)
        total = sum(map(len, parts))
        assert g["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{total}"
        h = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert h["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert h["ContentLength"] == len(data) and h["PartsCount"] == 3
        offset += len(data)
    # Without partNumber: the whole object, no parts count (as AWS).
    whole = s3.head_object(Bucket=bucket, Key="mp")
    assert whole["ContentLength"] == sum(map(len, parts)) and "PartsCount" not in whole
    expect_error(s3.get_object, "InvalidPartNumber", 416, Bucket=bucket, Key="mp", PartNumber=4)
    with pytest.raises(ClientError) as ei:
        s3.head_object(Bucket=bucket, Key="mp", PartNumber=4)
    assert client_error_status(ei.value) == 416  # a HEAD has no body to carry the code


def test_part_number_one_of_a_plain_object_is_the_whole_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"0123456789")
    g = s3.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    # AWS answers a ranged 206 covering the whole object, without x-amz-mp-parts-count.
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert g["Body"].read() == b"0123456789"
    assert g["ContentRange"] == "bytes 0-9/10"
    assert "PartsCount" not in g
    h = s3.head_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert h["ContentLength"] == 10
    expect_error(s3.get_object, "InvalidPartNumber", 416, Bucket=bucket, Key="plain",
                 PartNumber=2)


# ---------------------------------------------------------------------------------------------
# 3. A repeated CompleteMultipartUpload
# ---------------------------------------------------------------------------------------------

def test_repeated_complete_answers_the_same_etag(s3, bucket):
    parts = [rand_bytes(PART, "again-1"), b"end"]
    uid, done = multipart(s3, bucket, "twice", parts)
    first = s3.complete_multipart_upload(Bucket=bucket, Key="twice", UploadId=uid,
                                         MultipartUpload={"Parts": done})
    second = s3.complete_multipart_upload(Bucket=bucket, Key="twice", UploadId=uid,
                                          MultipartUpload={"Parts": done})
    assert first["ETag"] == second["ETag"] == f'"{multipart_etag(parts)}"'
    assert s3.get_object(Bucket=bucket, Key="twice")["Body"].read() == b"".join(parts)
    # Once the object is replaced, the upload's completion is gone: NoSuchUpload.
    s3.put_object(Bucket=bucket, Key="twice", Body=b"other")
    expect_error(s3.complete_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="twice",
                 UploadId=uid, MultipartUpload={"Parts": done})
    # An upload id that never existed stays NoSuchUpload.
    expect_error(s3.complete_multipart_upload, "NoSuchUpload", 404, Bucket=bucket, Key="twice",
                 UploadId="0" * 32, MultipartUpload={"Parts": done})


# ---------------------------------------------------------------------------------------------
# 4. DeleteBucket with uploads in progress
# ---------------------------------------------------------------------------------------------

def test_delete_bucket_aborts_uploads_in_progress(server_factory):
    # GC every second with a 1 s grace, 1 MiB chunks: the parts' chunk files must go too.
    srv = server_factory("gc", GC_INTERVAL_SECS=1, GC_GRACE_SECS=1, CHUNK_SIZE=MiB,
                         INLINE_THRESHOLD=1024)
    s3 = srv.client()
    b = unique_name("mpdel")
    s3.create_bucket(Bucket=b)
    ids = set()
    for i in range(3):
        data = rand_bytes(2 * MiB, ("del", i))
        multipart(s3, b, f"up/{i}", [data])
        ids |= set(expected_chunk_ids(data, MiB))
    assert len(s3.list_multipart_uploads(Bucket=b)["Uploads"]) == 3
    assert ids <= chunk_files(srv.storage_path), "part chunks not on disk"
    s3.delete_bucket(Bucket=b)
    expect_error(s3.head_bucket, "404", 404, Bucket=b)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ids & chunk_files(srv.storage_path):
        time.sleep(0.5)
    assert not ids & chunk_files(srv.storage_path), "aborted parts' chunks remain"
    # Created again, the bucket is empty: the old uploads went with it.
    s3.create_bucket(Bucket=b)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=b)
    s3.delete_bucket(Bucket=b)


def test_delete_bucket_with_an_object_is_still_refused(s3):
    b = unique_name("mpdel")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="obj", Body=b"x")
    multipart(s3, b, "up", [b"part"])
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=b)
    # Refused: nothing was aborted.
    assert len(s3.list_multipart_uploads(Bucket=b)["Uploads"]) == 1


# ---------------------------------------------------------------------------------------------
# 5. encoding-type=url
# ---------------------------------------------------------------------------------------------

ODD = ["dir one/é+ü.txt", "dir one/sub dir/x", "plain", "top&<>.bin"]


def _all_plain_ascii(values):
    return all(ord(ch) < 128 and ch not in ' <>&"' for v in values for ch in v)


def test_url_encoding_in_every_listing(server, s3, bucket):
    for k in ODD:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    multipart(s3, bucket, "dir one/up é", [b"part"])
    port = server.api_port

    # V2: keys, common prefixes, prefix, delimiter and start-after.
    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("list-type", "2"), ("encoding-type", "url"), ("delimiter", " "),
        ("start-after", "dir")])
    assert r.status == 200, r
    prefixes = [xml_text(p, "Prefix") for p in xml_find_all(r.body, "CommonPrefixes")]
    assert prefixes == ["dir+"], r.body
    root = ET.fromstring(r.body)
    assert xml_text(root, "Delimiter") == "+"
    assert xml_text(root, "StartAfter") == "dir"
    keys = [xml_text(c, "Key") for c in xml_find_all(r.body, "Contents")]
    assert [unquote_plus(k) for k in keys] == ["plain", "top&<>.bin"]
    assert _all_plain_ascii(keys)

    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("list-type", "2"), ("encoding-type", "url"), ("prefix", "dir one/"), ("delimiter", "/")])
    assert r.status == 200, r
    root = ET.fromstring(r.body)
    assert xml_text(root, "Prefix") == "dir+one/"
    prefixes = [xml_text(p, "Prefix") for p in xml_find_all(r.body, "CommonPrefixes")]
    assert prefixes == ["dir+one/sub+dir/"]
    keys = [xml_text(c, "Key") for c in xml_find_all(r.body, "Contents")]
    assert keys == ["dir+one/%C3%A9%2B%C3%BC.txt"]

    # V1: marker and next marker too.
    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("encoding-type", "url"), ("prefix", "dir one/"), ("delimiter", "/"),
        ("marker", "dir one/ "), ("max-keys", "1")])
    assert r.status == 200, r
    root = ET.fromstring(r.body)
    assert xml_text(root, "Marker") == "dir+one/+"
    assert xml_text(root, "NextMarker") == "dir+one/sub+dir/"

    # ListObjectVersions: keys, prefixes, key markers.
    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("versions", ""), ("encoding-type", "url"), ("prefix", "dir one/"), ("delimiter", "/"),
        ("key-marker", "dir one/ "), ("max-keys", "1")])
    assert r.status == 200, r
    root = ET.fromstring(r.body)
    assert xml_text(root, "KeyMarker") == "dir+one/+"
    assert xml_text(root, "Prefix") == "dir+one/"
    assert [xml_text(p, "Prefix") for p in xml_find_all(r.body, "CommonPrefixes")] == [
        "dir+one/sub+dir/"]
    assert xml_text(root, "NextKeyMarker") == "dir+one/sub+dir/"
    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("versions", ""), ("encoding-type", "url"), ("prefix", "dir one/é")])
    keys = [xml_text(v, "Key") for v in xml_find_all(r.body, "Version")]
    assert keys == ["dir+one/%C3%A9%2B%C3%BC.txt"]

    # ListMultipartUploads: keys, prefixes and markers.
    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("uploads", ""), ("encoding-type", "url"), ("prefix", "dir one/")])
    assert r.status == 200, r
    keys = [xml_text(u, "Key") for u in xml_find_all(r.body, "Upload")]
    assert keys == ["dir+one/up+%C3%A9"]
    assert xml_text(ET.fromstring(r.body), "Prefix") == "dir+one/"
    r = raw_request(port, "GET", f"/{bucket}", query=[
        ("uploads", ""), ("encoding-type", "url"), ("delimiter", " ")])
    assert [xml_text(p, "Prefix") for p in xml_find_all(r.body, "CommonPrefixes")] == ["dir+"]

    # boto3 asks for encoding-type=url itself and decodes what it knows to decode.
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="dir one/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["dir one/sub dir/"]


# ---------------------------------------------------------------------------------------------
# 6. An empty continuation token
# ---------------------------------------------------------------------------------------------

def test_empty_continuation_token_starts_from_the_beginning(s3, bucket):
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert [o["Key"] for o in resp["Contents"]] == ["a", "b", "c"]
    assert resp["ContinuationToken"] == "" and resp["IsTruncated"] is False
    # A token that is not one of ours is still refused.
    expect_error(s3.list_objects_v2, "InvalidArgument", 400, Bucket=bucket,
                 ContinuationToken="!!not-a-token!!")


# ---------------------------------------------------------------------------------------------
# 7. Non-ASCII user metadata
# ---------------------------------------------------------------------------------------------

def _decode_2047(v: str) -> str:
    return str(email.header.make_header(email.header.decode_header(v)))


def test_non_ascii_metadata_round_trips(server, s3, bucket):
    # botocore refuses non-ASCII metadata before sending; AWS itself accepts it (raw UTF-8 or
    # RFC 2047) and returns it RFC 2047-encoded, which clients decode. Send what a client that
    # does not check sends: the raw UTF-8 bytes.
    client = server.client()
    client.meta.events.unregister("before-parameter-build.s3.PutObject",
                                  botocore.handlers.validate_ascii_metadata)
    client.put_object(Bucket=bucket, Key="meta", Body=b"x",
                      Metadata={"name": "héllo", "plain": "ascii"})
    h = s3.head_object(Bucket=bucket, Key="meta")
    assert h["Metadata"]["plain"] == "ascii"
    assert _decode_2047(h["Metadata"]["name"]) == "héllo"
    assert h["Metadata"]["name"] == "=?UTF-8?B?aMOpbGxv?="  # what AWS returns for it
    g = s3.get_object(Bucket=bucket, Key="meta")
    assert _decode_2047(g["Metadata"]["name"]) == "héllo"
    # An RFC 2047 value sent by a client is decoded before it is stored: same answer.
    s3.put_object(Bucket=bucket, Key="meta2", Body=b"x",
                  Metadata={"name": "=?UTF-8?B?aMOpbGxv?="})
    h2 = s3.head_object(Bucket=bucket, Key="meta2")
    assert h2["Metadata"]["name"] == "=?UTF-8?B?aMOpbGxv?="
    # The 2 KB metadata limit counts the UTF-8 bytes of the value, not its encoded form.
    big = "é" * 1000  # 2000 bytes of UTF-8
    client.put_object(Bucket=bucket, Key="meta3", Body=b"x", Metadata={"n": big})
    assert _decode_2047(s3.head_object(Bucket=bucket, Key="meta3")["Metadata"]["n"]) == big


# ---------------------------------------------------------------------------------------------
# 8. aws-chunked is not part of the stored Content-Encoding
# ---------------------------------------------------------------------------------------------

def test_aws_chunked_is_not_stored_as_content_encoding(s3, s3_trailer, bucket):
    # boto3 with a trailer checksum sends Content-Encoding "aws-chunked" (appended to the
    # caller's own coding).
    s3_trailer.put_object(Bucket=bucket, Key="gz", Body=b"gzipped?", ContentEncoding="gzip",
                          ChecksumAlgorithm="CRC32")
    s3_trailer.put_object(Bucket=bucket, Key="none", Body=b"plain", ChecksumAlgorithm="CRC32")
    gz = s3.head_object(Bucket=bucket, Key="gz")
    assert gz["ContentEncoding"] == "gzip"
    none = s3.head_object(Bucket=bucket, Key="none")
    assert "ContentEncoding" not in none
    got = s3.get_object(Bucket=bucket, Key="gz")
    assert got.get("ContentEncoding") == "gzip" and got["Body"].read() == b"gzipped?"
    # Multipart uploads too (the encoding is given at creation).
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentEncoding="aws-chunked,br")
    r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1,
                       Body=b"p")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1,
                                                             "ETag": r["ETag"]}]})
    assert s3.head_object(Bucket=bucket, Key="mp")["ContentEncoding"] == "br"


# ---------------------------------------------------------------------------------------------
# 9. Presigned URLs live at most 7 days
# ---------------------------------------------------------------------------------------------

def test_presigned_expiry_over_seven_days_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="pre", Body=b"presigned")
    ok = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"},
                                   ExpiresIn=604800)
    assert requests.get(ok, timeout=10).content == b"presigned"
    too_long = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"},
                                         ExpiresIn=604801)
    r = requests.get(too_long, timeout=10)
    assert r.status_code == 400
    assert "<Code>AuthorizationQueryParametersError</Code>" in r.text, r.text


# ---------------------------------------------------------------------------------------------
# Conditional writes racing through three nodes
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with cluster_util.started_cluster(tmp_path_factory.mktemp("s3core-cluster"), PORT_SHIFT) as c:
        yield c


def _race(clients, fn):
    """Runs fn(client, i) for every client at the same moment; returns each outcome (the
    result, or the ClientError's (code, status))."""
    barrier = threading.Barrier(len(clients))
    out = [None] * len(clients)

    def run(i, c):
        barrier.wait()
        try:
            out[i] = fn(c, i)
        except ClientError as e:
            out[i] = (client_error_code(e), client_error_status(e))

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def _one_winner(outcomes):
    wins = [o for o in outcomes if isinstance(o, dict)]
    losses = [o for o in outcomes if not isinstance(o, dict)]
    assert len(wins) == 1, outcomes
    # The loser was beaten during its upload: AWS answers 409 ConditionalRequestConflict for
    # that, 412 when the condition already failed when it started.
    assert all(o in {("ConditionalRequestConflict", 409), ("PreconditionFailed", 412)}
               for o in losses), outcomes
    return outcomes.index(wins[0])


def test_racing_conditional_writes_through_three_nodes(cluster):
    nodes = list(cluster.nodes.values())[:3]
    clients = [cluster_util.s3_client(n.endpoint, retries=0, read_timeout=60) for n in nodes]
    b = unique_name("race")
    clients[0].create_bucket(Bucket=b)
    for c in clients:
        c.head_bucket(Bucket=b)

    def bodies(round_):
        # Distinct per round and client: an ETag condition must never be met by chance.
        return [rand_bytes(256 * 1024, ("race", round_, i)) for i in range(len(clients))]

    losses = []
    for round_ in range(8):
        key = f"inm-{round_}"
        data = bodies(("inm", round_))
        out = _race(clients, lambda c, i: c.put_object(Bucket=b, Key=key, Body=data[i],
                                                       IfNoneMatch="*"))
        w = _one_winner(out)
        losses += [o for o in out if not isinstance(o, dict)]
        for c in clients:
            assert c.get_object(Bucket=b, Key=key)["Body"].read() == data[w]
    # All started while the key was absent: a loser lost the race, not a condition that
    # failed from the start.
    assert ("ConditionalRequestConflict", 409) in losses, losses

    # If-Match on the same current ETag: one replaces it, the others fail.
    etag = clients[0].put_object(Bucket=b, Key="im", Body=b"base")["ETag"]
    for round_ in range(4):
        data = bodies(("im", round_))
        out = _race(clients, lambda c, i: c.put_object(Bucket=b, Key="im", Body=data[i],
                                                       IfMatch=etag))
        w = _one_winner(out)
        assert clients[1].get_object(Bucket=b, Key="im")["Body"].read() == data[w]
        etag = out[w]["ETag"]

    # CompleteMultipartUpload with If-None-Match: * from each node on its own upload.
    data = bodies("mp")
    uploads = [multipart(c, b, "mp-race", [data[i]]) for i, c in enumerate(clients)]
    out = _race(clients, lambda c, i: c.complete_multipart_upload(
        Bucket=b, Key="mp-race", UploadId=uploads[i][0],
        MultipartUpload={"Parts": uploads[i][1]}, IfNoneMatch="*"))
    w = _one_winner(out)
    assert clients[2].get_object(Bucket=b, Key="mp-race")["Body"].read() == data[w]
