"""On-disk chunk accounting: the inline threshold, CHUNK_SIZE splitting into BLAKE3-addressed
files, deduplication, and garbage collection of unreferenced chunks after GC_GRACE_SECS."""

from __future__ import annotations

import time

import pytest

from e2e_util import chunk_files, expected_chunk_ids, rand_bytes, unique_name

MiB = 1024 * 1024
INLINE = 4096
GRACE = 3
INTERVAL = 1
# Long enough for an unreferenced chunk to pass the grace period and be seen by a GC pass.
GC_DEADLINE = GRACE + INTERVAL + 30


@pytest.fixture(scope="module")
def gc_server(server_factory):
    return server_factory("gc", CHUNK_SIZE=MiB, INLINE_THRESHOLD=INLINE,
                          GC_GRACE_SECS=GRACE, GC_INTERVAL_SECS=INTERVAL)


@pytest.fixture(scope="module")
def c(gc_server):
    return gc_server.client()


@pytest.fixture
def b(c):
    name = unique_name("gc")
    c.create_bucket(Bucket=name)
    return name


def wait_gone(server, ids: set[str]) -> set[str]:
    deadline = time.monotonic() + GC_DEADLINE
    while time.monotonic() < deadline:
        left = ids & chunk_files(server.storage_path)
        if not left:
            return set()
        time.sleep(0.5)
    return ids & chunk_files(server.storage_path)


def test_inline_threshold_boundary(gc_server, c, b):
    before = chunk_files(gc_server.storage_path)
    at = rand_bytes(INLINE, "at-threshold")
    c.put_object(Bucket=b, Key="inline", Body=at)
    assert chunk_files(gc_server.storage_path) - before == set(), \
        "an object of exactly INLINE_THRESHOLD bytes must be stored inline"
    over = rand_bytes(INLINE + 1, "over-threshold")
    c.put_object(Bucket=b, Key="chunked", Body=over)
    assert chunk_files(gc_server.storage_path) - before == set(expected_chunk_ids(over, MiB))
    assert c.get_object(Bucket=b, Key="inline")["Body"].read() == at
    assert c.get_object(Bucket=b, Key="chunked")["Body"].read() == over


