//! Free space for chunks. A node whose chunk file system has less free space than the reserve
//! (`DISK_RESERVE_BYTES`) accepts no new chunk copies: the store refuses them with
//! [`ChunkError::DiskFull`] (peers get `RESOURCE_EXHAUSTED` and steer around it, see
//! `replication.rs`), while reads, dedup hits and deletes go on. The reserve keeps room for the
//! metadata (the Raft log pauses only under a quarter of it, see `cairn_raft::log_health`).
//!
//! [`DiskGuard`] is checked by every new chunk write (one `statvfs`); the [`DiskWatch`] worker
//! re-measures every second so the state, the `cairn_chunk_disk_*` gauges and `/status` clear
//! by themselves when space returns even if no write comes.
//!
//! The guard also records chunk I/O that fails for another reason (a dying disk, EIO): counted
//! in `cairn_chunk_disk_{read,write}_errors_total` and reported by [`DiskGuard::recent_errors`]
//! (a not-ready reason in `/status` that clears a minute after the last error). Such a failure
//! never loses data by itself: reads fall over to other replicas, a write acknowledged at
//! QUORUM has its other copies, and anti-entropy restores the missing one once the disk works.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_worker::{Progress, Step, Worker, WorkerError};

use crate::{ChunkError, ChunkMetrics, IoOp};

/// Free-space accounting of one chunk store. Cheap to clone.
#[derive(Clone)]
pub struct DiskGuard {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    reserve: AtomicU64,
    full: AtomicBool,
    /// Last measured available bytes.
    free: AtomicU64,
    metrics: ChunkMetrics,
    errors: parking_lot::Mutex<ErrorLog>,
}

/// Chunk I/O errors seen since start, and the last one.
#[derive(Default)]
struct ErrorLog {
    total: u64,
    last: Option<(Instant, IoOp, String)>,
    /// Times of the errors of the last [`ERROR_WINDOW`], oldest first (bounded).
    recent: std::collections::VecDeque<Instant>,
}

/// How long an I/O error keeps the node reported as troubled.
pub const ERROR_WINDOW: Duration = Duration::from_secs(60);
const MAX_RECENT: usize = 10_000;

/// Chunk I/O errors of the last [`ERROR_WINDOW`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskErrors {
    /// Errors in the window.
    pub recent: u64,
    /// Errors since start.
    pub total: u64,
    /// The latest: which operation and the error.
    pub last_op: IoOp,
    pub last_error: String,
}

impl std::fmt::Display for DiskErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chunk disk I/O errors: {} in the last {} s (last: {} failed: {}); reads are served \
             by other replicas and missing copies restored once the disk works",
            self.recent,
            ERROR_WINDOW.as_secs(),
            self.last_op,
            self.last_error
        )
    }
}

impl std::fmt::Debug for DiskGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskGuard")
            .field("root", &self.inner.root)
            .field("reserve", &self.reserve())
            .field("full", &self.is_full())
            .finish()
    }
}

/// What the last measurement found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskState {
    /// Available bytes on the chunk file system.
    pub free: u64,
    /// The reserve new chunks must leave free.
    pub reserve: u64,
    /// Free space is under the reserve: new chunk copies are refused.
    pub full: bool,
}

