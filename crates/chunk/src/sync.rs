//! The chunk-sync worker (anti-entropy for chunks): every chunk referenced in a partition this
//! node replicates must be on this node's disk. Missing ones (a new replica after a layout
//! change, a node that was down while writes landed at QUORUM, a quarantined copy) are fetched
//! from the other replicas through [`ReplicatedChunks`]'s read path, which restores the local
//! copy.
//!
//! A pass does not look at every chunk. It compares hashed ranges ([`crate::ranges`]):
//!
//! 1. The store's held index is brought up to date ([`crate::ChunkStore::refresh_held`]: one
//!    `stat` per shard directory, and a names-only listing of the ranges that changed behind
//!    its back).
//! 2. Per partition placed here, the digests of the ids the partition references (the "should
//!    hold" set, the same on every replica: an ordered scan of the partition's reference
//!    table, no chunk file touched) are compared with the held digests. Equal ranges are done.
//! 3. The partition's held digests are also compared with one peer replica's (`RangeDigests`
//!    RPC, a different peer each pass). A range where the two replicas hold different sets is
//!    walked too, which catches a held index that drifted from the disk and shows replicas
//!    diverging in the metrics.
//! 4. A range that differs is walked: its referenced ids, `per_step` per step, are checked
//!    against the disk and the missing ones fetched.
//!
//! A steady-state pass where nothing is missing therefore reads the reference table and the
//! in-memory digests only. The chunks still missing after a pass are the
//! `cairn_chunk_missing_local` gauge. Fetching is throttled by a [`RateLimit`] (bytes per
//! second, changeable at run time: `REPAIR_RATE_MBPS` / `repair.rate_mbps`; unlimited by
//! default): a step that fetched more than its budget allows is followed by a throttled wait.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_meta::model::NodeHealth;
use cairn_meta::placement::partition_group;
use cairn_raft::Registry;
use cairn_worker::{Progress, RateLimit, Step, Worker, WorkerError};

use crate::ranges::{range_of, Digest, RangeDigests, RANGES};
use crate::{ChunkId, ChunkIo, ReplicatedChunks, SyncMetrics};

/// Referenced ids read per page while computing a partition's digests.
const DIGEST_PAGE: usize = 4096;

/// One unit of a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Task {
    /// Compare partition `p`'s referenced, held and a peer's held digests.
    Compare(u32),
    /// Check the referenced ids of `range` in `partition` against the disk, resuming after
    /// `after` (`None`: from the range's start).
    Walk {
        partition: u32,
        range: u8,
        after: Option<ChunkId>,
    },
}

/// The chunk-sync worker (`chunk-sync`): items = chunks restored, bytes = their bytes,
/// queue = tasks (partitions to compare, ranges to walk) left in this pass.
pub struct ChunkSync {
    io: Arc<ReplicatedChunks>,
    registry: Arc<Registry>,
    per_step: usize,
    interval: Duration,
    rate: RateLimit,
    metrics: SyncMetrics,
    pass: VecDeque<Task>,
    /// Chunks found missing and not restored so far in this pass.
    missing: u64,
    /// Ranges compared / differing in this pass (for the status note).
    compared: u64,
    differing: u64,
    passes: u64,
}

