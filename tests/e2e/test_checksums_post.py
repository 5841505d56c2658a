"""Checksums, GetObjectAttributes and POST Object (issue 11 item 7), as AWS documents them:
`x-amz-checksum-*` on PutObject and on multipart uploads (COMPOSITE and FULL_OBJECT, checked
part by part and again at completion), `ChecksumMode=ENABLED` on GET/HEAD, GetObjectAttributes
with its paging of ObjectParts, and browser form uploads signed with a policy document
(boto3's `generate_presigned_post` + `requests.post`), every refusal storing nothing. The last
test uploads through one node of a 3-node cluster and reads the checksum through another.

Expected values are computed here independently (zlib, awscrt, hashlib) over the whole data."""

from __future__ import annotations

import base64
import hashlib
import json
import xml.etree.ElementTree as ET
import zlib

import pytest
import requests
from awscrt import checksums as crt
from botocore.exceptions import ClientError

import cluster_util
from cluster_util import cairn_bin
from e2e_util import unique_name
from test_aws_cli import aws  # noqa: F401  (fixture)

PORT_SHIFT = 590
MiB = 1 << 20
PART = 5 * MiB

ALGOS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]
CRCS = ["CRC32", "CRC32C", "CRC64NVME"]
COMPOSITE_ALGOS = ["CRC32", "CRC32C", "SHA1", "SHA256"]


def raw(algo: str, data: bytes) -> bytes:
    if algo == "CRC32":
        return zlib.crc32(data).to_bytes(4, "big")
    if algo == "CRC32C":
        return crt.crc32c(data).to_bytes(4, "big")
    if algo == "CRC64NVME":
        return crt.crc64nvme(data).to_bytes(8, "big")
    if algo == "SHA1":
        return hashlib.sha1(data).digest()
    return hashlib.sha256(data).digest()


def b64(algo: str, data: bytes) -> str:
    return base64.b64encode(raw(algo, data)).decode()


def composite(algo: str, parts: list[bytes]) -> str:
    cat = b"".join(raw(algo, p) for p in parts)
    return f"{b64(algo, cat)}-{len(parts)}"


def err(exc: ClientError) -> tuple[str, str, int]:
    e = exc.response["Error"]
    return e.get("Code"), e.get("Message"), exc.response["ResponseMetadata"]["HTTPStatusCode"]


def absent(s3, bucket, key) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    return False


@pytest.fixture(scope="module")
def parts_data():
    first = bytes((i * 31 + i // 7) & 0xFF for i in range(PART))
    return [first, b"tail of the object" * 100]


def multipart(s3, bucket, key, algo, parts, kind=None, complete_extra=None):
    create = {"Bucket": bucket, "Key": key, "ChecksumAlgorithm": algo}
    if kind:
        create["ChecksumType"] = kind
    up = s3.create_multipart_upload(**create)
    assert up["ChecksumAlgorithm"] == algo
    listed = []
    for n, data in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n,
                           Body=data, ChecksumAlgorithm=algo)
        assert r[f"Checksum{algo}"] == b64(algo, data)
        listed.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{algo}": r[f"Checksum{algo}"]})
    complete = {"Bucket": bucket, "Key": key, "UploadId": up["UploadId"],
                "MultipartUpload": {"Parts": listed}}
    complete.update(complete_extra or {})
    return up["UploadId"], listed, complete


# ------------------------------------------------------------------------------ single PUT

@pytest.mark.parametrize("algo", ALGOS)
def test_put_object_checksum_is_stored_and_returned(s3, bucket, algo):
    data = b"hello checksums " * 1000
    r = s3.put_object(Bucket=bucket, Key=algo, Body=data, ChecksumAlgorithm=algo)
    assert r[f"Checksum{algo}"] == b64(algo, data)
    h = s3.head_object(Bucket=bucket, Key=algo, ChecksumMode="ENABLED")
    assert h[f"Checksum{algo}"] == b64(algo, data)
    assert h["ChecksumType"] == "FULL_OBJECT"
    g = s3.get_object(Bucket=bucket, Key=algo, ChecksumMode="ENABLED")
    assert g[f"Checksum{algo}"] == b64(algo, data)
    assert g["Body"].read() == data
    # Without ChecksumMode, or for a range, no checksum (as AWS).
    assert f"Checksum{algo}" not in s3.head_object(Bucket=bucket, Key=algo)
    g = s3.get_object(Bucket=bucket, Key=algo, ChecksumMode="ENABLED", Range="bytes=0-9")
    assert f"Checksum{algo}" not in g
    assert g["Body"].read() == data[:10]


def test_put_object_wrong_checksum_is_bad_digest(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ChecksumSHA256=b64("SHA256", b"other"))
    code, msg, status = err(e.value)
    assert (code, status) == ("BadDigest", 400)
    assert "SHA256" in msg
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"data", ChecksumCRC32="not base64!")
    assert err(e.value)[0] == "InvalidRequest"
    assert absent(s3, bucket, "bad")


