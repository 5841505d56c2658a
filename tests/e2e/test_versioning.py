"""S3 versioning through boto3 (and the AWS CLI): bucket state, version ids, delete markers,
null versions, ListObjectVersions, reads/copies/deletes by version id, GC of removed versions."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

import cluster_util
from e2e_util import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    chunk_files,
    expect_error,
    expected_chunk_ids,
    rand_bytes,
    require_tool,
    unique_name,
    versioned_bucket,
)

MiB = 1024 * 1024
PART = 5 * MiB
# Ports of this module's three-node cluster.
PORT_SHIFT = 560


@pytest.fixture(scope="module")
def srv(server_factory):
    # One server for the module; GC every second so removed versions' chunks go quickly.
    return server_factory("ver", GC_INTERVAL_SECS=1, GC_GRACE_SECS=1, CHUNK_SIZE=MiB,
                          INLINE_THRESHOLD=1024)


@pytest.fixture(scope="module")
def s3(srv):
    return srv.client()


def test_bucket_versioning_state(s3):
    b = unique_name("ver")
    s3.create_bucket(Bucket=b)
    assert "Status" not in s3.get_bucket_versioning(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Suspended"
    expect_error(s3.put_bucket_versioning, "NotImplemented", 501, Bucket=b,
                 VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    expect_error(s3.get_bucket_versioning, "NoSuchBucket", 404, Bucket=unique_name("nob"))


def test_versions_markers_and_undelete(s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    got = s3.get_object(Bucket=b, Key="k", VersionId=v1)
    assert got["Body"].read() == b"one" and got["VersionId"] == v1
    assert s3.head_object(Bucket=b, Key="k", VersionId=v2)["VersionId"] == v2
    # Newest first.
    vs = s3.list_object_versions(Bucket=b)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in vs] == [(v2, True), (v1, False)]

    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True
    marker = d["VersionId"]
    err = expect_error(s3.get_object, "NoSuchKey", 404, Bucket=b, Key="k")
    assert err.response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker") == "true"
    expect_error(s3.get_object, "MethodNotAllowed", 405, Bucket=b, Key="k", VersionId=marker)
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    lv = s3.list_object_versions(Bucket=b)
    assert [(m["VersionId"], m["IsLatest"]) for m in lv["DeleteMarkers"]] == [(marker, True)]
    assert [v["IsLatest"] for v in lv["Versions"]] == [False, False]

    # Removing the marker undeletes.
    d = s3.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert d["DeleteMarker"] is True and d["VersionId"] == marker
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    # Removing the current version makes the previous one current.
    s3.delete_object(Bucket=b, Key="k", VersionId=v2)
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"one"
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId=v2)
    expect_error(s3.get_object, "InvalidArgument", 400, Bucket=b, Key="k", VersionId="bogus!")

    # BucketNotEmpty while only a noncurrent version or a marker remains.
    s3.delete_object(Bucket=b, Key="k")
    assert "Contents" not in s3.list_objects_v2(Bucket=b)
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=b)
    for v in s3.list_object_versions(Bucket=b).get("Versions", []) + \
            s3.list_object_versions(Bucket=b).get("DeleteMarkers", []):
        s3.delete_object(Bucket=b, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=b)


def test_null_versions_and_suspended(s3):
    b = unique_name("ver")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"before")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"v1")["VersionId"]
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"before"
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=b, Key="k", Body=b"s1")
    s3.put_object(Bucket=b, Key="k", Body=b"s2")
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=b)["Versions"]]
    # The suspended PUTs replaced the null version; v1 stays.
    assert ids == ["null", v1]
    assert s3.get_object(Bucket=b, Key="k", VersionId="null")["Body"].read() == b"s2"
    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True and d["VersionId"] == "null"
    lv = s3.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in lv["Versions"]] == [v1]
    assert [m["VersionId"] for m in lv["DeleteMarkers"]] == ["null"]
    expect_error(s3.head_object, "404", 404, Bucket=b, Key="k")


def test_list_object_versions_paging(s3):
    b = versioned_bucket(s3)
    want = []
    for key in ["a", "b/x", "b/y", "c"]:
        ids = [s3.put_object(Bucket=b, Key=key, Body=key.encode())["VersionId"] for _ in range(3)]
        want += [(key, v) for v in reversed(ids)]
    got, kw = [], {}
    while True:
        page = s3.list_object_versions(Bucket=b, MaxKeys=2, **kw)
        got += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert got == want
    page = s3.list_object_versions(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in page["Versions"]} == {"a", "c"}
    page = s3.list_object_versions(Bucket=b, Prefix="b/", KeyMarker="b/x")
    assert {v["Key"] for v in page["Versions"]} == {"b/y"}


def test_copy_and_multi_delete_by_version(s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="src", Body=b"old")["VersionId"]
    s3.put_object(Bucket=b, Key="src", Body=b"new")
    out = s3.copy_object(Bucket=b, Key="src", CopySource={"Bucket": b, "Key": "src",
                                                          "VersionId": v1})
    assert out["CopySourceVersionId"] == v1 and out["VersionId"] not in (v1, "null")
    assert s3.get_object(Bucket=b, Key="src")["Body"].read() == b"old"
    expect_error(s3.copy_object, "NoSuchVersion", 404, Bucket=b, Key="dst",
                 CopySource={"Bucket": b, "Key": "src",
                             "VersionId": "0" * 24})
    r = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "src"},
                                                        {"Key": "src", "VersionId": v1}]})
    by = {(d["Key"], d.get("VersionId")): d for d in r["Deleted"]}
    assert by[("src", None)]["DeleteMarker"] is True
    assert by[("src", None)]["DeleteMarkerVersionId"]
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="src", VersionId=v1)


def test_conditional_writes_against_current(s3):
    b = versioned_bucket(s3)
    e1 = s3.put_object(Bucket=b, Key="k", Body=b"1")["ETag"]
    s3.put_object(Bucket=b, Key="k", Body=b"2", IfMatch=e1)
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=b, Key="k", Body=b"3",
                 IfMatch=e1)
    expect_error(s3.put_object, "PreconditionFailed", 412, Bucket=b, Key="k", Body=b"3",
                 IfNoneMatch="*")
    assert len(s3.list_object_versions(Bucket=b)["Versions"]) == 2


def test_tagging_by_version(s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"1", Tagging="gen=1")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"2", Tagging="gen=2")["VersionId"]
    tags = s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"]
    assert tags == [{"Key": "gen", "Value": "1"}]
    s3.put_object_tagging(Bucket=b, Key="k", VersionId=v2,
                          Tagging={"TagSet": [{"Key": "gen", "Value": "two"}]})
    assert s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == [{"Key": "gen", "Value": "two"}]
    # A noncurrent version's tags change in place; the current version's stay.
    out = s3.put_object_tagging(Bucket=b, Key="k", VersionId=v1,
                                Tagging={"TagSet": [{"Key": "gen", "Value": "one"}]})
    assert out["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"] == \
        [{"Key": "gen", "Value": "one"}]
    assert s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == [{"Key": "gen", "Value": "two"}]
    s3.delete_object_tagging(Bucket=b, Key="k", VersionId=v1)
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"] == []
    assert s3.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"1"
    assert "TagCount" not in s3.get_object(Bucket=b, Key="k", VersionId=v1)
    # A delete marker has no tags (405, as AWS); an unknown version is NoSuchVersion.
    marker = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    expect_error(s3.put_object_tagging, "MethodNotAllowed", 405, Bucket=b, Key="k",
                 VersionId=marker, Tagging={"TagSet": []})
    expect_error(s3.put_object_tagging, "NoSuchVersion", 404, Bucket=b, Key="k",
                 VersionId="0" * 24, Tagging={"TagSet": []})
    s3.put_object_tagging(Bucket=b, Key="k", VersionId=v2,
                          Tagging={"TagSet": [{"Key": "gen", "Value": "2b"}]})
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v2)["TagSet"] == \
        [{"Key": "gen", "Value": "2b"}]
    expect_error(s3.get_object_tagging, "NoSuchVersion", 404, Bucket=b, Key="k",
                 VersionId="0" * 24)


def test_terraform_state_history(s3):
    # Terraform's S3 backend: versioned bucket, state put repeatedly, an old one read back.
    b = versioned_bucket(s3)
    ids = []
    for serial in range(5):
        body = f'{{"version": 4, "serial": {serial}}}'.encode()
        ids.append(s3.put_object(Bucket=b, Key="env/terraform.tfstate", Body=body,
                                 ContentType="application/json")["VersionId"])
    vs = s3.list_object_versions(Bucket=b, Prefix="env/terraform.tfstate")["Versions"]
    assert [v["VersionId"] for v in vs] == list(reversed(ids))
    old = s3.get_object(Bucket=b, Key="env/terraform.tfstate", VersionId=ids[1])
    assert b'"serial": 1' in old["Body"].read()


def test_deleting_last_version_frees_chunks(srv, s3):
    b = versioned_bucket(s3)
    d1, d2 = rand_bytes(2 * MiB, ("v", 1)), rand_bytes(2 * MiB, ("v", 2))
    v1 = s3.put_object(Bucket=b, Key="big", Body=d1)["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="big", Body=d2)["VersionId"]
    ids1, ids2 = set(expected_chunk_ids(d1, MiB)), set(expected_chunk_ids(d2, MiB))
    time.sleep(3)
    # The noncurrent version keeps its chunks.
    assert ids1 | ids2 <= chunk_files(srv.storage_path)
    assert s3.get_object(Bucket=b, Key="big", VersionId=v1)["Body"].read() == d1
    s3.delete_object(Bucket=b, Key="big", VersionId=v1)
    s3.delete_object(Bucket=b, Key="big", VersionId=v2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (ids1 | ids2) & chunk_files(srv.storage_path):
        time.sleep(0.5)
    assert not (ids1 | ids2) & chunk_files(srv.storage_path)
    s3.delete_bucket(Bucket=b)


def test_list_versions_url_encoding(s3):
    b = versioned_bucket(s3)
    s3.put_object(Bucket=b, Key="a b+c", Body=b"x")
    s3.delete_object(Bucket=b, Key="a b+c")
    # Asked for explicitly, botocore leaves the encoded keys as they came.
    page = s3.list_object_versions(Bucket=b, EncodingType="url")
    assert page["EncodingType"] == "url"
    assert [v["Key"] for v in page["Versions"]] == ["a+b%2Bc"]
    assert [m["Key"] for m in page["DeleteMarkers"]] == ["a+b%2Bc"]
    # Left to botocore (it asks for url and decodes), keys come back as written.
    page = s3.list_object_versions(Bucket=b)
    assert [v["Key"] for v in page["Versions"]] == ["a b+c"]


def test_upload_part_copy_by_version_and_complete_version_id(s3):
    b = versioned_bucket(s3)
    old = rand_bytes(PART, "upc-old")
    v1 = s3.put_object(Bucket=b, Key="src", Body=old)["VersionId"]
    s3.put_object(Bucket=b, Key="src", Body=b"newer")
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    part = s3.upload_part_copy(Bucket=b, Key="mp", UploadId=uid, PartNumber=1,
                               CopySource={"Bucket": b, "Key": "src", "VersionId": v1})
    assert part["CopySourceVersionId"] == v1
    done = s3.complete_multipart_upload(
        Bucket=b, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1,
                                    "ETag": part["CopyPartResult"]["ETag"]}]})
    assert done["VersionId"] not in (None, "null")
    got = s3.get_object(Bucket=b, Key="mp", VersionId=done["VersionId"])
    assert got["Body"].read() == old


def test_versioning_with_aws_cli(srv, s3, tmp_path):
    exe = require_tool("aws")
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")

    def api(*args):
        r = subprocess.run([exe, "--endpoint-url", srv.endpoint, "s3api", *args,
                            "--output", "json"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    b = unique_name("cli")
    s3.create_bucket(Bucket=b)
    api("put-bucket-versioning", "--bucket", b,
        "--versioning-configuration", "Status=Enabled")
    assert api("get-bucket-versioning", "--bucket", b)["Status"] == "Enabled"
    body = tmp_path / "body"
    ids = []
    for i in range(2):
        body.write_bytes(f"state {i}".encode())
        ids.append(api("put-object", "--bucket", b, "--key", "tf", "--body",
                       str(body))["VersionId"])
    listed = api("list-object-versions", "--bucket", b)
    assert [v["VersionId"] for v in listed["Versions"]] == list(reversed(ids))
    out = tmp_path / "out"
    api("get-object", "--bucket", b, "--key", "tf", "--version-id", ids[0], str(out))
    assert out.read_bytes() == b"state 0"
    d = api("delete-object", "--bucket", b, "--key", "tf")
    assert d["DeleteMarker"] is True
    bad = subprocess.run([exe, "--endpoint-url", srv.endpoint, "s3api", "get-object",
                          "--bucket", b, "--key", "tf", "--version-id", d["VersionId"],
                          str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "MethodNotAllowed" in bad.stderr, bad.stderr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with cluster_util.started_cluster(tmp_path_factory.mktemp("versioning"), PORT_SHIFT) as c:
        yield c


def test_versions_across_a_cluster(cluster):
    n1, n2, n3 = (cluster.node(n) for n in ("n1", "n2", "n3"))
    c1, c2, c3 = (n.client(retries=5) for n in (n1, n2, n3))
    b = unique_name("cver")
    c1.create_bucket(Bucket=b)
    c1.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert c2.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    big = rand_bytes(3 * MiB, "cluster-ver")
    ids = [c1.put_object(Bucket=b, Key="k", Body=body)["VersionId"]
           for body in (b"small one", big, b"small two")]
    marker = c3.delete_object(Bucket=b, Key="k")["VersionId"]
    lv = c2.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in lv["Versions"]] == list(reversed(ids))
    assert [m["VersionId"] for m in lv["DeleteMarkers"]] == [marker]
    assert c3.get_object(Bucket=b, Key="k", VersionId=ids[1])["Body"].read() == big
    expect_error(c2.get_object, "NoSuchKey", 404, Bucket=b, Key="k")
    c2.delete_object(Bucket=b, Key="k", VersionId=marker)
    assert c3.get_object(Bucket=b, Key="k")["Body"].read() == b"small two"
