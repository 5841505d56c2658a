"""S3 Object Lock through boto3 (and the AWS CLI): lock enabled at bucket creation or later,
default retention, per-object retention (GOVERNANCE with the bypass header and permission,
COMPLIANCE never shortened), legal hold, deletes refused as AWS refuses them, lock headers on
GET/HEAD, multipart and copy destinations, a locked version's data surviving GC, and the key
flows again on a 3-node cluster."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time

import pytest
from botocore.exceptions import ClientError

import cluster_util
from cluster_util import Cluster, cairn_bin
from e2e_util import (
    chunk_files,
    client_error_code,
    client_error_status,
    expected_chunk_ids,
    rand_bytes,
    unique_name,
)
from test_aws_cli import aws  # noqa: F401  (fixture)
from test_security_keys import create_key, key_client

MiB = 1024 * 1024
PART = 5 * MiB
# Ports of this module's three-node cluster.
PORT_SHIFT = 680


@pytest.fixture(scope="module")
def server(server_factory):
    # GC every second, so a test can show a locked version's chunks outlive several passes.
    return server_factory("lock", GC_INTERVAL_SECS=1, GC_GRACE_SECS=1, CHUNK_SIZE=MiB,
                          INLINE_THRESHOLD=1024)


def expect_error(fn, code, status, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    err = ei.value
    assert (client_error_code(err), client_error_status(err)) == (code, status), err.response
    return err


def ahead(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def lock_bucket(s3, default=None):
    b = unique_name("lock")
    s3.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    if default:
        s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": default}})
    return b


def wait_past(until: dt.datetime):
    delay = (until - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if delay > 0:
        time.sleep(delay + 0.5)


# ---------------------------------------------------------------- bucket configuration

def test_lock_at_creation_enables_versioning(s3):
    b = lock_bucket(s3)
    assert s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    conf = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    assert conf == {"ObjectLockEnabled": "Enabled"}
    # Versioning can no longer be suspended.
    expect_error(s3.put_bucket_versioning, "InvalidBucketState", 409, Bucket=b,
                 VersioningConfiguration={"Status": "Suspended"})
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    # Default rule set, read back, replaced.
    s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3}}})
    rule = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]["Rule"]
    assert rule == {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3}}
    s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}})
    rule = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]["Rule"]
    assert rule == {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}
    # A rule can be dropped, lock stays on.
    s3.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled"})
    conf = s3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    assert conf == {"ObjectLockEnabled": "Enabled"}


def test_lock_configuration_errors(s3):
    plain = unique_name("nolock")
    s3.create_bucket(Bucket=plain)
    expect_error(s3.get_object_lock_configuration, "ObjectLockConfigurationNotFoundError", 404,
                 Bucket=plain)
    # Enabling lock on an existing bucket needs versioning Enabled.
    expect_error(s3.put_object_lock_configuration, "InvalidBucketState", 409, Bucket=plain,
                 ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Suspended"})
    expect_error(s3.put_object_lock_configuration, "InvalidBucketState", 409, Bucket=plain,
                 ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    s3.put_bucket_versioning(Bucket=plain, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=plain, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    assert s3.get_object_lock_configuration(Bucket=plain)["ObjectLockConfiguration"][
        "ObjectLockEnabled"] == "Enabled"
    expect_error(s3.put_bucket_versioning, "InvalidBucketState", 409, Bucket=plain,
                 VersioningConfiguration={"Status": "Suspended"})
    b = lock_bucket(s3)
    bad_rules = [
        ({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML", 400),
        ({"Mode": "GOVERNANCE"}, "MalformedXML", 400),
        ({"Days": 1}, "MalformedXML", 400),
        ({"Mode": "GOVERNANCE", "Days": 0}, "InvalidArgument", 400),
        ({"Mode": "COMPLIANCE", "Years": -2}, "InvalidArgument", 400),
    ]
    for rule, code, status in bad_rules:
        expect_error(s3.put_object_lock_configuration, code, status, Bucket=b,
                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                              "Rule": {"DefaultRetention": rule}})
    expect_error(s3.put_object_lock_configuration, "MalformedXML", 400, Bucket=b,
                 ObjectLockConfiguration={"Rule": {"DefaultRetention": {
                     "Mode": "GOVERNANCE", "Days": 1}}})
    expect_error(s3.get_object_lock_configuration, "NoSuchBucket", 404,
                 Bucket=unique_name("nob"))


# ---------------------------------------------------------------- writes

def test_put_headers_and_read_back(s3):
    b = lock_bucket(s3)
    until = ahead(3600).replace(microsecond=0)
    v = s3.put_object(Bucket=b, Key="k", Body=b"locked", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus="ON")["VersionId"]
    for read in (s3.head_object, s3.get_object):
        got = read(Bucket=b, Key="k")
        assert got["ObjectLockMode"] == "GOVERNANCE"
        assert got["ObjectLockRetainUntilDate"] == until
        assert got["ObjectLockLegalHoldStatus"] == "ON"
    r = s3.get_object_retention(Bucket=b, Key="k", VersionId=v)["Retention"]
    assert r == {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    assert s3.get_object_legal_hold(Bucket=b, Key="k")["LegalHold"] == {"Status": "ON"}
    # An unlocked version has no lock headers and no lock configuration.
    s3.put_object(Bucket=b, Key="free", Body=b"x")
    h = s3.head_object(Bucket=b, Key="free")
    assert "ObjectLockMode" not in h and "ObjectLockLegalHoldStatus" not in h
    expect_error(s3.get_object_retention, "NoSuchObjectLockConfiguration", 404, Bucket=b,
                 Key="free")
    expect_error(s3.get_object_legal_hold, "NoSuchObjectLockConfiguration", 404, Bucket=b,
                 Key="free")
    s3.put_object_legal_hold(Bucket=b, Key="k", VersionId=v, LegalHold={"Status": "OFF"})
    s3.put_object_retention(Bucket=b, Key="k", VersionId=v, BypassGovernanceRetention=True,
                            Retention={})
    s3.delete_object(Bucket=b, Key="k", VersionId=v)


def test_put_header_errors(server, s3):
    b = lock_bucket(s3)
    until = ahead(3600)
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=b, Key="k", Body=b"x",
                 ObjectLockMode="GOVERNANCE")
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=b, Key="k", Body=b"x",
                 ObjectLockRetainUntilDate=until)
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=b, Key="k", Body=b"x",
                 ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=ahead(-60))
    expect_error(s3.put_object, "InvalidArgument", 400, Bucket=b, Key="k", Body=b"x",
                 ObjectLockMode="FOREVER", ObjectLockRetainUntilDate=until)
    plain = unique_name("nolock")
    s3.create_bucket(Bucket=plain)
    err = expect_error(s3.put_object, "InvalidRequest", 400, Bucket=plain, Key="k", Body=b"x",
                       ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    assert "missing Object Lock Configuration" in err.response["Error"]["Message"]
    expect_error(s3.put_object, "InvalidRequest", 400, Bucket=plain, Key="k", Body=b"x",
                 ObjectLockLegalHoldStatus="ON")
    expect_error(s3.create_multipart_upload, "InvalidRequest", 400, Bucket=plain, Key="k",
                 ObjectLockLegalHoldStatus="ON")
    expect_error(s3.put_object_retention, "InvalidRequest", 400, Bucket=plain, Key="k",
                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    expect_error(s3.get_object_legal_hold, "InvalidRequest", 400, Bucket=plain, Key="k")
    assert not s3.list_objects_v2(Bucket=plain).get("Contents")
    # Without Content-MD5 or a checksum, a lock-protected PUT is refused (as AWS).
    bare = server.client(request_checksum_calculation="when_required")
    err = expect_error(bare.put_object, "InvalidRequest", 400, Bucket=b, Key="k", Body=b"x",
                       ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    assert "Content-MD5" in err.response["Error"]["Message"]
    # ...also when the bucket's default retention is what locks it; not when nothing does.
    d = lock_bucket(s3, {"Mode": "GOVERNANCE", "Days": 1})
    expect_error(bare.put_object, "InvalidRequest", 400, Bucket=d, Key="k", Body=b"x")
    bare.put_object(Bucket=b, Key="unlocked", Body=b"x")
    md5 = base64.b64encode(hashlib.md5(b"x").digest()).decode()
    bare.put_object(Bucket=d, Key="k", Body=b"x", ContentMD5=md5)
    assert s3.get_object_retention(Bucket=d, Key="k")["Retention"]["Mode"] == "GOVERNANCE"
    # Parts of an upload that will be locked need one too.
    uid = s3.create_multipart_upload(Bucket=d, Key="mp")["UploadId"]
    err = expect_error(bare.upload_part, "InvalidRequest", 400, Bucket=d, Key="mp",
                       UploadId=uid, PartNumber=1, Body=b"x")
    assert "Put Part" in err.response["Error"]["Message"]
    bare.upload_part(Bucket=d, Key="mp", UploadId=uid, PartNumber=1, Body=b"x", ContentMD5=md5)
    s3.abort_multipart_upload(Bucket=d, Key="mp", UploadId=uid)
    # Object lock headers where Cairn does not implement them (UploadPart): 501.
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    odd = server.client()

    def add_hold(request, **_):
        request.headers["x-amz-object-lock-legal-hold"] = "ON"

    odd.meta.events.register("before-sign.s3.UploadPart", add_hold)
    expect_error(odd.upload_part, "NotImplemented", 501, Bucket=b, Key="mp", UploadId=uid,
                 PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=b, Key="mp", UploadId=uid)


def test_default_retention_applies_to_new_versions(s3):
    b = lock_bucket(s3, {"Mode": "GOVERNANCE", "Days": 1})
    before = dt.datetime.now(dt.timezone.utc)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    r = s3.get_object_retention(Bucket=b, Key="k", VersionId=v1)["Retention"]
    assert r["Mode"] == "GOVERNANCE"
    day = dt.timedelta(days=1)
    assert before + day - dt.timedelta(seconds=5) <= r["RetainUntilDate"] <= ahead(86400 + 5)
    # Explicit headers win over the default.
    until = ahead(7200).replace(microsecond=0)
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two", ObjectLockMode="COMPLIANCE",
                       ObjectLockRetainUntilDate=until)["VersionId"]
    assert s3.get_object_retention(Bucket=b, Key="k", VersionId=v2)["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": until}
    # An overwrite is a new version: both stay.
    versions = s3.list_object_versions(Bucket=b)["Versions"]
    assert {v["VersionId"] for v in versions} == {v1, v2}
    # Multipart: the default applies at completion; explicit headers at creation.
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    p = s3.upload_part(Bucket=b, Key="mp", UploadId=uid, PartNumber=1, Body=b"part")
    done = s3.complete_multipart_upload(Bucket=b, Key="mp", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert s3.head_object(Bucket=b, Key="mp", VersionId=done["VersionId"])[
        "ObjectLockMode"] == "GOVERNANCE"
    uid = s3.create_multipart_upload(Bucket=b, Key="mp2", ObjectLockLegalHoldStatus="ON",
                                     ObjectLockMode="COMPLIANCE",
                                     ObjectLockRetainUntilDate=until)["UploadId"]
    p = s3.upload_part(Bucket=b, Key="mp2", UploadId=uid, PartNumber=1, Body=b"part")
    done = s3.complete_multipart_upload(Bucket=b, Key="mp2", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    h = s3.head_object(Bucket=b, Key="mp2")
    assert (h["ObjectLockMode"], h["ObjectLockRetainUntilDate"],
            h["ObjectLockLegalHoldStatus"]) == ("COMPLIANCE", until, "ON")
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="mp2",
                 VersionId=done["VersionId"])
    # A copy's destination gets the destination's lock, not the source's.
    plain = unique_name("nolock")
    s3.create_bucket(Bucket=plain)
    s3.copy_object(Bucket=plain, Key="c", CopySource={"Bucket": b, "Key": "k", "VersionId": v2})
    assert "ObjectLockMode" not in s3.head_object(Bucket=plain, Key="c")
    s3.put_object(Bucket=plain, Key="src", Body=b"src")
    c = s3.copy_object(Bucket=b, Key="c", CopySource={"Bucket": plain, "Key": "src"},
                       ObjectLockLegalHoldStatus="ON")
    h = s3.head_object(Bucket=b, Key="c", VersionId=c["VersionId"])
    assert (h["ObjectLockMode"], h["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    expect_error(s3.copy_object, "InvalidRequest", 400, Bucket=plain, Key="c2",
                 CopySource={"Bucket": plain, "Key": "src"}, ObjectLockLegalHoldStatus="ON")


# ---------------------------------------------------------------- deletes and retention changes

def test_governance_bypass_needs_header(s3):
    b = lock_bucket(s3)
    v = s3.put_object(Bucket=b, Key="k", Body=b"gov", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=ahead(3600))["VersionId"]
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v)
    # Without a version id: a delete marker, allowed.
    d = s3.delete_object(Bucket=b, Key="k")
    assert d["DeleteMarker"] is True
    expect_error(s3.get_object, "NoSuchKey", 404, Bucket=b, Key="k")
    assert s3.get_object(Bucket=b, Key="k", VersionId=v)["Body"].read() == b"gov"
    # Shortening needs the bypass; extending does not.
    expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": ahead(60)})
    expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                 Retention={})
    later = ahead(7200).replace(microsecond=0)
    s3.put_object_retention(Bucket=b, Key="k", VersionId=v,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=b, Key="k", VersionId=v)["Retention"][
        "RetainUntilDate"] == later
    sooner = ahead(60).replace(microsecond=0)
    s3.put_object_retention(Bucket=b, Key="k", VersionId=v, BypassGovernanceRetention=True,
                            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": sooner})
    assert s3.get_object_retention(Bucket=b, Key="k", VersionId=v)["Retention"][
        "RetainUntilDate"] == sooner
    # DeleteObjects reports the refusal per key; with the bypass the version goes.
    out = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "k", "VersionId": v}]})
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("k", "AccessDenied")]
    s3.delete_object(Bucket=b, Key="k", VersionId=v, BypassGovernanceRetention=True)
    expect_error(s3.get_object, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId=v)
    v = s3.put_object(Bucket=b, Key="k2", Body=b"gov", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=ahead(3600))["VersionId"]
    out = s3.delete_objects(Bucket=b, BypassGovernanceRetention=True,
                            Delete={"Objects": [{"Key": "k2", "VersionId": v}]})
    assert [d["VersionId"] for d in out["Deleted"]] == [v] and "Errors" not in out


def test_governance_bypass_needs_permission(server, s3):
    b = lock_bucket(s3)
    ak, sk = create_key(server, unique_name("writer"), "--grant", f"{b}=write")
    w = key_client(server, ak, sk)
    v = w.put_object(Bucket=b, Key="k", Body=b"gov", ObjectLockMode="GOVERNANCE",
                     ObjectLockRetainUntilDate=ahead(3600))["VersionId"]
    # A write grant does not carry s3:BypassGovernanceRetention.
    expect_error(w.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                 BypassGovernanceRetention=True)
    expect_error(w.put_object_retention, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                 BypassGovernanceRetention=True, Retention={})
    # A policy can grant it...
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ak}, "Action": "s3:BypassGovernanceRetention",
         "Resource": f"arn:aws:s3:::{b}/*"}]}))
    w.put_object_retention(Bucket=b, Key="k", VersionId=v, BypassGovernanceRetention=True,
                           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": ahead(600)})
    # ...and an explicit Deny takes it back, even from the root key.
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:BypassGovernanceRetention",
         "Resource": f"arn:aws:s3:::{b}/*"}]}))
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                 BypassGovernanceRetention=True)
    s3.delete_bucket_policy(Bucket=b)
    # The root key holds it.
    s3.delete_object(Bucket=b, Key="k", VersionId=v, BypassGovernanceRetention=True)


def test_compliance_is_never_shortened(s3):
    b = lock_bucket(s3)
    until = ahead(3600).replace(microsecond=0)
    v = s3.put_object(Bucket=b, Key="k", Body=b"c", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=until)["VersionId"]
    for bypass in (False, True):
        expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                     BypassGovernanceRetention=bypass)
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="k",
                     VersionId=v, BypassGovernanceRetention=bypass,
                     Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ahead(60)})
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="k",
                     VersionId=v, BypassGovernanceRetention=bypass,
                     Retention={"Mode": "GOVERNANCE", "RetainUntilDate": ahead(7200)})
        expect_error(s3.put_object_retention, "AccessDenied", 403, Bucket=b, Key="k",
                     VersionId=v, BypassGovernanceRetention=bypass, Retention={})
    later = ahead(7200).replace(microsecond=0)
    s3.put_object_retention(Bucket=b, Key="k", VersionId=v,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    assert s3.get_object_retention(Bucket=b, Key="k")["Retention"] == {
        "Mode": "COMPLIANCE", "RetainUntilDate": later}
    out = s3.delete_objects(Bucket=b, BypassGovernanceRetention=True,
                            Delete={"Objects": [{"Key": "k", "VersionId": v}]})
    assert [(e["Key"], e["Code"]) for e in out["Errors"]] == [("k", "AccessDenied")]
    # Retention errors.
    expect_error(s3.put_object_retention, "InvalidArgument", 400, Bucket=b, Key="k",
                 Retention={"Mode": "COMPLIANCE", "RetainUntilDate": ahead(-60)})
    expect_error(s3.put_object_retention, "NoSuchKey", 404, Bucket=b, Key="nope",
                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
    expect_error(s3.put_object_retention, "NoSuchVersion", 404, Bucket=b, Key="k",
                 VersionId="0" * 24,
                 Retention={"Mode": "GOVERNANCE", "RetainUntilDate": later})
    expect_error(s3.get_object_retention, "NoSuchKey", 404, Bucket=b, Key="nope")


def test_short_retention_expires(s3):
    b = lock_bucket(s3)
    until = ahead(3)
    v = s3.put_object(Bucket=b, Key="k", Body=b"short", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=until)["VersionId"]
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v)
    wait_past(until)
    s3.delete_object(Bucket=b, Key="k", VersionId=v)
    assert "Versions" not in s3.list_object_versions(Bucket=b)
    s3.delete_bucket(Bucket=b)


def test_legal_hold_blocks_delete_until_released(s3):
    b = lock_bucket(s3)
    v = s3.put_object(Bucket=b, Key="k", Body=b"held")["VersionId"]
    s3.put_object_legal_hold(Bucket=b, Key="k", LegalHold={"Status": "ON"})
    assert s3.get_object_legal_hold(Bucket=b, Key="k", VersionId=v)["LegalHold"] == {
        "Status": "ON"}
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v)
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v,
                 BypassGovernanceRetention=True)
    m = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    # The marker itself is not locked, and lock calls on it are refused as AWS does.
    expect_error(s3.put_object_legal_hold, "MethodNotAllowed", 405, Bucket=b, Key="k",
                 VersionId=m, LegalHold={"Status": "ON"})
    expect_error(s3.get_object_legal_hold, "NoSuchKey", 404, Bucket=b, Key="k")
    s3.delete_object(Bucket=b, Key="k", VersionId=m)
    expect_error(s3.put_object_legal_hold, "MalformedXML", 400, Bucket=b, Key="k",
                 LegalHold={})
    s3.put_object_legal_hold(Bucket=b, Key="k", VersionId=v, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=b, Key="k")["LegalHold"] == {"Status": "OFF"}
    assert s3.head_object(Bucket=b, Key="k")["ObjectLockLegalHoldStatus"] == "OFF"
    s3.delete_object(Bucket=b, Key="k", VersionId=v)
    assert "Versions" not in s3.list_object_versions(Bucket=b)


def test_bucket_with_locked_versions_cannot_be_deleted(s3):
    b = lock_bucket(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")
    s3.delete_object(Bucket=b, Key="k")
    expect_error(s3.delete_bucket, "BucketNotEmpty", 409, Bucket=b)


def test_locked_version_survives_gc(server, s3):
    b = lock_bucket(s3)
    data = rand_bytes(3 * MiB, "lock-gc")
    ids = set(expected_chunk_ids(data, MiB))
    v = s3.put_object(Bucket=b, Key="big", Body=data, ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=ahead(3600))["VersionId"]
    # Hidden behind a delete marker and an overwrite, refused a delete: still there after
    # several GC passes (GC_INTERVAL_SECS=1, GC_GRACE_SECS=1).
    s3.put_object(Bucket=b, Key="big", Body=b"small overwrite")
    s3.delete_object(Bucket=b, Key="big")
    expect_error(s3.delete_object, "AccessDenied", 403, Bucket=b, Key="big", VersionId=v)
    time.sleep(6)
    assert ids <= chunk_files(server.storage_path)
    assert s3.get_object(Bucket=b, Key="big", VersionId=v)["Body"].read() == data


def test_lock_with_aws_cli(aws, s3, tmp_path):  # noqa: F811
    b = unique_name("cli")
    aws("s3api", "create-bucket", "--bucket", b, "--object-lock-enabled-for-bucket")
    aws("s3api", "put-object-lock-configuration", "--bucket", b, "--object-lock-configuration",
        json.dumps({"ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}))
    out = aws("s3api", "get-object-lock-configuration", "--bucket", b, "--output", "json")
    conf = json.loads(out.stdout)["ObjectLockConfiguration"]
    assert conf["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}
    body = tmp_path / "body"
    body.write_bytes(b"cli")
    v = json.loads(aws("s3api", "put-object", "--bucket", b, "--key", "k", "--body", str(body),
                       "--output", "json").stdout)["VersionId"]
    ret = json.loads(aws("s3api", "get-object-retention", "--bucket", b, "--key", "k",
                         "--output", "json").stdout)["Retention"]
    assert ret["Mode"] == "GOVERNANCE"
    aws("s3api", "put-object-legal-hold", "--bucket", b, "--key", "k", "--legal-hold",
        "Status=ON")
    bad = aws("s3api", "delete-object", "--bucket", b, "--key", "k", "--version-id", v,
              "--bypass-governance-retention", check=False)
    assert bad.returncode != 0 and "AccessDenied" in bad.stderr, bad.stderr
    aws("s3api", "put-object-legal-hold", "--bucket", b, "--key", "k", "--legal-hold",
        "Status=OFF")
    aws("s3api", "delete-object", "--bucket", b, "--key", "k", "--version-id", v,
        "--bypass-governance-retention")
    assert "Versions" not in s3.list_object_versions(Bucket=b)


# ---------------------------------------------------------------- a 3-node cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = Cluster(tmp_path_factory.mktemp("objectlock"))
        try:
            c.start(3, timeout=120)
            c.wait_partition_leaders(60)
            yield c
        finally:
            problems = c.teardown()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def test_lock_across_a_cluster(cluster):
    n1, n2, n3 = (cluster.node(n) for n in ("n1", "n2", "n3"))
    c1, c2, c3 = (n.client(retries=5) for n in (n1, n2, n3))
    b = unique_name("clock")
    c1.create_bucket(Bucket=b, ObjectLockEnabledForBucket=True)
    expect_error(c2.put_bucket_versioning, "InvalidBucketState", 409, Bucket=b,
                 VersioningConfiguration={"Status": "Suspended"})
    c2.put_object_lock_configuration(Bucket=b, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    assert c3.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]["Rule"] == {
        "DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}
    big = rand_bytes(3 * MiB, "cluster-lock")
    # These clients send no checksum unless asked: a lock-protected PUT needs one.
    expect_error(c1.put_object, "InvalidRequest", 400, Bucket=b, Key="gov", Body=b"x")
    # Default retention (GOVERNANCE): refused without the bypass on every node.
    gov = c1.put_object(Bucket=b, Key="gov", Body=big, ChecksumAlgorithm="CRC32")["VersionId"]
    assert c2.head_object(Bucket=b, Key="gov")["ObjectLockMode"] == "GOVERNANCE"
    expect_error(c3.delete_object, "AccessDenied", 403, Bucket=b, Key="gov", VersionId=gov)
    assert c2.delete_object(Bucket=b, Key="gov")["DeleteMarker"] is True
    # COMPLIANCE: never shortened, on any node.
    until = ahead(4)
    comp = c2.put_object(Bucket=b, Key="comp", Body=b"c", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=until,
                         ContentMD5=base64.b64encode(hashlib.md5(b"c").digest()).decode()
                         )["VersionId"]
    expect_error(c1.put_object_retention, "AccessDenied", 403, Bucket=b, Key="comp",
                 VersionId=comp, BypassGovernanceRetention=True, Retention={})
    expect_error(c3.delete_object, "AccessDenied", 403, Bucket=b, Key="comp", VersionId=comp,
                 BypassGovernanceRetention=True)
    # Legal hold set on one node blocks a delete through another until released.
    c3.put_object_legal_hold(Bucket=b, Key="gov", VersionId=gov, LegalHold={"Status": "ON"})
    expect_error(c1.delete_object, "AccessDenied", 403, Bucket=b, Key="gov", VersionId=gov,
                 BypassGovernanceRetention=True)
    c2.put_object_legal_hold(Bucket=b, Key="gov", VersionId=gov, LegalHold={"Status": "OFF"})
    assert c3.get_object(Bucket=b, Key="gov", VersionId=gov)["Body"].read() == big
    c1.delete_object(Bucket=b, Key="gov", VersionId=gov, BypassGovernanceRetention=True)
    expect_error(c2.get_object, "NoSuchVersion", 404, Bucket=b, Key="gov", VersionId=gov)
    # Expired retention allows the delete.
    wait_past(until)
    c1.delete_object(Bucket=b, Key="comp", VersionId=comp)
    expect_error(c3.head_object, "404", 404, Bucket=b, Key="comp", VersionId=comp)
