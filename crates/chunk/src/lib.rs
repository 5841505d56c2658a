//! The chunk layer: everything about chunk bytes, below the object service.
//!
//! - `store.rs` — content-addressed chunk files on this node's disk: durable writes, verified
//!   reads, quarantine, GC pins ([`ChunkStore`]); `store/held.rs` keeps the digests of what it
//!   holds per partition and range for anti-entropy.
//! - `io.rs` — the [`ChunkIo`] trait the object service writes and reads through, and
//!   [`LocalChunks`] (one node).
//! - `placement.rs` — the small [`Placement`] trait through which the layer learns which nodes
//!   hold a partition (the cluster implements it; the layer never calls up into it).
//! - `replication.rs` — [`ReplicatedChunks`]: writes to a chunk's replicas at a write
//!   consistency, reads from the nearest healthy one, read repair.
//! - `rpc.rs` — [`ChunkServer`], this node's `ChunkService` (put, get, has, held range digests;
//!   there is no remote delete: only this node's GC deletes its files).
//! - `refs.rs` — the ref-sync worker: delivers reference updates from each partition's outbox
//!   to the chunk's partition.
//! - `intents.rs` — upload intents: an upload's claim on its chunks, in each chunk's
//!   reference set from before the first byte is sent until the commit's reference arrives.
//! - `gc.rs` — the GC worker: deletes chunk files nothing references (check-and-delete under
//!   the chunk's store lock).
//! - `ranges.rs` — hashed ranges: order-independent digests of the chunk ids in each range of
//!   a partition, which anti-entropy compares instead of looking at every chunk.
//! - `sync.rs` — the chunk-sync worker (anti-entropy): compares each partition's referenced
//!   and held range digests (and a peer's) and fetches the chunks this node should hold.
//! - `handback.rs` — the hand-back worker: drops copies of chunks whose partition the layout
//!   placed elsewhere, once every holder has them (a re-homed node that came back, a drained
//!   node, the old holder of a moved partition).
//! - `scrub.rs` — the scrub worker: re-reads every local chunk file at a throttled rate,
//!   quarantines bad copies and restores them from a good replica.
//! - `disk.rs` — [`DiskGuard`]: free space against the reserve (a full node refuses new chunks
//!   and writers steer around it), and the `disk` worker that re-measures it.
//! - `metrics.rs` — `cairn_chunk_*`; `error.rs` — [`ChunkError`].
//!
//! Workers have the `cairn_worker::Worker` shape and are run by `cairn_worker::Workers`.

mod disk;
mod error;
pub mod gc;
pub mod handback;
pub mod intents;
mod io;
mod metrics;
mod placement;
pub mod ranges;
pub mod refs;
mod replication;
mod rpc;
pub mod scrub;
mod store;
pub mod sync;

pub use cairn_meta::model::{ChunkId, WriteConsistency};
pub use disk::{DiskErrors, DiskGuard, DiskState, DiskWatch};
pub use error::{ChunkError, ReplicaError};
pub use intents::Intent;
pub use io::{BoxFuture, ChunkIo, LocalChunks};
pub use metrics::{ChunkMetrics, IoOp, ScrubMetrics, SyncMetrics};
pub use placement::{Placement, Replica};
pub use replication::{ReplicatedChunks, Restored, FULL_BACKOFF};
pub use rpc::ChunkServer;
pub use store::{ChunkLock, ChunkPin, ChunkStore, Scan, Verified};
