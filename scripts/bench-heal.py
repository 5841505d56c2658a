#!/usr/bin/env python3
"""Self-healing figures on this machine (issue 13 item 10), one run:

1. kill -9 -> the node reported down by gossip (and suspect first), 3 times, on 4 nodes;
2. 4 nodes, RF 3, ~2 GiB of objects (4 MiB chunks, the default size): kill one node with
   REPAIR_GRACE_SECS small and time until the cluster is fully replicated again (layout
   re-homed, no replica move in flight, no node missing a chunk, no chunk copy for 6 s): the
   bytes the survivors wrote meanwhile and the repair rate;
3. rebalance on join: a fresh 4-node cluster (RF 3) loaded the same way, a 5th node joins;
   time from the join until `GET /admin/rebalances` reports the new layout's plan `done`, the
   bytes the plan moved, and that rate as a fraction of the dd figure;
4. raw disk throughput of the same file system: dd if=/dev/zero bs=4M count=256 oflag=direct.

    CAIRN_BIN=target/release/cairn python3 scripts/bench-heal.py [--gib 2] [--grace 5]

Ports: PORT_BASE + 440 .. 442 on 127.0.0.11-15. Prints a Markdown table for docs/CHAOS.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "chaos"))

import cluster_util  # noqa: E402
from chaos import healed, metric_sum  # noqa: E402
from cluster_util import Cluster, cairn_bin  # noqa: E402
from e2e_util import admin_headers, chunk_files, expected_chunk_ids  # noqa: E402

MiB = 1 << 20
CHUNK = 4 * MiB
PORT_SHIFT = 440


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def health_of(node, target: str) -> str | None:
    st = node.try_status(timeout=2)
    if not st:
        return None
    return {n["node_id"]: n["health"] for n in st["nodes"]}.get(target)


def time_to_down(c: Cluster, victim: str, observer: str) -> tuple[float, float | None]:
    obs = c.node(observer)
    c.node(victim).kill()
    t0 = time.monotonic()
    suspect = None
    while True:
        h = health_of(obs, victim)
        if h == "suspect" and suspect is None:
            suspect = time.monotonic() - t0
        if h == "down":
            return time.monotonic() - t0, suspect
        if time.monotonic() - t0 > 120:
            raise AssertionError(f"{victim} not reported down within 120s")
        time.sleep(0.05)


def fill(c: Cluster, gib: float, obj_mib: int = 32) -> tuple[int, set[str]]:
    n_obj = int(gib * 1024 / obj_mib)
    nodes = sorted(c.alive(), key=lambda n: n.node_id)
    c.node("n1").client(retries=3).create_bucket(Bucket="bench")
    errors: list[str] = []
    ids: set[str] = set()

    def upload(w: int) -> None:
        cl = nodes[w % len(nodes)].client(retries=3, read_timeout=300)
        for i in range(w, n_obj, 4):
            body = os.urandom(obj_mib * MiB)  # distinct contents: no dedup
            ids.update(expected_chunk_ids(body, CHUNK))
            try:
                cl.put_object(Bucket="bench", Key=f"o{i:04d}", Body=body)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=upload, args=(w,)) for w in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError(f"{len(errors)} uploads failed: {errors[:3]}")
    secs = time.monotonic() - t0
    say(f"wrote {n_obj} x {obj_mib} MiB in {secs:.1f}s ({n_obj * obj_mib / secs:.0f} MiB/s)")
    return n_obj * obj_mib * MiB, ids


def written(nodes) -> float:
    return sum(metric_sum(n, "cairn_chunk_written_bytes_total") or 0 for n in nodes)


def placed(node) -> set[str]:
    st = node.try_status() or {"partitions": []}
    return {r for p in st["partitions"] for r in p["replicas"]}


def repair_after_kill(c: Cluster, victim: str, ids: set[str], timeout: float = 1800) -> dict:
    """RF 3 on the 3 survivors: repaired when each of them holds every chunk on disk and the
    cluster says fully replicated with no move in flight."""
    survivors = [n for n in c.alive() if n.node_id != victim]
    obs = survivors[0]
    before = written(survivors)
    missing0 = sum(len(ids - chunk_files(n.storage_path)) for n in survivors)
    c.node(victim).kill()
    t0 = time.monotonic()
    out: dict = {"missing_chunks": missing0}
    while True:
        now = time.monotonic()
        if "down" not in out and health_of(obs, victim) == "down":
            out["down"] = now - t0
        if "rehomed" not in out and placed(obs) and victim not in placed(obs):
            out["rehomed"] = now - t0
        if "rehomed" in out and "copied" not in out and \
                all(ids <= chunk_files(n.storage_path) for n in survivors):
            out["copied"] = now - t0
        if "copied" in out and healed(c, survivors)[0]:
            out["repaired"] = now - t0
            out["bytes"] = written(survivors) - before
            return out
        if now - t0 > timeout:
            raise AssertionError(f"not repaired within {timeout}s: {healed(c, survivors)[1]}")
        time.sleep(0.5)


def plan_of(node) -> dict | None:
    """The rebalance plan as `GET /admin/rebalances` shows it (what `cairn rebalance status
    --json` prints), or None when the node does not answer."""
    import requests  # noqa: PLC0415

    try:
        r = requests.get(f"{node.admin_url}/admin/rebalances",
                         headers=admin_headers("GET", "/admin/rebalances"), timeout=5)
        return r.json()["plan"] if r.status_code == 200 else None
    except (requests.RequestException, ValueError, KeyError):
        return None


def rebalance_on_join(c: Cluster, index: int, timeout: float = 1800) -> dict:
    """Node `index` joins; seconds from the join until the plan of a newer layout than the one
    before the join is `done`, and the bytes it moved (the plan's own figure)."""
    obs = c.node("n1")
    before = (plan_of(obs) or {}).get("layout_version", 0)
    t0 = time.monotonic()
    c.add_node(index, wait=False)
    out: dict = {"layout_before": before}
    while True:
        p = plan_of(obs)
        now = time.monotonic()
        if p and p["layout_version"] > before:
            if "planned" not in out and (p["planned"] or p["moving"] or p["done"]):
                out["planned"] = now - t0
            if p["state"] == "done" and p["done"] + p["cancelled"] > 0:
                out.update(secs=now - t0, bytes=p["bytes_moved"], moves=p["done"],
                           cancelled=p["cancelled"], plan_rate=p["rate_bytes_per_sec"],
                           layout=p["layout_version"])
                return out
        assert c.node(f"n{index}").alive(), c.node(f"n{index}").log_tail(30)
        if now - t0 > timeout:
            raise AssertionError(f"rebalance not done within {timeout}s: "
                                 f"{json.dumps({k: v for k, v in (p or {}).items() if k != 'partitions'})}")
        time.sleep(0.5)


def dd_mib_s(line: str) -> float | None:
    m = re.search(r"([0-9.,]+) ([kMG]?B)/s", line)
    if not m:
        return None
    v = float(m.group(1).replace(",", "."))
    return v * {"kB": 1e3, "MB": 1e6, "GB": 1e9, "B": 1}[m.group(2)] / MiB


def dd(path: Path) -> str:
    r = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=4M", "count=256",
                        "oflag=direct"], capture_output=True, text=True)
    path.unlink(missing_ok=True)
    line = (r.stderr.strip().splitlines() or ["?"])[-1]
    return line


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--grace", type=int, default=5)
    a = ap.parse_args()
    if not cairn_bin().exists():
        print(f"no binary at {cairn_bin()}; set CAIRN_BIN", file=sys.stderr)
        return 2
    wd = Path(tempfile.mkdtemp(prefix="cairn-bench-heal-"))
    env = {"REPAIR_GRACE_SECS": str(a.grace), "CHUNK_SIZE": str(4 * MiB)}
    rows = []
    with cluster_util.shifted_ports(PORT_SHIFT):
        c = Cluster(wd, env=env)
        try:
            c.start(4, timeout=180)
            c.wait_partition_leaders(60)
            downs = []
            for victim in ("n4", "n3", "n4"):
                d, s = time_to_down(c, victim, "n1")
                downs.append((d, s))
                say(f"kill -9 {victim}: suspect after {s or 0:.2f}s, down after {d:.2f}s")
                c.node(victim).start()
                c.wait_converged(4, timeout=120)
            stored, ids = fill(c, a.gib)
            c.wait_converged(4, timeout=60)
            # Every chunk on its 3 replicas before the kill.
            deadline = time.monotonic() + 600
            while sum(len(ids & chunk_files(n.storage_path)) for n in c.alive()) < 3 * len(ids):
                assert time.monotonic() < deadline, "chunks never reached RF 3"
                time.sleep(1)
            r = repair_after_kill(c, "n4", ids)
            rate = r["bytes"] / MiB / max(r["copied"] - r["rehomed"], 1e-9)
            say(f"repair: {r}")
        except BaseException:
            c.teardown()
            shutil.rmtree(wd, ignore_errors=True)
            raise
        problems = c.teardown()
        # Rebalance: a fresh 4-node cluster with the same load, then n5 joins.
        c = Cluster(wd / "rebalance", env=env)
        try:
            c.start(4, timeout=180)
            c.wait_partition_leaders(60)
            rb_stored, rb_ids = fill(c, a.gib)
            c.wait_converged(4, timeout=60)
            deadline = time.monotonic() + 600
            while sum(len(rb_ids & chunk_files(n.storage_path)) for n in c.alive()) \
                    < 3 * len(rb_ids):
                assert time.monotonic() < deadline, "chunks never reached RF 3"
                time.sleep(1)
            rb = rebalance_on_join(c, 5)
            say(f"rebalance: {rb}")
            ddline = dd(wd / "dd.bin")
            say(f"dd: {ddline}")
            dd_rate = dd_mib_s(ddline)
            rb_rate = rb["bytes"] / MiB / max(rb["secs"], 1e-9)
            frac = f" = {rb_rate / dd_rate:.0%} of dd" if dd_rate else ""
            rep_frac = f" = {rate / dd_rate:.0%} of dd" if dd_rate else ""
            mean = sum(d for d, _ in downs) / len(downs)
            rows = [
                ("binary", f"{cairn_bin()}"),
                ("machine", f"{os.cpu_count()} cores, {platform.machine()}, "
                            f"{platform.release()}"),
                ("kill -9 -> suspect (n1's view)",
                 ", ".join(f"{s:.2f}s" if s is not None else "-" for _, s in downs)),
                ("kill -9 -> down (gossip, n1's view)",
                 ", ".join(f"{d:.2f}s" for d, _ in downs) + f" (mean {mean:.2f}s)"),
                ("data before the kill", f"{stored / 2**30:.2f} GiB of objects, RF 3, 4 nodes"),
                ("kill -> down", f"{r['down']:.1f}s"),
                (f"kill -> re-homed (REPAIR_GRACE_SECS={a.grace})", f"{r['rehomed']:.1f}s"),
                ("kill -> every chunk on the 3 survivors", f"{r['copied']:.1f}s"),
                ("kill -> `fully replicated`, no move in flight, nothing missing",
                 f"{r['repaired']:.1f}s"),
                ("bytes written by the survivors (chunk copies)",
                 f"{r['bytes'] / 2**30:.2f} GiB ({r['missing_chunks']} chunks of 4 MiB were "
                 f"missing on them)"),
                ("repair rate (re-homed -> every chunk copied)", f"{rate:.0f} MiB/s{rep_frac}"),
                ("rebalance: data before the join",
                 f"{rb_stored / 2**30:.2f} GiB of objects, RF 3, 4 nodes; n5 joins"),
                ("join -> plan made (layout v{} -> v{})".format(rb["layout_before"],
                                                                 rb["layout"]),
                 f"{rb.get('planned', rb['secs']):.1f}s"),
                ("join -> plan `done` (/admin/rebalances)",
                 f"{rb['secs']:.1f}s ({rb['moves']} moves, {rb['cancelled']} cancelled)"),
                ("bytes moved by the plan", f"{rb['bytes'] / 2**30:.2f} GiB"),
                ("rebalance throughput (bytes moved / join -> done)",
                 f"{rb_rate:.0f} MiB/s{frac} (the plan's own rate: "
                 f"{rb['plan_rate'] / MiB:.0f} MiB/s)"),
                ("dd bs=4M count=256 oflag=direct", ddline),
            ]
        finally:
            problems += c.teardown()
            shutil.rmtree(wd, ignore_errors=True)
    if problems:
        print("cluster problems:\n" + "\n".join(problems), file=sys.stderr)
    print(f"\nbench-heal {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {re.sub(r'[|]', '/', v)} |")
    return 1 if problems or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
