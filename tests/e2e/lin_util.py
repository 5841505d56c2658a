"""Single-key register histories for cairn-lincheck, shared by test_cluster.py (leader kills)
and tests/chaos/chaos.py (the chaos run's register workload).

A worker does Put/Get/Delete on a few keys of one bucket through one node and records each
operation with its call and return times (one process, one monotonic clock). An operation
whose effect is uncertain (timeout, refused or reset connection, unreadable answer, 408, 429,
any 5xx) is recorded as Unknown (no return time): the checker then lets it take effect at any
point after its call, or never. Only a 4xx other than those is Failed (the server refused it,
nothing applied); a 404 NoSuchKey on a Get is a read of "absent"."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time

import botocore.exceptions

from cluster_util import s3_client
from e2e_util import client_error_code, client_error_status

LIN_KEYS = ("k0", "k1", "k2")

_UNCERTAIN_STATUSES = {0, 408, 429, 500, 502, 503, 504}


class LincheckUnusable(AssertionError):
    """cairn-lincheck judged the probe histories wrongly in every JSON form."""


class HistoryRecorder:
    def __init__(self):
        self.ops: list[dict] = []
        self.lock = threading.Lock()
        self.next_client = 0

    def new_client(self) -> int:
        with self.lock:
            self.next_client += 1
            return self.next_client

    def add(self, op: dict) -> None:
        with self.lock:
            self.ops.append(op)


def lin_worker(rec: HistoryRecorder, node, bucket: str, stop: threading.Event,
               rng: random.Random, keys=LIN_KEYS, pause: float = 0.0,
               read_timeout: float = 10) -> None:
    """Records operations until `stop`; `pause`: seconds between operations (0: back to back)."""
    # No hidden retries: a retried PUT could apply twice inside one recorded operation.
    client = s3_client(node.endpoint, retries=0, connect_timeout=2, read_timeout=read_timeout)
    cid = rec.new_client()
    seq = 0
    while not stop.is_set():
        key = rng.choice(keys)
        r = rng.random()
        if r < 0.4:
            seq += 1
            value = f"c{cid}-{seq}"
            inp = {"Put": {"value": value}}
        elif r < 0.85:
            inp = "Get"
        else:
            inp = "Delete"
        call = time.monotonic_ns()
        ret = None
        try:
            if inp == "Get":
                try:
                    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                    out = {"Value": body.decode()}
                except botocore.exceptions.ClientError as e:
                    if client_error_status(e) == 404 and client_error_code(e) == "NoSuchKey":
                        out = {"Value": None}
                    else:
                        raise
            elif inp == "Delete":
                client.delete_object(Bucket=bucket, Key=key)
                out = "Ok"
            else:
                client.put_object(Bucket=bucket, Key=key, Body=inp["Put"]["value"].encode())
                out = "Ok"
            ret = time.monotonic_ns()
        except botocore.exceptions.ClientError as e:
            status = client_error_status(e) or 0
            if status in _UNCERTAIN_STATUSES or status >= 500 or status < 400:
                out = "Unknown"
            else:
                out = "Failed"  # a 4xx: the server refused the request, nothing applied
                ret = time.monotonic_ns()
        except Exception:  # noqa: BLE001 - timeouts, refused/reset connections, bad bodies
            out = "Unknown"
        op = {"client": cid, "key": key, "call_ns": call, "return_ns": ret, "input": inp,
              "output": out}
        rec.add(op)
        if out == "Unknown":
            # This client's operation may still be in flight: continue as a new client.
            cid = rec.new_client()
            stop.wait(0.2)
        if pause:
            stop.wait(pause)


def to_tagged(op: dict) -> dict:
    """The brief's externally tagged form -> cairn-lincheck's `{"type": ...}` form."""
    inp = op["input"]
    if isinstance(inp, dict):
        tin = {"type": "put", "value": inp["Put"]["value"]}
    else:
        tin = {"type": inp.lower()}
    out = op["output"]
    if isinstance(out, dict):
        tout = {"type": "value", "value": out["Value"]}
    else:
        tout = {"type": out.lower()}
    return {**op, "input": tin, "output": tout}


def lincheck(binary, ops: list[dict], path, form: str,
             timeout_secs: float = 90) -> subprocess.CompletedProcess:
    """Exit 0 linearizable, 1 not (the explanation on stdout), 2 checker timeout/bad input."""
    conv = to_tagged if form == "tagged" else (lambda o: o)
    with open(path, "w") as f:
        for op in ops:
            f.write(json.dumps(conv(op)) + "\n")
    return subprocess.run([str(binary), str(path), "--timeout-secs", str(timeout_secs)],
                          capture_output=True, text=True, timeout=300)


def lincheck_form(binary, tmp_path) -> str:
    """Which JSON form the checker reads (its own `{"type": ...}` form, or the externally tagged
    form of the test brief), established on two tiny histories it must judge correctly: a stale
    read must be refused (exit 1) and a fine history accepted (exit 0). Raises
    LincheckUnusable when neither form works."""
    def op(c, t0, t1, inp, out):
        return {"client": c, "key": "k", "call_ns": t0, "return_ns": t1, "input": inp,
                "output": out}

    good = [op(1, 0, 10, {"Put": {"value": "a"}}, "Ok"), op(2, 5, 15, "Get", {"Value": "a"}),
            op(1, 20, 30, "Delete", "Ok"), op(2, 40, 50, "Get", {"Value": None})]
    bad = [op(1, 0, 10, {"Put": {"value": "a"}}, "Ok"),
           op(1, 20, 30, {"Put": {"value": "b"}}, "Ok"), op(2, 40, 50, "Get", {"Value": "a"})]
    seen = []
    for form in ("tagged", "external"):
        g = lincheck(binary, good, tmp_path / f"probe-good.{form}.jsonl", form)
        b = lincheck(binary, bad, tmp_path / f"probe-bad.{form}.jsonl", form)
        seen.append(f"{form}: good -> {g.returncode} {g.stderr.strip()[:200]!r}, "
                    f"bad -> {b.returncode} {b.stderr.strip()[:200]!r}")
        if g.returncode == 0 and b.returncode == 1:
            return form
    raise LincheckUnusable("cairn-lincheck does not judge two tiny histories correctly in "
                           "either JSON form:\n" + "\n".join(seen))
