//! The scrub worker: re-reads every chunk file on this node's disk at a throttled rate,
//! verifies its BLAKE3 hash, quarantines a bad copy and restores it from a good replica —
//! catching bit rot that no read would find until it is too late to repair.
//!
//! A pass walks the store in ascending id order (a cursor: the last id checked), one chunk
//! file per step, listing `LIST_BATCH` files at a time. Ids are uniform hashes, so the
//! cursor's position in the id space is the pass's progress. Each step waits out the
//! [`RateLimit`] (bytes per second, changeable at run time; 0 means unlimited) for the bytes it
//! read. A pass starts `every` after the previous one ended. The cursor, the pass counts and
//! the end of the last full pass are saved in `<chunk root>/scrub-state.json` (at most every
//! `SAVE_EVERY` and at each pass's start and end), so a restart resumes the pass where it was
//! instead of starting over — on a large disk a pass takes days.
//!
//! Races, decided by the store and the replication path, not by timing:
//! - a file GC deletes mid-pass reads as absent and is skipped;
//! - a bad copy is moved to quarantine only if the file is still the one that was hashed
//!   ([`ChunkStore::verify`]): a fresh copy a writer renamed into place meanwhile stays;
//! - the restored copy is written through [`ChunkStore::put`] from bytes re-hashed on
//!   arrival ([`ReplicatedChunks::restore_local`]); reads in between fall through to the
//!   other replicas as for any missing copy.
//!
//! A corrupt copy that cannot be restored (no replica has a good one) stays quarantined and
//! is counted as unrepaired; chunk sync keeps trying for as long as the chunk is referenced.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_worker::{Progress, RateLimit, Step, Worker, WorkerError};
use serde::{Deserialize, Serialize};

use crate::replication::Restored;
use crate::{ChunkError, ChunkId, ReplicatedChunks, ScrubMetrics, Verified};

/// Chunk files listed from the store at a time.
const LIST_BATCH: usize = 256;
/// Longest time the saved cursor lags behind the real one.
const SAVE_EVERY: Duration = Duration::from_secs(10);
/// Wait before retrying after a failed step in the middle of a pass.
const RETRY: Duration = Duration::from_secs(10);
/// The state file, in the chunk store's root (store walks only look at shard directories).
const STATE_FILE: &str = "scrub-state.json";
/// Version of the state file's format.
const STATE_VERSION: u32 = 1;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Position of `id` in the id space, from 0 to 1 (ids are uniform hashes, so this is how far
/// an ascending pass has got).
fn position(id: &ChunkId) -> f64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b) as f64 / u64::MAX as f64
}

/// `ms` as an RFC 3339 UTC time, for notes.
fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What one pass found so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PassCounts {
    /// Chunk files verified good.
    pub checked: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Copies found corrupt and quarantined.
    pub corrupt: u64,
    /// Of those, restored from another replica.
    pub repaired: u64,
    /// Of those, not restored (no good copy anywhere; chunk sync keeps trying).
    pub unrepaired: u64,
}

/// The scrubber's saved state (`scrub-state.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrubState {
    pub version: u32,
    /// Unix ms the pass in progress started; `None` between passes.
    pub pass_started_ms: Option<i64>,
    /// Hex id of the last chunk checked in the pass in progress (`None`: from the start).
    pub cursor: Option<String>,
    /// Counts of the pass in progress.
    pub pass: PassCounts,
    /// Unix ms the last complete pass ended.
    pub last_full_pass_ms: Option<i64>,
    /// Counts of the last complete pass.
    pub last_pass: PassCounts,
    /// Complete passes on this store.
    pub passes: u64,
}

impl ScrubState {
    /// Reads the saved state; a missing, unreadable or newer-format file starts afresh (the
    /// state only saves rework: the worst case is a pass checked again from the start).
    fn load(path: &std::path::Path) -> Self {
        let fresh = Self {
            version: STATE_VERSION,
            ..Self::default()
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return fresh,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "scrub state unreadable; starting a new pass");
                return fresh;
            }
        };
        match serde_json::from_slice::<Self>(&bytes) {
            Ok(s) if s.version == STATE_VERSION => s,
            Ok(s) => {
                tracing::warn!(path = %path.display(), version = s.version, "scrub state of an unknown version; starting a new pass");
                fresh
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "scrub state does not parse; starting a new pass");
                fresh
            }
        }
    }

    /// Writes the state durably (temp file, fsync, rename).
    fn save(&self, path: &std::path::Path) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut f, &bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    fn cursor(&self) -> Option<ChunkId> {
        self.cursor.as_deref().and_then(ChunkId::from_hex)
    }
}

/// The scrub worker (`scrub`): items = chunk files verified, bytes = their bytes; its note
/// says how far the pass is, what it found and when the last full pass ended.
pub struct Scrub {
    io: Arc<ReplicatedChunks>,
    rate: RateLimit,
    every: Duration,
    state: ScrubState,
    state_path: PathBuf,
    /// Listed and not yet checked, in ascending id order.
    queue: VecDeque<(ChunkId, u64)>,
    saved_at: Instant,
    metrics: ScrubMetrics,
}

impl Scrub {
    /// Scrubs `io`'s local store at `rate` (shared: may be changed while the worker runs), a
    /// new pass `every` after the previous one ended. Reads the saved state (blocking, one
    /// small file).
    pub fn new(io: Arc<ReplicatedChunks>, rate: RateLimit, every: Duration) -> Self {
        let state_path = io.local().root().join(STATE_FILE);
        let state = ScrubState::load(&state_path);
        let metrics = ScrubMetrics::default();
        if let Some(ms) = state.last_full_pass_ms {
            metrics.set_last_full_pass_ms(ms);
        }
        if let Some(id) = state.cursor() {
            metrics.set_progress(position(&id));
        }
        Self {
            io,
            rate,
            every,
            state,
            state_path,
            queue: VecDeque::new(),
            saved_at: Instant::now(),
            metrics,
        }
    }

