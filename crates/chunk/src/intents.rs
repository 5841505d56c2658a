//! Upload intents: how an upload keeps GC away from its chunks on every replica, by protocol.
//!
//! Before the first byte of a chunk is sent anywhere, the uploader adds an intent owner
//! (`cairn_meta::store::intent_owner`) to the chunk's reference set, through the chunk's own
//! partition (so every replica's GC sees it with its linearizable reference check). The commit
//! is proposed as `Command::WithIntent`: its apply queues the removal of the intent after the
//! commit's own `Add`s in the outbox, so the reference set never goes empty between the upload
//! and the delivered reference. A commit the state machine refuses leaves the intents to the
//! uploader, which removes them ([`Intent::release`]); a commit whose outcome is unknown (a
//! timeout) keeps them, since it may still apply.
//!
//! Intents whose upload can no longer commit are swept by GC ([`sweep`]):
//! - an intent made by an earlier process of this node (it crashed or restarted), in every
//!   partition whether or not this node holds a replica of it (the leader is asked): the sweep
//!   first commits `FenceIntents{node, boot}` in the partition the upload would have committed
//!   in (named in the intent), after which the state machine refuses any `WithIntent` of an
//!   earlier process — so even a commit proposed just before the crash and still in flight
//!   cannot apply after the intent is gone;
//! - any intent older than [`INTENT_TTL`] (a node that crashed and never came back, or an
//!   upload stalled for a day), on the partitions this node leads: the sweep first commits
//!   `FenceIntentsBefore{node, created_ms}` in the partition the upload would commit in, after
//!   which the state machine refuses any `WithIntent` of that node made at or before that time
//!   (the time written in the intent's own name, so no clock is compared with another). An
//!   upload older than half the TTL also refuses to commit by itself ([`Intent::expired`]),
//!   which spares it a refused commit; safety does not depend on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_meta::placement::partition_group;
use cairn_meta::store::{intent_owner, parse_intent};
use cairn_meta::{Command, Query, QueryResult, RefOp};
use cairn_raft::Registry;
use parking_lot::Mutex;

use crate::{ChunkError, ChunkId};

/// Age after which GC removes an intent (its uploader crashed or lost its commit's outcome).
pub const INTENT_TTL: Duration = Duration::from_secs(24 * 3600);

/// When this process started making intents (unix ms): intents of another boot of this node
/// belong to uploads that died with their process.
static BOOT_MS: LazyLock<i64> = LazyLock::new(now_ms);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One upload's intent: the owner name and the chunks it covers so far.
pub struct Intent {
    registry: Arc<Registry>,
    owner: String,
    started: Instant,
    /// Chunks whose reference set may hold the intent (a proposal was made).
    chunks: Mutex<BTreeSet<ChunkId>>,
    /// Chunks whose reference set holds the intent (the proposal committed).
    covered: Mutex<BTreeSet<ChunkId>>,
}

impl std::fmt::Debug for Intent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intent")
            .field("owner", &self.owner.replace('\0', "/"))
            .finish_non_exhaustive()
    }
}

impl Intent {
    /// A new intent, covering nothing yet, of an upload to be committed in Raft group `group`.
    /// `token` must be unique (a fresh UUID).
    pub fn new(registry: Arc<Registry>, group: u64, token: &str) -> Self {
        let owner = intent_owner(now_ms(), registry.node_id(), *BOOT_MS, group, token);
        Self {
            registry,
            owner,
            started: Instant::now(),
            chunks: Mutex::new(BTreeSet::new()),
            covered: Mutex::new(BTreeSet::new()),
        }
    }

    /// The owner name this intent has in reference sets.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Adds this intent to `id`'s reference set (a committed Raft write in the chunk's
    /// partition). Returns once committed; only then may the chunk's bytes be sent. Covering a
    /// chunk twice costs nothing.
    pub async fn cover(&self, id: ChunkId) -> Result<(), ChunkError> {
        if self.covered.lock().contains(&id) {
            return Ok(());
        }
        // Recorded before proposing: if this future is dropped mid-proposal (the upload
        // failed), `release` still removes an intent that may have been added. A second
        // `cover` of the same chunk meanwhile proposes again (harmless: set semantics) rather
        // than return before the first proposal committed.
        self.chunks.lock().insert(id);
        let group = partition_group(id.partition(self.registry.meta().partitions()));
        let ops = vec![RefOp::Add {
            chunk: id,
            owner: self.owner.clone(),
        }];
        self.registry
            .propose(group, Command::RefOps { ops })
            .await?;
        self.covered.lock().insert(id);
        Ok(())
    }

    /// Whether the upload is too old to commit safely: past half of [`INTENT_TTL`], GC on a
    /// node whose clock runs ahead might already have removed the intent.
    pub fn expired(&self) -> bool {
        self.started.elapsed() > INTENT_TTL / 2
    }

