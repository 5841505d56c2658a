"""docs/S3.md tells users what Cairn implements and what answers 501: keep it true.

The S3 trait methods Cairn implements are read from `impl S3 for CairnS3` in crates/s3; every
one must be listed in the operations table, and no operation in the 501 list may be one of them.
A 501 operation is also called for real to check the answer.
"""

import re
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from e2e_util import client_error_code, client_error_status, unique_name

ROOT = Path(__file__).resolve().parents[2]
SPECIAL = {"list_objects_v2": "ListObjectsV2"}


def pascal(name: str) -> str:
    return SPECIAL.get(name, "".join(w.capitalize() for w in name.split("_")))


def implemented() -> set[str]:
    src = (ROOT / "crates/s3/src/lib.rs").read_text()
    start = src.index("impl S3 for CairnS3")
    body = src[start:]
    return {pascal(n) for n in re.findall(r"async fn ([a-z0-9_]+)\s*\(", body)}


def doc_sections() -> tuple[str, str]:
    doc = (ROOT / "docs/S3.md").read_text()
    table = doc[doc.index("## Operations"):doc.index("**Answer 501 NotImplemented:**")]
    not_impl = doc[doc.index("**Answer 501 NotImplemented:**"):doc.index("## Behaviours")]
    return table, not_impl


def expand(text: str) -> set[str]:
    """Operation names in prose, with `Put/Get/DeleteX` and `...Configuration(s)` expanded."""
    names = set()
    for word in re.findall(r"[A-Z][A-Za-z0-9/()]+", text):
        plural = word.endswith("(s)")
        word = word.replace("(s)", "")
        found = {word}
        if "/" in word:
            *verbs, last = word.split("/")
            m = re.match(r"([A-Z][a-z]+)(.*)", last)
            if not m:
                continue
            verbs.append(m.group(1))
            found = {v + m.group(2) for v in verbs}
        names.update(found)
        if plural:
            names.update(n + "s" for n in found)
    return names


def test_every_implemented_operation_is_documented():
    table, _ = doc_sections()
    listed = set(re.findall(r"\b[A-Z][A-Za-z0-9]+\b", table))
    missing = sorted(implemented() - listed)
    assert not missing, f"implemented but not in docs/S3.md: {missing}"


def test_no_501_operation_is_implemented():
    _, not_impl = doc_sections()
    claimed = expand(not_impl)
    wrong = sorted(claimed & implemented())
    assert not wrong, f"docs/S3.md says 501 but Cairn implements: {wrong}"
    # The list names real operations (a typo would make the check above vacuous).
    assert {"GetBucketWebsite", "PutBucketReplication", "SelectObjectContent",
            "ListBucketMetricsConfigurations", "DeleteBucketInventoryConfiguration"} <= claimed


@pytest.fixture(scope="module")
def s3(server_factory):
    return server_factory("doc").client()


def test_a_listed_501_operation_answers_501(s3):
    b = unique_name("doc")
    s3.create_bucket(Bucket=b)
    for call in (lambda: s3.get_bucket_website(Bucket=b),
                 lambda: s3.get_bucket_replication(Bucket=b),
                 lambda: s3.get_bucket_logging(Bucket=b)):
        with pytest.raises(ClientError) as ei:
            call()
        assert (client_error_code(ei.value), client_error_status(ei.value)) == \
            ("NotImplemented", 501)
