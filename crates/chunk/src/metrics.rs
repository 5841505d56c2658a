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
//! the replica's disk was full).

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

/// The disk-space part of [`ChunkMetrics`].
#[derive(Clone, Debug, Default)]
struct DiskMetrics {
    full: Gauge,
    free_bytes: Gauge,
    reserve_bytes: Gauge,
    refused: Counter,
    replica_full: Counter,
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
                "Chunk copies found corrupt on read and quarantined",
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

    /// 1 while the chunk disk is under its reserve.
    pub fn disk_full(&self) -> i64 {
        self.disk.full.get()
    }

    /// Replica writes skipped or refused because the replica's disk was full, since start.
    pub fn replica_full_count(&self) -> u64 {
        self.disk.replica_full.get()
    }
}
