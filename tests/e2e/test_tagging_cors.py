"""Object and bucket tagging, and CORS (issue 11 item 3), as AWS documents them: the tagging
operations, `x-amz-tagging` on PutObject / CreateMultipartUpload / CopyObject (with the tagging
directive), `x-amz-tagging-count`, AWS's limits and error codes; the CORS operations, preflight
`OPTIONS` answered before authentication (first matching rule wins), and CORS headers on actual
requests. The last tests write through one node of a 3-node cluster and read through another."""

from __future__ import annotations

import json

import pytest
import requests
from botocore.exceptions import ClientError

import cluster_util
from cluster_util import cairn_bin
from e2e_util import unique_name
from test_aws_cli import aws  # noqa: F401  (fixture)

# Ports of their own, so the cluster test can run beside the other cluster suites.
PORT_SHIFT = 530
MiB = 1 << 20


def err(exc: ClientError) -> tuple[str, str, int]:
    e = exc.response["Error"]
    return e.get("Code"), e.get("Message"), exc.response["ResponseMetadata"]["HTTPStatusCode"]


def tagset(d: dict[str, str]) -> dict:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in d.items()]}


def tags_of(s3, bucket, key) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def tag_count(s3, bucket, key) -> int | None:
    h = s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
    n = h.get("x-amz-tagging-count")
    return int(n) if n is not None else None


# ------------------------------------------------------------------------------ object tagging

def test_object_tagging_round_trip(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert tag_count(s3, bucket, "k") is None

    tags = {"project": "cairn", "team a": "x+y=z", "ünï": "cödé:/@._-"}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(tags))
    assert tags_of(s3, bucket, "k") == tags
    assert tag_count(s3, bucket, "k") == 3
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["TagCount"] == 3
    assert got["Body"].read() == b"data"

    # Tagging changes neither the data nor the ETag.
    etag = s3.head_object(Bucket=bucket, Key="k")["ETag"]
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset({"only": "one"}))
    assert tags_of(s3, bucket, "k") == {"only": "one"}
    assert s3.head_object(Bucket=bucket, Key="k")["ETag"] == etag

    r = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tags_of(s3, bucket, "k") == {}
    assert tag_count(s3, bucket, "k") is None


def test_tagging_missing_object_and_bucket(s3, bucket):
    for call in (lambda: s3.get_object_tagging(Bucket=bucket, Key="nope"),
                 lambda: s3.put_object_tagging(Bucket=bucket, Key="nope", Tagging=tagset({"a": "b"})),
                 lambda: s3.delete_object_tagging(Bucket=bucket, Key="nope")):
        with pytest.raises(ClientError) as e:
            call()
        assert err(e.value)[0] == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=unique_name("gone"), Key="k")
    assert err(e.value)[0] == "NoSuchBucket"


def test_tagging_header_on_put_and_overwrite_and_delete(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"1", Tagging="a=1&b%20c=x%2By&empty=")
    assert tags_of(s3, bucket, "k") == {"a": "1", "b c": "x+y", "empty": ""}
    assert tag_count(s3, bucket, "k") == 3
    # An overwrite replaces the tags (none given: none left).
    s3.put_object(Bucket=bucket, Key="k", Body=b"2")
    assert tags_of(s3, bucket, "k") == {}
    s3.put_object(Bucket=bucket, Key="k", Body=b"3", Tagging="z=9")
    assert tags_of(s3, bucket, "k") == {"z": "9"}
    # Deleting the object drops them: a new object under the key starts untagged.
    s3.delete_object(Bucket=bucket, Key="k")
    s3.put_object(Bucket=bucket, Key="k", Body=b"4")
    assert tags_of(s3, bucket, "k") == {}


def test_copy_tagging_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", Tagging="color=blue&size=L")
    # COPY is the default.
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    assert tags_of(s3, bucket, "copy") == {"color": "blue", "size": "L"}
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="COPY", Tagging="ignored=yes")
    assert tags_of(s3, bucket, "copy2") == {"color": "blue", "size": "L"}
    s3.copy_object(Bucket=bucket, Key="repl", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="color=red")
    assert tags_of(s3, bucket, "repl") == {"color": "red"}
    s3.copy_object(Bucket=bucket, Key="none", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "none") == {}
    # Metadata REPLACE keeps copying the tags.
    s3.copy_object(Bucket=bucket, Key="meta", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"m": "1"})
    assert tags_of(s3, bucket, "meta") == {"color": "blue", "size": "L"}
    assert s3.get_object(Bucket=bucket, Key="repl")["Body"].read() == b"payload"


