"""Crash consistency: kill -9 the server repeatedly under concurrent PUT/DELETE load, then check
that acknowledged writes survived, acknowledged deletes stayed deleted, nothing is partial, and
that garbage collection leaves exactly the chunk files the live objects need.

The scenario runs once (module fixture); each test asserts one property of its outcome.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from e2e_util import chunk_files, expected_chunk_ids, md5_hex, rand_bytes

MiB = 1024 * 1024
CHUNK_SIZE = MiB
INLINE_THRESHOLD = 4096
ROUNDS = 5
WORKERS = 4
KEYS_PER_WORKER = 12
GC_GRACE = 5
GC_INTERVAL = 2
BUCKET = "crash-test"

# Sizes well away from INLINE_THRESHOLD and CHUNK_SIZE boundaries (the boundaries are
# tested in test_chunks_gc.py).
SIZES = [100, 1500, 3000, 9000, 300_000, 1_500_000, 2_600_000, 3_300_000]
# Contents shared between keys so chunk files are referenced by several objects.
POOL = [("pool", i) for i in range(5)]


def content_bytes(cid) -> bytes:
    """Deterministic content for a content id: ("pool", i) | ("dup", n) | (worker, seq, size)."""
    if cid[0] == "pool":
        return rand_bytes([2_200_000, 1_200_000, 700, 5000, 3_100_000][cid[1]], cid)
    if cid[0] == "dup":
        # The same 1 MiB chunk repeated: one chunk file, referenced several times by one object.
        block = rand_bytes(CHUNK_SIZE, ("dup-block", cid[1] % 2))
        return block * 3 + rand_bytes(1000, cid)
    return rand_bytes(cid[2], cid)


@dataclass
class KeyState:
    # Contents the key may hold now: None = absent. Exactly one element after an acked op.
    possible: set = field(default_factory=lambda: {None})
    history: list = field(default_factory=list)


@dataclass
class Outcome:
    states: dict
    unexpected_errors: list
    acked_ops: int
    unacked_ops: int
    observed: dict  # key -> (sha256, size, etag) or None, after the final restart
    listing: list
    digests: dict  # cid -> (sha256, size)
    gc_actual: set
    gc_expected: set
    gc_missing_seen: set  # expected chunk files seen missing at any point during the GC wait
    gc_wait_s: float
    after_gc: dict  # key -> sha256 or error, re-read after GC
    tmp_files_after_gc: list
    restarts_ok: bool


class Worker(threading.Thread):
    def __init__(self, idx, server, states, stop, killed, errors, counters, seq_start):
        super().__init__(daemon=True)
        self.idx = idx
        self.client = server.client(max_attempts=1, read_timeout=60)
        self.states = states
        self.stop = stop
        self.killed = killed
        self.errors = errors
        self.counters = counters
        self.seq = seq_start
        self.rng = random.Random(f"worker-{idx}-{seq_start}")
        self.keys = [f"w{idx}/k{j:02d}" for j in range(KEYS_PER_WORKER)]

    def run(self):
        while not self.stop.is_set():
            key = self.rng.choice(self.keys)
            st = self.states[key]
            r = self.rng.random()
            if r < 0.25:
                op, cid = "DELETE", None
            else:
                self.seq += 1
                if r < 0.40:
                    cid = self.rng.choice(POOL)
                elif r < 0.45:
                    cid = ("dup", self.seq)
                else:
                    cid = (f"w{self.idx}", self.seq, self.rng.choice(SIZES))
                op = "PUT"
            try:
                if op == "PUT":
                    data = content_bytes(cid)
                    resp = self.client.put_object(Bucket=BUCKET, Key=key, Body=data)
                    if resp["ETag"] != f'"{md5_hex(data)}"':
                        self.errors.append(f"PUT {key}: wrong ETag {resp['ETag']}")
                else:
                    self.client.delete_object(Bucket=BUCKET, Key=key)
                st.possible = {cid}
                st.history.append((op, cid, "acked"))
                self.counters["acked"] += 1
            except Exception as e:  # noqa: BLE001 - any failure = not acknowledged
                st.possible.add(cid)
                st.history.append((op, cid, "unacked"))
                self.counters["unacked"] += 1
                if not self.killed.is_set():
                    self.errors.append(f"{op} {key} failed while server up: {e!r}")
                if self.killed.is_set():
                    return


def _read_all(client, keys):
    out = {}
    for key in keys:
        try:
            obj = client.get_object(Bucket=BUCKET, Key=key)
            data = obj["Body"].read()
            out[key] = (hashlib.sha256(data).hexdigest(), len(data), obj["ETag"].strip('"'))
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404", "NoSuchBucket"):
                out[key] = None
            else:
                out[key] = ("ERROR", repr(e), "")
    return out


@pytest.fixture(scope="module")
def outcome(server_factory) -> Outcome:
    server = server_factory(
        "crash", start=True,
        CHUNK_SIZE=CHUNK_SIZE, INLINE_THRESHOLD=INLINE_THRESHOLD,
        GC_GRACE_SECS=600, GC_INTERVAL_SECS=60,
    )
    server.client().create_bucket(Bucket=BUCKET)
    all_keys = [f"w{i}/k{j:02d}" for i in range(WORKERS) for j in range(KEYS_PER_WORKER)]
    states = {k: KeyState() for k in all_keys}
    errors: list[str] = []
    counters = {"acked": 0, "unacked": 0}
    rng = random.Random("crash-schedule")
    restarts_ok = True

    for rnd in range(ROUNDS):
        if rnd > 0:
            server.start()
            try:
                server.client().head_bucket(Bucket=BUCKET)
            except ClientError:
                restarts_ok = False
        stop, killed = threading.Event(), threading.Event()
        workers = [Worker(i, server, states, stop, killed, errors, counters, rnd * 100_000)
                   for i in range(WORKERS)]
        for w in workers:
            w.start()
        time.sleep(1.0 + rng.random() * 2.0)
        killed.set()
        server.kill()
        stop.set()
        for w in workers:
            w.join(timeout=120)
            assert not w.is_alive(), "worker hung after kill"

    server.start()
    client = server.client(max_attempts=3)
    listing = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            listing += [(o["Key"], o["Size"], o["ETag"].strip('"'))
                        for o in page.get("Contents", [])]
    except ClientError as e:
        errors.append(f"listing after final restart failed: {e!r}")
        restarts_ok = False
    observed = _read_all(client, all_keys)

    cids = {c for st in states.values() for c in st.possible if c is not None}
    digests = {}
    for c in cids:
        data = content_bytes(c)
        digests[c] = (hashlib.sha256(data).hexdigest(), len(data))

    # Live contents as observed (only trustworthy ones: matching an attempted content).
    by_hash = {d[0]: c for c, d in digests.items()}
    gc_expected: set[str] = set()
    for key, obs in observed.items():
        if obs and obs[0] in by_hash:
            data = content_bytes(by_hash[obs[0]])
            if len(data) > INLINE_THRESHOLD:
                gc_expected |= set(expected_chunk_ids(data, CHUNK_SIZE))

    # GC phase: short grace and interval, wait a little over grace + interval.
    server.restart(GC_GRACE_SECS=GC_GRACE, GC_INTERVAL_SECS=GC_INTERVAL)
    t0 = time.monotonic()
    missing_seen: set[str] = set()
    min_wait = GC_GRACE + GC_INTERVAL + 2
    deadline = t0 + GC_GRACE + GC_INTERVAL + 40
    while True:
        actual = chunk_files(server.storage_path)
        missing_seen |= gc_expected - actual
        elapsed = time.monotonic() - t0
        if (elapsed >= min_wait and actual == gc_expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    gc_wait = time.monotonic() - t0
    after = _read_all(server.client(max_attempts=3), all_keys)
    tmp_dir = server.storage_path / "chunks" / "tmp"
    tmp_files = sorted(p.name for p in tmp_dir.iterdir()) if tmp_dir.is_dir() else []
    print(f"crash test: {counters['acked']} acked, {counters['unacked']} unacked ops, "
          f"{len(gc_expected)} expected chunk files, GC converged in {gc_wait:.1f}s")
    return Outcome(
        states=states, unexpected_errors=errors, acked_ops=counters["acked"],
        unacked_ops=counters["unacked"], observed=observed, listing=listing, digests=digests,
        gc_actual=actual, gc_expected=gc_expected, gc_missing_seen=missing_seen,
        gc_wait_s=gc_wait, after_gc={k: (v[0] if v else None) for k, v in after.items()},
        tmp_files_after_gc=tmp_files, restarts_ok=restarts_ok,
    )


def _fmt(st: KeyState) -> str:
    return " -> ".join(f"{op}{'' if cid is None else cid}:{a}" for op, cid, a in st.history[-4:])


def test_workload_did_real_work(outcome):
    assert outcome.acked_ops >= ROUNDS * WORKERS * 3, outcome.acked_ops
    assert outcome.restarts_ok, "bucket missing after a restart"


def test_no_errors_while_server_was_up(outcome):
    assert outcome.unexpected_errors == []


def test_acknowledged_puts_survive(outcome):
    bad = []
    for key, st in outcome.states.items():
        if len(st.possible) == 1 and None not in st.possible:
            (cid,) = st.possible
            want = outcome.digests[cid]
            got = outcome.observed[key]
            if got is None or got[0] != want[0]:
                bad.append(f"{key}: want {cid} size {want[1]}, got {got}; history {_fmt(st)}")
    assert bad == [], "\n".join(bad)


def test_acknowledged_deletes_stay_deleted(outcome):
    bad = [
        f"{key}: present {outcome.observed[key]} after acked DELETE; history {_fmt(st)}"
        for key, st in outcome.states.items()
        if st.possible == {None} and outcome.observed[key] is not None
    ]
    assert bad == [], "\n".join(bad)


def test_unacknowledged_writes_are_all_or_nothing(outcome):
    bad = []
    for key, st in outcome.states.items():
        got = outcome.observed[key]
        allowed = {outcome.digests[c][0] for c in st.possible if c is not None}
        if got is None:
            if None not in st.possible:
                bad.append(f"{key}: absent but never deleted; history {_fmt(st)}")
        elif got[0] not in allowed:
            bad.append(f"{key}: content (sha256 {got[0][:16]}, size {got[1]}) matches none of "
                       f"the attempted contents; history {_fmt(st)}")
        elif got[2] != md5_hex(content_bytes(next(c for c in st.possible
                                                  if c and outcome.digests[c][0] == got[0]))):
            bad.append(f"{key}: ETag {got[2]} does not match content MD5")
    assert bad == [], "\n".join(bad)


def test_listing_matches_reads(outcome):
    listed = {k: (size, etag) for k, size, etag in outcome.listing}
    readable = {k: (v[1], v[2]) for k, v in outcome.observed.items() if v is not None}
    assert listed == readable


def test_gc_never_deleted_live_chunks(outcome):
    assert outcome.gc_missing_seen == set(), (
        f"{len(outcome.gc_missing_seen)} chunk files needed by live objects were missing"
    )
    changed = {k: (outcome.observed[k], v) for k, v in outcome.after_gc.items()
               if (outcome.observed[k][0] if outcome.observed[k] else None) != v}
    assert changed == {}, f"objects changed or became unreadable across GC: {changed}"


def test_gc_leaves_exactly_the_referenced_chunks(outcome):
    extra = outcome.gc_actual - outcome.gc_expected
    missing = outcome.gc_expected - outcome.gc_actual
    assert (len(extra), len(missing)) == (0, 0), (
        f"after {outcome.gc_wait_s:.1f}s with GC_GRACE_SECS={GC_GRACE}: "
        f"{len(outcome.gc_actual)} chunk files on disk, {len(outcome.gc_expected)} referenced; "
        f"unreferenced left: {sorted(extra)[:5]}..., missing: {sorted(missing)[:5]}"
    )


def test_no_temp_files_left_after_gc(outcome):
    assert outcome.tmp_files_after_gc == [], outcome.tmp_files_after_gc[:10]
