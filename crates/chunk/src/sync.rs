//! The chunk-sync worker (anti-entropy for chunks): every chunk referenced in a partition this
//! node replicates must be on this node's disk. Missing ones (a new replica after a layout
//! change, a node that was down while writes landed at QUORUM, a quarantined copy) are fetched
//! from the other replicas through [`ReplicatedChunks`]'s read path, which restores the local
//! copy.
//!
//! A pass walks every partition the layout places here, `per_step` referenced chunks per step
//! (a cursor per partition), and ends idle. The chunks still missing after a pass are the
//! `cairn_chunk_missing_local` gauge. Fetching is throttled by a [`RateLimit`] (bytes per
//! second, changeable at run time; unlimited by default): a step that fetched more than its
//! budget allows is followed by a throttled wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_meta::placement::partition_group;
use cairn_raft::Registry;
use cairn_worker::{Progress, RateLimit, Step, Worker, WorkerError};

use crate::{ChunkId, ChunkIo, ReplicatedChunks};

/// The chunk-sync worker (`chunk-sync`): items = chunks restored, bytes = their bytes,
/// queue = partitions left in this pass.
pub struct ChunkSync {
    io: Arc<ReplicatedChunks>,
    registry: Arc<Registry>,
    per_step: usize,
    interval: Duration,
    rate: RateLimit,
    /// (partition, resume after this chunk) still to visit in this pass.
    pass: VecDeque<(u32, Option<ChunkId>)>,
    /// Chunks found missing and not restored so far in this pass.
    missing: u64,
    passes: u64,
}

impl ChunkSync {
    /// Checks `per_step` chunks per step; a new pass every `interval`.
    pub fn new(
        io: Arc<ReplicatedChunks>,
        registry: Arc<Registry>,
        per_step: usize,
        interval: Duration,
    ) -> Self {
        Self {
            io,
            registry,
            per_step: per_step.max(1),
            interval,
            rate: RateLimit::default(),
            pass: VecDeque::new(),
            missing: 0,
            passes: 0,
        }
    }
}

impl ChunkSync {
    /// Throttles fetching to `rate` (shared: the caller may change it while the worker runs).
    pub fn with_rate(mut self, rate: RateLimit) -> Self {
        self.rate = rate;
        self
    }
}

#[async_trait::async_trait]
impl Worker for ChunkSync {
    fn name(&self) -> &'static str {
        "chunk-sync"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        if self.pass.is_empty() {
            let Some(partitions) = self.io.placement().partitions_on(self.io.node_id()) else {
                // No layout yet: nothing is placed here.
                return Ok(Step::Idle);
            };
            self.pass = partitions.into_iter().map(|p| (p, None)).collect();
            self.missing = 0;
        }
        let Some((p, cursor)) = self.pass.pop_front() else {
            self.io.local().metrics().set_missing_local(0);
            return Ok(Step::Idle);
        };
        let group = partition_group(p);
        let ids = self
            .registry
            .meta()
            .referenced_chunks(group, cursor.as_ref(), self.per_step)?;
        let started = Instant::now();
        let mut fetched = 0u64;
        if ids.len() == self.per_step {
            // More in this partition: continue after the last one, before the next partition.
            self.pass.push_front((p, ids.last().copied()));
        }
        // A full disk takes no copies: count what is missing, fetch it once space is back.
        let full = self.io.local().is_full();
        for id in ids {
            if self.io.local().has(&id).await? {
                continue;
            }
            if full {
                self.missing += 1;
                continue;
            }
            // `get` restores the local copy of a chunk this node replicates.
            match ChunkIo::get(self.io.as_ref(), id).await {
                Ok(b) => {
                    progress.items(1);
                    progress.bytes(b.len() as u64);
                    fetched += b.len() as u64;
                }
                Err(e) => {
                    self.missing += 1;
                    tracing::warn!(chunk = %id, error = %e, "chunk sync could not fetch a missing chunk");
                }
            }
        }
        progress.queue(self.pass.len() as u64);
        if !self.pass.is_empty() {
            return Ok(match self.rate.delay_after(fetched, started) {
                Some(wait) => Step::Throttled(wait),
                None => Step::Busy,
            });
        }
        self.passes += 1;
        self.io.local().metrics().set_missing_local(self.missing);
        progress.note(format!(
            "pass {}: {} referenced chunks missing here and not restored",
            self.passes, self.missing
        ));
        Ok(Step::Idle)
    }
}