def test_multipart_tagging_applied_at_complete(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="stage=final&n=2")
    uid = up["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1,
                        Body=b"a" * (5 * MiB))
    p2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=b"tail")
    # Not visible before the upload completes.
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=bucket, Key="mp")
    assert err(e.value)[0] == "NoSuchKey"
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert tags_of(s3, bucket, "mp") == {"stage": "final", "n": "2"}
    assert tag_count(s3, bucket, "mp") == 2


@pytest.mark.parametrize("tags,code,message", [
    ({f"k{i}": "v" for i in range(11)}, "BadRequest", "Object tags cannot be greater than 10"),
    ({"k" * 129: "v"}, "InvalidTag", "The TagKey you have provided is invalid"),
    ({"k": "v" * 257}, "InvalidTag", "The TagValue you have provided is invalid"),
    ({"a#b": "v"}, "InvalidTag", "The TagKey you have provided is invalid"),
    ({"k": "v<"}, "InvalidTag", "The TagValue you have provided is invalid"),
    ({"aws:reserved": "v"}, "InvalidTag", "Your TagKey cannot be prefixed with aws:"),
])
def test_object_tag_limits(s3, bucket, tags, code, message):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(tags))
    assert err(e.value) == (code, message, 400)
    # Refused as a header too, and nothing changed.
    header = "&".join(f"{k}={v}" for k, v in tags.items()).replace("#", "%23").replace("<", "%3C")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"y", Tagging=header)
    assert err(e.value)[0] == code
    assert tags_of(s3, bucket, "k") == {"keep": "me"}
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_object_tag_edge_values_accepted(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tags = {f"k{i}": "v" for i in range(9)} | {"é" * 128: "ü" * 256}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagset(tags))
    assert tags_of(s3, bucket, "k") == tags


def test_duplicate_keys_and_bad_header(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [
            {"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}]})
    assert err(e.value) == ("InvalidTag", "Cannot provide multiple Tags with the same key", 400)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k2", Body=b"x", Tagging="a=1&a=2")
    assert err(e.value)[0] == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="k3", CopySource={"Bucket": bucket, "Key": "k"},
                       TaggingDirective="REPLACE", Tagging="a=%ff")
    assert err(e.value)[0] == "InvalidArgument"


def test_malformed_tagging_xml(server, bucket, s3):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    # A raw, signed PUT ?tagging with a broken body.
    from e2e_util import ACCESS_KEY, SECRET_KEY  # noqa: PLC0415
    import botocore.auth, botocore.awsrequest, botocore.credentials  # noqa: E401,PLC0415
    body = b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></TagSet></Tagging>"
    req = botocore.awsrequest.AWSRequest(
        method="PUT", url=f"{server.endpoint}/{bucket}/k?tagging", data=body)
    botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY), "s3",
                              "us-east-1").add_auth(req)
    r = requests.put(req.url, data=body, headers=dict(req.headers), timeout=10)
    assert r.status_code == 400, r.text
    assert "<Code>MalformedXML</Code>" in r.text


# ------------------------------------------------------------------------------ bucket tagging

def test_bucket_tagging(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert err(e.value) == ("NoSuchTagSet", "The TagSet does not exist", 404)
    tags = {f"k{i}": f"v{i}" for i in range(50)}
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset(tags))
    got = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert got == tags
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset({f"k{i}": "v" for i in range(51)}))
    assert err(e.value) == ("BadRequest", "Bucket tag count cannot be greater than 50", 400)
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [
            {"Key": "d", "Value": "1"}, {"Key": "d", "Value": "2"}]})
    assert err(e.value)[0] == "InvalidTag"
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tagset({"env": "prod"}))
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "env", "Value": "prod"}]
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert err(e.value)[0] == "NoSuchTagSet"


def test_deleting_a_bucket_drops_its_tags_and_cors(s3):
    b = unique_name("gone")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_tagging(Bucket=b, Tagging=tagset({"a": "1"}))
    s3.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]})
    s3.delete_bucket(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=b)
    assert err(e.value)[0] == "NoSuchBucket"
    s3.create_bucket(Bucket=b)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=b)
    assert err(e.value)[0] == "NoSuchTagSet"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=b)
    assert err(e.value)[0] == "NoSuchCORSConfiguration"
    s3.delete_bucket(Bucket=b)