# ------------------------------------------------------------------------------ multipart

@pytest.mark.parametrize("algo", COMPOSITE_ALGOS)
def test_multipart_composite_checksum(s3, bucket, parts_data, algo):
    key = f"mp-{algo}"
    upload_id, listed, complete = multipart(s3, bucket, key, algo, parts_data)
    lp = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert [p[f"Checksum{algo}"] for p in lp["Parts"]] == [b64(algo, d) for d in parts_data]
    assert lp["ChecksumAlgorithm"] == algo
    r = s3.complete_multipart_upload(**complete)
    expected = composite(algo, parts_data)
    assert r[f"Checksum{algo}"] == expected
    h = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert h[f"Checksum{algo}"] == expected
    assert h["ChecksumType"] == "COMPOSITE"
    a = s3.get_object_attributes(Bucket=bucket, Key=key,
                                 ObjectAttributes=["Checksum", "ObjectParts", "ObjectSize"])
    assert a["Checksum"][f"Checksum{algo}"] == expected
    assert a["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert a["ObjectSize"] == sum(map(len, parts_data))
    parts = a["ObjectParts"]["Parts"]
    assert [(p["PartNumber"], p["Size"], p[f"Checksum{algo}"]) for p in parts] == [
        (n, len(d), b64(algo, d)) for n, d in enumerate(parts_data, 1)]


@pytest.mark.parametrize("algo", CRCS)
def test_multipart_full_object_checksum(s3, bucket, parts_data, algo):
    key = f"full-{algo}"
    whole = b"".join(parts_data)
    kind = None if algo == "CRC64NVME" else "FULL_OBJECT"  # CRC64NVME defaults to it
    _, _, complete = multipart(s3, bucket, key, algo, parts_data, kind=kind, complete_extra={
        "ChecksumType": "FULL_OBJECT", f"Checksum{algo}": b64(algo, whole),
        "MpuObjectSize": len(whole)})
    r = s3.complete_multipart_upload(**complete)
    assert r[f"Checksum{algo}"] == b64(algo, whole)
    h = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert h[f"Checksum{algo}"] == b64(algo, whole)
    assert h["ChecksumType"] == "FULL_OBJECT"
    # boto3 validates the full-object checksum of the body it reads.
    g = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert g["Body"].read() == whole


def test_multipart_checksum_refusals(s3, bucket, parts_data):
    small = [b"x" * 10]
    # Algorithm/type combinations AWS refuses.
    for algo, kind in [("CRC64NVME", "COMPOSITE"), ("SHA256", "FULL_OBJECT"), ("SHA1", "FULL_OBJECT")]:
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="r", ChecksumAlgorithm=algo, ChecksumType=kind)
        assert err(e.value)[0] == "InvalidRequest", (algo, kind)

    # A part checksummed with another algorithm.
    up = s3.create_multipart_upload(Bucket=bucket, Key="r", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="r", UploadId=up["UploadId"], PartNumber=1,
                       Body=b"x", ChecksumAlgorithm="CRC32")
    code, msg, _ = err(e.value)
    assert code == "InvalidRequest" and "mismatch" in msg
    # A part whose body does not match its checksum.
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="r", UploadId=up["UploadId"], PartNumber=1,
                       Body=b"x", ChecksumSHA256=b64("SHA256", b"y"))
    assert err(e.value)[0] == "BadDigest"
    s3.abort_multipart_upload(Bucket=bucket, Key="r", UploadId=up["UploadId"])

    # Completion: a missing part checksum (composite), a wrong one, a wrong type, a wrong
    # full-object checksum, a wrong size.
    _, listed, complete = multipart(s3, bucket, "r", "CRC32", small)
    bare = dict(complete, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": listed[0]["ETag"]}]})
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**bare)
    code, msg, _ = err(e.value)
    assert code == "InvalidRequest" and "missing for part 1" in msg
    wrong = dict(complete, MultipartUpload={"Parts": [dict(listed[0], ChecksumCRC32=b64("CRC32", b"z"))]})
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**wrong)
    assert err(e.value)[0] == "InvalidPart"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**dict(complete, ChecksumType="FULL_OBJECT"))
    assert err(e.value)[0] == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**dict(complete, MpuObjectSize=11))
    assert err(e.value)[0] == "InvalidRequest"
    assert absent(s3, bucket, "r")

    _, _, complete = multipart(s3, bucket, "f", "CRC32C", small, kind="FULL_OBJECT")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(**dict(complete, ChecksumCRC32C=b64("CRC32C", b"nope")))
    assert err(e.value)[0] == "BadDigest"
    assert absent(s3, bucket, "f")
    # The same upload still completes with the right claim.
    whole = small[0]
    r = s3.complete_multipart_upload(**dict(complete, ChecksumCRC32C=b64("CRC32C", whole)))
    assert r["ChecksumCRC32C"] == b64("CRC32C", whole)


