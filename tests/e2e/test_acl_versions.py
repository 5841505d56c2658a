"""ACLs mapped onto the policy model, version-aware actions, tags on noncurrent versions and
the default CRC64NVME checksum.

ACLs: with ownership `ObjectWriter` / `BucketOwnerPreferred` and the public access block
allowing it, canned ACLs, grant headers and AccessControlPolicy bodies on CreateBucket,
PutBucketAcl, PutObject, CopyObject, CreateMultipartUpload and PutObjectAcl grant anonymous
(AllUsers) or any-key (AuthenticatedUsers) access, which a policy's explicit Deny still
overrides; BlockPublicAcls refuses them (403 AccessDenied), IgnorePublicAcls makes them inert,
BucketOwnerEnforced refuses them (400 AccessControlListNotSupported) and hides stored ones.
Anonymous reads use plain `requests` and boto3 UNSIGNED; one call goes through the AWS CLI.

Version-aware actions: a request naming a version needs `s3:GetObjectVersion` (and friends),
not `s3:GetObject`. A 3-node cluster (ports +770) checks the anonymous public-read path and a
version-aware policy set through one node and enforced through the others."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from awscrt import checksums as crt
from botocore import UNSIGNED
from botocore.config import Config

import cluster_util
from conftest import make_client
from e2e_util import REGION, expect_error, unique_name, versioned_bucket
from test_aws_cli import aws  # noqa: F401  (fixture)
from test_encryption import ssec as sse_c
from test_security_keys import create_key, key_client

PORT_SHIFT = 770
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("acl")


@pytest.fixture(scope="module")
def s3(server):
    return server.client()


@pytest.fixture(scope="module")
def anon(server):
    return boto_unsigned(server.endpoint)


def acl_bucket(s3, ownership="ObjectWriter", block=None, versioning=False):
    """A bucket with ACLs enabled (`ownership`) and the public access block `block` (None:
    removed)."""
    b = unique_name("acl")
    s3.create_bucket(Bucket=b, ObjectOwnership=ownership)
    if block is None:
        s3.delete_public_access_block(Bucket=b)
    else:
        s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=block)
    if versioning:
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    return b


def groups(acl) -> set[tuple[str, str]]:
    return {(g["Grantee"]["URI"], g["Permission"]) for g in acl["Grants"]
            if g["Grantee"]["Type"] == "Group"}


def url(server, b, k=""):
    return f"{server.endpoint}/{b}/{k}" if k else f"{server.endpoint}/{b}"


# ------------------------------------------------------------------------------ canned ACLs

def test_public_read_object_is_readable_anonymously(server, s3, anon, bucket):
    b = acl_bucket(s3)
    s3.put_object(Bucket=b, Key="pub.txt", Body=b"hello", ACL="public-read")
    s3.put_object(Bucket=b, Key="secret.txt", Body=b"no")
    r = requests.get(url(server, b, "pub.txt"), timeout=10)
    assert r.status_code == 200 and r.content == b"hello"
    assert anon.get_object(Bucket=b, Key="pub.txt")["Body"].read() == b"hello"
    assert anon.head_object(Bucket=b, Key="pub.txt")["ContentLength"] == 5
    # Only that object, only reads.
    r = requests.get(url(server, b, "secret.txt"), timeout=10)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    assert requests.get(url(server, b, "missing"), timeout=10).status_code == 403
    assert requests.get(url(server, b), timeout=10).status_code == 403
    expect_error(anon.put_object, "AccessDenied", 403, Bucket=b, Key="pub.txt", Body=b"x")
    expect_error(anon.delete_object, "AccessDenied", 403, Bucket=b, Key="pub.txt")
    expect_error(anon.get_object_acl, "AccessDenied", 403, Bucket=b, Key="pub.txt")
    assert groups(s3.get_object_acl(Bucket=b, Key="pub.txt")) == {(ALL_USERS, "READ")}
    assert groups(s3.get_object_acl(Bucket=b, Key="secret.txt")) == set()
    # An explicit Deny of the bucket policy wins over the ACL.
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{b}/pub.txt"}]}))
    assert requests.get(url(server, b, "pub.txt"), timeout=10).status_code == 403
    s3.delete_bucket_policy(Bucket=b)
    assert requests.get(url(server, b, "pub.txt"), timeout=10).status_code == 200
    # Back to private.
    s3.put_object_acl(Bucket=b, Key="pub.txt", ACL="private")
    assert groups(s3.get_object_acl(Bucket=b, Key="pub.txt")) == set()
    assert requests.get(url(server, b, "pub.txt"), timeout=10).status_code == 403
    # An overwrite without an ACL is private again.
    s3.put_object_acl(Bucket=b, Key="pub.txt", ACL="public-read")
    s3.put_object(Bucket=b, Key="pub.txt", Body=b"v2")
    assert requests.get(url(server, b, "pub.txt"), timeout=10).status_code == 403


def test_block_and_ignore_public_acls(server, s3):
    b = unique_name("acl")
    s3.create_bucket(Bucket=b, ObjectOwnership="BucketOwnerPreferred")
    # A new bucket blocks public ACLs.
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=b, Key="k", Body=b"v",
                 ACL="public-read")
    expect_error(s3.put_object, "AccessDenied", 403, Bucket=b, Key="k", Body=b"v",
                 GrantRead=f'uri="{AUTH_USERS}"')
    expect_error(s3.head_object, "404", 404, Bucket=b, Key="k")
    s3.put_object(Bucket=b, Key="k", Body=b"v")
    expect_error(s3.put_bucket_acl, "AccessDenied", 403, Bucket=b, ACL="public-read")
    owner = s3.get_bucket_acl(Bucket=b)["Owner"]
    body = {"Owner": owner, "Grants": [
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]}
    expect_error(s3.put_object_acl, "AccessDenied", 403, Bucket=b, Key="k",
                 AccessControlPolicy=body)
    # IgnorePublicAcls alone: stored, reported, but granting nothing.
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    s3.put_object_acl(Bucket=b, Key="k", AccessControlPolicy=body)
    assert groups(s3.get_object_acl(Bucket=b, Key="k")) == {(ALL_USERS, "READ")}
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 403
    s3.delete_public_access_block(Bucket=b)
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 200


def test_bucket_acls(server, s3, anon):
    b = acl_bucket(s3)
    s3.put_object(Bucket=b, Key="a", Body=b"a")
    s3.put_bucket_acl(Bucket=b, ACL="public-read")
    assert groups(s3.get_bucket_acl(Bucket=b)) == {(ALL_USERS, "READ")}
    # A bucket's READ lists it, but does not read its objects.
    keys = [o["Key"] for o in anon.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["a"]
    assert requests.get(url(server, b), timeout=10).status_code == 200
    expect_error(anon.get_object, "AccessDenied", 403, Bucket=b, Key="a")
    expect_error(anon.put_object, "AccessDenied", 403, Bucket=b, Key="new", Body=b"n")
    expect_error(anon.get_bucket_acl, "AccessDenied", 403, Bucket=b)
    # public-read-write: anyone may write and delete objects.
    s3.put_bucket_acl(Bucket=b, ACL="public-read-write")
    assert groups(s3.get_bucket_acl(Bucket=b)) == {(ALL_USERS, "READ"), (ALL_USERS, "WRITE")}
    anon.put_object(Bucket=b, Key="new", Body=b"n")
    assert s3.get_object(Bucket=b, Key="new")["Body"].read() == b"n"
    anon.delete_object(Bucket=b, Key="new")
    expect_error(anon.put_bucket_policy, "AccessDenied", 403, Bucket=b, Policy="{}")
    # Grant headers, and an AccessControlPolicy body, replace the ACL.
    s3.put_bucket_acl(Bucket=b, GrantReadACP=f'uri="{AUTH_USERS}"')
    assert groups(s3.get_bucket_acl(Bucket=b)) == {(AUTH_USERS, "READ_ACP")}
    expect_error(anon.list_objects_v2, "AccessDenied", 403, Bucket=b)
    owner = s3.get_bucket_acl(Bucket=b)["Owner"]
    s3.put_bucket_acl(Bucket=b, AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"}]})
    assert groups(s3.get_bucket_acl(Bucket=b)) == set()


def test_authenticated_read_needs_any_key(server, s3):
    b = acl_bucket(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"members", ACL="authenticated-read")
    assert groups(s3.get_object_acl(Bucket=b, Key="k")) == {(AUTH_USERS, "READ")}
    ak, sk = create_key(server, "any-member")  # no grant on the bucket
    member = key_client(server, ak, sk)
    assert member.get_object(Bucket=b, Key="k")["Body"].read() == b"members"
    expect_error(member.put_object, "AccessDenied", 403, Bucket=b, Key="k", Body=b"x")
    expect_error(member.get_object_acl, "AccessDenied", 403, Bucket=b, Key="k")
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 403


def test_acl_refusals(s3, bucket):
    b = acl_bucket(s3)
    owner_id = s3.get_bucket_acl(Bucket=b)["Owner"]["ID"]
    cases = [
        (dict(GrantRead='id="0000000000000000000000000000000000000000000000000000000000000000"'),
         "InvalidArgument", 400),
        (dict(GrantRead='emailAddress="someone@example.com"'), "UnresolvableGrantByEmailAddress", 400),
        (dict(ACL="public-read", GrantRead=f'uri="{ALL_USERS}"'), "InvalidRequest", 400),
        (dict(GrantReadACP='uri="http://acs.amazonaws.com/groups/s3/LogDelivery"'), "NotImplemented", 501),
        (dict(GrantRead='uri="http://example.com/not-a-group"'), "InvalidArgument", 400),
    ]
    for extra, code, status in cases:
        expect_error(s3.put_object, code, status, Bucket=b, Key="k", Body=b"v", **extra)
    expect_error(s3.head_object, "404", 404, Bucket=b, Key="k")
    # The owner, named by id, changes nothing and is accepted.
    s3.put_object(Bucket=b, Key="k", Body=b"v", GrantFullControl=f'id="{owner_id}"')
    assert groups(s3.get_object_acl(Bucket=b, Key="k")) == set()
    for extra, code, status in cases:
        expect_error(s3.put_object_acl, code, status, Bucket=b, Key="k", **extra)
    owner = s3.get_object_acl(Bucket=b, Key="k")["Owner"]
    expect_error(s3.put_object_acl, "UnresolvableGrantByEmailAddress", 400, Bucket=b, Key="k",
                 AccessControlPolicy={"Owner": owner, "Grants": [
                     {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "a@example.com"},
                      "Permission": "READ"}]})
    expect_error(s3.put_object_acl, "UnexpectedContent", 400, Bucket=b, Key="k", ACL="private",
                 AccessControlPolicy={"Owner": owner, "Grants": []})
    expect_error(s3.put_object_acl, "NotImplemented", 501, Bucket=b, Key="k", ACL="aws-exec-read")
    expect_error(s3.put_object_acl, "NoSuchKey", 404, Bucket=b, Key="missing", ACL="private")
    # Under BucketOwnerEnforced (the default), ACLs are refused and stored ones are hidden.
    expect_error(s3.put_object, "AccessControlListNotSupported", 400, Bucket=bucket, Key="k",
                 Body=b"v", ACL="authenticated-read")


def test_enforced_ownership_turns_stored_acls_off(server, s3):
    b = acl_bucket(s3)
    s3.put_object(Bucket=b, Key="k", Body=b"v", ACL="public-read")
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 200
    s3.put_bucket_ownership_controls(
        Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 403
    acl = s3.get_object_acl(Bucket=b, Key="k")
    assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
    expect_error(s3.put_object_acl, "AccessControlListNotSupported", 400, Bucket=b, Key="k",
                 ACL="public-read")
    s3.put_bucket_ownership_controls(
        Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 200


def test_create_bucket_with_acls(s3):
    expect_error(s3.create_bucket, "InvalidBucketAclWithObjectOwnership", 400,
                 Bucket=unique_name("acl"), ACL="public-read")
    # ACLs enabled, but a new bucket blocks public ACLs (set them after removing the block).
    expect_error(s3.create_bucket, "InvalidBucketAclWithBlockPublicAccessError", 400,
                 Bucket=unique_name("acl"), ACL="public-read", ObjectOwnership="ObjectWriter")
    expect_error(s3.create_bucket, "InvalidBucketAclWithBlockPublicAccessError", 400,
                 Bucket=unique_name("acl"), GrantRead=f'uri="{AUTH_USERS}"',
                 ObjectOwnership="BucketOwnerPreferred")
    b = unique_name("acl")
    s3.create_bucket(Bucket=b, ACL="private", ObjectOwnership="BucketOwnerPreferred")
    rules = s3.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerPreferred"}]
    assert groups(s3.get_bucket_acl(Bucket=b)) == set()


def test_copy_and_multipart_take_the_request_acl(server, s3):
    b = acl_bucket(s3)
    s3.put_object(Bucket=b, Key="src", Body=b"source", ACL="public-read")
    s3.copy_object(Bucket=b, Key="private-copy", CopySource={"Bucket": b, "Key": "src"})
    assert requests.get(url(server, b, "private-copy"), timeout=10).status_code == 403
    s3.copy_object(Bucket=b, Key="public-copy", CopySource={"Bucket": b, "Key": "src"},
                   ACL="public-read")
    r = requests.get(url(server, b, "public-copy"), timeout=10)
    assert r.status_code == 200 and r.content == b"source"
    up = s3.create_multipart_upload(Bucket=b, Key="mpu", ACL="public-read")
    part = s3.upload_part(Bucket=b, Key="mpu", UploadId=up["UploadId"], PartNumber=1, Body=b"parts")
    assert requests.get(url(server, b, "mpu"), timeout=10).status_code == 403
    s3.complete_multipart_upload(Bucket=b, Key="mpu", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    r = requests.get(url(server, b, "mpu"), timeout=10)
    assert r.status_code == 200 and r.content == b"parts"


def test_object_acl_by_version(server, s3, anon):
    b = acl_bucket(s3, versioning=True)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one", ACL="public-read")["VersionId"]
    v2 = s3.put_object(Bucket=b, Key="k", Body=b"two")["VersionId"]
    assert requests.get(url(server, b, "k"), timeout=10).status_code == 403
    r = requests.get(url(server, b, "k"), params={"versionId": v1}, timeout=10)
    assert r.status_code == 200 and r.content == b"one"
    assert groups(s3.get_object_acl(Bucket=b, Key="k", VersionId=v1)) == {(ALL_USERS, "READ")}
    s3.put_object_acl(Bucket=b, Key="k", VersionId=v1, ACL="private")
    assert requests.get(url(server, b, "k"), params={"versionId": v1}, timeout=10).status_code == 403
    s3.put_object_acl(Bucket=b, Key="k", VersionId=v2, ACL="public-read")
    assert anon.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    marker = s3.delete_object(Bucket=b, Key="k")["VersionId"]
    expect_error(s3.get_object_acl, "MethodNotAllowed", 405, Bucket=b, Key="k", VersionId=marker)
    expect_error(s3.put_object_acl, "NoSuchVersion", 404, Bucket=b, Key="k", VersionId="0" * 24,
                 ACL="private")


def test_aws_cli_put_object_acl_public_read(server, aws, s3):  # noqa: F811
    b = acl_bucket(s3)
    s3.put_object(Bucket=b, Key="site/index.html", Body=b"<html>")
    assert requests.get(url(server, b, "site/index.html"), timeout=10).status_code == 403
    aws("s3api", "put-object-acl", "--bucket", b, "--key", "site/index.html", "--acl", "public-read")
    r = requests.get(url(server, b, "site/index.html"), timeout=10)
    assert r.status_code == 200 and r.content == b"<html>"
    out = json.loads(aws("s3api", "get-object-acl", "--bucket", b, "--key", "site/index.html").stdout)
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in out["Grants"]
    bad = aws("s3api", "put-object-acl", "--bucket", b, "--key", "site/index.html",
              "--grant-read", "emailAddress=someone@example.com", check=False)
    assert bad.returncode != 0 and "UnresolvableGrantByEmailAddress" in bad.stderr


# ------------------------------------------------------------------------------ versions

def test_version_aware_policy_actions(server, s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"one", Tagging="gen=1")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"two")
    ak, sk = create_key(server, "reader")
    c = key_client(server, ak, sk)

    def allow(*actions):
        s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ak}, "Action": list(actions),
             "Resource": [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]}]}))

    allow("s3:GetObject", "s3:GetObjectTagging", "s3:DeleteObject", "s3:ListBucket")
    assert c.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    expect_error(c.get_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v1)
    expect_error(c.head_object, "403", 403, Bucket=b, Key="k", VersionId=v1)
    expect_error(c.get_object_tagging, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v1)
    expect_error(c.list_object_versions, "AccessDenied", 403, Bucket=b)
    expect_error(c.delete_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v1)
    expect_error(c.copy_object, "AccessDenied", 403, Bucket=b, Key="copy",
                 CopySource={"Bucket": b, "Key": "k", "VersionId": v1})
    allow("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectVersionTagging",
          "s3:ListBucketVersions", "s3:DeleteObjectVersion")
    assert c.get_object(Bucket=b, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert c.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"] == \
        [{"Key": "gen", "Value": "1"}]
    assert len(c.list_object_versions(Bucket=b)["Versions"]) == 2
    expect_error(c.get_object_tagging, "AccessDenied", 403, Bucket=b, Key="k")
    c.delete_object(Bucket=b, Key="k", VersionId=v1)
    assert len(s3.list_object_versions(Bucket=b)["Versions"]) == 1
    # A Deny on the version action wins over the key's own grant.
    ak2, sk2 = create_key(server, "granted", "--grant", f"{b}=read")
    g = key_client(server, ak2, sk2)
    v = s3.list_object_versions(Bucket=b)["Versions"][0]["VersionId"]
    assert g.get_object(Bucket=b, Key="k", VersionId=v)["Body"].read() == b"two"
    s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Statement": [
        {"Effect": "Deny", "Principal": {"AWS": ak2}, "Action": "s3:GetObjectVersion",
         "Resource": f"arn:aws:s3:::{b}/*"}]}))
    expect_error(g.get_object, "AccessDenied", 403, Bucket=b, Key="k", VersionId=v)
    assert g.get_object(Bucket=b, Key="k")["Body"].read() == b"two"
    s3.delete_bucket_policy(Bucket=b)


def test_tags_of_noncurrent_versions(s3):
    b = versioned_bucket(s3)
    v1 = s3.put_object(Bucket=b, Key="k", Body=b"1", Tagging="a=1")["VersionId"]
    s3.put_object(Bucket=b, Key="k", Body=b"2", Tagging="a=2")
    s3.put_object_tagging(Bucket=b, Key="k", VersionId=v1,
                          Tagging={"TagSet": [{"Key": "a", "Value": "old"}, {"Key": "b", "Value": "x"}]})
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"] == \
        [{"Key": "a", "Value": "old"}, {"Key": "b", "Value": "x"}]
    assert s3.get_object(Bucket=b, Key="k", VersionId=v1)["TagCount"] == 2
    assert s3.get_object_tagging(Bucket=b, Key="k")["TagSet"] == [{"Key": "a", "Value": "2"}]
    s3.delete_object_tagging(Bucket=b, Key="k", VersionId=v1)
    assert s3.get_object_tagging(Bucket=b, Key="k", VersionId=v1)["TagSet"] == []
    # The null version of a suspended bucket, noncurrent.
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=b, Key="n", Body=b"null")
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=b, Key="n", Body=b"newer")
    s3.put_object_tagging(Bucket=b, Key="n", VersionId="null",
                          Tagging={"TagSet": [{"Key": "null", "Value": "yes"}]})
    assert s3.get_object_tagging(Bucket=b, Key="n", VersionId="null")["TagSet"] == \
        [{"Key": "null", "Value": "yes"}]
    expect_error(s3.put_object_tagging, "InvalidTag", 400, Bucket=b, Key="n", VersionId="null",
                 Tagging={"TagSet": [{"Key": "aws:x", "Value": "y"}]})


# ------------------------------------------------------------------------------ default checksum

def crc64(data: bytes) -> str:
    return base64.b64encode(crt.crc64nvme(data).to_bytes(8, "big")).decode()


@pytest.fixture(scope="module")
def plain(server):
    """A client that sends no checksum (boto3 sends CRC32 by default otherwise)."""
    return make_client(server.endpoint, request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")


def test_default_crc64nvme_on_put_and_copy(plain, s3, bucket):
    data = b"no checksum sent " * 100
    put = plain.put_object(Bucket=bucket, Key="k", Body=data)
    assert put["ChecksumCRC64NVME"] == crc64(data) and put["ChecksumType"] == "FULL_OBJECT"
    h = plain.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert h["ChecksumCRC64NVME"] == crc64(data)
    assert "ChecksumCRC64NVME" not in plain.head_object(Bucket=bucket, Key="k")
    g = plain.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert g["ChecksumCRC64NVME"] == crc64(data) and g["Body"].read() == data
    a = plain.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Checksum"])
    assert a["Checksum"] == {"ChecksumCRC64NVME": crc64(data), "ChecksumType": "FULL_OBJECT"}
    # A checksum the client asks for is kept as it is.
    sha = plain.put_object(Bucket=bucket, Key="sha", Body=data, ChecksumAlgorithm="SHA256")
    assert "ChecksumCRC64NVME" not in sha and "ChecksumSHA256" in sha
    # A copy keeps the source's checksum; a source without one (a multipart upload sent
    # without checksums) gets the default, computed over the whole object.
    c = plain.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"})
    assert c["CopyObjectResult"]["ChecksumCRC64NVME"] == crc64(data)
    big = b"p" * (5 * 1024 * 1024)
    up = plain.create_multipart_upload(Bucket=bucket, Key="mpu")
    parts = []
    for n, body in enumerate([big, b"tail"], start=1):
        r = plain.upload_part(Bucket=bucket, Key="mpu", UploadId=up["UploadId"], PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    plain.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=up["UploadId"],
                                    MultipartUpload={"Parts": parts})
    assert "ChecksumCRC64NVME" not in plain.head_object(Bucket=bucket, Key="mpu", ChecksumMode="ENABLED")
    c = plain.copy_object(Bucket=bucket, Key="mpu-copy", CopySource={"Bucket": bucket, "Key": "mpu"})
    assert c["CopyObjectResult"]["ChecksumCRC64NVME"] == crc64(big + b"tail")
    h = plain.head_object(Bucket=bucket, Key="mpu-copy", ChecksumMode="ENABLED")
    assert h["ChecksumCRC64NVME"] == crc64(big + b"tail")


def test_no_default_checksum_for_sse_c(plain, bucket):
    ssec = sse_c()
    put = plain.put_object(Bucket=bucket, Key="ssec", Body=b"secret", **ssec)
    assert "ChecksumCRC64NVME" not in put
    h = plain.head_object(Bucket=bucket, Key="ssec", ChecksumMode="ENABLED", **ssec)
    assert "ChecksumCRC64NVME" not in h
    sse_s3 = plain.put_object(Bucket=bucket, Key="sse-s3", Body=b"plain", ServerSideEncryption="AES256")
    assert sse_s3["ChecksumCRC64NVME"] == crc64(b"plain")


# ------------------------------------------------------------------------------ cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with cluster_util.started_cluster(tmp_path_factory.mktemp("acl-cluster"), PORT_SHIFT) as c:
        yield c


def within(fn, bound: float = 5.0):
    """Polls `fn` until it returns true (bucket settings reach other nodes within their cache
    TTL)."""
    start = time.monotonic()
    while not fn():
        assert time.monotonic() - start < bound
        time.sleep(0.05)


def test_cluster_public_read_and_version_policy(cluster):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    c1 = cluster_util.s3_client(n1.endpoint, retries=3)
    c2 = cluster_util.s3_client(n2.endpoint, retries=3)
    ep2, ep3 = n2.endpoint, n3.endpoint
    b = unique_name("aclc")
    c1.create_bucket(Bucket=b, ObjectOwnership="ObjectWriter")
    c1.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    c1.delete_public_access_block(Bucket=b)
    v1 = c1.put_object(Bucket=b, Key="pub", Body=b"one", ACL="public-read")["VersionId"]

    def anon_status(ep, key="pub", **params):
        return requests.get(f"{ep}/{b}/{key}", params=params, timeout=10).status_code

    within(lambda: anon_status(ep2) == 200)
    within(lambda: anon_status(ep3) == 200)
    unsigned = boto_unsigned(ep3)
    assert unsigned.get_object(Bucket=b, Key="pub")["Body"].read() == b"one"
    # A new private version: the public one stays readable by its id only.
    c2.put_object(Bucket=b, Key="pub", Body=b"two")
    assert anon_status(ep3) == 403
    assert anon_status(ep2, versionId=v1) == 200
    # A policy allowing GetObject to everyone does not allow GetObjectVersion.
    c1.put_object_acl(Bucket=b, Key="pub", VersionId=v1, ACL="private")
    c1.put_bucket_policy(Bucket=b, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{b}/*"}]}))
    within(lambda: anon_status(ep3) == 200)
    assert anon_status(ep2, versionId=v1) == 403
    c1.put_bucket_policy(Bucket=b, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": f"arn:aws:s3:::{b}/*"}]}))
    within(lambda: anon_status(ep2, versionId=v1) == 200)
    within(lambda: anon_status(ep3, versionId=v1) == 200)
    # Tags of the noncurrent version, set through one node, read through another.
    c2.put_object_tagging(Bucket=b, Key="pub", VersionId=v1,
                          Tagging={"TagSet": [{"Key": "old", "Value": "yes"}]})
    assert c1.get_object_tagging(Bucket=b, Key="pub", VersionId=v1)["TagSet"] == \
        [{"Key": "old", "Value": "yes"}]


def boto_unsigned(endpoint: str):
    import boto3  # noqa: PLC0415

    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=REGION,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                      retries={"max_attempts": 2, "mode": "standard"}))
