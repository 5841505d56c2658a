"""A short seeded chaos run (issue 13 item 9): 5 nodes, RF 3, REPAIR_GRACE_SECS=8,
GC_GRACE_SECS=1, a mixed S3 workload (PUTs of varied sizes, multipart, overwrites, deletes,
copies, identical re-PUTs) while kill -9, SIGSTOP pauses, network partitions, a full disk, bit
rot and a skewed clock (libfaketime) are injected one at a time; then everything is healed and
every acknowledged write and delete is checked through every node (tests/chaos/chaos.py,
docs/CHAOS.md). Partitions and the full disk need root, the clock fault libfaketime: without
them those faults are skipped (the summary says so).

Seed: $CAIRN_CHAOS_SEED (default 410); length: $CAIRN_CHAOS_SECONDS (default 120). Ports:
PORT_BASE + 410..412 (network namespace prefix cairnch410, subnet 10.232.160.0/24)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cluster_util import cairn_bin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))
import chaos  # noqa: E402

PORT_SHIFT = 410


def test_short_chaos_run_loses_nothing_acknowledged(tmp_path):
    if not cairn_bin().exists():
        pytest.fail(f"Cairn binary not found at {cairn_bin()}; set CAIRN_BIN", pytrace=False)
    cfg = chaos.Config(
        nodes=5,
        seconds=float(os.environ.get("CAIRN_CHAOS_SECONDS", "120")),
        seed=int(os.environ.get("CAIRN_CHAOS_SEED", "410")),
        port_shift=PORT_SHIFT,
        workdir=tmp_path / "chaos",
    )
    res = chaos.run(cfg)
    print(res.summary())
    assert not res.failures, res.summary()
    acked = sum(v for k, v in res.ops.items() if k.endswith(":ok"))
    assert acked >= 50, f"the workload did too little: {res.ops}"
    assert len(res.faults) >= 5, res.faults
