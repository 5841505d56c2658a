//! `cairn_chunk_*` metrics (names as registered in the node's `cairn`-prefixed registry).
//!
//! Counters: `chunk_writes_total` (chunks newly written to this node's disk),
//! `chunk_dedup_writes_total` (writes that found the chunk already stored),
//! `chunk_written_bytes_total`, `chunk_reads_total`, `chunk_read_bytes_total`,
//! `chunk_corrupt_total` (copies found corrupt and quarantined), `chunk_deleted_total`,
//! `chunk_write_unavailable_total` (replicated writes below their consistency level),
//! `chunk_read_repairs_total` (copies restored from another replica), `chunk_lost_total`
//! (reads no replica could serve). Gauges: `chunk_stored_chunks`, `chunk_stored_bytes`,
//! `chunk_quarantined` (from the last store scan), `chunk_missing_local` (chunks referenced in a
//! partition this node replicates but absent from its disk, as found by the last chunk-sync
//! pass: this node's share of under-replicated chunks).
//!
//! Disk space (`disk.rs`): gauges `chunk_disk_full` (1 while free space is under the reserve and
//! new chunk copies are refused), `chunk_disk_free_bytes`, `chunk_disk_reserve_bytes`; counters
//! `chunk_disk_refused_total` (chunk copies this node refused for lack of space) and
//! `chunk_replica_full_total` (replica writes this node's writes skipped or had refused because
//! the replica's disk was full), `chunk_disk_read_errors_total` / `chunk_disk_write_errors_total`
//! (chunk I/O that failed with an error other than "no space").

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{ChunkError, Scan};

/// The chunk layer's metrics. Cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct ChunkMetrics {
    writes: Counter,
    dedup_writes: Counter,
    written_bytes: Counter,
    reads: Counter,
    read_bytes: Counter,
    corrupt: Counter,
    deleted: Counter,
    write_unavailable: Counter,
    read_repairs: Counter,
    lost: Counter,
    stored_chunks: Gauge,
    stored_bytes: Gauge,
    quarantined: Gauge,
    missing_local: Gauge,
    disk: DiskMetrics,
}

/// Which kind of chunk I/O failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
        })
    }
}

/// The disk-space part of [`ChunkMetrics`].
#[derive(Clone, Debug, Default)]
struct DiskMetrics {
    full: Gauge,
    free_bytes: Gauge,
    reserve_bytes: Gauge,
    refused: Counter,
    replica_full: Counter,
    read_errors: Counter,
    write_errors: Counter,
}

