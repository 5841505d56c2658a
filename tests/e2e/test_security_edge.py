"""Attacks on the S3 and management listeners of one node (issue 10, items 3, 6 and 7).

- Headers promising protection never pass silently: what Cairn does not provide (the KMS
  encryption context) is 501 NotImplemented, lock headers on a bucket without object lock and
  ACLs on a bucket that disables them are refused as AWS refuses them; nothing is stored.
- An unsigned HTML form upload is refused (403) as soon as its file part begins: a 2 GiB
  unauthenticated form does not grow the server's memory.
- SigV2 is refused by default; presigned URLs may not outlive 7 days; x-cairn-* and checksum
  headers added after signing are refused.
- Slow clients (headers or body dribbled) are cut off; over the connection or in-flight cap a
  client gets 503 SlowDown at once.
- The data directory is 0700 and every file in it 0600.
- HTTPS with TLS_CERT/TLS_KEY on the S3 and management ports; a replaced certificate is served
  without a restart.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import hmac
import os
import re
import socket
import ssl
import stat
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import CairnServer, cairn_bin
from e2e_util import ACCESS_KEY, REGION, SECRET_KEY, unique_name


def _error(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def _missing(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return _error(e)[0] == 404
    return False


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# ------------------------------------------------------------------------------------------
# 501 for protection headers
# ------------------------------------------------------------------------------------------

SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}

PUT_CASES = {
    "sse-s3": {"ServerSideEncryption": "AES256"},
    # SSE-KMS is implemented (test_encryption_more.py); its encryption context is not.
    "sse-kms-context": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/x",
                        "SSEKMSEncryptionContext": "e30="},
    "sse-c": SSE_C,
    "lock-mode": {
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": datetime.datetime(2040, 1, 1, tzinfo=datetime.timezone.utc),
    },
    "legal-hold": {"ObjectLockLegalHoldStatus": "ON"},
    "grant": {"GrantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'},
    "acl-public": {"ACL": "public-read"},
}

# ACLs are not a protection Cairn lacks but a feature buckets disable by default
# (BucketOwnerEnforced): AWS answers 400 AccessControlListNotSupported (test_policy_acl.py).
ACL_CASES = {"grant", "acl-public"}


# Object lock is implemented (test_object_lock.py): on a bucket created without it, lock
# headers are refused as AWS refuses them, "Bucket is missing Object Lock Configuration".
LOCK_CASES = {"lock-mode", "legal-hold"}


def _expected(case: str) -> tuple[int, str]:
    if case in ACL_CASES:
        return (400, "AccessControlListNotSupported")
    if case in LOCK_CASES:
        return (400, "InvalidRequest")
    return (501, "NotImplemented")


# SSE-S3, SSE-KMS and SSE-C are implemented on PutObject, multipart uploads and copies
# (test_encryption.py, test_encryption_more.py); the KMS encryption context is not.
SSE_IMPLEMENTED_ON_PUT = {"sse-s3", "sse-c"}


@pytest.mark.parametrize("case", sorted(set(PUT_CASES) - SSE_IMPLEMENTED_ON_PUT))
def test_put_object_protection_headers_never_pass_silently(s3, bucket, case):
    key = f"put-{case}"
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=bucket, Key=key, Body=b"secret", **PUT_CASES[case])
    assert _error(ei.value) == _expected(case)
    assert _missing(s3, bucket, key)


@pytest.mark.parametrize("case", ["sse-kms-context", "lock-mode", "grant", "acl-public"])
def test_create_multipart_upload_protection_headers_never_pass_silently(s3, bucket, case):
    with pytest.raises(ClientError) as ei:
        s3.create_multipart_upload(Bucket=bucket, Key=f"mpu-{case}", **PUT_CASES[case])
    assert _error(ei.value) == _expected(case)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_copy_and_upload_part_protection_headers_never_pass_silently(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x" * 100)
    src = {"Bucket": bucket, "Key": "src"}
    for extra in (
        PUT_CASES["sse-kms-context"],
        {"ACL": "public-read-write"},
        {"ObjectLockLegalHoldStatus": "ON"},
    ):
        with pytest.raises(ClientError) as ei:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource=src, **extra)
        if "ACL" in extra:
            want = _expected("acl-public")
        elif "ObjectLockLegalHoldStatus" in extra:
            want = _expected("legal-hold")
        else:
            want = (501, "NotImplemented")
        assert _error(ei.value) == want, extra
    assert _missing(s3, bucket, "dst")

    up = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    try:
        # SSE-C keys on a part of a plaintext upload, or for a plaintext copy source: 400.
        with pytest.raises(ClientError) as ei:
            s3.upload_part(Bucket=bucket, Key="parts", UploadId=up, PartNumber=1, Body=b"p" * 10,
                           **SSE_C)
        assert _error(ei.value) == (400, "InvalidRequest")
        with pytest.raises(ClientError) as ei:
            s3.upload_part_copy(Bucket=bucket, Key="parts", UploadId=up, PartNumber=1,
                                CopySource=src, CopySourceSSECustomerAlgorithm="AES256",
                                CopySourceSSECustomerKey="k" * 32)
        assert _error(ei.value) == (400, "InvalidRequest")
        assert s3.list_parts(Bucket=bucket, Key="parts", UploadId=up).get("Parts", []) == []
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="parts", UploadId=up)


@pytest.mark.parametrize(
    "extra",
    [
        {"ACL": "public-read"},
        {"GrantFullControl": "id=someone"},
    ],
    ids=["acl", "grant"],
)
def test_create_bucket_acl_headers_are_refused(s3, extra):
    name = unique_name("lock")
    with pytest.raises(ClientError) as ei:
        s3.create_bucket(Bucket=name, **extra)
    assert _error(ei.value) == (400, "InvalidBucketAclWithObjectOwnership")
    with pytest.raises(ClientError) as ei:
        s3.head_bucket(Bucket=name)
    assert _error(ei.value)[0] == 404


def test_private_acl_is_still_accepted(s3, bucket):
    s3.put_object(Bucket=bucket, Key="priv", Body=b"ok", ACL="private")
    assert s3.get_object(Bucket=bucket, Key="priv")["Body"].read() == b"ok"
    name = unique_name("priv")
    s3.create_bucket(Bucket=name, ACL="private")
    s3.delete_bucket(Bucket=name)


def test_unsigned_form_upload_is_refused_and_stores_nothing(server, s3, bucket):
    # Signed form uploads are tested in test_checksums_post.py (SSE fields there are 501).
    files = {"file": ("f.txt", b"form body")}
    data = {"key": "form-key", "x-amz-server-side-encryption": "AES256"}
    r = requests.post(f"{server.endpoint}/{bucket}", data=data, files=files, timeout=10)
    assert r.status_code == 403, r.text
    assert "<Code>AccessDenied</Code>" in r.text
    assert _missing(s3, bucket, "form-key")


def _push_until_answered(port: int, head: bytes, total: int) -> tuple[bytes, int, float]:
    """Sends `head`, then zeros (up to `total` bytes) until the server answers or hangs up.
    Returns (answer, body bytes sent, seconds)."""
    chunk = b"\0" * (1 << 20)
    start = time.monotonic()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        s.settimeout(0.05)
        try:
            while sent < total and b"\r\n\r\n" not in answer:
                s.sendall(chunk)
                sent += len(chunk)
                try:
                    data = s.recv(65536)
                    if not data:
                        break
                    answer += data
                except socket.timeout:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(5)
        try:
            while b"</Error>" not in answer:
                data = s.recv(65536)
                if not data:
                    break
                answer += data
        except (OSError, socket.timeout):
            pass
    return answer, sent, time.monotonic() - start


def test_huge_unauthenticated_form_post_is_refused_before_reading(server, bucket):
    """2 GiB announced, no policy or signature before the file: refused at the file's first
    bytes, the answer comes at once and memory stays flat."""
    pid = server.proc.pid
    before = _rss_kib(pid)
    boundary = "xyzzy"
    head = (
        f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {2 << 30}\r\n\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nbig\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
    ).encode()
    answer, sent, elapsed = _push_until_answered(server.api_port, head, 2 << 30)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"AccessDenied" in answer
    assert elapsed < 15, elapsed
    assert sent < (1 << 30), "the server kept reading a refused body"
    grown_mib = (_rss_kib(pid) - before) / 1024
    assert grown_mib < 64, f"RSS grew {grown_mib:.0f} MiB"


@pytest.mark.parametrize("auth", ["none", "forged"])
def test_huge_unauthenticated_put_is_refused_before_reading(server, s3, bucket, auth):
    pid = server.proc.pid
    before = _rss_kib(pid)
    headers = f"PUT /{bucket}/huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {2 << 30}\r\n"
    if auth == "forged":
        date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        headers += (
            f"x-amz-date: {date}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"
            f"Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{date[:8]}/{REGION}/s3/"
            f"aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
            f"Signature={'0' * 64}\r\n"
        )
    answer, sent, elapsed = _push_until_answered(server.api_port, (headers + "\r\n").encode(),
                                                 2 << 30)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:300]
    assert elapsed < 15, elapsed
    assert sent < (1 << 30), "the server kept reading an unauthenticated body"
    assert (_rss_kib(pid) - before) / 1024 < 64
    assert _missing(s3, bucket, "huge")


# ------------------------------------------------------------------------------------------
# Signatures
# ------------------------------------------------------------------------------------------

def _v2_client(endpoint: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION,
        config=Config(signature_version="s3", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}),
    )


def test_sigv2_is_refused_by_default(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="v2", Body=b"data")
    v2 = _v2_client(server.endpoint)
    with pytest.raises(ClientError) as ei:
        v2.get_object(Bucket=bucket, Key="v2")
    assert _error(ei.value) == (400, "InvalidRequest")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2"},
                                    ExpiresIn=300)
    assert "Signature=" in url and "X-Amz-Signature" not in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 400 and "InvalidRequest" in r.text, r.text


def test_sigv2_works_when_enabled_and_checks_the_date(server_factory):
    srv = server_factory("sigv2", S3_ALLOW_SIGV2="true")
    s3 = srv.client()
    b = unique_name("v2")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"v2 data")
    v2 = _v2_client(srv.endpoint)
    assert v2.get_object(Bucket=b, Key="k")["Body"].read() == b"v2 data"

    def signed_get(date: str) -> requests.Response:
        to_sign = f"GET\n\n\n{date}\n/{b}/k"
        sig = base64.b64encode(
            hmac.new(SECRET_KEY.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        return requests.get(f"{srv.endpoint}/{b}/k", timeout=10,
                            headers={"Date": date, "Authorization": f"AWS {ACCESS_KEY}:{sig}"})

    assert signed_get(email.utils.formatdate(usegmt=True)).content == b"v2 data"
    r = signed_get("Mon, 01 Jan 2024 00:00:00 GMT")
    assert r.status_code == 403 and "RequestTimeTooSkewed" in r.text, r.text

    # The signature is verified (in constant time) before s3s: with x-amz-* headers, a
    # content type, sub-resources and presigned URLs, right ones pass and wrong ones do not.
    v2.put_object(Bucket=b, Key="meta", Body=b"m", ContentType="text/plain",
                  Metadata={"b": "2", "a": "1"})
    assert v2.head_object(Bucket=b, Key="meta")["Metadata"] == {"a": "1", "b": "2"}
    up = v2.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    v2.upload_part(Bucket=b, Key="mp", UploadId=up, PartNumber=1, Body=b"p")
    v2.abort_multipart_upload(Bucket=b, Key="mp", UploadId=up)
    url = v2.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=60)
    assert requests.get(url, timeout=10).content == b"v2 data"
    forged = url.replace("Signature=", "Signature=AAAA")
    r = requests.get(forged, timeout=10)
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, r.text
    date = email.utils.formatdate(usegmt=True)
    r = requests.get(f"{srv.endpoint}/{b}/k", timeout=10,
                     headers={"Date": date, "Authorization": f"AWS {ACCESS_KEY}:AAAAAAAAAAAAAAAAAAAAAAAAAAA="})
    assert r.status_code == 403 and "SignatureDoesNotMatch" in r.text, r.text
    metrics = requests.get(f"{srv.admin_url}/metrics", timeout=5).text
    assert 'cairn_s3_refused_total{reason="sigv2_signature"} 2' in metrics


def test_presigned_url_longer_than_seven_days_is_refused(s3, bucket):
    s3.put_object(Bucket=bucket, Key="pre", Body=b"presigned")
    ok = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"},
                                   ExpiresIn=604800)
    assert requests.get(ok, timeout=10).content == b"presigned"
    too_long = ok.replace("X-Amz-Expires=604800", "X-Amz-Expires=604801")
    assert too_long != ok
    r = requests.get(too_long, timeout=10)
    assert r.status_code == 400, r.text
    assert "<Code>AuthorizationQueryParametersError</Code>" in r.text


def _add_after_signing(client, op: str, headers: dict[str, str]) -> None:
    def add(request, **_):
        for k, v in headers.items():
            request.headers[k] = v
    client.meta.events.register(f"before-send.s3.{op}", add)


def _add_before_signing(client, op: str, headers: dict[str, str]) -> None:
    def add(request, **_):
        for k, v in headers.items():
            request.headers[k] = v
    client.meta.events.register_first(f"before-sign.s3.{op}", add)


@pytest.mark.parametrize(
    "op,header,value",
    [
        ("GetObject", "x-cairn-read-consistency", "stale"),
        ("PutObject", "x-cairn-write-consistency", "ONE"),
        ("PutObject", "x-amz-checksum-sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
        ("PutObject", "Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
    ],
)
def test_unsigned_sensitive_headers_are_refused(server, bucket, op, header, value):
    s3 = server.client()
    s3.put_object(Bucket=bucket, Key="signed-hdr", Body=b"")
    _add_after_signing(s3, op, {header: value})
    with pytest.raises(ClientError) as ei:
        if op == "GetObject":
            s3.get_object(Bucket=bucket, Key="signed-hdr")
        else:
            s3.put_object(Bucket=bucket, Key="unsigned-hdr", Body=b"")
    status, code = _error(ei.value)
    assert (status, code) == (400, "InvalidRequest")
    assert header.lower() in ei.value.response["Error"]["Message"]
    assert _missing(server.client(), bucket, "unsigned-hdr")


def test_signed_cairn_headers_are_honoured(server, bucket):
    s3 = server.client()
    _add_before_signing(s3, "PutObject", {"x-cairn-write-consistency": "ONE"})
    _add_before_signing(s3, "GetObject", {"x-cairn-read-consistency": "stale"})
    s3.put_object(Bucket=bucket, Key="signed", Body=b"yes")
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == b"yes"


# ------------------------------------------------------------------------------------------
# Slow clients and caps
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(server_factory):
    """A node with short timeouts and small caps."""
    return server_factory(
        "limited",
        HTTP_HEADER_TIMEOUT_SECS="2",
        HTTP_BODY_IDLE_TIMEOUT_SECS="2",
        S3_MAX_CONNECTIONS="6",
        S3_MAX_INFLIGHT="1",
    )


def _closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> float | None:
    """Sends `dribble` one byte every 0.3 s; returns when the server closed the connection."""
    start = time.monotonic()
    sock.settimeout(0.3)
    i = 0
    while time.monotonic() - start < seconds:
        try:
            if i < len(dribble):
                sock.send(dribble[i:i + 1])
                i += 1
            data = sock.recv(4096)
            if not data:
                return time.monotonic() - start
            # An answer (408/400) is fine too, as long as the connection then closes.
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
    return None


def test_slow_headers_are_cut_off_while_others_are_served(limited):
    s3 = limited.client()
    b = unique_name("slow")
    s3.create_bucket(Bucket=b)
    with socket.create_connection(("127.0.0.1", limited.api_port)) as slow:
        head = f"GET /{b}/k HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + "a" * 200
        # A normal client is served while the slow one dribbles.
        s3.put_object(Bucket=b, Key="k", Body=b"fine")
        took = _closed_within(slow, 10, head.encode())
    assert took is not None and took < 6, took
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"fine"


def test_slow_body_is_cut_off(limited):
    s3 = limited.client()
    b = unique_name("slowbody")
    s3.create_bucket(Bucket=b)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=300)
    path = url.split(str(limited.api_port), 1)[1]
    with socket.create_connection(("127.0.0.1", limited.api_port)) as sock:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{limited.api_port}\r\n"
            f"Content-Length: 100000\r\n\r\n".encode() + b"x" * 10
        )
        took = _closed_within(sock, 10)
    assert took is not None and took < 6, took
    assert _missing(s3, b, "k")


def test_in_flight_cap_answers_slow_down(limited):
    s3 = limited.client()
    b = unique_name("inflight")
    s3.create_bucket(Bucket=b)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=300)
    path = url.split(str(limited.api_port), 1)[1]
    with socket.create_connection(("127.0.0.1", limited.api_port)) as hold:
        # One request in flight (its body arrives slowly) fills S3_MAX_INFLIGHT=1.
        hold.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{limited.api_port}\r\n"
            f"Content-Length: 1000\r\n\r\n".encode() + b"x"
        )
        time.sleep(0.3)
        r = requests.get(f"{limited.endpoint}/{b}", timeout=5)
        assert r.status_code == 503, r.text
        assert "<Code>SlowDown</Code>" in r.text
        assert r.headers.get("Retry-After") == "1"
        metrics = requests.get(f"{limited.admin_url}/metrics", timeout=5).text
        # Every reason is exported from the start (at 0): the count must have moved.
        assert re.search(r'^cairn_s3_refused_total\{reason="in_flight"\} [1-9]', metrics, re.M), metrics
    # Once the held request is gone (body idle timeout), requests are served again.
    deadline = time.monotonic() + 10
    while True:
        try:
            s3.head_bucket(Bucket=b)
            break
        except ClientError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_connection_cap_answers_slow_down(limited):
    s3 = limited.client(max_attempts=1)
    idle = [socket.create_connection(("127.0.0.1", limited.api_port)) for _ in range(6)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", limited.api_port), timeout=5) as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b"</Error>" not in answer:
                data = extra.recv(4096)
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"<Code>SlowDown</Code>" in answer
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            s3.list_buckets()
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    metrics = requests.get(f"{limited.admin_url}/metrics", timeout=5).text
    # Every reason is exported from the start (at 0): the count must have moved.
    assert re.search(r'^cairn_s3_refused_total\{reason="connections"\} [1-9]', metrics, re.M), metrics


# ------------------------------------------------------------------------------------------
# Data directory modes
# ------------------------------------------------------------------------------------------

def test_data_directory_and_files_are_private(server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(300_000))  # chunked, not inline
    root = server.storage_path
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    files = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            mode = stat.S_IMODE((Path(dirpath) / d).stat().st_mode)
            assert mode & 0o077 == 0, f"{dirpath}/{d}: {oct(mode)}"
        for f in filenames:
            mode = stat.S_IMODE((Path(dirpath) / f).stat().st_mode)
            assert mode & 0o077 == 0, f"{dirpath}/{f}: {oct(mode)}"
            files += 1
    assert files >= 3  # meta.redb, identity, at least one chunk
    assert any(Path(d).name == "chunks" for d, _, _ in os.walk(root))


# ------------------------------------------------------------------------------------------
# HTTPS
# ------------------------------------------------------------------------------------------

def _issue(ca_dir: Path, cert: Path, key: Path, cn: str) -> Path:
    """A server certificate for 127.0.0.1/localhost signed by a test CA (created on first use
    in `ca_dir`); files replaced atomically. Returns the CA certificate's path."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_cert, ca_key = ca_dir / "ca.pem", ca_dir / "ca.key"
    if not ca_cert.exists():
        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cairn e2e CA")])
        c = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(k, hashes.SHA256())
        )
        ca_key.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        ca_cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    issuer = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)

    k = ec.generate_private_key(ec.SECP256R1())
    c = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer.subject).public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    tmp_c, tmp_k = cert.with_suffix(".new"), key.with_suffix(".new")
    tmp_k.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    tmp_c.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_k, key)
    os.replace(tmp_c, cert)
    return ca_cert


