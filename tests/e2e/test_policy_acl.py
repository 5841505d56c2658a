"""Bucket policies, public access block, ownership controls and ACLs (issue 11 item 4): a
read-only policy on one prefix for a second key, explicit Deny winning over a grant, anonymous
GET allowed by a public policy only once the public access block is removed, aws:SourceIp,
s3:prefix on ListBucket, malformed policies, the ACL operations under BucketOwnerEnforced, and
a policy set through one node of a 3-node cluster enforced through another."""

from __future__ import annotations

import json
import time

import pytest
import requests
from botocore.exceptions import ClientError

import cluster_util
from cluster_util import cairn_bin
from e2e_util import unique_name
from test_aws_cli import aws  # noqa: F401  (fixture)
from test_security_keys import create_key, expect_denied, key_client

PORT_SHIFT = 620


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory("policy")


def err(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def arn(bucket: str, rest: str = "") -> str:
    return f"arn:aws:s3:::{bucket}{rest}"


def test_read_only_prefix_for_a_second_key(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="team/a.csv", Body=b"a")
    s3.put_object(Bucket=bucket, Key="private/b.csv", Body=b"b")
    ak, sk = create_key(server, "data-team")
    data = key_client(server, ak, sk)
    # No grant, no policy: nothing.
    expect_denied(lambda: data.get_object(Bucket=bucket, Key="team/a.csv"))
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Sid": "List", "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::000000000000:user/{ak}"]},
         "Action": "s3:ListBucket", "Resource": arn(bucket),
         "Condition": {"StringLike": {"s3:prefix": ["team/*"]}}},
        {"Sid": "Read", "Effect": "Allow", "Principal": {"AWS": ak},
         "Action": ["s3:GetObject"], "Resource": arn(bucket, "/team/*")},
    ))
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Sid"] == "List"
    assert data.get_object(Bucket=bucket, Key="team/a.csv")["Body"].read() == b"a"
    expect_denied(lambda: data.get_object(Bucket=bucket, Key="private/b.csv"))
    expect_denied(lambda: data.put_object(Bucket=bucket, Key="team/new", Body=b"x"))
    expect_denied(lambda: data.delete_object(Bucket=bucket, Key="team/a.csv"))
    keys = [o["Key"] for o in data.list_objects_v2(Bucket=bucket, Prefix="team/")["Contents"]]
    assert keys == ["team/a.csv"]
    # s3:prefix: listing the whole bucket or another prefix is not allowed.
    expect_denied(lambda: data.list_objects_v2(Bucket=bucket))
    expect_denied(lambda: data.list_objects_v2(Bucket=bucket, Prefix="private/"))
    expect_denied(lambda: data.get_bucket_policy(Bucket=bucket))
    s3.delete_bucket_policy(Bucket=bucket)
    expect_denied(lambda: data.get_object(Bucket=bucket, Key="team/a.csv"))
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert err(e.value) == ("NoSuchBucketPolicy", 404)


def test_explicit_deny_wins_over_a_grant(server, s3, bucket):
    ak, sk = create_key(server, "writer", "--grant", f"{bucket}=write")
    w = key_client(server, ak, sk)
    w.put_object(Bucket=bucket, Key="logs/1", Body=b"1")
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": {"AWS": ak}, "Action": ["s3:PutObject", "s3:Delete*"],
         "Resource": arn(bucket, "/logs/*")},
    ))
    expect_denied(lambda: w.put_object(Bucket=bucket, Key="logs/2", Body=b"2"))
    expect_denied(lambda: w.delete_object(Bucket=bucket, Key="logs/1"))
    w.put_object(Bucket=bucket, Key="other/2", Body=b"2")
    assert w.get_object(Bucket=bucket, Key="logs/1")["Body"].read() == b"1"
    # A Deny for everyone binds the root key too, except on the policy itself.
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [arn(bucket), arn(bucket, "/*")]},
    ))
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="logs/1")
    assert err(e.value) == ("AccessDenied", 403)
    s3.get_bucket_policy(Bucket=bucket)
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="logs/1")["Body"].read() == b"1"


