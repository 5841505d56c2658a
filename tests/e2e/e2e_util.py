"""Shared helpers for Cairn end-to-end tests.

Kept free of pytest fixtures so test modules can import them directly. The SigV4 signer here is
deliberately independent of botocore: raw requests must be able to carry paths that SDKs would
normalise (``..`` segments, ``%00``) and arbitrary ``x-amz-date`` values (clock-skew tests).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import os
import random
import shutil
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import quote

import pytest

ACCESS_KEY = "cairn-e2e-access"
SECRET_KEY = "cairn-e2e-secret-0123456789abcdef"
REGION = "us-east-1"

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# ---------------------------------------------------------------------------------------------
# Small utilities
# ---------------------------------------------------------------------------------------------

def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def multipart_etag(parts: Iterable[bytes]) -> str:
    """S3 multipart ETag: MD5 of the concatenated binary part MD5s, then '-N' (no quotes)."""
    digests = [hashlib.md5(p).digest() for p in parts]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def rand_bytes(n: int, seed) -> bytes:
    """Deterministic pseudo-random bytes for any (repr-able) seed."""
    return random.Random(repr(seed)).randbytes(n)


def unique_name(prefix: str = "b") -> str:
    """A valid, unique bucket name."""
    return f"{prefix}-{os.urandom(5).hex()}"


def require_tool(name: str) -> str:
    """Path of a CLI tool; missing tools fail under CI (test-all.sh installs them) and skip
    otherwise."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} not found on PATH (scripts/test-all.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, chosen by the kernel (random)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def client_error_code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def client_error_status(exc) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def expect_error(fn, code: str, status: int | None = None, **kwargs):
    """Calls ``fn(**kwargs)`` (a boto3 operation) and asserts it fails with S3 error ``code``
    and, when given, HTTP ``status``; returns the ClientError. A HEAD response has no body,
    so for Head* operations boto3's code is the status (``"404"``), which is accepted too."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    err = ei.value
    got_code, got_status = client_error_code(err), client_error_status(err)
    head = getattr(err, "operation_name", "").startswith("Head")
    assert got_code == code or (head and status is not None and got_code == str(status)), (
        f"expected {code}/{status}, got {got_code}/{got_status}: {err.response}"
    )
    if status is not None:
        assert got_status == status, err.response
    return err


def versioned_bucket(s3, status: str = "Enabled") -> str:
    """A new bucket with versioning ``status`` (Enabled or Suspended)."""
    b = unique_name("ver")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": status})
    return b


# ---------------------------------------------------------------------------------------------
# Chunk files on disk
# ---------------------------------------------------------------------------------------------

def chunk_files(storage_path) -> set[str]:
    """Hex ids of the chunk files under ``$STORAGE_PATH/chunks/<aa>/<bb>/<64 hex>`` (tmp/ and
    quarantine/ are not counted)."""
    root = os.path.join(str(storage_path), "chunks")
    out: set[str] = set()
    if not os.path.isdir(root):
        return out
    for aa in os.listdir(root):
        if len(aa) != 2 or aa in ("tmp",):
            continue
        pa = os.path.join(root, aa)
        if not os.path.isdir(pa):
            continue
        for bb in os.listdir(pa):
            pb = os.path.join(pa, bb)
            if len(bb) != 2 or not os.path.isdir(pb):
                continue
            for name in os.listdir(pb):
                if len(name) == 64 and name.startswith(aa + bb):
                    out.add(name)
    return out


def expected_chunk_ids(data: bytes, chunk_size: int) -> list[str]:
    import blake3  # noqa: PLC0415 - only the chunk-accounting tests need it

    return [
        blake3.blake3(data[i:i + chunk_size]).hexdigest()
        for i in range(0, len(data), chunk_size)
    ]


# ---------------------------------------------------------------------------------------------
# Raw SigV4-signed HTTP
# ---------------------------------------------------------------------------------------------

def _q(s: str) -> str:
    return quote(s, safe="-_.~")


def encode_key(key: str) -> str:
    """Percent-encode an object key for a request path (keeps '/', encodes everything else
    outside the unreserved set, including '.' never: dots stay literal)."""
    return quote(key, safe="/-_.~")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, datestamp: str, region: str = REGION, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret).encode(), datestamp)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def sign_v4(
    method: str,
    host: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    payload_hash: str,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    when: dt.datetime | None = None,
    region: str = REGION,
    canonical_path: str | None = None,
) -> tuple[dict[str, str], str]:
    """Returns (headers to send incl. Authorization, query string to send).

    ``raw_path`` is sent and signed verbatim (it must already be percent-encoded) unless
    ``canonical_path`` gives the form to sign; every header given is signed.
    """
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    datestamp = when.strftime("%Y%m%d")
    hdrs = {k.lower(): str(v) for k, v in headers.items()}
    hdrs["host"] = host
    hdrs["x-amz-date"] = amz_date
    hdrs["x-amz-content-sha256"] = payload_hash
    names = sorted(hdrs)
    canonical_headers = "".join(f"{n}:{' '.join(hdrs[n].strip().split())}\n" for n in names)
    signed_headers = ";".join(names)
    enc_query = sorted((_q(k), _q(v)) for k, v in query)
    canonical_query = "&".join(f"{k}={v}" for k, v in enc_query)
    canonical_request = "\n".join(
        [method, canonical_path or raw_path, canonical_query, canonical_headers, signed_headers,
         payload_hash]
    )
    scope = f"{datestamp}/{region}/s3/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    sig = hmac.new(
        signing_key(secret_key, datestamp, region), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    hdrs["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={sig}"
    )
    return hdrs, canonical_query


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    error_code: str | None = field(default=None)
    error_message: str | None = field(default=None)

    def __repr__(self) -> str:  # keeps assertion messages readable
        body = self.body[:600]
        return f"RawResponse(status={self.status}, code={self.error_code!r}, body={body!r})"


def parse_error(body: bytes) -> tuple[str | None, str | None]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        # e.g. an error body echoing a key with control characters: fall back to a regex.
        import re  # noqa: PLC0415

        m = re.search(rb"<Code>([^<]*)</Code>", body)
        return (m.group(1).decode("utf-8", "replace") if m else None), None
    if _local(root.tag) != "Error":
        return None, None
    code = msg = None
    for child in root:
        if _local(child.tag) == "Code":
            code = child.text
        elif _local(child.tag) == "Message":
            msg = child.text
    return code, msg


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def xml_find_all(body: bytes, name: str) -> list[ET.Element]:
    root = ET.fromstring(body)
    return [el for el in root.iter() if _local(el.tag) == name]


def xml_text(el: ET.Element, name: str) -> str | None:
    for child in el:
        if _local(child.tag) == name:
            return child.text
    return None


def raw_request(
    port: int,
    method: str,
    raw_path: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    sign: bool = True,
    payload_hash: str | None = None,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    when: dt.datetime | None = None,
    host: str | None = None,
    timeout: float = 60.0,
    content_length: bool = True,
    canonical_path: str | None = None,
) -> RawResponse:
    """Sends one request with http.client (no path normalisation), SigV4-signed by default."""
    query = list(query or [])
    headers = dict(headers or {})
    host = host or f"127.0.0.1:{port}"
    if sign:
        ph = payload_hash if payload_hash is not None else sha256_hex(body)
        hdrs, qs = sign_v4(method, host, raw_path, query, headers, ph, access_key, secret_key, when,
                           canonical_path=canonical_path)
    else:
        hdrs = {k.lower(): v for k, v in headers.items()}
        hdrs["host"] = host
        qs = "&".join(f"{_q(k)}={_q(v)}" for k, v in query)
    url = raw_path + (f"?{qs}" if qs else "")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if content_length and "content-length" not in hdrs and "transfer-encoding" not in hdrs:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        rh = {k.lower(): v for k, v in resp.getheaders()}
        code, msg = parse_error(data) if resp.status >= 300 else (None, None)
        return RawResponse(resp.status, rh, data, code, msg)
    finally:
        conn.close()


def aws_chunked_unsigned(data: bytes, trailer_name: str, trailer_value: str,
                         chunk: int = 64 * 1024) -> bytes:
    """Body for ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (aws-chunked with a checksum trailer)."""
    out = bytearray()
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    out += f"{trailer_name}:{trailer_value}\r\n\r\n".encode()
    return bytes(out)


def aws_chunked_signed(data: bytes, seed_signature: str, amz_date: str, scope: str,
                       key: bytes, chunk: int = 64 * 1024) -> bytes:
    """Body for ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (per-chunk signatures)."""
    out = bytearray()
    prev = seed_signature
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        sts = "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256,
            hashlib.sha256(piece).hexdigest(),
        ])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out += f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + b"\r\n"
        prev = sig
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# S3 checksums
# ---------------------------------------------------------------------------------------------

def crc32_b64(data: bytes) -> str:
    import zlib  # noqa: PLC0415

    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _crc32c_table()
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_CRC32C_TABLE: list[int] | None = None


def _crc32c_table() -> list[int]:
    global _CRC32C_TABLE
    if _CRC32C_TABLE is None:
        poly = 0x82F63B78
        tbl = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ poly if c & 1 else c >> 1
            tbl.append(c)
        _CRC32C_TABLE = tbl
    return _CRC32C_TABLE


def crc32c_b64(data: bytes) -> str:
    return base64.b64encode(_crc32c(data).to_bytes(4, "big")).decode()


def sha1_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def admin_headers(method: str, path: str, body: bytes = b"", access_key: str = ACCESS_KEY,
                  secret_key: str = SECRET_KEY) -> dict[str, str]:
    """Headers that sign a management-API request with root credentials (admin scope), as
    `cairn token create` does: HMAC-SHA256 over the FileService canonical string with method
    `admin <METHOD>`, the path (with query) and the hex BLAKE3 of the body."""
    import time

    import blake3

    date = str(int(time.time()))
    canonical = "\n".join(["cairn-files-v1", f"admin {method}", path,
                           blake3.blake3(body).hexdigest(), date])
    sig = hmac.new(secret_key.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return {"x-cairn-access-key": access_key, "x-cairn-date": date, "x-cairn-signature": sig}