impl ChunkSync {
    /// Checks `per_step` chunks per step of a range walk; a new pass every `interval`.
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
            metrics: SyncMetrics::default(),
            pass: VecDeque::new(),
            missing: 0,
            compared: 0,
            differing: 0,
            passes: 0,
        }
    }

    /// Throttles fetching to `rate` (shared: the caller may change it while the worker runs).
    pub fn with_rate(mut self, rate: RateLimit) -> Self {
        self.rate = rate;
        self
    }

    /// The worker's metrics (register them once with [`SyncMetrics::register`]).
    pub fn metrics(&self) -> SyncMetrics {
        self.metrics.clone()
    }

    /// The digests of the ids partition `p` references, from an ordered scan of its reference
    /// table.
    fn referenced_digests(&self, p: u32) -> Result<RangeDigests, WorkerError> {
        let group = partition_group(p);
        let mut d = RangeDigests::default();
        let mut after: Option<ChunkId> = None;
        loop {
            let ids = self
                .registry
                .meta()
                .referenced_chunks(group, after.as_ref(), DIGEST_PAGE)?;
            for id in &ids {
                d.add(id);
            }
            if ids.len() < DIGEST_PAGE {
                return Ok(d);
            }
            after = ids.last().copied();
        }
    }

    /// Compares partition `p`'s digests; queues walks of the ranges that differ (in front, so
    /// a partition is finished before the next one is compared).
    async fn compare(&mut self, p: u32) -> Result<(), WorkerError> {
        let referenced = self.referenced_digests(p)?;
        let held = self.io.local().held_digests(self.io.partitions(), p);
        let local = differing(&referenced, &held);
        self.metrics.compared(RANGES as u64, local.len() as u64);
        self.compared += RANGES as u64;
        self.differing += local.len() as u64;

        let mut walk = local.clone();
        if let Some(peer) = self.peer_for(p) {
            match self.io.peer_range_digests(&peer, p).await {
                Ok(theirs) => {
                    let (known, between) = peer_differing(&held, &theirs);
                    self.metrics
                        .peer_compared(known as u64, between.len() as u64);
                    walk.extend(between.into_iter().filter(|r| !local.contains(r)));
                }
                // The local comparison stands on its own; the peer is asked again next pass.
                Err(e) => {
                    tracing::debug!(partition = p, peer = %peer.node_id, error = %e, "chunk sync could not compare range digests with a peer")
                }
            }
        }
        walk.sort_unstable();
        for range in walk.into_iter().rev() {
            self.pass.push_front(Task::Walk {
                partition: p,
                range,
                after: None,
            });
        }
        Ok(())
    }

    /// The peer replica of `p` to compare with this pass: the healthy ones in turn.
    fn peer_for(&self, p: u32) -> Option<crate::Replica> {
        let peers: Vec<_> = self
            .io
            .placement()
            .chunk_replicas(p)
            .into_iter()
            .filter(|r| r.node_id != self.io.node_id() && r.health == NodeHealth::Up)
            .collect();
        if peers.is_empty() {
            return None;
        }
        let i = (self.passes as usize).wrapping_add(p as usize) % peers.len();
        peers.into_iter().nth(i)
    }

    /// Checks up to `per_step` referenced ids of one range against the disk and fetches the
    /// missing ones; returns the bytes fetched.
    async fn walk(
        &mut self,
        partition: u32,
        range: u8,
        after: Option<ChunkId>,
        progress: &Progress,
    ) -> Result<u64, WorkerError> {
        // Resume after `after`, or start right after the last possible id of the range before.
        let start = after.or_else(|| range.checked_sub(1).map(last_id));
        let ids = self.registry.meta().referenced_chunks(
            partition_group(partition),
            start.as_ref(),
            self.per_step,
        )?;
        let full_page = ids.len() == self.per_step;
        let ids: Vec<ChunkId> = ids
            .into_iter()
            .take_while(|id| range_of(id) == range)
            .collect();
        // Where the next step of this range resumes (`None`: the range is done).
        let mut resume = (full_page && ids.len() == self.per_step)
            .then(|| ids.last().copied())
            .flatten();
        // A full disk takes no copies: count what is missing, fetch it once space is back.
        let full = self.io.local().is_full();
        let started = Instant::now();
        let mut fetched = 0u64;
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
                    // Over the repair rate's budget: stop here and let the step's throttled
                    // wait pay for it, so a page of chunks is not fetched in one burst.
                    if self.rate.delay_after(fetched, started).is_some() {
                        resume = Some(id);
                        break;
                    }
                }
                Err(e) => {
                    self.missing += 1;
                    tracing::warn!(chunk = %id, error = %e, "chunk sync could not fetch a missing chunk");
                }
            }
        }
        if let Some(after) = resume {
            // More in this range: continue after the last id looked at, before anything else.
            self.pass.push_front(Task::Walk {
                partition,
                range,
                after: Some(after),
            });
        }
        Ok(fetched)
    }
}