def test_anonymous_get_needs_a_public_policy_and_no_block(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="pub/index.html", Body=b"<html>")
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    url = f"{server.endpoint}/{bucket}/pub/index.html"
    r = requests.get(url, timeout=10)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, r.text
    public = policy({"Sid": "Public", "Effect": "Allow", "Principal": "*",
                     "Action": "s3:GetObject", "Resource": arn(bucket, "/pub/*")})
    # New buckets block public policies (as AWS since 2023).
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert err(e.value) == ("AccessDenied", 403)
    s3.delete_public_access_block(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_public_access_block(Bucket=bucket)
    assert err(e.value) == ("NoSuchPublicAccessBlockConfiguration", 404)
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == b"<html>"
    assert requests.get(f"{server.endpoint}/{bucket}/secret", timeout=10).status_code == 403
    assert requests.put(f"{server.endpoint}/{bucket}/pub/x", data=b"x", timeout=10).status_code == 403
    assert requests.get(f"{server.endpoint}/{bucket}", timeout=10).status_code == 403
    assert requests.get(f"{server.endpoint}/", timeout=10).status_code == 403
    # RestrictPublicBuckets alone turns anonymous access off again.
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    assert requests.get(url, timeout=10).status_code == 403
    s3.delete_public_access_block(Bucket=bucket)
    assert requests.get(url, timeout=10).status_code == 200


def test_source_ip_conditions(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    ak, sk = create_key(server, "ip", "--grant", f"{bucket}=read")
    c = key_client(server, ak, sk)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": arn(bucket, "/*"),
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8"]}}},
    ))
    expect_denied(lambda: c.get_object(Bucket=bucket, Key="k"))
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": arn(bucket, "/*"),
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}},
    ))
    assert c.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    # An Allow narrowed to a source network, for a key without a grant.
    ak2, sk2 = create_key(server, "ip2")
    c2 = key_client(server, ak2, sk2)
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": ak2}, "Action": "s3:GetObject", "Resource": arn(bucket, "/*"),
         "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}},
    ))
    expect_denied(lambda: c2.get_object(Bucket=bucket, Key="k"))
    s3.put_bucket_policy(Bucket=bucket, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": ak2}, "Action": "s3:GetObject", "Resource": arn(bucket, "/*"),
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}, "Bool": {"aws:SecureTransport": "false"}}},
    ))
    assert c2.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    s3.delete_bucket_policy(Bucket=bucket)


@pytest.mark.parametrize("doc,message", [
    ("{not json", "This policy contains invalid Json"),
    (json.dumps({"Version": "2012-10-17", "Statement": []}), "Missing required field Statement"),
    (json.dumps({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:Fly",
                               "Resource": "arn:aws:s3:::BUCKET/*"}}), "Policy has invalid action"),
    (json.dumps({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                               "Resource": "arn:aws:s3:::some-other-bucket/*"}}), "Policy has invalid resource"),
    (json.dumps({"Statement": {"Effect": "Perhaps", "Principal": "*", "Action": "s3:GetObject",
                               "Resource": "arn:aws:s3:::BUCKET/*"}}), "Invalid effect"),
])
def test_malformed_policies(s3, bucket, doc, message):
    with pytest.raises(ClientError) as e:
        s3.put_bucket_policy(Bucket=bucket, Policy=doc.replace("BUCKET", bucket))
    assert err(e.value) == ("MalformedPolicy", 400)
    assert e.value.response["Error"]["Message"] == message
    with pytest.raises(ClientError):
        s3.get_bucket_policy(Bucket=bucket)


def test_acls_under_bucket_owner_enforced(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="k")):
        assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
        assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=bucket, Key="k2", Body=b"v", ACL="private")
    for fn in (lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
               lambda: s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read"),
               lambda: s3.put_object(Bucket=bucket, Key="k3", Body=b"v", ACL="public-read"),
               lambda: s3.put_object(Bucket=bucket, Key="k3", Body=b"v", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')):
        with pytest.raises(ClientError) as e:
            fn()
        assert err(e.value) == ("AccessControlListNotSupported", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k3")
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=unique_name("acl"), ACL="public-read")
    assert err(e.value) == ("InvalidBucketAclWithObjectOwnership", 400)
    with pytest.raises(ClientError) as e:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert err(e.value)[1] == 404


def test_ownership_controls(s3, bucket):
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    rules = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "ObjectWriter"}]
    # ACLs enabled, but public ones blocked by BlockPublicAcls (test_acl_versions.py has the
    # rest).
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")
    assert err(e.value) == ("AccessDenied", 403)
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v", ACL="public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
            "Permission": "READ"} in grants
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert err(e.value) == ("OwnershipControlsNotFoundError", 404)


def test_aws_cli_policy_round_trip(aws, s3, bucket):
    doc = policy({"Sid": "Cli", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                  "Resource": arn(bucket, "/keep/*")})
    aws("s3api", "put-bucket-policy", "--bucket", bucket, "--policy", doc)
    out = json.loads(aws("s3api", "get-bucket-policy", "--bucket", bucket).stdout)
    assert json.loads(out["Policy"])["Statement"][0]["Sid"] == "Cli"
    s3.put_object(Bucket=bucket, Key="keep/x", Body=b"x")
    p = aws("s3", "rm", f"s3://{bucket}/keep/x", check=False)
    assert p.returncode != 0 and "AccessDenied" in p.stderr
    bad = aws("s3api", "put-bucket-policy", "--bucket", bucket, "--policy", "{", check=False)
    assert bad.returncode != 0 and "MalformedPolicy" in bad.stderr
    out = json.loads(aws("s3api", "get-public-access-block", "--bucket", bucket).stdout)
    assert out["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    out = json.loads(aws("s3api", "get-bucket-acl", "--bucket", bucket).stdout)
    assert out["Grants"][0]["Permission"] == "FULL_CONTROL"
    aws("s3api", "delete-bucket-policy", "--bucket", bucket)
    aws("s3", "rm", f"s3://{bucket}/keep/x")


# ------------------------------------------------------------------------------ cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = ReportedCluster(tmp_path_factory.mktemp("policy-cluster"))
        try:
            c.start(3)
            yield c
        finally:
            _finish(c)


def test_cluster_policy_set_on_one_node_enforced_on_another(cluster):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    with cluster_util.shifted_ports(PORT_SHIFT):
        c1 = cluster_util.s3_client(n1.endpoint, retries=3)
        ep2, ep3 = n2.endpoint, n3.endpoint
    b = unique_name("pc")
    c1.create_bucket(Bucket=b)
    c1.put_object(Bucket=b, Key="pub/k", Body=b"v")
    assert requests.get(f"{ep2}/{b}/pub/k", timeout=10).status_code == 403
    c1.delete_public_access_block(Bucket=b)
    c1.put_bucket_policy(Bucket=b, Policy=policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": arn(b, "/pub/*")}))

    def within(url: str, status: int, bound: float = 5.0) -> float:
        start = time.monotonic()
        while True:
            r = requests.get(url, timeout=10)
            if r.status_code == status:
                return time.monotonic() - start
            assert time.monotonic() - start < bound, (url, r.status_code, r.text)
            time.sleep(0.05)

    within(f"{ep2}/{b}/pub/k", 200)
    within(f"{ep3}/{b}/pub/k", 200)
    c1.delete_bucket_policy(Bucket=b)
    within(f"{ep2}/{b}/pub/k", 403)
    within(f"{ep3}/{b}/pub/k", 403)