# ------------------------------------------------------------------------------ attributes

def test_get_object_attributes(s3, bucket, parts_data):
    data = b"attributes"
    put = s3.put_object(Bucket=bucket, Key="a", Body=data, ChecksumAlgorithm="SHA1")
    a = s3.get_object_attributes(Bucket=bucket, Key="a", ObjectAttributes=[
        "ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"])
    assert a["ETag"] == put["ETag"].strip('"')
    assert a["Checksum"] == {"ChecksumSHA1": b64("SHA1", data), "ChecksumType": "FULL_OBJECT"}
    assert a["StorageClass"] == "STANDARD"
    assert a["ObjectSize"] == len(data)
    assert "ObjectParts" not in a
    assert "LastModified" in a
    only = s3.get_object_attributes(Bucket=bucket, Key="a", ObjectAttributes=["ObjectSize"])
    assert "ETag" not in only and "Checksum" not in only and only["ObjectSize"] == len(data)

    # ObjectParts paging over a 3-part upload.
    three = [parts_data[0], parts_data[0], b"end"]
    _, _, complete = multipart(s3, bucket, "three", "CRC32", three)
    s3.complete_multipart_upload(**complete)
    page = s3.get_object_attributes(Bucket=bucket, Key="three", ObjectAttributes=["ObjectParts"],
                                    MaxParts=2)["ObjectParts"]
    assert page["TotalPartsCount"] == 3 and page["IsTruncated"] is True
    assert page["NextPartNumberMarker"] == 2
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    page = s3.get_object_attributes(Bucket=bucket, Key="three", ObjectAttributes=["ObjectParts"],
                                    MaxParts=2, PartNumberMarker=2)["ObjectParts"]
    assert page["IsTruncated"] is False
    assert [(p["PartNumber"], p["Size"], p["ChecksumCRC32"]) for p in page["Parts"]] == [
        (3, 3, b64("CRC32", b"end"))]

    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert err(e.value)[0] == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="a", ObjectAttributes=["Bogus"])
    assert err(e.value)[:1] == ("InvalidArgument",)


def test_aws_cli_attributes_and_crc64nvme_multipart_copy(aws, s3, bucket, tmp_path):  # noqa: F811
    data = bytes((i * 7) & 0xFF for i in range(12 * MiB))  # over the CLI's 8 MB threshold
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    aws("s3", "cp", str(f), f"s3://{bucket}/big.bin", "--checksum-algorithm", "CRC64NVME")
    h = s3.head_object(Bucket=bucket, Key="big.bin", ChecksumMode="ENABLED")
    assert h["ChecksumCRC64NVME"] == b64("CRC64NVME", data)
    assert h["ChecksumType"] == "FULL_OBJECT"
    out = json.loads(aws("s3api", "get-object-attributes", "--bucket", bucket, "--key", "big.bin",
                         "--object-attributes", "ETag", "Checksum", "ObjectParts",
                         "StorageClass", "ObjectSize").stdout)
    assert out["ObjectSize"] == len(data)
    assert out["Checksum"]["ChecksumCRC64NVME"] == b64("CRC64NVME", data)
    assert out["ObjectParts"]["TotalPartsCount"] == 2
    assert out["ETag"].endswith("-2")
    p = aws("s3api", "get-object-attributes", "--bucket", bucket, "--key", "big.bin",
            "--object-attributes", "Nope", check=False)
    assert p.returncode != 0 and "InvalidArgument" in p.stderr