def test_aws_cli_tagging_and_cors(aws, s3, bucket, tmp_path):  # noqa: F811
    s3.put_object(Bucket=bucket, Key="cli", Body=b"x")
    aws("s3api", "put-object-tagging", "--bucket", bucket, "--key", "cli",
        "--tagging", json.dumps(tagset({"from": "cli"})))
    out = json.loads(aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "cli").stdout)
    assert out["TagSet"] == [{"Key": "from", "Value": "cli"}]
    cfg = {"CORSRules": [{"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET"],
                          "MaxAgeSeconds": 60}]}
    aws("s3api", "put-bucket-cors", "--bucket", bucket, "--cors-configuration", json.dumps(cfg))
    out = json.loads(aws("s3api", "get-bucket-cors", "--bucket", bucket).stdout)
    assert out["CORSRules"] == cfg["CORSRules"]
    aws("s3api", "delete-bucket-cors", "--bucket", bucket)
    p = aws("s3api", "get-bucket-cors", "--bucket", bucket, check=False)
    assert p.returncode != 0 and "NoSuchCORSConfiguration" in p.stderr


# ------------------------------------------------------------------------------ CORS

RULES = [
    {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["PUT", "DELETE"],
     "AllowedHeaders": ["Content-Type", "x-amz-*"], "MaxAgeSeconds": 3000, "ID": "writers"},
    {"AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET", "HEAD"],
     "ExposeHeaders": ["ETag", "x-amz-request-id"]},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
]


def test_cors_put_get_delete(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert err(e.value) == ("NoSuchCORSConfiguration", "The CORS configuration does not exist", 404)
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == RULES
    assert s3.delete_bucket_cors(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert err(e.value)[0] == "NoSuchCORSConfiguration"


@pytest.mark.parametrize("rules,code,fragment", [
    ([{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}], "InvalidRequest",
     "Unsupported method is PATCH"),
    ([{"AllowedOrigins": ["http://*.*.com"], "AllowedMethods": ["GET"]}], "InvalidRequest",
     "can not have more than one wildcard"),
    ([{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-*"]}],
     "InvalidRequest", "can not have more than one wildcard"),
    ([{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}] * 101, "InvalidRequest",
     "100"),
])
def test_cors_validation(s3, bucket, rules, code, fragment):
    with pytest.raises(ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    c, m, status = err(e.value)
    assert (c, status) == (code, 400) and fragment in m, m


def test_cors_malformed_xml(server, s3, bucket):
    from e2e_util import ACCESS_KEY, SECRET_KEY  # noqa: PLC0415
    import botocore.auth, botocore.awsrequest, botocore.credentials  # noqa: E401,PLC0415
    for body in (b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>",
                 b"<CORSConfiguration></CORSConfiguration>"):
        req = botocore.awsrequest.AWSRequest(
            method="PUT", url=f"{server.endpoint}/{bucket}?cors", data=body)
        botocore.auth.S3SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY), "s3",
                                  "us-east-1").add_auth(req)
        r = requests.put(req.url, data=body, headers=dict(req.headers), timeout=10)
        assert r.status_code == 400, r.text
        assert "<Code>MalformedXML</Code>" in r.text, r.text


def preflight(endpoint, bucket, origin=None, method=None, headers=None, key="obj"):
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(f"{endpoint}/{bucket}/{key}", headers=h, timeout=10)


VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = "CORSResponse: This CORS request is not allowed."


def test_preflight(server, s3, bucket):
    ep = server.endpoint
    # No CORS configured yet.
    r = preflight(ep, bucket, "https://app.example", "PUT")
    assert r.status_code == 403 and "CORS is not enabled for this bucket" in r.text
    assert "<Code>AccessForbidden</Code>" in r.text
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})

    # First rule: origin echoed, credentials, requested headers echoed in lower case.
    r = preflight(ep, bucket, "https://app.example", "PUT", "Content-Type, X-Amz-Meta-Color")
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert r.headers["Access-Control-Allow-Methods"] == "PUT, DELETE"
    assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-meta-color"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Max-Age"] == "3000"
    assert r.headers["Vary"] == VARY
    assert r.content == b""

    # A header no rule allows: refused (the '*' rule allows no headers).
    r = preflight(ep, bucket, "https://app.example", "PUT", "x-custom")
    assert r.status_code == 403 and NOT_ALLOWED in r.text
    # Wildcard origin of the second rule.
    r = preflight(ep, bucket, "https://cdn.example.org", "HEAD")
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://cdn.example.org"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    # Any origin, GET: the third rule answers '*' without credentials.
    r = preflight(ep, bucket, "https://random.test", "GET")
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    # ... but not PUT from there.
    r = preflight(ep, bucket, "https://random.test", "PUT")
    assert r.status_code == 403 and NOT_ALLOWED in r.text
    # No Origin: 400. No such bucket: 403.
    r = preflight(ep, bucket, None, "GET")
    assert r.status_code == 400 and "Origin request header needed" in r.text
    r = preflight(ep, unique_name("none"), "https://app.example", "GET")
    assert r.status_code == 403 and "Bucket not found" in r.text
    # Preflights are answered on the bucket itself too, and through virtual-host addressing.
    r = requests.options(f"{ep}/{bucket}", headers={
        "Origin": "https://x.example.org", "Access-Control-Request-Method": "GET"}, timeout=10)
    assert r.status_code == 200
    r = requests.options(f"{server.vhost_endpoint.replace('localhost', bucket + '.localhost')}/k",
                         headers={"Origin": "https://app.example",
                                  "Access-Control-Request-Method": "DELETE"}, timeout=10)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Methods"] == "PUT, DELETE"