    /// `command` (the commit of the upload) wrapped so that applying it hands the intent over
    /// to the commit's own references.
    pub fn commit_command(&self, command: Command) -> Command {
        let chunks: Vec<ChunkId> = self.chunks.lock().iter().copied().collect();
        if chunks.is_empty() {
            return command;
        }
        Command::WithIntent {
            intent: self.owner.clone(),
            chunks,
            command: Box::new(command),
        }
    }

    /// Removes the intent from every reference set it was added to: for uploads that will
    /// never commit (failed, or refused by the state machine). Never call it after a commit
    /// that may have applied. A removal that fails (the partition is out of reach) is retried
    /// by every GC pass of this process.
    pub async fn release(&self) {
        self.covered.lock().clear();
        let chunks: Vec<ChunkId> = std::mem::take(&mut *self.chunks.lock())
            .into_iter()
            .collect();
        let partitions = self.registry.meta().partitions();
        let mut by_group: BTreeMap<u64, Vec<RefOp>> = BTreeMap::new();
        for chunk in chunks {
            by_group
                .entry(partition_group(chunk.partition(partitions)))
                .or_default()
                .push(RefOp::Remove {
                    chunk,
                    owner: self.owner.clone(),
                });
        }
        for (group, ops) in by_group {
            if let Err(e) = self
                .registry
                .propose(group, Command::RefOps { ops: ops.clone() })
                .await
            {
                tracing::warn!(group, error = %e, "could not remove upload intents yet; the next GC pass retries");
                UNRELEASED.lock().push((group, ops));
            }
        }
    }
}

/// Removals of this process's intents that failed (the partition was out of reach when the
/// upload gave up): retried by every sweep until they commit, so a failed upload's intents do
/// not wait for the TTL.
static UNRELEASED: Mutex<Vec<(u64, Vec<RefOp>)>> = Mutex::new(Vec::new());

/// Retries the failed intent removals; returns how many intents were removed.
async fn retry_unreleased(reg: &Registry) -> u64 {
    let pending = std::mem::take(&mut *UNRELEASED.lock());
    let mut removed = 0;
    for (group, ops) in pending {
        let n = ops.len() as u64;
        match reg
            .propose(group, Command::RefOps { ops: ops.clone() })
            .await
        {
            Ok(_) => removed += n,
            Err(e) => {
                tracing::debug!(group, error = %e, "upload intents still not removable");
                UNRELEASED.lock().push((group, ops));
            }
        }
    }
    removed
}

/// Removes the intents no upload can commit any more (see the module comment): those of earlier
/// processes of this node, in every partition (asked of each partition's leader, after fencing
/// the partitions their uploads would have committed in), and those older than [`INTENT_TTL`],
/// in the partitions this node leads. Returns how many were removed.
pub async fn sweep(reg: &Registry) -> Result<u64, ChunkError> {
    let before = now_ms().saturating_sub(INTENT_TTL.as_millis() as i64);
    let (me, boot) = (reg.node_id(), *BOOT_MS);
    let mut removed = retry_unreleased(reg).await;
    let mut fenced: BTreeSet<u64> = BTreeSet::new();
    for group in reg.groups() {
        // Asked of the group's leader, not read locally: the intents sit in the chunk's
        // partition, which this node may hold no replica of.
        let stale = match reg
            .query(
                group,
                &Query::StaleIntents {
                    node: me,
                    boot_ms: boot,
                    max: 1024,
                },
            )
            .await?
        {
            QueryResult::RefOwners(v) => v,
            other => return Err(ChunkError::UnexpectedResult(format!("{other:?}"))),
        };
        if !stale.is_empty() {
            let mut ops = Vec::with_capacity(stale.len());
            for (chunk, name) in stale {
                let Some(owner) = parse_intent(&name) else {
                    continue;
                };
                if fenced.insert(owner.group) {
                    reg.propose(
                        owner.group,
                        Command::FenceIntents {
                            node: me,
                            boot_ms: boot,
                        },
                    )
                    .await?;
                }
                ops.push(RefOp::Remove { chunk, owner: name });
            }
            removed += ops.len() as u64;
            reg.propose(group, Command::RefOps { ops }).await?;
        }
        if !reg.is_leader(group) {
            continue;
        }
        let expired = reg.meta().expired_intents(group, before, 1024)?;
        if expired.is_empty() {
            continue;
        }
        // Fence first, in each partition those uploads would commit in: from then on none of
        // them can commit, whatever the clocks say, so removing their intents is safe.
        let mut fences: BTreeMap<(u64, u64), i64> = BTreeMap::new();
        for (_, i) in &expired {
            let at = fences.entry((i.group, i.node)).or_insert(i.created_ms);
            *at = (*at).max(i.created_ms);
        }
        for ((commit_group, node), created_ms) in fences {
            reg.propose(
                commit_group,
                Command::FenceIntentsBefore { node, created_ms },
            )
            .await?;
        }
        let ops: Vec<RefOp> = expired.into_iter().map(|(op, _)| op).collect();
        removed += ops.len() as u64;
        reg.propose(group, Command::RefOps { ops }).await?;
    }
    Ok(removed)
}
