"""S3 bucket lifecycle through boto3 and the AWS CLI: the configuration API and its errors,
expiration by days and by date with every filter kind (prefix, tag, And, sizes), delete markers
on versioned buckets, noncurrent version expiration, expired delete marker cleanup, aborting
incomplete multipart uploads, `x-amz-expiration`, the `cairn_lifecycle_*` metrics, and on a
three-node cluster that each expiry happens exactly once.

Lifecycle days are shortened to LIFECYCLE_DAY_SECS=2 seconds, with a pass every second, so
`Days=1` expires an object 2-4 s after it was written."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import time

import pytest
import requests
from botocore.exceptions import ClientError

import cluster_util
from cluster_util import Cluster, cairn_bin
from e2e_util import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    client_error_code,
    client_error_status,
    require_tool,
    unique_name,
)

# Ports of this module's three-node cluster.
PORT_SHIFT = 710
FAST = {"LIFECYCLE_DAY_SECS": "2", "LIFECYCLE_INTERVAL_SECS": "1", "LIFECYCLE_RATE": "0"}
# Long enough for a few 2-second days and several passes.
WAIT = 30


@pytest.fixture(scope="module")
def srv(server_factory):
    return server_factory("lc", **FAST)


@pytest.fixture(scope="module")
def s3(srv):
    return srv.client()


def expect_error(fn, code, status, **kwargs):
    with pytest.raises(ClientError) as ei:
        fn(**kwargs)
    err = ei.value
    assert (client_error_code(err), client_error_status(err)) == (code, status), err.response
    return err


def wait_for(pred, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not seen within {timeout}s (last: {last!r})")


def metric(admin_url: str, name: str) -> float:
    text = requests.get(f"{admin_url}/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert m, f"{name} not in {admin_url}/metrics"
    return float(m.group(1))


def keys(s3, b) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=b).get("Contents", [])}


def put_rules(s3, b, *rules):
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": list(rules)})


def rule(rid, filt=None, status="Enabled", **actions):
    r = {"ID": rid, "Status": status, **actions}
    r["Filter"] = {} if filt is None else filt
    return r


def new_bucket(s3, versioning: str | None = None) -> str:
    b = unique_name("lc")
    s3.create_bucket(Bucket=b)
    if versioning:
        s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": versioning})
    return b


# ------------------------------------------------------------------------- the configuration


def test_configuration_round_trips_and_deletes(s3):
    b = new_bucket(s3)
    expect_error(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", 404,
                 Bucket=b)
    rules = [
        rule("prefix", {"Prefix": "logs/"}, Expiration={"Days": 30}),
        rule("tag", {"Tag": {"Key": "k", "Value": "v"}}, Expiration={"Days": 7}),
        rule("and", {"And": {"Prefix": "a/", "Tags": [{"Key": "t", "Value": "1"}],
                             "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
             NoncurrentVersionExpiration={"NoncurrentDays": 3, "NewerNoncurrentVersions": 2}),
        rule("gt", {"ObjectSizeGreaterThan": 5}, status="Disabled", Expiration={"Days": 1}),
        rule("lt", {"ObjectSizeLessThan": 5}, Expiration={"Date": dt.datetime(2030, 1, 1,
                                                                                tzinfo=dt.timezone.utc)}),
        rule("mpu", {"Prefix": ""}, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 2},
             Expiration={"ExpiredObjectDeleteMarker": True}),
    ]
    put_rules(s3, b, *rules)
    got = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
    assert [r["ID"] for r in got] == [r["ID"] for r in rules]
    for want, have in zip(rules, got):
        assert have["Status"] == want["Status"]
        assert have["Filter"] == want["Filter"], have
        for action in ("NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"):
            assert have.get(action) == want.get(action), have
    assert got[0]["Expiration"] == {"Days": 30}
    assert got[4]["Expiration"]["Date"] == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert got[5]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    # The rule-level Prefix of the original API, and a rule without an ID (one is made up).
    s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"Prefix": "old/", "Status": "Enabled", "Expiration": {"Days": 1}}]})
    got = s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]
    assert got[0]["Prefix"] == "old/" and "Filter" not in got[0] and got[0]["ID"]
    assert s3.delete_bucket_lifecycle(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", 404,
                 Bucket=b)
    # Deleting again is fine; a missing bucket is not.
    s3.delete_bucket_lifecycle(Bucket=b)
    nob = unique_name("nob")
    expect_error(s3.get_bucket_lifecycle_configuration, "NoSuchBucket", 404, Bucket=nob)
    expect_error(s3.put_bucket_lifecycle_configuration, "NoSuchBucket", 404, Bucket=nob,
                 LifecycleConfiguration={"Rules": [rule("r", Expiration={"Days": 1})]})
    expect_error(s3.delete_bucket_lifecycle, "NoSuchBucket", 404, Bucket=nob)


def _bad(**over):
    r = rule("r", {"Prefix": "p/"}, Expiration={"Days": 1})
    r.update(over)
    return r


BAD_CONFIGS = [
    ("status", [_bad(Status="On")], "MalformedXML"),
    ("filter-and-prefix", [_bad(Prefix="x/")], "MalformedXML"),
    ("two-conditions", [_bad(Filter={"Prefix": "a", "ObjectSizeGreaterThan": 3})], "MalformedXML"),
    ("days-and-marker", [_bad(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})],
     "MalformedXML"),
    ("days-and-date", [_bad(Expiration={"Days": 1, "Date": dt.datetime(2030, 1, 1)})],
     "MalformedXML"),
    ("too-many-rules", [_bad(ID=f"r{i}") for i in range(1001)], "MalformedXML"),
    ("duplicate-id", [_bad(), _bad()], "InvalidArgument"),
    ("long-id", [_bad(ID="x" * 256)], "InvalidArgument"),
    ("days-zero", [_bad(Expiration={"Days": 0})], "InvalidArgument"),
    ("date-not-midnight", [_bad(Expiration={"Date": dt.datetime(2030, 1, 1, 12, 0,
                                                                 tzinfo=dt.timezone.utc)})],
     "InvalidArgument"),
    ("noncurrent-days-zero", [_bad(NoncurrentVersionExpiration={"NoncurrentDays": 0})],
     "InvalidArgument"),
    ("newer-versions", [_bad(NoncurrentVersionExpiration={"NoncurrentDays": 1,
                                                          "NewerNoncurrentVersions": 101})],
     "InvalidArgument"),
    ("abort-days-zero", [_bad(AbortIncompleteMultipartUpload={"DaysAfterInitiation": 0})],
     "InvalidArgument"),
    ("sizes", [_bad(Filter={"And": {"ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 10}})],
     "InvalidArgument"),
    ("no-action", [{"ID": "r", "Status": "Enabled", "Filter": {}}], "InvalidRequest"),
    ("abort-with-tag", [{"ID": "r", "Status": "Enabled",
                         "Filter": {"Tag": {"Key": "a", "Value": "b"}},
                         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}],
     "InvalidRequest"),
    ("duplicate-tags", [_bad(Filter={"And": {"Tags": [{"Key": "a", "Value": "1"},
                                                      {"Key": "a", "Value": "2"}]}})],
     "InvalidRequest"),
]


@pytest.mark.parametrize("rules,code", [(r, c) for _, r, c in BAD_CONFIGS],
                         ids=[n for n, _, _ in BAD_CONFIGS])
def test_bad_configurations_are_refused_as_aws_does(s3, rules, code):
    b = new_bucket(s3)
    expect_error(s3.put_bucket_lifecycle_configuration, code, 400, Bucket=b,
                 LifecycleConfiguration={"Rules": rules})
    # Nothing was stored.
    expect_error(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", 404,
                 Bucket=b)


def test_transitions_are_not_implemented(s3):
    b = new_bucket(s3)
    for action in ({"Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]},
                   {"NoncurrentVersionTransitions": [{"NoncurrentDays": 30,
                                                      "StorageClass": "GLACIER"}]}):
        expect_error(s3.put_bucket_lifecycle_configuration, "NotImplemented", 501, Bucket=b,
                     LifecycleConfiguration={"Rules": [rule("t", **action)]})


# ------------------------------------------------------------------------- the actions


def test_expiration_by_days_with_each_filter_kind(srv, s3):
    b = new_bucket(s3)
    put_rules(
        s3, b,
        rule("by-prefix", {"Prefix": "logs/"}, Expiration={"Days": 1}),
        rule("by-tag", {"Tag": {"Key": "expire", "Value": "yes"}}, Expiration={"Days": 1}),
        rule("by-and", {"And": {"Prefix": "and/", "Tags": [{"Key": "t", "Value": "1"}],
                                "ObjectSizeGreaterThan": 5, "ObjectSizeLessThan": 100}},
             Expiration={"Days": 1}),
        rule("by-size", {"ObjectSizeGreaterThan": 1000}, Expiration={"Days": 1}),
        rule("disabled", {"Prefix": "disabled/"}, status="Disabled", Expiration={"Days": 1}),
    )
    expired = {"logs/a": (b"x", ""), "tagged": (b"x", "expire=yes"),
               "and/a": (b"x" * 50, "t=1"), "big": (b"x" * 2000, "")}
    survive = {"keep/a": (b"x", ""), "tagged-no": (b"x", "expire=no"),
               "and/too-big": (b"x" * 500, "t=1"), "and/untagged": (b"x" * 50, ""),
               "disabled/a": (b"x", "")}
    for k, (body, tags) in {**expired, **survive}.items():
        s3.put_object(Bucket=b, Key=k, Body=body, **({"Tagging": tags} if tags else {}))
    # x-amz-expiration announces the rule while the object waits for it.
    put = s3.put_object(Bucket=b, Key="logs/announced", Body=b"x")
    assert 'rule-id="by-prefix"' in put["Expiration"], put
    head = s3.head_object(Bucket=b, Key="logs/announced")
    assert head["Expiration"].startswith('expiry-date="') and "GMT" in head["Expiration"], head
    assert "Expiration" not in s3.head_object(Bucket=b, Key="keep/a")
    wait_for(lambda: not (keys(s3, b) & (set(expired) | {"logs/announced"})),
             "every matching object expired")
    assert keys(s3, b) == set(survive)
    assert metric(srv.admin_url, "cairn_lifecycle_objects_expired_total") >= len(expired) + 1
    assert metric(srv.admin_url, "cairn_lifecycle_objects_scanned_total") > 0
    assert metric(srv.admin_url, "cairn_lifecycle_last_pass_timestamp_seconds") > 0


def test_expiration_by_size_less_than(s3):
    b = new_bucket(s3)
    put_rules(s3, b, rule("tiny", {"ObjectSizeLessThan": 10}, Expiration={"Days": 1}))
    s3.put_object(Bucket=b, Key="tiny", Body=b"abc")
    s3.put_object(Bucket=b, Key="large", Body=b"y" * 100)
    wait_for(lambda: "tiny" not in keys(s3, b), "the small object expired")
    assert keys(s3, b) == {"large"}


def test_expiration_by_date(s3):
    b = new_bucket(s3)
    put_rules(
        s3, b,
        rule("past", {"Prefix": "dated/"},
             Expiration={"Date": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)}),
        rule("future", {"Prefix": "future/"},
             Expiration={"Date": dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)}),
    )
    s3.put_object(Bucket=b, Key="dated/a", Body=b"x")
    s3.put_object(Bucket=b, Key="future/a", Body=b"x")
    head = s3.head_object(Bucket=b, Key="future/a")
    assert head["Expiration"] == 'expiry-date="Fri, 01 Jan 2100 00:00:00 GMT", rule-id="future"'
    wait_for(lambda: "dated/a" not in keys(s3, b), "the object past its date expired")
    assert keys(s3, b) == {"future/a"}


def test_versioned_expiration_adds_one_delete_marker_and_keeps_the_data(s3):
    b = new_bucket(s3, "Enabled")
    put_rules(s3, b, rule("exp", {"Prefix": "v/"}, Expiration={"Days": 1}))
    vid = s3.put_object(Bucket=b, Key="v/a", Body=b"keep me")["VersionId"]
    s3.put_object(Bucket=b, Key="other", Body=b"x")
    wait_for(lambda: "v/a" not in keys(s3, b), "the current version hidden by a marker")
    time.sleep(3)  # more passes: still one marker
    lv = s3.list_object_versions(Bucket=b, Prefix="v/")
    assert [v["VersionId"] for v in lv["Versions"]] == [vid]
    assert len(lv["DeleteMarkers"]) == 1 and lv["DeleteMarkers"][0]["IsLatest"]
    assert s3.get_object(Bucket=b, Key="v/a", VersionId=vid)["Body"].read() == b"keep me"
    assert "other" in keys(s3, b)


def test_noncurrent_versions_expire_keeping_the_newest(srv, s3):
    b = new_bucket(s3, "Enabled")
    put_rules(s3, b, rule("nc", {"Prefix": ""},
                          NoncurrentVersionExpiration={"NoncurrentDays": 1,
                                                       "NewerNoncurrentVersions": 1}))
    before = metric(srv.admin_url, "cairn_lifecycle_versions_removed_total")
    ids = [s3.put_object(Bucket=b, Key="k", Body=f"v{i}".encode())["VersionId"]
           for i in range(4)]

    def versions():
        return [v["VersionId"] for v in s3.list_object_versions(Bucket=b)["Versions"]]

    wait_for(lambda: versions() == [ids[3], ids[2]], "noncurrent versions beyond one removed")
    time.sleep(3)
    assert versions() == [ids[3], ids[2]]
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"v3"
    assert metric(srv.admin_url, "cairn_lifecycle_versions_removed_total") - before == 2


def test_expired_delete_markers_are_removed(srv, s3):
    b = new_bucket(s3, "Enabled")
    put_rules(s3, b, rule("clean", {"Prefix": ""},
                          Expiration={"ExpiredObjectDeleteMarker": True},
                          NoncurrentVersionExpiration={"NoncurrentDays": 1}))
    before = metric(srv.admin_url, "cairn_lifecycle_delete_markers_removed_total")
    s3.put_object(Bucket=b, Key="gone", Body=b"x")
    s3.delete_object(Bucket=b, Key="gone")
    # A marker with no version under it at all.
    s3.delete_object(Bucket=b, Key="only-marker")
    # A live object stays.
    s3.put_object(Bucket=b, Key="live", Body=b"x")

    def listed():
        lv = s3.list_object_versions(Bucket=b)
        return ([v["Key"] for v in lv.get("Versions", [])],
                [m["Key"] for m in lv.get("DeleteMarkers", [])])

    wait_for(lambda: listed() == (["live"], []), "the noncurrent version and both markers gone")
    assert metric(srv.admin_url, "cairn_lifecycle_delete_markers_removed_total") - before == 2


def test_incomplete_multipart_uploads_are_aborted(srv, s3):
    b = new_bucket(s3)
    put_rules(s3, b, rule("mpu", {"Prefix": "tmp/"},
                          AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1}))
    before = metric(srv.admin_url, "cairn_lifecycle_uploads_aborted_total")
    doomed = s3.create_multipart_upload(Bucket=b, Key="tmp/big")["UploadId"]
    s3.upload_part(Bucket=b, Key="tmp/big", UploadId=doomed, PartNumber=1, Body=b"p" * 1024)
    kept = s3.create_multipart_upload(Bucket=b, Key="keep/big")["UploadId"]

    def uploads():
        return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=b).get("Uploads", [])]

    wait_for(lambda: uploads() == [kept], "the upload under tmp/ aborted")
    expect_error(s3.list_parts, "NoSuchUpload", 404, Bucket=b, Key="tmp/big", UploadId=doomed)
    assert metric(srv.admin_url, "cairn_lifecycle_uploads_aborted_total") - before == 1
    s3.abort_multipart_upload(Bucket=b, Key="keep/big", UploadId=kept)


def test_lifecycle_with_aws_cli(srv, s3, tmp_path):
    exe = require_tool("aws")
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")

    def api(*args, ok=True):
        r = subprocess.run([exe, "--endpoint-url", srv.endpoint, "s3api", *args,
                            "--output", "json"],
                           env=env, capture_output=True, text=True, timeout=120)
        if not ok:
            return r
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    b = new_bucket(s3)
    config = tmp_path / "lifecycle.json"
    config.write_text(json.dumps({"Rules": [
        {"ID": "cli", "Status": "Enabled", "Filter": {"Prefix": "cli/"},
         "Expiration": {"Days": 1}}]}))
    api("put-bucket-lifecycle-configuration", "--bucket", b,
        "--lifecycle-configuration", f"file://{config}")
    got = api("get-bucket-lifecycle-configuration", "--bucket", b)
    assert got["Rules"][0]["ID"] == "cli" and got["Rules"][0]["Expiration"] == {"Days": 1}
    s3.put_object(Bucket=b, Key="cli/a", Body=b"x")
    s3.put_object(Bucket=b, Key="stay", Body=b"x")
    wait_for(lambda: keys(s3, b) == {"stay"}, "the object under cli/ expired")
    api("delete-bucket-lifecycle", "--bucket", b)
    r = api("get-bucket-lifecycle-configuration", "--bucket", b, ok=False)
    assert r.returncode != 0 and "NoSuchLifecycleConfiguration" in r.stderr, r.stderr


def test_the_worker_runs_under_the_common_runner(srv):
    # Same shape as every worker: a state, items (actions taken) and no failed steps.
    text = requests.get(f"{srv.admin_url}/metrics", timeout=5).text
    states = [float(v) for v in re.findall(
        r'^cairn_worker_state\{worker="lifecycle",state="[a-z]+"\} (\S+)$', text, re.M)]
    assert len(states) == 5 and sum(states) == 1, states
    assert metric(srv.admin_url, 'cairn_worker_errors_total{worker="lifecycle"}') == 0
    assert metric(srv.admin_url, 'cairn_worker_items_total{worker="lifecycle"}') >= 1


# ------------------------------------------------------------------------- a cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = Cluster(tmp_path_factory.mktemp("lifecycle"), env=FAST)
        try:
            c.start(3, timeout=120)
            c.wait_partition_leaders(60)
            yield c
        finally:
            problems = c.teardown()
    if problems:
        pytest.fail("cluster problems:\n" + "\n".join(problems), pytrace=False)


def test_cluster_expires_each_object_exactly_once(cluster):
    nodes = [cluster.node(n) for n in ("n1", "n2", "n3")]
    c1, c2, c3 = (n.client(retries=5) for n in nodes)

    def expired_total():
        return sum(metric(n.admin_url, "cairn_lifecycle_objects_expired_total") for n in nodes)

    before = expired_total()
    b = unique_name("clc")
    c1.create_bucket(Bucket=b)
    c1.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    names = [f"e/{i}" for i in range(6)]
    for i, k in enumerate(names):
        (c1, c2, c3)[i % 3].put_object(Bucket=b, Key=k, Body=f"body {i}".encode())
    c2.put_object(Bucket=b, Key="keep", Body=b"x")
    c3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={
        "Rules": [rule("cl", {"Prefix": "e/"}, Expiration={"Days": 1})]})
    assert c1.get_bucket_lifecycle_configuration(Bucket=b)["Rules"][0]["ID"] == "cl"
    wait_for(lambda: keys(c2, b) == {"keep"}, "every e/ object expired", timeout=60)
    time.sleep(4)  # several more passes on every node
    lv = c3.list_object_versions(Bucket=b, Prefix="e/")
    markers = [m["Key"] for m in lv["DeleteMarkers"]]
    assert sorted(markers) == sorted(names), "one delete marker per object, not one per node"
    assert len(lv["Versions"]) == len(names)
    assert expired_total() - before == len(names)
