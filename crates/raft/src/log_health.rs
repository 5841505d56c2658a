//! How the node's Raft log writer is doing, and the free-space floor that keeps it healthy.
//!
//! redb latches the first I/O error of a write (`PreviousIo` on every later operation until the
//! database is reopened), and openraft stops a group for good when its log write fails. A full
//! disk must therefore never reach redb: before each batch the writer checks the free space of
//! the log's file system, and below the floor it *pauses* — the batch waits, nothing fails, and
//! it is written once space is back. While paused, the registry sends no heartbeats for the
//! groups this node leads, so the other replicas elect leaders that can still write (a paused
//! leader would otherwise hold its groups without committing anything). A write that fails
//! anyway is recorded here with its error. Both show in `/status` (not-ready reasons) and in
//! `cairn_raft_log_*` metrics; a pause clears by itself when space returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Total and available bytes of a file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    /// Bytes an unprivileged writer may still use (`f_bavail`).
    pub available: u64,
}

/// The space of the file system holding `path` (`statvfs`).
pub fn fs_space(path: &Path) -> std::io::Result<FsSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FsSpace {
        total: (st.f_blocks as u64).saturating_mul(frsize),
        available: (st.f_bavail as u64).saturating_mul(frsize),
    })
}

/// Whether an I/O error means "no space left" (a full disk or an exhausted quota).
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

/// What is wrong with the log writer, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTrouble {
    /// Writes wait: the file system has `free` bytes, under the `floor`.
    Paused {
        since: SystemTime,
        free: u64,
        floor: u64,
    },
    /// The last batch failed with `error` (cleared by the next batch that succeeds).
    Failed { since: SystemTime, error: String },
}

impl std::fmt::Display for LogTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTrouble::Paused { free, floor, .. } => write!(
                f,
                "raft log writes paused: {free} bytes free, under the {floor}-byte floor \
                 (derived from DISK_RESERVE_BYTES); they resume when space is freed"
            ),
            LogTrouble::Failed { error, .. } => {
                write!(f, "raft log writes failing: {error}")
            }
        }
    }
}

/// Shared between the log writer thread and the registry. Cheap to clone.
#[derive(Clone)]
pub struct LogHealth {
    inner: Arc<Inner>,
}

struct Inner {
    /// Directory on the log's file system.
    dir: PathBuf,
    /// Least free bytes the writer leaves on the file system (0: no check).
    floor: AtomicU64,
    /// Set by `LogEngine::stop`: a paused writer gives up instead of waiting for space.
    stopping: AtomicBool,
    trouble: Mutex<Option<LogTrouble>>,
    write_errors: Counter,
    pauses: Counter,
    paused: Gauge,
}