    /// The worker's metrics (register them once with [`ScrubMetrics::register`]).
    pub fn metrics(&self) -> ScrubMetrics {
        self.metrics.clone()
    }

    /// The state as it stands (saved or about to be).
    pub fn state(&self) -> &ScrubState {
        &self.state
    }

    fn save(&mut self) -> Result<(), ChunkError> {
        self.state.save(&self.state_path)?;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Time left before the next pass is due, if it is not due yet.
    fn until_next_pass(&self, now_ms: i64) -> Option<Duration> {
        let last = self.state.last_full_pass_ms?;
        let due = last.saturating_add(self.every.as_millis().min(i64::MAX as u128) as i64);
        (due > now_ms).then(|| Duration::from_millis((due - now_ms) as u64))
    }

    fn note(&self) -> String {
        let last = match self.state.last_full_pass_ms {
            Some(ms) => format!(
                "last full pass ended {} ({} corrupt, {} repaired)",
                rfc3339(ms),
                self.state.last_pass.corrupt,
                self.state.last_pass.repaired
            ),
            None => "no full pass yet".to_string(),
        };
        match self.state.pass_started_ms {
            Some(_) => {
                let p = &self.state.pass;
                let pct = self.state.cursor().map_or(0.0, |id| position(&id) * 100.0);
                format!(
                    "pass {} at {pct:.0}%: {} chunks ({} bytes) verified, {} corrupt, {} repaired, {} not restored; {last}",
                    self.state.passes + 1,
                    p.checked,
                    p.bytes,
                    p.corrupt,
                    p.repaired,
                    p.unrepaired
                )
            }
            None => format!("{} full passes; {last}", self.state.passes),
        }
    }

    /// Verifies one chunk file and restores it if it was bad. Returns the bytes read.
    async fn check(
        &mut self,
        id: ChunkId,
        len: u64,
        progress: &Progress,
    ) -> Result<u64, ChunkError> {
        let store = self.io.local();
        match store.verify(&id).await {
            Ok(Verified::Good(n)) => {
                self.metrics.checked(n);
                self.state.pass.checked += 1;
                self.state.pass.bytes += n;
                progress.items(1);
                progress.bytes(n);
                Ok(n)
            }
            // Deleted by GC, or replaced by a writer meanwhile: nothing of ours to check.
            Ok(Verified::Replaced) | Err(ChunkError::NotFound(_)) => Ok(0),
            Err(ChunkError::Corrupt { actual, .. }) => {
                self.metrics.corrupt();
                self.state.pass.corrupt += 1;
                match self.io.restore_local(id).await {
                    Ok(Restored::From(node)) => {
                        self.metrics.repaired();
                        self.state.pass.repaired += 1;
                        tracing::info!(chunk = %id, %actual, from = %node, "scrub restored a corrupt chunk copy");
                    }
                    Ok(Restored::NotPlacedHere) => {
                        tracing::info!(chunk = %id, %actual, "scrub quarantined a corrupt leftover copy of a chunk no longer placed here");
                    }
                    Err(e) => {
                        self.metrics.unrepaired();
                        self.state.pass.unrepaired += 1;
                        tracing::warn!(chunk = %id, %actual, error = %e, "scrub could not restore a corrupt chunk copy; it stays quarantined");
                    }
                }
                Ok(len)
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Worker for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    /// Mid-pass (after a failed step): a short retry. Between passes: until the next is due.
    fn interval(&self) -> Duration {
        if self.state.pass_started_ms.is_some() {
            return RETRY.min(self.every);
        }
        self.until_next_pass(now_ms())
            .unwrap_or(Duration::ZERO)
            .clamp(
                Duration::from_millis(100),
                self.every.max(Duration::from_millis(100)),
            )
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        if self.state.pass_started_ms.is_none() {
            if self.until_next_pass(now_ms()).is_some() {
                progress.note(self.note());
                return Ok(Step::Idle);
            }
            self.state.pass_started_ms = Some(now_ms());
            self.state.cursor = None;
            self.state.pass = PassCounts::default();
            self.queue.clear();
            self.metrics.set_progress(0.0);
            self.save()?;
        }
        if self.queue.is_empty() {
            let batch = self
                .io
                .local()
                .list_after(self.state.cursor(), LIST_BATCH)
                .await?;
            if batch.is_empty() {
                let now = now_ms();
                self.state.last_full_pass_ms = Some(now);
                self.state.last_pass = std::mem::take(&mut self.state.pass);
                self.state.passes += 1;
                self.state.pass_started_ms = None;
                self.state.cursor = None;
                self.metrics.set_last_full_pass_ms(now);
                self.metrics.set_progress(1.0);
                progress.queue(0);
                progress.note(self.note());
                self.save()?;
                return Ok(Step::Idle);
            }
            self.queue = batch.into();
        }
        let Some((id, len)) = self.queue.pop_front() else {
            return Ok(Step::Busy);
        };
        let started = Instant::now();
        let checked = self.check(id, len, progress).await;
        // The cursor moves on even when the check failed: one unreadable file must not stall
        // the pass (the runner records the error).
        self.state.cursor = Some(id.to_hex());
        self.metrics.set_progress(position(&id));
        progress.queue(self.queue.len() as u64);
        progress.note(self.note());
        if self.saved_at.elapsed() >= SAVE_EVERY {
            self.save()?;
        }
        let read = checked?;
        Ok(match self.rate.delay_after(read, started) {
            Some(wait) => Step::Throttled(wait),
            None => Step::Busy,
        })
    }
}

#[cfg(test)]
mod tests;