/// The largest id of range `r`.
fn last_id(r: u8) -> ChunkId {
    let mut id = [0xffu8; 32];
    id[0] = r;
    ChunkId(id)
}

/// Ranges where the referenced digest differs from the held one (or the held one is unknown).
fn differing(referenced: &RangeDigests, held: &[Option<Digest>]) -> Vec<u8> {
    (0..=u8::MAX)
        .filter(|&r| held.get(usize::from(r)).copied().flatten() != Some(referenced.get(r)))
        .collect()
}

/// Between this node's and a peer's held digests: the number of ranges both know, and those
/// of them that differ.
fn peer_differing(ours: &[Option<Digest>], theirs: &[Option<Digest>]) -> (usize, Vec<u8>) {
    let mut known = 0;
    let mut out = Vec::new();
    for r in 0..=u8::MAX {
        let i = usize::from(r);
        if let (Some(Some(a)), Some(Some(b))) = (ours.get(i), theirs.get(i)) {
            known += 1;
            if a != b {
                out.push(r);
            }
        }
    }
    (known, out)
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
            let (_, relisted) = self.io.local().refresh_held(self.io.partitions()).await?;
            self.metrics.relisted(relisted as u64);
            self.pass = partitions.into_iter().map(Task::Compare).collect();
            (self.missing, self.compared, self.differing) = (0, 0, 0);
        }
        let Some(task) = self.pass.pop_front() else {
            self.io.local().metrics().set_missing_local(0);
            return Ok(Step::Idle);
        };
        let started = Instant::now();
        let fetched = match task {
            Task::Compare(p) => {
                self.compare(p).await?;
                0
            }
            Task::Walk {
                partition,
                range,
                after,
            } => self.walk(partition, range, after, progress).await?,
        };
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
            "pass {}: {} ranges compared, {} differing; {} referenced chunks missing here and not restored",
            self.passes, self.compared, self.differing, self.missing
        ));
        Ok(Step::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::first_id;

    fn id(first: u8, fill: u8) -> ChunkId {
        let mut b = [fill; 32];
        b[0] = first;
        ChunkId(b)
    }

    #[test]
    fn equal_digests_leave_nothing_to_walk() {
        let ids = [id(1, 1), id(1, 2), id(200, 3)];
        let referenced = RangeDigests::of(&ids);
        let held: Vec<_> = referenced.0.iter().copied().map(Some).collect();
        assert!(differing(&referenced, &held).is_empty());
    }

    #[test]
    fn a_missing_chunk_or_an_unknown_range_is_walked() {
        let referenced = RangeDigests::of(&[id(1, 1), id(7, 2)]);
        let mut held: Vec<_> = RangeDigests::of(&[id(1, 1)])
            .0
            .into_iter()
            .map(Some)
            .collect();
        assert_eq!(differing(&referenced, &held), vec![7]);
        held[9] = None;
        assert_eq!(differing(&referenced, &held), vec![7, 9]);
    }

    #[test]
    fn peers_are_compared_on_ranges_both_know() {
        let ours: Vec<_> = RangeDigests::of(&[id(3, 1)])
            .0
            .into_iter()
            .map(Some)
            .collect();
        let mut theirs: Vec<_> = RangeDigests::of(&[id(3, 1), id(4, 1)])
            .0
            .into_iter()
            .map(Some)
            .collect();
        theirs[5] = None;
        let (known, between) = peer_differing(&ours, &theirs);
        assert_eq!(known, RANGES - 1);
        assert_eq!(between, vec![4]);
    }

    #[test]
    fn a_range_walk_starts_right_after_the_previous_range() {
        // `referenced_chunks` starts strictly after its cursor: after the previous range's
        // largest id comes the range's smallest.
        assert!(last_id(4) < first_id(5));
        assert_eq!(range_of(&last_id(4)), 4);
        assert_eq!(range_of(&first_id(5)), 5);
    }
}