# ------------------------------------------------------------------------------ POST Object

def post(s3, bucket, key="up/${filename}", fields=None, conditions=None, expires=300,
         data=b"posted bytes", filename="hello.txt", tamper=None, extra=None, headers=None):
    p = s3.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions,
                                   ExpiresIn=expires)
    form = dict(p["fields"])
    if tamper:
        tamper(form)
    form.update(extra or {})
    return requests.post(p["url"], data=form, files={"file": (filename, data)},
                         headers=headers or {}, timeout=30, allow_redirects=False)


def xml_error(r) -> tuple[str, str]:
    root = ET.fromstring(r.content)
    return root.findtext("Code"), root.findtext("Message")


def test_post_object_happy_paths(s3, bucket):
    r = post(s3, bucket, conditions=[["starts-with", "$key", "up/"]])
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="up/hello.txt")["Body"].read() == b"posted bytes"

    tagging = "<Tagging><TagSet><Tag><Key>team</Key><Value>web app</Value></Tag></TagSet></Tagging>"
    fields = {"success_action_status": "201", "Content-Type": "text/plain",
              "x-amz-meta-owner": "alice", "tagging": tagging}
    conditions = [{"success_action_status": "201"}, ["starts-with", "$Content-Type", "text/"],
                  {"x-amz-meta-owner": "alice"}, ["content-length-range", 1, 1024],
                  {"tagging": tagging}]
    r = post(s3, bucket, key="k201", fields=fields, conditions=conditions, data=b"x" * 100)
    assert r.status_code == 201, r.text
    root = ET.fromstring(r.content)
    assert root.tag.endswith("PostResponse")
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    assert root.findtext(f"{ns}Bucket") == bucket and root.findtext(f"{ns}Key") == "k201"
    etag = root.findtext(f"{ns}ETag").strip('"')
    h = s3.head_object(Bucket=bucket, Key="k201")
    assert h["ETag"].strip('"') == etag == hashlib.md5(b"x" * 100).hexdigest()
    assert h["ContentType"] == "text/plain"
    assert h["Metadata"] == {"owner": "alice"}
    assert s3.get_object_tagging(Bucket=bucket, Key="k201")["TagSet"] == [
        {"Key": "team", "Value": "web app"}]

    r = post(s3, bucket, key="k200", fields={"success_action_status": "200"},
             conditions=[{"success_action_status": "200"}])
    assert r.status_code == 200 and r.content == b""
    r = post(s3, bucket, key="kredir", fields={"success_action_redirect": "https://app.example/done"},
             conditions=[{"success_action_redirect": "https://app.example/done"}])
    assert r.status_code == 303, r.text
    loc = r.headers["Location"]
    assert loc.startswith("https://app.example/done?") and f"bucket={bucket}" in loc and "key=kredir" in loc
    assert s3.get_object(Bucket=bucket, Key="kredir")["Body"].read() == b"posted bytes"