def test_cors_headers_on_actual_requests(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"hello")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})

    def get_with_origin(origin):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "obj"})
        return requests.get(url, headers={"Origin": origin}, timeout=10)

    r = get_with_origin("https://cdn.example.org")
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["Access-Control-Allow-Origin"] == "https://cdn.example.org"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert r.headers["Vary"] == VARY
    r = get_with_origin("https://elsewhere.test")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # Without an Origin, or for a method no rule allows that origin: no CORS headers.
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "obj"})
    r = requests.get(url, timeout=10)
    assert "Access-Control-Allow-Origin" not in r.headers
    url = s3.generate_presigned_url("delete_object", Params={"Bucket": bucket, "Key": "obj"})
    r = requests.delete(url, headers={"Origin": "https://elsewhere.test"}, timeout=10)
    assert r.status_code == 204
    assert "Access-Control-Allow-Origin" not in r.headers


# ------------------------------------------------------------------------------ cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = ReportedCluster(tmp_path_factory.mktemp("tagging-cluster"))
        try:
            c.start(3)
            yield c
        finally:
            _finish(c)


def test_cluster_tags_and_cors_written_on_one_node_read_on_another(cluster):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    with cluster_util.shifted_ports(PORT_SHIFT):
        c1 = cluster_util.s3_client(n1.endpoint, retries=3)
        c2 = cluster_util.s3_client(n2.endpoint, retries=3)
        c3 = cluster_util.s3_client(n3.endpoint, retries=3)
        ep3 = n3.endpoint
    b = unique_name("tc")
    c1.create_bucket(Bucket=b)
    c1.put_object(Bucket=b, Key="k", Body=b"v", Tagging="written=n1")
    assert tags_of(c2, b, "k") == {"written": "n1"}
    c2.put_object_tagging(Bucket=b, Key="k", Tagging=tagset({"written": "n2", "n": "2"}))
    assert tags_of(c3, b, "k") == {"written": "n2", "n": "2"}
    assert tag_count(c1, b, "k") == 2
    c3.delete_object_tagging(Bucket=b, Key="k")
    assert tags_of(c1, b, "k") == {}

    c1.put_bucket_tagging(Bucket=b, Tagging=tagset({"env": "test"}))
    assert c2.get_bucket_tagging(Bucket=b)["TagSet"] == [{"Key": "env", "Value": "test"}]

    c2.put_bucket_cors(Bucket=b, CORSConfiguration={"CORSRules": RULES})
    assert c3.get_bucket_cors(Bucket=b)["CORSRules"] == RULES
    r = preflight(ep3, b, "https://app.example", "PUT")
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    c1.delete_bucket_cors(Bucket=b)
    r = preflight(ep3, b, "https://app.example", "PUT")
    assert r.status_code == 403
