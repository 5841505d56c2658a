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