def test_post_object_refusals_store_nothing(s3, bucket, server):
    cases = []
    # The key breaks its starts-with condition.
    r = post(s3, bucket, key="other/${filename}", conditions=[["starts-with", "$key", "up/"]],
             tamper=lambda f: f.update(key="other/x"))
    cases.append(("starts-with", r, 403, "AccessDenied", "Invalid according to Policy"))
    # Too large / too small for content-length-range.
    r = post(s3, bucket, key="big", conditions=[["content-length-range", 1, 10]], data=b"x" * 11)
    cases.append(("too large", r, 400, "EntityTooLarge", None))
    r = post(s3, bucket, key="small", conditions=[["content-length-range", 5, 10]], data=b"x")
    cases.append(("too small", r, 400, "EntityTooSmall", None))
    # An expired policy.
    r = post(s3, bucket, key="expired", expires=-60)
    cases.append(("expired", r, 403, "AccessDenied", "Policy expired"))
    # A field that no condition names.
    r = post(s3, bucket, key="extra", extra={"x-amz-meta-sneaky": "1"})
    cases.append(("extra field", r, 403, "AccessDenied", "Invalid according to Policy"))
    # A policy changed after signing.
    def widen(f):
        doc = json.loads(base64.b64decode(f["policy"]))
        doc["conditions"].append(["content-length-range", 0, 1 << 30])
        f["policy"] = base64.b64encode(json.dumps(doc).encode()).decode()
    r = post(s3, bucket, key="tampered", tamper=widen)
    cases.append(("tampered", r, 403, "SignatureDoesNotMatch", None))
    # No signature at all.
    r = requests.post(f"{server.endpoint}/{bucket}", data={"key": "anon"},
                      files={"file": ("a.txt", b"anonymous")}, timeout=30)
    cases.append(("unsigned", r, 403, "AccessDenied", None))
    # Not a well-formed form.
    r = requests.post(f"{server.endpoint}/{bucket}", data=b"--x\r\ngarbage",
                      headers={"Content-Type": "multipart/form-data; boundary=x"}, timeout=30)
    cases.append(("malformed", r, 400, "MalformedPOSTRequest", None))
    # Protection Cairn does not implement.
    r = post(s3, bucket, key="acl", fields={"acl": "public-read"}, conditions=[{"acl": "public-read"}])
    cases.append(("acl", r, 501, "NotImplemented", None))

    for what, r, status, code, text in cases:
        assert r.status_code == status, (what, r.status_code, r.text)
        got_code, msg = xml_error(r)
        assert got_code == code, (what, r.text)
        if text:
            assert text in msg, (what, msg)
    for key in ["other/x", "other/hello.txt", "big", "small", "expired", "extra", "tampered",
                "anon", "acl"]:
        assert absent(s3, bucket, key), key


def test_post_object_from_a_browser_origin_with_cors(s3, bucket, server):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["POST"],
         "AllowedHeaders": ["*"]}]})
    pre = requests.options(f"{server.endpoint}/{bucket}", timeout=10, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 200, pre.text
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    r = post(s3, bucket, key="from-browser", headers={"Origin": "https://app.example"})
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    pre = requests.options(f"{server.endpoint}/{bucket}", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 403


# ------------------------------------------------------------------------------ cluster

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from test_cluster import ReportedCluster, _finish  # noqa: PLC0415

    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = ReportedCluster(tmp_path_factory.mktemp("checksums-cluster"))
        try:
            c.start(3)
            yield c
        finally:
            _finish(c)


def test_cluster_checksummed_multipart_through_one_node_read_through_another(cluster, parts_data):
    n1, n2, n3 = (cluster.node(f"n{i}") for i in (1, 2, 3))
    with cluster_util.shifted_ports(PORT_SHIFT):
        c1 = cluster_util.s3_client(n1.endpoint, retries=3, read_timeout=60)
        c2 = cluster_util.s3_client(n2.endpoint, retries=3, read_timeout=60)
        c3 = cluster_util.s3_client(n3.endpoint, retries=3, read_timeout=60)
    b = unique_name("ck")
    c1.create_bucket(Bucket=b)
    whole = b"".join(parts_data)
    _, _, complete = multipart(c1, b, "obj", "CRC64NVME", parts_data)
    c1.complete_multipart_upload(**complete)
    _, _, complete = multipart(c1, b, "comp", "SHA256", parts_data)
    c1.complete_multipart_upload(**complete)

    h = c2.head_object(Bucket=b, Key="obj", ChecksumMode="ENABLED")
    assert h["ChecksumCRC64NVME"] == b64("CRC64NVME", whole)
    a = c3.get_object_attributes(Bucket=b, Key="comp", ObjectAttributes=["Checksum", "ObjectParts"])
    assert a["Checksum"]["ChecksumSHA256"] == composite("SHA256", parts_data)
    assert a["ObjectParts"]["TotalPartsCount"] == 2
    assert c3.get_object(Bucket=b, Key="obj", ChecksumMode="ENABLED")["Body"].read() == whole