fn gauge(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl ChunkMetrics {
    /// Registers every `chunk_*` metric in `registry` (the node's `cairn`-prefixed one).
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 10] = [
            (
                "chunk_writes",
                "Chunks newly written to this node's disk",
                &self.writes,
            ),
            (
                "chunk_dedup_writes",
                "Chunk writes that found the chunk already stored",
                &self.dedup_writes,
            ),
            (
                "chunk_written_bytes",
                "Bytes of chunks newly written to this node's disk",
                &self.written_bytes,
            ),
            (
                "chunk_reads",
                "Chunk reads from this node's disk",
                &self.reads,
            ),
            (
                "chunk_read_bytes",
                "Bytes of verified chunks read from this node's disk",
                &self.read_bytes,
            ),
            (
                "chunk_corrupt",
                "Chunk copies found corrupt (on read or before a dedup write adopted them) and quarantined",
                &self.corrupt,
            ),
            (
                "chunk_deleted",
                "Chunk files deleted from this node's disk",
                &self.deleted,
            ),
            (
                "chunk_write_unavailable",
                "Replicated chunk writes that did not reach their consistency level",
                &self.write_unavailable,
            ),
            (
                "chunk_read_repairs",
                "Chunk copies restored from another replica",
                &self.read_repairs,
            ),
            (
                "chunk_lost",
                "Chunk reads that no replica could serve",
                &self.lost,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        let gauges: [(&str, &str, &Gauge); 4] = [
            (
                "chunk_stored_chunks",
                "Chunk files on this node's disk (last scan)",
                &self.stored_chunks,
            ),
            (
                "chunk_stored_bytes",
                "Bytes of chunk files on this node's disk (last scan)",
                &self.stored_bytes,
            ),
            (
                "chunk_quarantined",
                "Quarantined chunk files on this node's disk (last scan)",
                &self.quarantined,
            ),
            (
                "chunk_missing_local",
                "Referenced chunks this node should hold but does not (last chunk-sync pass)",
                &self.missing_local,
            ),
        ];
        for (name, help, g) in gauges {
            registry.register(name, help, g.clone());
        }
        self.disk.register(registry);
    }

    pub(crate) fn stored(&self, newly_written: bool, len: u64) {
        if newly_written {
            self.writes.inc();
            self.written_bytes.inc_by(len);
        } else {
            self.dedup_writes.inc();
        }
    }

    pub(crate) fn read(&self, res: &Result<bytes::Bytes, ChunkError>) {
        self.reads.inc();
        match res {
            Ok(b) => {
                self.read_bytes.inc_by(b.len() as u64);
            }
            Err(ChunkError::Corrupt { .. }) => {
                self.corrupt.inc();
            }
            Err(_) => {}
        }
    }

    /// An existing copy failed verification before a dedup write could adopt it.
    pub(crate) fn dedup_corrupt(&self) {
        self.corrupt.inc();
    }

    pub(crate) fn deleted(&self) {
        self.deleted.inc();
    }

    pub(crate) fn write_unavailable(&self) {
        self.write_unavailable.inc();
    }

    pub(crate) fn read_repaired(&self) {
        self.read_repairs.inc();
    }

    pub(crate) fn lost(&self) {
        self.lost.inc();
    }

    pub(crate) fn scanned(&self, scan: &Scan) {
        self.stored_chunks.set(gauge(scan.chunks));
        self.stored_bytes.set(gauge(scan.bytes));
        self.quarantined.set(gauge(scan.quarantined));
    }

    pub(crate) fn set_missing_local(&self, n: u64) {
        self.missing_local.set(gauge(n));
    }

    /// Chunk copies restored from another replica since start.
    pub fn read_repairs(&self) -> u64 {
        self.read_repairs.get()
    }

    /// Referenced chunks missing from this node's disk, as of the last chunk-sync pass.
    pub fn missing_local(&self) -> u64 {
        self.missing_local.get().max(0) as u64
    }
}

impl ChunkMetrics {
    /// Counts a copy found corrupt (outside a read) and quarantined.
    pub(crate) fn corrupt_quarantined(&self) {
        self.corrupt.inc();
    }
}

/// The scrubber's metrics (`cairn_chunk_scrub_*`). Counters: `chunk_scrub_checked_total`
/// (chunk files re-read and verified), `chunk_scrub_checked_bytes_total`,
/// `chunk_scrub_corrupt_total` (copies found corrupt and quarantined),
/// `chunk_scrub_repaired_total` (of those, restored from another replica),
/// `chunk_scrub_unrepaired_total` (of those, not restored: no replica had a good copy, or this
/// node is no longer placed on the chunk); gauges: `chunk_scrub_last_full_pass_timestamp_seconds`
/// (Unix time the last complete pass ended; 0 before the first),
/// `chunk_scrub_pass_progress_ratio` (how far the current pass is through the id space, 0-1).
/// Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct ScrubMetrics {
    checked: Counter,
    checked_bytes: Counter,
    corrupt: Counter,
    repaired: Counter,
    unrepaired: Counter,
    last_full_pass: Gauge,
    progress: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl ScrubMetrics {
    /// Registers every `chunk_scrub_*` metric in `registry` (the node's `cairn`-prefixed one).
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 5] = [
            (
                "chunk_scrub_checked",
                "Chunk files re-read and verified by the scrubber",
                &self.checked,
            ),
            (
                "chunk_scrub_checked_bytes",
                "Bytes of chunk files re-read and verified by the scrubber",
                &self.checked_bytes,
            ),
            (
                "chunk_scrub_corrupt",
                "Chunk copies the scrubber found corrupt and quarantined",
                &self.corrupt,
            ),
            (
                "chunk_scrub_repaired",
                "Corrupt chunk copies the scrubber restored from another replica",
                &self.repaired,
            ),
            (
                "chunk_scrub_unrepaired",
                "Corrupt chunk copies the scrubber could not restore",
                &self.unrepaired,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "chunk_scrub_last_full_pass_timestamp_seconds",
            "Unix time the scrubber last finished a full pass over this node's chunks (0: never)",
            self.last_full_pass.clone(),
        );
        registry.register(
            "chunk_scrub_pass_progress_ratio",
            "How far the scrubber's current pass is through the chunk id space (0-1)",
            self.progress.clone(),
        );
    }

    pub(crate) fn checked(&self, bytes: u64) {
        self.checked.inc();
        self.checked_bytes.inc_by(bytes);
    }

    pub(crate) fn corrupt(&self) {
        self.corrupt.inc();
    }

    pub(crate) fn repaired(&self) {
        self.repaired.inc();
    }

    pub(crate) fn unrepaired(&self) {
        self.unrepaired.inc();
    }

    pub(crate) fn set_last_full_pass_ms(&self, ms: i64) {
        self.last_full_pass.set(ms.max(0) / 1000);
    }

    pub(crate) fn set_progress(&self, ratio: f64) {
        self.progress.set(ratio.clamp(0.0, 1.0));
    }

    /// Chunk files verified since start.
    pub fn checked_total(&self) -> u64 {
        self.checked.get()
    }

    /// Corrupt copies found since start.
    pub fn corrupt_total(&self) -> u64 {
        self.corrupt.get()
    }

    /// Corrupt copies restored from another replica since start.
    pub fn repaired_total(&self) -> u64 {
        self.repaired.get()
    }

    /// Corrupt copies not restored since start.
    pub fn unrepaired_total(&self) -> u64 {
        self.unrepaired.get()
    }

    /// Unix seconds of the last complete pass (0: none yet).
    pub fn last_full_pass_secs(&self) -> i64 {
        self.last_full_pass.get()
    }
}

