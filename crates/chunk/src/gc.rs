//! The GC worker: deletes chunk files that nothing references any more.
//!
//! A chunk file is deleted only if its reference set — read after a linearizable barrier on
//! the chunk's partition — is empty, and that check and the delete happen under the chunk's
//! store lock, which every `put` of the chunk also takes. The reference set holds the owners
//! of committed objects and parts *and* the intents of uploads in flight anywhere in the
//! cluster (`intents.rs`: an uploader adds its intent through the chunk's partition before
//! sending a byte, and the intent leaves only after the commit's own reference arrived). So:
//! - an upload that covered the chunk before our check is seen by it (the intent is
//!   committed, and our read is linearizable);
//! - an upload that covers it after our check writes its bytes after we release the lock:
//!   either it finds the file (the delete had not happened: impossible while we hold the
//!   lock) or it writes a fresh one.
//!
//! Safety does not depend on timing. The grace period (`GC_GRACE_SECS`, which may be as low
//! as 1 s) remains a margin for references written before intents existed, as do the checks
//! that the chunk is not pinned by an in-flight request on this node nor named by an
//! undelivered outbox `Add` of a partition this node holds. Each pass also removes upload
//! intents that can no longer commit (`intents::sweep`: an earlier process of this node made
//! them, or they are older than `INTENT_TTL`).
//!
//! Each pass scans the store once (also refreshing the `cairn_chunk_stored_*` gauges), then
//! works through the candidates a batch per step.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::placement::partition_group;
use cairn_meta::{Query, QueryResult, RefOp};
use cairn_raft::Registry;
use cairn_worker::{Progress, Step, Worker, WorkerError};

use crate::intents::sweep;
use crate::{ChunkError, ChunkId, ChunkStore};

/// Candidates checked per step.
const BATCH: usize = 256;

/// Chunks named by an undelivered `RefOp::Add` in any outbox on this node: committed
/// references that have not reached the chunk's partition yet.
fn pending_adds(reg: &Registry) -> Result<HashSet<ChunkId>, ChunkError> {
    let mut pending = HashSet::new();
    for group in reg.groups() {
        for (_, op) in reg.meta().outbox(group, usize::MAX)? {
            if let RefOp::Add { chunk, .. } = op {
                pending.insert(chunk);
            }
        }
    }
    Ok(pending)
}

/// Checks `ids` (GC candidates) and deletes those that are safe to delete. Returns how many
/// were deleted.
async fn collect(
    reg: &Registry,
    store: &ChunkStore,
    grace: Duration,
    ids: &[ChunkId],
) -> Result<u64, ChunkError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let pending = pending_adds(reg)?;
    let partitions = reg.meta().partitions();
    let mut deleted = 0;
    for id in ids {
        if pending.contains(id) || store.is_pinned(id) {
            continue;
        }
        let group = partition_group(id.partition(partitions));
        // Held from the reference check to the delete: no write of this chunk can slip in
        // between (see the module comment).
        let lock = store.lock(*id).await;
        match reg
            .query(group, &Query::ChunkRefCount { chunk: *id })
            .await?
        {
            QueryResult::Count(0) => {}
            QueryResult::Count(_) => continue,
            other => return Err(ChunkError::UnexpectedResult(format!("{other:?}"))),
        }
        if store.is_pinned(id) || !store.is_older_than(id, grace).await? {
            continue;
        }
        if lock.delete().await? {
            deleted += 1;
            tracing::debug!(chunk = %id, "collected unreferenced chunk");
        }
    }
    Ok(deleted)
}

/// One whole GC pass (scan, then every candidate). Returns how many chunks were deleted.
pub async fn collect_garbage(
    reg: &Registry,
    store: &ChunkStore,
    grace: Duration,
) -> Result<u64, ChunkError> {
    sweep(reg).await?;
    let scan = store.scan(grace).await?;
    let mut deleted = 0;
    for batch in scan.older.chunks(BATCH) {
        deleted += collect(reg, store, grace, batch).await?;
    }
    Ok(deleted)
}

/// The GC worker (`gc`): items = chunk files deleted; queue = candidates left in this pass.
pub struct Gc {
    registry: Arc<Registry>,
    store: ChunkStore,
    grace: Duration,
    interval: Duration,
    /// Candidates of the current pass not checked yet.
    queue: Vec<ChunkId>,
    passes: u64,
}

impl Gc {
    /// Collects files older than `grace`, a pass every `interval`.
    pub fn new(
        registry: Arc<Registry>,
        store: ChunkStore,
        grace: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            registry,
            store,
            grace,
            interval,
            queue: Vec::new(),
            passes: 0,
        }
    }
}

#[async_trait::async_trait]
impl Worker for Gc {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        if self.queue.is_empty() {
            // Not fatal for the pass: a sweep that fails (a leader change) is retried next pass.
            let swept = match sweep(&self.registry).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not remove dead upload intents");
                    0
                }
            };
            let scan = self.store.scan(self.grace).await?;
            self.passes += 1;
            progress.note(format!(
                "pass {}: {} chunks ({} bytes) stored, {} older than the grace period, {} dead upload intents removed",
                self.passes,
                scan.chunks,
                scan.bytes,
                scan.older.len(),
                swept
            ));
            self.queue = scan.older;
        }
        let take = self.queue.len().min(BATCH);
        let batch: Vec<ChunkId> = self.queue.drain(..take).collect();
        let result = collect(&self.registry, &self.store, self.grace, &batch).await;
        if result.is_err() {
            // The next pass scans again; don't keep a half-checked queue around.
            self.queue.clear();
        }
        progress.items(result?);
        progress.queue(self.queue.len() as u64);
        Ok(if self.queue.is_empty() {
            Step::Idle
        } else {
            Step::Busy
        })
    }
}