@pytest.mark.parametrize("size", [MiB, MiB + 1, 2 * MiB + MiB // 2, 3 * MiB])
def test_chunk_files_are_blake3_of_chunk_size_slices(gc_server, c, b, size):
    data = rand_bytes(size, ("split", size))
    c.put_object(Bucket=b, Key="split", Body=data)
    ids = set(expected_chunk_ids(data, MiB))
    assert len(ids) == -(-size // MiB)
    assert ids <= chunk_files(gc_server.storage_path)
    for cid in ids:
        p = gc_server.storage_path / "chunks" / cid[:2] / cid[2:4] / cid
        assert p.stat().st_size in (MiB, size % MiB)
    assert c.get_object(Bucket=b, Key="split")["Body"].read() == data


def test_dedup_and_refcounted_gc(gc_server, c, b):
    data = rand_bytes(2 * MiB + 100, "dedup")
    ids = set(expected_chunk_ids(data, MiB))
    c.put_object(Bucket=b, Key="one", Body=data)
    after_first = chunk_files(gc_server.storage_path)
    c.put_object(Bucket=b, Key="two", Body=data)
    assert chunk_files(gc_server.storage_path) == after_first, "identical content not deduplicated"
    c.delete_object(Bucket=b, Key="one")
    time.sleep(GRACE + 2 * INTERVAL + 2)
    assert ids <= chunk_files(gc_server.storage_path), "GC removed chunks still used by 'two'"
    assert c.get_object(Bucket=b, Key="two")["Body"].read() == data
    c.delete_object(Bucket=b, Key="two")
    assert wait_gone(gc_server, ids) == set(), "unreferenced chunks not collected"


def test_repeated_chunk_within_one_object(gc_server, c, b):
    block = rand_bytes(MiB, "repeat-block")
    data = block * 4 + b"tail"
    c.put_object(Bucket=b, Key="rep", Body=data)
    ids = set(expected_chunk_ids(data, MiB))
    assert len(ids) == 2
    assert ids <= chunk_files(gc_server.storage_path)
    assert c.get_object(Bucket=b, Key="rep")["Body"].read() == data
    c.put_object(Bucket=b, Key="rep", Body=b"small now")
    assert wait_gone(gc_server, ids) == set()
    assert c.get_object(Bucket=b, Key="rep")["Body"].read() == b"small now"


def test_overwrite_collects_old_chunks(gc_server, c, b):
    old = rand_bytes(3 * MiB, "old")
    new = rand_bytes(3 * MiB, "new")
    c.put_object(Bucket=b, Key="k", Body=old)
    c.put_object(Bucket=b, Key="k", Body=new)
    assert wait_gone(gc_server, set(expected_chunk_ids(old, MiB))) == set()
    assert set(expected_chunk_ids(new, MiB)) <= chunk_files(gc_server.storage_path)
    assert c.get_object(Bucket=b, Key="k")["Body"].read() == new


def test_multipart_object_chunks_kept_then_collected(gc_server, c, b):
    parts = [rand_bytes(5 * MiB, "mp1"), rand_bytes(MiB // 2, "mp2")]
    uid = c.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    done = []
    for i, p in enumerate(parts, 1):
        r = c.upload_part(Bucket=b, Key="mp", UploadId=uid, PartNumber=i, Body=p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    c.complete_multipart_upload(Bucket=b, Key="mp", UploadId=uid,
                                MultipartUpload={"Parts": done})
    time.sleep(GRACE + 2 * INTERVAL + 2)
    assert c.get_object(Bucket=b, Key="mp")["Body"].read() == b"".join(parts)
    # Whatever chunking the server chose for parts, every file that appeared must go once the
    # object is deleted.
    on_disk = chunk_files(gc_server.storage_path)
    c.delete_object(Bucket=b, Key="mp")
    part_ids = set()
    for p in parts:
        part_ids |= set(expected_chunk_ids(p, MiB))
    whole_ids = set(expected_chunk_ids(b"".join(parts), MiB))
    assert (part_ids <= on_disk) or (whole_ids <= on_disk)
    assert wait_gone(gc_server, (part_ids | whole_ids) & on_disk) == set()


def test_gc_survives_restart(gc_server, c, b):
    keep = rand_bytes(2 * MiB, "keep-restart")
    drop = rand_bytes(2 * MiB, "drop-restart")
    c.put_object(Bucket=b, Key="keep", Body=keep)
    c.put_object(Bucket=b, Key="drop", Body=drop)
    c.delete_object(Bucket=b, Key="drop")
    gc_server.restart(kill=True)
    assert wait_gone(gc_server, set(expected_chunk_ids(drop, MiB))) == set()
    assert set(expected_chunk_ids(keep, MiB)) <= chunk_files(gc_server.storage_path)
    assert gc_server.client().get_object(Bucket=b, Key="keep")["Body"].read() == keep


@pytest.mark.parametrize("which", [0, 1], ids=["first-chunk", "later-chunk"])
def test_corrupt_chunk_is_never_served(gc_server, c, b, which):
    """A chunk file whose bytes no longer match its BLAKE3 name must not reach the client:
    the read fails (error status or aborted body) and the file is quarantined."""
    data = rand_bytes(2 * MiB + 500, ("corrupt", which))
    c.put_object(Bucket=b, Key="victim", Body=data)
    cid = expected_chunk_ids(data, MiB)[which]
    path = gc_server.storage_path / "chunks" / cid[:2] / cid[2:4] / cid
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))

    served_wrong = False
    try:
        body = c.get_object(Bucket=b, Key="victim")["Body"].read()
        served_wrong = body != data
    except Exception:  # noqa: BLE001 - ClientError, IncompleteRead, ResponseStreamingError...
        pass
    assert not served_wrong, "server returned bytes that fail their chunk hash"
    assert not path.exists(), "corrupt chunk file left in place"
    quarantine = gc_server.storage_path / "chunks" / "quarantine"
    assert quarantine.is_dir() and any(cid in p.name for p in quarantine.iterdir())
    # Other objects are unaffected.
    c.put_object(Bucket=b, Key="healthy", Body=b"fine")
    assert c.get_object(Bucket=b, Key="healthy")["Body"].read() == b"fine"