impl DiskGuard {
    /// A guard over the file system holding `root`, with no reserve (only a write that would
    /// not fit at all is refused) until [`Self::set_reserve`].
    pub(crate) fn new(root: PathBuf, metrics: ChunkMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                root,
                reserve: AtomicU64::new(0),
                full: AtomicBool::new(false),
                free: AtomicU64::new(u64::MAX),
                metrics,
                errors: Default::default(),
            }),
        }
    }

    /// Sets the bytes new chunks must leave free (`DISK_RESERVE_BYTES`) and re-measures.
    pub fn set_reserve(&self, bytes: u64) {
        self.inner.reserve.store(bytes, Ordering::Relaxed);
        self.inner.metrics.set_disk_reserve(bytes);
        let _ = self.refresh();
    }

    /// The reserve.
    pub fn reserve(&self) -> u64 {
        self.inner.reserve.load(Ordering::Relaxed)
    }

    /// Whether the last measurement found free space under the reserve.
    pub fn is_full(&self) -> bool {
        self.inner.full.load(Ordering::Relaxed)
    }

    /// The last measurement.
    pub fn state(&self) -> DiskState {
        DiskState {
            free: self.inner.free.load(Ordering::Relaxed),
            reserve: self.reserve(),
            full: self.is_full(),
        }
    }

    /// Measures the file system again and updates the state and gauges; logs the transitions.
    /// Returns the new state (an unmeasurable file system keeps the previous state).
    pub fn refresh(&self) -> Result<DiskState, ChunkError> {
        self.measure()
    }

    /// Admits a new chunk copy: `Err(DiskFull)` while free space is under the reserve. A copy
    /// admitted just above it may take the disk under by its own size (at most a chunk per
    /// concurrent write, far less than any sensible reserve); the next one is refused. One
    /// condition for refusing and for "full" keeps status and behaviour in agreement.
    pub(crate) fn admit(&self) -> Result<(), ChunkError> {
        let s = self.measure()?;
        if s.full {
            self.inner.metrics.refused_full();
            return Err(ChunkError::DiskFull {
                free: s.free,
                reserve: s.reserve,
            });
        }
        Ok(())
    }

    /// Records that a write failed for lack of space (the file system filled between the
    /// check and the write, e.g. through another writer).
    pub(crate) fn no_space(&self) -> ChunkError {
        let _ = self.refresh();
        self.set_full(true);
        self.inner.metrics.refused_full();
        ChunkError::DiskFull {
            free: self.inner.free.load(Ordering::Relaxed),
            reserve: self.reserve(),
        }
    }

    /// Records a chunk read or write that failed with an I/O error (a full disk is recorded by
    /// [`Self::no_space`] instead).
    pub(crate) fn io_error(&self, op: IoOp, error: &std::io::Error) {
        self.inner.metrics.disk_error(op);
        let now = Instant::now();
        let mut log = self.inner.errors.lock();
        let first_in_window = log
            .last
            .as_ref()
            .is_none_or(|(t, _, _)| now.duration_since(*t) > ERROR_WINDOW);
        log.total += 1;
        log.last = Some((now, op, error.to_string()));
        if log.recent.len() >= MAX_RECENT {
            log.recent.pop_front();
        }
        log.recent.push_back(now);
        drop(log);
        // One warning per burst; every error is counted in the metrics.
        if first_in_window {
            tracing::warn!(root = %self.inner.root.display(), %op, %error, "chunk disk I/O error");
        }
    }

    /// Chunk I/O errors since start.
    pub fn io_errors_total(&self) -> u64 {
        self.inner.errors.lock().total
    }

    /// The chunk I/O errors of the last [`ERROR_WINDOW`], if any.
    pub fn recent_errors(&self) -> Option<DiskErrors> {
        let now = Instant::now();
        let mut log = self.inner.errors.lock();
        while log
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > ERROR_WINDOW)
        {
            log.recent.pop_front();
        }
        if log.recent.is_empty() {
            return None;
        }
        let (_, op, err) = log.last.clone()?;
        Some(DiskErrors {
            recent: log.recent.len() as u64,
            total: log.total,
            last_op: op,
            last_error: err,
        })
    }

    fn measure(&self) -> Result<DiskState, ChunkError> {
        let space = cairn_raft::fs_space(&self.inner.root)?;
        self.inner.free.store(space.available, Ordering::Relaxed);
        self.inner.metrics.set_disk_free(space.available);
        self.set_full(space.available < self.reserve());
        Ok(self.state())
    }

    fn set_full(&self, full: bool) {
        let was = self.inner.full.swap(full, Ordering::Relaxed);
        self.inner.metrics.set_disk_full(full);
        if full && !was {
            tracing::warn!(
                root = %self.inner.root.display(),
                free = self.inner.free.load(Ordering::Relaxed),
                reserve = self.reserve(),
                "chunk disk under its reserve: refusing new chunk copies (reads go on)"
            );
        } else if was && !full {
            tracing::info!(
                root = %self.inner.root.display(),
                free = self.inner.free.load(Ordering::Relaxed),
                "chunk disk above its reserve again: accepting chunks"
            );
        }
    }
}