impl LogHealth {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                floor: AtomicU64::new(0),
                stopping: AtomicBool::new(false),
                trouble: Mutex::new(None),
                write_errors: Counter::default(),
                pauses: Counter::default(),
                paused: Gauge::default(),
            }),
        }
    }

    /// Sets the free-space floor (bytes; 0 turns the check off).
    pub fn set_floor(&self, bytes: u64) {
        self.inner.floor.store(bytes, Ordering::Relaxed);
    }

    /// The free-space floor.
    pub fn floor(&self) -> u64 {
        self.inner.floor.load(Ordering::Relaxed)
    }

    /// What is wrong with the log writer now; `None` when it writes normally.
    pub fn trouble(&self) -> Option<LogTrouble> {
        self.inner.trouble.lock().clone()
    }

    /// Whether the writer waits for space: this node cannot make entries durable now and
    /// should not lead groups. (A failed write is not a pause: the groups it failed have
    /// stopped, and the others are still free to try.)
    pub fn is_paused(&self) -> bool {
        matches!(*self.inner.trouble.lock(), Some(LogTrouble::Paused { .. }))
    }

    pub(crate) fn stop(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// `Some(free)` when the log's file system is under the floor. A file system that cannot
    /// be measured counts as fine: the write itself then reports the real error.
    pub(crate) fn below_floor(&self) -> Option<u64> {
        let floor = self.floor();
        if floor == 0 {
            return None;
        }
        match fs_space(&self.inner.dir) {
            Ok(s) if s.available < floor => Some(s.available),
            _ => None,
        }
    }

    /// Records that the writer waits for space (`free` bytes left).
    pub(crate) fn paused(&self, free: u64) {
        let floor = self.floor();
        let mut t = self.inner.trouble.lock();
        let since = match &*t {
            Some(LogTrouble::Paused { since, .. }) => *since,
            _ => {
                self.inner.pauses.inc();
                tracing::error!(
                    free,
                    floor,
                    "raft log writes paused: the disk is nearly full; this node stops leading \
                     its groups until space is freed"
                );
                SystemTime::now()
            }
        };
        self.inner.paused.set(1);
        *t = Some(LogTrouble::Paused { since, free, floor });
    }

    /// Records a failed batch.
    pub(crate) fn failed(&self, error: String) {
        self.inner.write_errors.inc();
        self.inner.paused.set(0);
        let mut t = self.inner.trouble.lock();
        let since = match &*t {
            Some(LogTrouble::Failed { since, .. }) => *since,
            _ => SystemTime::now(),
        };
        *t = Some(LogTrouble::Failed { since, error });
    }

    /// Records a batch written: any trouble is over.
    pub(crate) fn written(&self) {
        let mut t = self.inner.trouble.lock();
        if let Some(was) = t.take() {
            tracing::info!(was = %was, "raft log writes are healthy again");
        }
        self.inner.paused.set(0);
    }

    /// Registers `raft_log_write_errors_total`, `raft_log_pauses_total` and
    /// `raft_log_paused` in `registry` (the node's `cairn`-prefixed one).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("raft");
        r.register(
            "log_write_errors",
            "Raft log batches that failed to be written on this node",
            self.inner.write_errors.clone(),
        );
        r.register(
            "log_pauses",
            "Times the Raft log writer paused because the disk was under its free-space floor",
            self.inner.pauses.clone(),
        );
        r.register(
            "log_paused",
            "1 while the Raft log writer waits for free disk space",
            self.inner.paused.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_of_the_temp_dir() {
        let s = fs_space(&std::env::temp_dir()).expect("statvfs");
        assert!(s.total > 0 && s.available <= s.total);
        assert!(fs_space(Path::new("/definitely/not/here")).is_err());
    }

    #[test]
    fn no_space_errors_are_recognised() {
        assert!(is_no_space(&std::io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
        assert!(is_no_space(&std::io::Error::from_raw_os_error(
            libc::EDQUOT
        )));
        assert!(!is_no_space(&std::io::Error::from_raw_os_error(libc::EIO)));
    }

    #[test]
    fn trouble_is_recorded_and_cleared() {
        let h = LogHealth::new(std::env::temp_dir());
        assert!(h.below_floor().is_none(), "no floor: never below");
        h.set_floor(u64::MAX);
        assert!(h.below_floor().is_some(), "nothing has u64::MAX bytes free");
        h.paused(10);
        let since = match h.trouble() {
            Some(LogTrouble::Paused {
                since,
                free: 10,
                floor,
            }) => {
                assert_eq!(floor, u64::MAX);
                since
            }
            other => panic!("{other:?}"),
        };
        h.paused(5);
        assert!(
            matches!(h.trouble(), Some(LogTrouble::Paused { since: s, free: 5, .. }) if s == since)
        );
        assert_eq!(h.inner.pauses.get(), 1, "one pause, however long");
        assert!(h.is_paused());
        h.written();
        assert!(h.trouble().is_none() && !h.is_paused());
        h.failed("boom".into());
        assert!(!h.is_paused(), "a failure is not a pause");
        assert!(h.to_string_trouble().contains("boom"));
        assert_eq!(h.inner.write_errors.get(), 1);
        h.written();
        assert!(h.trouble().is_none());
    }

    impl LogHealth {
        fn to_string_trouble(&self) -> String {
            self.trouble().map(|t| t.to_string()).unwrap_or_default()
        }
    }
}
