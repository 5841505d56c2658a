"""ListObjects V1 and V2: prefixes, delimiters, pagination, markers, URL encoding, odd keys."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

import pytest

from e2e_util import raw_request, unique_name, xml_find_all, xml_text

TREE = [
    "a.txt",
    "b/1.txt",
    "b/2.txt",
    "b/c/3.txt",
    "b/c/4.txt",
    "b/d/5.txt",
    "bz",
    "c/x",
    "d",
]

ODD_KEYS = [
    "unicode/日本語/ファイル.txt",
    "unicode/émoji-🙂.bin",
    "unicode/Ωmega",
    "spaces/with space.txt",
    "spaces/  leading and trailing  ",
    "plus/a+b=c&d.txt",
    "percent/100%.txt",
    "slashes/a//b",
    "slashes/a///c",
    "slashes/trailing/",
    "/leading-slash",
    "//double-leading",
    "quote/it's \"quoted\".txt",
    "xmlish/<tag>&amp;.txt",
    "tilde~and!bang*(paren)",
]


@pytest.fixture(scope="module")
def tree_bucket(s3):
    name = unique_name("tree")
    s3.create_bucket(Bucket=name)
    for k in TREE:
        s3.put_object(Bucket=name, Key=k, Body=k.encode())
    return name


def all_v2(s3, **kwargs):
    keys, prefixes, pages = [], [], 0
    token = None
    while True:
        args = dict(kwargs)
        if token:
            args["ContinuationToken"] = token
        resp = s3.list_objects_v2(**args)
        pages += 1
        keys += [o["Key"] for o in resp.get("Contents", [])]
        prefixes += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        assert resp["KeyCount"] == len(resp.get("Contents", [])) + len(
            resp.get("CommonPrefixes", [])
        )
        if not resp["IsTruncated"]:
            assert "NextContinuationToken" not in resp
            return keys, prefixes, pages
        token = resp["NextContinuationToken"]
        assert token
        assert pages < 10_000


# ---------------------------------------------------------------------------------------------
# V2
# ---------------------------------------------------------------------------------------------

def test_v2_lists_all_sorted(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket)
    assert [o["Key"] for o in resp["Contents"]] == sorted(TREE)
    assert resp["KeyCount"] == len(TREE)
    assert resp["IsTruncated"] is False
    for o in resp["Contents"]:
        assert o["Size"] == len(o["Key"])
        assert "LastModified" in o and o["ETag"].startswith('"')


def test_v2_prefix(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, Prefix="b/c/")
    assert [o["Key"] for o in resp["Contents"]] == ["b/c/3.txt", "b/c/4.txt"]
    assert resp["Prefix"] == "b/c/"
    assert s3.list_objects_v2(Bucket=tree_bucket, Prefix="nope")["KeyCount"] == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=tree_bucket, Prefix="nope")


def test_v2_delimiter_common_prefixes(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a.txt", "bz", "d"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["b/", "c/"]
    assert resp["KeyCount"] == 5
    assert resp["Delimiter"] == "/"

    sub = s3.list_objects_v2(Bucket=tree_bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in sub["Contents"]] == ["b/1.txt", "b/2.txt"]
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["b/c/", "b/d/"]


def test_v2_non_slash_delimiter(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, Delimiter=".")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == [
        "a.", "b/1.", "b/2.", "b/c/3.", "b/c/4.", "b/d/5."
    ]
    assert [o["Key"] for o in resp["Contents"]] == ["bz", "c/x", "d"]


def test_v2_max_keys_pagination_with_delimiter(s3, tree_bucket):
    keys, prefixes, pages = all_v2(s3, Bucket=tree_bucket, Delimiter="/", MaxKeys=2)
    assert keys == ["a.txt", "bz", "d"]
    assert prefixes == ["b/", "c/"]
    assert pages == 3


@pytest.mark.parametrize("max_keys", [1, 2, 3, 4, 100])
def test_v2_max_keys_pagination(s3, tree_bucket, max_keys):
    first = s3.list_objects_v2(Bucket=tree_bucket, MaxKeys=max_keys)
    assert first["MaxKeys"] == max_keys
    assert len(first["Contents"]) == min(max_keys, len(TREE))
    assert first["IsTruncated"] is (max_keys < len(TREE))
    keys, _, pages = all_v2(s3, Bucket=tree_bucket, MaxKeys=max_keys)
    assert keys == sorted(TREE)
    assert pages == max(1, -(-len(TREE) // max_keys))


def test_v2_max_keys_zero(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, MaxKeys=0)
    assert resp["KeyCount"] == 0 and "Contents" not in resp


def test_v2_start_after(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, StartAfter="b/c/3.txt")
    assert [o["Key"] for o in resp["Contents"]] == [k for k in sorted(TREE) if k > "b/c/3.txt"]
    assert resp["StartAfter"] == "b/c/3.txt"
    # start-after a key that does not exist
    resp = s3.list_objects_v2(Bucket=tree_bucket, StartAfter="b/c/39")
    assert [o["Key"] for o in resp["Contents"]] == [k for k in sorted(TREE) if k > "b/c/39"]
    keys, _, _ = all_v2(s3, Bucket=tree_bucket, StartAfter="b", MaxKeys=2)
    assert keys == [k for k in sorted(TREE) if k > "b"]


def test_v2_fetch_owner(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, FetchOwner=True, MaxKeys=1)
    assert "Owner" in resp["Contents"][0]
    resp = s3.list_objects_v2(Bucket=tree_bucket, MaxKeys=1)
    assert "Owner" not in resp["Contents"][0]


def test_list_empty_bucket(s3, bucket):
    resp = s3.list_objects_v2(Bucket=bucket)
    assert resp["KeyCount"] == 0 and not resp["IsTruncated"] and "Contents" not in resp
    resp = s3.list_objects(Bucket=bucket)
    assert not resp["IsTruncated"] and "Contents" not in resp


# ---------------------------------------------------------------------------------------------
# V1
# ---------------------------------------------------------------------------------------------

def all_v1(s3, **kwargs):
    keys, prefixes, pages = [], [], 0
    marker = None
    while True:
        args = dict(kwargs)
        if marker is not None:
            args["Marker"] = marker
        resp = s3.list_objects(**args)
        pages += 1
        page_keys = [o["Key"] for o in resp.get("Contents", [])]
        page_prefixes = [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        keys += page_keys
        prefixes += page_prefixes
        if not resp["IsTruncated"]:
            return keys, prefixes, pages
        if "Delimiter" in kwargs:
            # NextMarker is mandatory when a delimiter was given.
            assert resp.get("NextMarker"), resp
            new_marker = resp["NextMarker"]
        else:
            new_marker = resp.get("NextMarker") or page_keys[-1]
        # A marker that does not move forward would page forever.
        assert marker is None or new_marker > marker, (
            f"V1 pagination stuck: Marker={marker!r} -> NextMarker={new_marker!r}, "
            f"page keys {page_keys}, prefixes {page_prefixes}"
        )
        marker = new_marker
        assert pages < 10_000


def test_v1_lists_all(s3, tree_bucket):
    resp = s3.list_objects(Bucket=tree_bucket)
    assert [o["Key"] for o in resp["Contents"]] == sorted(TREE)
    assert resp["IsTruncated"] is False


def test_v1_marker(s3, tree_bucket):
    resp = s3.list_objects(Bucket=tree_bucket, Marker="b/2.txt")
    assert [o["Key"] for o in resp["Contents"]] == [k for k in sorted(TREE) if k > "b/2.txt"]
    assert resp["Marker"] == "b/2.txt"


@pytest.mark.parametrize("max_keys", [1, 2, 4])
def test_v1_pagination(s3, tree_bucket, max_keys):
    keys, _, pages = all_v1(s3, Bucket=tree_bucket, MaxKeys=max_keys)
    assert keys == sorted(TREE)
    assert pages == -(-len(TREE) // max_keys)


def test_v1_pagination_with_delimiter_next_marker(s3, tree_bucket):
    keys, prefixes, _ = all_v1(s3, Bucket=tree_bucket, Delimiter="/", MaxKeys=1)
    assert keys == ["a.txt", "bz", "d"]
    assert prefixes == ["b/", "c/"]
    resp = s3.list_objects(Bucket=tree_bucket, Delimiter="/", MaxKeys=2)
    assert resp["IsTruncated"] is True
    assert resp["NextMarker"] == "b/"


def test_v1_prefix_delimiter(s3, tree_bucket):
    resp = s3.list_objects(Bucket=tree_bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["b/1.txt", "b/2.txt"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["b/c/", "b/d/"]


# ---------------------------------------------------------------------------------------------
# Odd keys and URL encoding
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_bucket(s3):
    name = unique_name("odd")
    s3.create_bucket(Bucket=name)
    for k in ODD_KEYS:
        s3.put_object(Bucket=name, Key=k, Body=k.encode("utf-8"))
    return name


def utf8_sorted(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def test_odd_keys_roundtrip_get(s3, odd_bucket):
    for k in ODD_KEYS:
        assert s3.get_object(Bucket=odd_bucket, Key=k)["Body"].read() == k.encode("utf-8"), k
        assert s3.head_object(Bucket=odd_bucket, Key=k)["ContentLength"] == len(k.encode())


def test_odd_keys_listing_v2_and_v1_utf8_order(s3, odd_bucket):
    # boto3 asks for encoding-type=url and decodes transparently.
    keys, _, _ = all_v2(s3, Bucket=odd_bucket, MaxKeys=4)
    assert keys == utf8_sorted(ODD_KEYS)
    keys, _, _ = all_v1(s3, Bucket=odd_bucket, MaxKeys=4)
    assert keys == utf8_sorted(ODD_KEYS)


def test_runs_of_slashes_with_delimiter(s3, odd_bucket):
    resp = s3.list_objects_v2(Bucket=odd_bucket, Prefix="slashes/", Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["slashes/a/", "slashes/trailing/"]
    resp = s3.list_objects_v2(Bucket=odd_bucket, Prefix="slashes/a/", Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["slashes/a//"]
    assert "Contents" not in resp
    resp = s3.list_objects_v2(Bucket=odd_bucket, Prefix="slashes/a//", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["slashes/a//b"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["slashes/a///"]
    resp = s3.list_objects_v2(Bucket=odd_bucket, Delimiter="/", Prefix="")
    assert "/" in [p["Prefix"] for p in resp["CommonPrefixes"]]


def test_encoding_type_url_raw_v2(server, odd_bucket):
    """With encoding-type=url the XML carries percent-encoded keys (no raw spaces, non-ASCII,
    '+' or XML metacharacters) that decode back to the original key."""
    resp = raw_request(server.api_port, "GET", f"/{odd_bucket}",
                       query=[("list-type", "2"), ("encoding-type", "url")])
    assert resp.status == 200, resp
    keys = [xml_text(c, "Key") for c in xml_find_all(resp.body, "Contents")]
    assert len(keys) == len(ODD_KEYS)
    for k in keys:
        # '+' may stand for a space (form encoding, as S3 does); a literal '+' must be %2B,
        # which the unquote_plus comparison below checks.
        assert all(ord(ch) < 128 and ch not in ' <>&"\'' for ch in k), k
    assert sorted(unquote_plus(k) for k in keys) == sorted(ODD_KEYS)
    enc = xml_find_all(resp.body, "EncodingType")
    assert enc and enc[0].text == "url"


def test_encoding_type_url_raw_v1_prefix_delimiter(server, odd_bucket):
    resp = raw_request(server.api_port, "GET", f"/{odd_bucket}",
                       query=[("encoding-type", "url"), ("delimiter", "/"),
                              ("prefix", "unicode/")])
    assert resp.status == 200, resp
    prefixes = [xml_text(p, "Prefix") for p in xml_find_all(resp.body, "CommonPrefixes")]
    assert [unquote_plus(p) for p in prefixes] == ["unicode/日本語/"]
    assert all(ord(ch) < 128 for p in prefixes for ch in p)
    keys = [unquote_plus(xml_text(c, "Key")) for c in xml_find_all(resp.body, "Contents")]
    assert keys == utf8_sorted(["unicode/émoji-🙂.bin", "unicode/Ωmega"])


def test_without_encoding_type_keys_are_plain_xml(server, odd_bucket):
    resp = raw_request(server.api_port, "GET", f"/{odd_bucket}", query=[("list-type", "2")])
    assert resp.status == 200, resp
    keys = [xml_text(c, "Key") for c in xml_find_all(resp.body, "Contents")]
    assert sorted(keys) == sorted(ODD_KEYS)


def test_unicode_prefix_query(s3, odd_bucket):
    resp = s3.list_objects_v2(Bucket=odd_bucket, Prefix="unicode/日本語/")
    assert [o["Key"] for o in resp["Contents"]] == ["unicode/日本語/ファイル.txt"]


# ---------------------------------------------------------------------------------------------
# Large listing
# ---------------------------------------------------------------------------------------------

N_MANY = 2500


@pytest.fixture(scope="module")
def many_bucket(s3):
    name = unique_name("many")
    s3.create_bucket(Bucket=name)
    keys = [f"dir{i % 7}/sub{i % 3}/obj-{i:05d}" for i in range(N_MANY)]

    def put(k):
        s3.put_object(Bucket=name, Key=k, Body=k.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    return name, sorted(keys)


def test_paginate_2500_keys_v2(s3, many_bucket):
    name, expected = many_bucket
    keys, _, pages = all_v2(s3, Bucket=name)
    assert pages == 3  # default MaxKeys 1000
    assert keys == expected
    keys, _, pages = all_v2(s3, Bucket=name, MaxKeys=333)
    assert keys == expected and pages == -(-N_MANY // 333)


def test_paginate_2500_keys_v1(s3, many_bucket):
    name, expected = many_bucket
    keys, _, pages = all_v1(s3, Bucket=name)
    assert keys == expected and pages == 3


def test_paginator_2500_keys_with_delimiter(s3, many_bucket):
    name, expected = many_bucket
    pag = s3.get_paginator("list_objects_v2")
    prefixes = []
    for page in pag.paginate(Bucket=name, Delimiter="/", PaginationConfig={"PageSize": 3}):
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        assert not page.get("Contents")
    assert prefixes == [f"dir{i}/" for i in range(7)]
    sub = []
    for page in pag.paginate(Bucket=name, Prefix="dir3/", Delimiter="/"):
        sub += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert sub == ["dir3/sub0/", "dir3/sub1/", "dir3/sub2/"]
    keys = []
    for page in pag.paginate(Bucket=name, Prefix="dir3/sub1/", PaginationConfig={"PageSize": 50}):
        keys += [o["Key"] for o in page.get("Contents", [])]
    assert keys == [k for k in expected if k.startswith("dir3/sub1/")]