/// The `disk` worker: re-measures the chunk file system every interval, so a full state clears
/// by itself (and shows in its note).
pub struct DiskWatch {
    guard: DiskGuard,
    interval: Duration,
}

impl DiskWatch {
    pub fn new(guard: DiskGuard, interval: Duration) -> Self {
        Self { guard, interval }
    }
}

#[async_trait::async_trait]
impl Worker for DiskWatch {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        let guard = self.guard.clone();
        let s = tokio::task::spawn_blocking(move || guard.refresh())
            .await
            .map_err(|e| ChunkError::Io(std::io::Error::other(e.to_string())))??;
        progress.items(1);
        progress.note(if s.full {
            format!(
                "{} bytes free, under the {}-byte reserve: refusing new chunks",
                s.free, s.reserve
            )
        } else {
            format!(
                "{} bytes free, reserve {}: accepting chunks",
                s.free, s.reserve
            )
        });
        Ok(Step::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_counted_and_reported_while_recent() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path().to_path_buf(), ChunkMetrics::default());
        assert_eq!(g.recent_errors(), None);
        let eio = std::io::Error::from_raw_os_error(libc::EIO);
        g.io_error(IoOp::Write, &eio);
        g.io_error(IoOp::Read, &eio);
        let e = g.recent_errors().expect("recent errors");
        assert_eq!((e.recent, e.total, e.last_op), (2, 2, IoOp::Read));
        assert!(e.to_string().contains("2 in the last 60 s"), "{e}");
        assert_eq!(g.io_errors_total(), 2);
        // Errors older than the window no longer count as recent (the total stays).
        let old = Instant::now().checked_sub(ERROR_WINDOW + Duration::from_secs(1));
        if let Some(old) = old {
            for t in g.inner.errors.lock().recent.iter_mut() {
                *t = old;
            }
            assert_eq!(g.recent_errors(), None);
            assert_eq!(g.io_errors_total(), 2);
        }
    }

    #[test]
    fn a_reserve_above_the_free_space_refuses_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path().to_path_buf(), ChunkMetrics::default());
        assert!(g.admit().is_ok());
        assert!(!g.is_full());
        g.set_reserve(u64::MAX);
        assert!(g.is_full(), "set_reserve re-measures");
        match g.admit() {
            Err(ChunkError::DiskFull { reserve, free }) => {
                assert_eq!(reserve, u64::MAX);
                assert!(free < u64::MAX);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(g.inner.metrics.disk_full(), 1);
        g.set_reserve(0);
        assert!(!g.is_full(), "clears once the reserve fits again");
        assert_eq!(g.inner.metrics.disk_full(), 0);
        assert!(g.admit().is_ok());
    }

    #[tokio::test]
    async fn the_worker_clears_the_state_without_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path().to_path_buf(), ChunkMetrics::default());
        g.set_reserve(u64::MAX);
        assert!(g.is_full());
        // Space "returns" (the reserve now fits) without set_reserve re-measuring.
        g.inner.reserve.store(0, Ordering::Relaxed);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let workers = cairn_worker::Workers::new(rx);
        workers
            .spawn(DiskWatch::new(g.clone(), Duration::from_millis(20)))
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while g.is_full() {
            assert!(std::time::Instant::now() < deadline, "never cleared");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let note = workers
            .statuses()
            .into_iter()
            .find(|w| w.name == "disk")
            .and_then(|w| w.note)
            .unwrap_or_default();
        assert!(
            note.contains("accepting chunks") || note.is_empty(),
            "{note}"
        );
    }
}