impl DiskMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "chunk_disk_full",
            "1 while the chunk disk's free space is under DISK_RESERVE_BYTES (new chunks refused)",
            self.full.clone(),
        );
        registry.register(
            "chunk_disk_free_bytes",
            "Available bytes on the chunk disk (last measurement)",
            self.free_bytes.clone(),
        );
        registry.register(
            "chunk_disk_reserve_bytes",
            "Bytes new chunks must leave free on the chunk disk (DISK_RESERVE_BYTES)",
            self.reserve_bytes.clone(),
        );
        registry.register(
            "chunk_disk_refused",
            "Chunk copies this node refused because its disk was under the reserve",
            self.refused.clone(),
        );
        registry.register(
            "chunk_replica_full",
            "Replica writes skipped or refused because the replica's disk was full",
            self.replica_full.clone(),
        );
        registry.register(
            "chunk_disk_read_errors",
            "Chunk reads (GET, scrub) that failed with an I/O error on this node's disk",
            self.read_errors.clone(),
        );
        registry.register(
            "chunk_disk_write_errors",
            "Chunk writes that failed with an I/O error on this node's disk (not for space)",
            self.write_errors.clone(),
        );
    }
}

impl ChunkMetrics {
    pub(crate) fn set_disk_full(&self, full: bool) {
        self.disk.full.set(i64::from(full));
    }

    pub(crate) fn set_disk_free(&self, bytes: u64) {
        self.disk.free_bytes.set(gauge(bytes));
    }

    pub(crate) fn set_disk_reserve(&self, bytes: u64) {
        self.disk.reserve_bytes.set(gauge(bytes));
    }

    pub(crate) fn refused_full(&self) {
        self.disk.refused.inc();
    }

    pub(crate) fn replica_full(&self) {
        self.disk.replica_full.inc();
    }

    pub(crate) fn disk_error(&self, op: IoOp) {
        match op {
            IoOp::Read => self.disk.read_errors.inc(),
            IoOp::Write => self.disk.write_errors.inc(),
        };
    }

    /// 1 while the chunk disk is under its reserve.
    pub fn disk_full(&self) -> i64 {
        self.disk.full.get()
    }

    /// Replica writes skipped or refused because the replica's disk was full, since start.
    pub fn replica_full_count(&self) -> u64 {
        self.disk.replica_full.get()
    }
}

/// The chunk-sync worker's metrics (`cairn_chunk_sync_*`, see `sync.rs`). Counters:
/// `chunk_sync_ranges_compared_total` / `chunk_sync_ranges_differing_total` (hashed ranges
/// whose referenced digest was compared with this node's held digest, and those that
/// differed and were walked), `chunk_sync_peer_ranges_compared_total` /
/// `chunk_sync_peer_ranges_differing_total` (the same against a peer replica's held digest),
/// `chunk_sync_ranges_relisted_total` (ranges of the held index listed again from the disk).
/// Chunks restored are the worker's `cairn_worker_items_total{worker="chunk-sync"}`; chunks
/// still missing are `chunk_missing_local`. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct SyncMetrics {
    compared: Counter,
    differing: Counter,
    peer_compared: Counter,
    peer_differing: Counter,
    relisted: Counter,
}

impl SyncMetrics {
    /// Registers every `chunk_sync_*` metric in `registry` (the node's `cairn`-prefixed one).
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 5] = [
            (
                "chunk_sync_ranges_compared",
                "Hashed ranges whose referenced and held digests chunk sync compared",
                &self.compared,
            ),
            (
                "chunk_sync_ranges_differing",
                "Hashed ranges whose referenced and held digests differed (walked)",
                &self.differing,
            ),
            (
                "chunk_sync_peer_ranges_compared",
                "Hashed ranges whose held digest chunk sync compared with a peer replica's",
                &self.peer_compared,
            ),
            (
                "chunk_sync_peer_ranges_differing",
                "Hashed ranges whose held digest differed from a peer replica's (walked)",
                &self.peer_differing,
            ),
            (
                "chunk_sync_ranges_relisted",
                "Hashed ranges of the held index listed again from the disk",
                &self.relisted,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
    }

    pub(crate) fn compared(&self, ranges: u64, differing: u64) {
        self.compared.inc_by(ranges);
        self.differing.inc_by(differing);
    }

    pub(crate) fn peer_compared(&self, ranges: u64, differing: u64) {
        self.peer_compared.inc_by(ranges);
        self.peer_differing.inc_by(differing);
    }

    pub(crate) fn relisted(&self, ranges: u64) {
        self.relisted.inc_by(ranges);
    }

    /// Ranges compared against the references since start.
    pub fn ranges_compared(&self) -> u64 {
        self.compared.get()
    }

    /// Of those, ranges that differed.
    pub fn ranges_differing(&self) -> u64 {
        self.differing.get()
    }
}
