"""Concurrent clients: racing overwrites, reads during overwrites, parallel writers, and bucket
re-creation. Every read must return one complete version, never a mix."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from e2e_util import md5_hex, rand_bytes, unique_name

MiB = 1024 * 1024


def test_racing_overwrites_leave_one_complete_version(server, s3, bucket):
    versions = [rand_bytes(size, ("race", i)) for i, size in
                enumerate([100, 70_000, 5 * MiB + 3, 9 * MiB, 200, 4 * MiB, 1, 6 * MiB])]
    digests = {hashlib.sha256(v).hexdigest(): v for v in versions}
    clients = [server.client() for _ in versions]
    barrier = threading.Barrier(len(versions))

    def put(i):
        barrier.wait(timeout=30)
        return clients[i].put_object(Bucket=bucket, Key="hot", Body=versions[i])["ETag"]

    with ThreadPoolExecutor(len(versions)) as pool:
        etags = list(pool.map(put, range(len(versions))))
    assert etags == [f'"{md5_hex(v)}"' for v in versions]
    got = s3.get_object(Bucket=bucket, Key="hot")
    body = got["Body"].read()
    assert hashlib.sha256(body).hexdigest() in digests, "final object is not any written version"
    assert got["ETag"] == f'"{md5_hex(body)}"'
    assert got["ContentLength"] == len(body)
    head = s3.head_object(Bucket=bucket, Key="hot")
    assert head["ETag"] == got["ETag"] and head["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="hot")["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listed] == [("hot", got["ETag"], len(body))]


def test_reads_during_overwrites_are_never_mixed(server, s3, bucket):
    versions = [rand_bytes(3 * MiB + i * 1000, ("mix", i)) for i in range(4)]
    digests = {hashlib.sha256(v).hexdigest() for v in versions}
    s3.put_object(Bucket=bucket, Key="flip", Body=versions[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def writer():
        c = server.client()
        i = 0
        while not stop.is_set():
            i += 1
            c.put_object(Bucket=bucket, Key="flip", Body=versions[i % len(versions)])

    def reader():
        c = server.client()
        while not stop.is_set():
            r = c.get_object(Bucket=bucket, Key="flip")
            body = r["Body"].read()
            reads[0] += 1
            if hashlib.sha256(body).hexdigest() not in digests:
                bad.append(f"mixed/partial body of {len(body)} bytes")
            elif r["ETag"] != f'"{md5_hex(body)}"':
                bad.append(f"ETag {r['ETag']} does not match the body returned with it")
            elif r["ContentLength"] != len(body):
                bad.append("Content-Length does not match body")

    threads = [threading.Thread(target=writer) for _ in range(2)] + \
              [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    threading.Event().wait(6)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert reads[0] > 5
    assert bad == []


def test_parallel_writers_distinct_keys(server, s3, bucket):
    items = {f"p/{i:04d}": rand_bytes(50 + (i * 7919) % 150_000, ("par", i)) for i in range(400)}
    clients = [server.client() for _ in range(16)]

    def put(arg):
        n, (k, v) = arg
        r = clients[n % len(clients)].put_object(Bucket=bucket, Key=k, Body=v)
        assert r["ETag"] == f'"{md5_hex(v)}"'

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, enumerate(items.items())))
    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="p/"):
        listed.update({o["Key"]: (o["Size"], o["ETag"]) for o in page.get("Contents", [])})
    assert listed == {k: (len(v), f'"{md5_hex(v)}"') for k, v in items.items()}

    def check(k):
        return s3.get_object(Bucket=bucket, Key=k)["Body"].read() == items[k]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, list(items)[::5]))


def test_racing_create_bucket_one_winner(server, s3):
    name = unique_name("race")
    clients = [server.client(max_attempts=1) for _ in range(6)]
    barrier = threading.Barrier(len(clients))

    def create(c):
        barrier.wait(timeout=30)
        try:
            c.create_bucket(Bucket=name)
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with ThreadPoolExecutor(len(clients)) as pool:
        results = list(pool.map(create, clients))
    assert results.count("ok") == 1, results
    assert set(results) - {"ok"} <= {"BucketAlreadyOwnedByYou"}, results
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count(name) == 1


@pytest.mark.parametrize("restart", [False, True], ids=["live", "after-restart"])
def test_recreated_bucket_is_empty(server, s3, restart):
    name = unique_name("again")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="old-small", Body=b"old")
    s3.put_object(Bucket=name, Key="old-big", Body=rand_bytes(2 * MiB, "old-big"))
    uid = s3.create_multipart_upload(Bucket=name, Key="old-upload")["UploadId"]
    s3.abort_multipart_upload(Bucket=name, Key="old-upload", UploadId=uid)
    s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "old-small"}, {"Key": "old-big"}]})
    s3.delete_bucket(Bucket=name)
    if restart:
        server.restart()
    s3.create_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    assert not s3.list_multipart_uploads(Bucket=name).get("Uploads")
    for k in ("old-small", "old-big"):
        with pytest.raises(ClientError) as ei:
            s3.get_object(Bucket=name, Key=k)
        assert ei.value.response["Error"]["Code"] == "NoSuchKey"
    s3.put_object(Bucket=name, Key="new", Body=b"new")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["new"]
