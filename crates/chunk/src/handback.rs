//! The hand-back worker (`chunk-handback`): drops this node's copies of chunks whose partition
//! the layout no longer places here — a node that came back after its data was re-homed, a
//! drained node, the old holder of a rebalanced partition — but only once every node the
//! layout places the partition on holds the chunk (asked with `HasChunks`). Until then the old
//! copy stays and keeps serving reads through read fallback, so nothing is deleted before the
//! new holders have it. GC is not involved: these chunks are still referenced.
//!
//! A copy is dropped under the chunk's store lock, after re-checking the placement, so a
//! layout that places the partition here again (a write of the chunk arriving meanwhile) wins.
//! A holder that is down or does not answer keeps the copy for the next pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_worker::{Progress, Step, Worker, WorkerError};

use crate::{ChunkId, ReplicatedChunks};

/// Chunks checked per step (one `HasChunks` call per holder per partition in it).
const BATCH: usize = 256;

/// Files younger than this wait for the next pass: a margin for writes of a writer with an
/// older layout, not what keeps data safe (the holders' copies and the pin check do).
const MIN_AGE: Duration = Duration::from_secs(5);

/// The hand-back worker: items = local copies dropped, bytes = their bytes, queue = chunks
/// left to check in this pass.
pub struct Handback {
    io: Arc<ReplicatedChunks>,
    interval: Duration,
    min_age: Duration,
    queue: Vec<ChunkId>,
    kept: u64,
    passes: u64,
}

impl Handback {
    /// A pass every `interval`.
    pub fn new(io: Arc<ReplicatedChunks>, interval: Duration) -> Self {
        Self {
            io,
            interval,
            min_age: MIN_AGE,
            queue: Vec::new(),
            kept: 0,
            passes: 0,
        }
    }

    /// Waits until files are `age` old instead of [`MIN_AGE`] (tests).
    pub fn with_min_age(mut self, age: Duration) -> Self {
        self.min_age = age;
        self
    }

    /// Whether the layout places `partition` on this node (`None`: no layout, decide nothing).
    fn placed_here(&self, partition: u32) -> Option<bool> {
        self.io
            .placement()
            .partitions_on(self.io.node_id())
            .map(|ps| ps.contains(&partition))
    }

    /// Checks `ids` (local chunks of partitions not placed here) and drops the copies every
    /// holder has. Returns (copies dropped, bytes dropped).
    async fn hand_back(&mut self, ids: Vec<ChunkId>) -> Result<(u64, u64), WorkerError> {
        let mut by_partition: BTreeMap<u32, Vec<ChunkId>> = BTreeMap::new();
        for id in ids {
            by_partition
                .entry(self.io.partition_of(&id))
                .or_default()
                .push(id);
        }
        let (mut dropped, mut bytes) = (0u64, 0u64);
        for (partition, ids) in by_partition {
            let holders = self.io.placement().chunk_replicas(partition);
            if holders.is_empty() || holders.iter().any(|r| r.node_id == self.io.node_id()) {
                continue;
            }
            // Held by every holder: start from all, strike what any holder lacks.
            let mut everywhere = vec![true; ids.len()];
            let mut answered = true;
            for holder in &holders {
                match self.io.held_by(holder, &ids).await {
                    Ok(present) => {
                        for (all, here) in everywhere.iter_mut().zip(present) {
                            *all &= here;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(partition, holder = %holder.node_id, error = %e,
                            "hand-back: a holder did not answer; keeping the copies");
                        answered = false;
                        break;
                    }
                }
            }
            if !answered {
                self.kept += ids.len() as u64;
                continue;
            }
            for (id, all) in ids.into_iter().zip(everywhere) {
                if !all {
                    self.kept += 1;
                    continue;
                }
                let store = self.io.local();
                let lock = store.lock(id).await;
                // Re-checked under the lock: a layout placing the partition here again, or a
                // write in flight, keeps the copy.
                if self.placed_here(partition) != Some(false) || store.is_pinned(&id) {
                    continue;
                }
                let len = store.size(&id).await?.unwrap_or(0);
                if lock.delete().await? {
                    dropped += 1;
                    bytes += len;
                    tracing::debug!(chunk = %id, partition, "handed back: every holder has it");
                }
            }
        }
        Ok((dropped, bytes))
    }
}

#[async_trait::async_trait]
impl Worker for Handback {
    fn name(&self) -> &'static str {
        "chunk-handback"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        if self.queue.is_empty() {
            let Some(placed) = self.io.placement().partitions_on(self.io.node_id()) else {
                return Ok(Step::Idle);
            };
            let old = self.io.local().list_older_than(self.min_age).await?;
            self.queue = old
                .into_iter()
                .filter(|id| !placed.contains(&self.io.partition_of(id)))
                .collect();
            self.passes += 1;
            self.kept = 0;
            if self.queue.is_empty() {
                progress.queue(0);
                return Ok(Step::Idle);
            }
        }
        let take = self.queue.len().min(BATCH);
        let batch: Vec<ChunkId> = self.queue.drain(..take).collect();
        let result = self.hand_back(batch).await;
        if result.is_err() {
            self.queue.clear();
        }
        let (dropped, bytes) = result?;
        progress.items(dropped);
        progress.bytes(bytes);
        progress.queue(self.queue.len() as u64);
        if !self.queue.is_empty() {
            return Ok(Step::Busy);
        }
        progress.note(format!(
            "pass {}: {} copies of partitions placed elsewhere kept (a holder lacks them or did not answer)",
            self.passes, self.kept
        ));
        Ok(Step::Idle)
    }
}