def _tls_client(endpoint: str, ca: str):
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION, verify=ca,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 2}),
    )


class TlsServer(CairnServer):
    """A CairnServer whose ports speak HTTPS, verified with `ca`."""

    ca: Path

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def admin_url(self) -> str:
        return f"https://127.0.0.1:{self.admin_port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cairn exited during startup\n{self.log_tail()}")
            try:
                if requests.get(f"{self.admin_url}/health", timeout=2,
                                verify=str(self.ca)).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"cairn (TLS) not healthy within {timeout}s\n{self.log_tail()}")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    wd = tmp_path_factory.mktemp("tls")
    cert, key = wd / "cert.pem", wd / "key.pem"
    ca = _issue(wd, cert, key, "cairn-e2e-one")
    srv = TlsServer("tls", wd, {"TLS_CERT": str(cert), "TLS_KEY": str(key)})
    srv.ca = ca
    srv.start()
    yield srv
    srv.stop()


def _peer_cn(port: int) -> str:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            der = t.getpeercert(binary_form=True)
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)[0].value


def test_https_serves_s3_and_management(tls_server, tmp_path):
    ca = str(tls_server.ca)
    s3 = _tls_client(tls_server.endpoint, ca)
    b = unique_name("tls")
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"over tls")
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"over tls"
    assert requests.get(f"{tls_server.admin_url}/health", verify=ca, timeout=5).status_code == 200

    # Plain HTTP to the TLS ports gets no HTTP answer.
    for port in (tls_server.api_port, tls_server.admin_port):
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    # Without the CA the certificate is not trusted.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.admin_url}/health", timeout=5)

    # The CLI verifies the server: with the CA file TLS succeeds (the answer may still require
    # a token), without it the certificate is refused.
    base = [str(cairn_bin()), "cluster", "status", "--admin", tls_server.admin_url]
    env = {k: v for k, v in os.environ.items() if k != "CAIRN_CA_FILE"}
    env.update(RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")
    r = subprocess.run(base, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode != 0
    assert "certificate" in r.stderr.lower() or "issuer" in r.stderr.lower(), r.stderr
    r = subprocess.run(base + ["--ca-file", ca], capture_output=True, text=True, timeout=30,
                       env=env)
    assert r.returncode == 0 or "401" in r.stderr, r.stderr
    if r.returncode == 0:
        assert "e2e-node-1" in r.stdout

    # cairn bench over https with the CA file.
    r = subprocess.run(
        [str(cairn_bin()), "bench", "--endpoint", tls_server.endpoint, "--ca-file", ca,
         "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--bucket", unique_name("bench"),
         "--sizes", "4KiB", "--objects", "5", "-c", "2"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_replaced_certificate_is_served_without_restart(tls_server, tmp_path):
    assert _peer_cn(tls_server.api_port) == "cairn-e2e-one"
    starts = tls_server.starts
    _issue(tls_server.workdir, Path(tls_server.extra_env["TLS_CERT"]),
           Path(tls_server.extra_env["TLS_KEY"]), "cairn-e2e-two")
    deadline = time.monotonic() + 10
    while _peer_cn(tls_server.api_port) != "cairn-e2e-two":
        assert time.monotonic() < deadline, "new certificate not picked up"
        time.sleep(0.3)
    assert _peer_cn(tls_server.admin_port) == "cairn-e2e-two"
    assert tls_server.starts == starts and tls_server.alive()
    # Clients keep working with the new certificate, without reconnect errors.
    s3 = _tls_client(tls_server.endpoint, str(tls_server.ca))
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
