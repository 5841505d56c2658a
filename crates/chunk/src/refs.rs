//! The ref-sync worker: delivers chunk-reference updates from each partition's outbox to the
//! chunk's partition (set semantics: redelivery after a crash is harmless), then acknowledges
//! them. Applying a PUT/DELETE/part/complete/abort writes the outbox entries in the same
//! transaction as the object change; this worker is the only reader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::placement::partition_group;
use cairn_meta::{Command, RefOp};
use cairn_raft::Registry;
use cairn_worker::{Progress, Step, Worker, WorkerError};

use crate::ChunkError;

/// Outbox entries read (and delivered) per batch.
const BATCH: usize = 1024;

/// One delivery pass over every partition this node leads. Returns the number of reference
/// updates delivered.
pub async fn deliver_refs(reg: &Registry) -> Result<u64, ChunkError> {
    let partitions = reg.meta().partitions();
    let mut delivered = 0;
    for group in reg.groups() {
        if !reg.is_leader(group) {
            continue;
        }
        loop {
            let pending = reg.meta().outbox(group, BATCH)?;
            let Some(&(up_to, _)) = pending.last() else {
                break;
            };
            // Keep outbox order per target partition.
            let mut by_target: BTreeMap<u64, Vec<RefOp>> = BTreeMap::new();
            for (_, op) in pending.iter() {
                let target = partition_group(op.chunk().partition(partitions));
                by_target.entry(target).or_default().push(op.clone());
            }
            for (target, ops) in by_target {
                let n = ops.len() as u64;
                reg.propose(target, Command::RefOps { ops }).await?;
                delivered += n;
            }
            reg.propose(group, Command::OutboxAck { up_to }).await?;
            if pending.len() < BATCH {
                break;
            }
        }
    }
    Ok(delivered)
}

/// The ref-sync worker (`ref-sync`): one delivery pass per step; items = references delivered.
pub struct RefSync {
    registry: Arc<Registry>,
    interval: Duration,
}

impl RefSync {
    /// Delivers every `interval`.
    pub fn new(registry: Arc<Registry>, interval: Duration) -> Self {
        Self { registry, interval }
    }
}

#[async_trait::async_trait]
impl Worker for RefSync {
    fn name(&self) -> &'static str {
        "ref-sync"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        let n = deliver_refs(&self.registry).await?;
        progress.items(n);
        Ok(Step::Idle)
    }
}
