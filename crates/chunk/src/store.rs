//! The local chunk store: content-addressed chunk files on one node's disk.
//!
//! Layout: `<root>/<aa>/<bb>/<64-hex id>`, where `aa` and `bb` are the first two bytes of the
//! hex id. Writes go to `<root>/tmp/` first and are renamed into place, so a chunk file is
//! either absent or complete. Corrupt chunks found on read are moved to `<root>/quarantine/`.
//!
//! Core invariant: once [`ChunkStore::put`] returns `Ok`, the chunk survives `kill -9` and power
//! loss (temp file fsynced, renamed, parent directory fsynced, parent directories created
//! durably).
//!
//! The store also keeps, in memory, the digests of the ids it holds per partition and hashed
//! range (`held.rs`), adjusted by its own writes and deletes, for anti-entropy.
//!
//! Writers and GC of one chunk are serialised by a per-chunk lock ([`ChunkStore::lock`]): a
//! `put` holds it while it checks, verifies and writes the file, and GC holds it from its
//! reference check to the delete ([`ChunkLock::delete`]), so a dedup write can never be
//! acknowledged over a file GC is about to remove.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::ranges::Digest;
use crate::{ChunkError, ChunkId, ChunkMetrics, DiskGuard, IoOp};

const TMP_DIR: &str = "tmp";
const QUARANTINE_DIR: &str = "quarantine";

mod held;
mod scrub;
use held::{Change, Held};
pub use scrub::Verified;

/// Handle to a chunk store rooted at one directory. Cheap to clone (shared inner state).
#[derive(Clone)]
pub struct ChunkStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    /// Pin counts of chunks used by in-flight writes.
    pins: Mutex<HashMap<ChunkId, usize>>,
    /// Per-chunk locks, held by `put` and by GC's check-and-delete; an entry lives while
    /// someone holds or waits for it.
    locks: Mutex<HashMap<ChunkId, Arc<tokio::sync::Mutex<()>>>>,
    /// `<aa>/<bb>` directories already created and fsynced into their parents by this process,
    /// so the steady-state put path does not fsync them again. At most 65536 entries.
    durable_dirs: Mutex<HashSet<[u8; 2]>>,
    metrics: ChunkMetrics,
    /// Free space against the reserve: new copies are refused under it.
    disk: DiskGuard,
    /// Digests of the held chunk ids per partition and range (anti-entropy compares them).
    held: Held,
}

impl std::fmt::Debug for ChunkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// Unique suffix for temp and quarantine file names: pid distinguishes processes sharing a
/// root, the counter distinguishes concurrent puts (even of the same id) within a process.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}.{}", std::process::id(), n)
}

/// Chunk files are readable by the node's user only, whatever the process umask.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// Fsyncs a directory so that entries created/renamed in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` if missing and makes its entry durable in `parent`.
fn create_dir_durable(parent: &Path, dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        // Another put may have just created it without having fsynced `parent` yet, so we
        // fsync the parent ourselves either way.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    sync_dir(parent)
}

/// A fault the chaos suite injects into this node's chunk I/O (armed by `CAIRN_FAILPOINTS`, see
/// docs/CHAOS.md): `sleep(ms)` is a slow disk, `return` a failing one (EIO), both on the
/// blocking I/O thread where a real disk would stall or fail. Disarmed it is one map lookup.
pub(crate) fn injected_fault(point: &str) -> io::Result<()> {
    fail::fail_point!(point, |_| Err(io::Error::from_raw_os_error(libc::EIO)));
    Ok(())
}

/// Runs blocking file I/O off the async worker threads.
async fn blocking<T, F>(f: F) -> Result<T, ChunkError>
where
    F: FnOnce() -> Result<T, ChunkError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ChunkError::Io(io::Error::other(format!(
            "chunk store blocking task failed: {e}"
        )))),
    }
}

impl Inner {
    fn shard_dirs(&self, id: &ChunkId) -> (PathBuf, PathBuf) {
        let hex = id.to_hex();
        let aa = self.root.join(&hex[0..2]);
        let bb = aa.join(&hex[2..4]);
        (aa, bb)
    }

    fn path_of(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    /// Ensures `<root>/<aa>/<bb>` exists and is durably linked into the tree.
    fn ensure_shard_dir(&self, id: &ChunkId) -> io::Result<PathBuf> {
        let key = [id.0[0], id.0[1]];
        let (aa, bb) = self.shard_dirs(id);
        if self.durable_dirs.lock().contains(&key) {
            return Ok(bb);
        }
        // Done once per shard per process: even dirs that exist may have been created by a
        // process that crashed before fsyncing their parent.
        create_dir_durable(&self.root, &aa)?;
        create_dir_durable(&aa, &bb)?;
        self.durable_dirs.lock().insert(key);
        Ok(bb)
    }

    /// Blocking body of `put`: [`Self::put_file`], and the held index told whether the chunk's
    /// file appeared or went (a corrupt copy quarantined and not rewritten).
    fn put_blocking(&self, id: ChunkId, data: &[u8]) -> Result<bool, ChunkError> {
        let mut present = false;
        let mut was_present = None;
        let res = self.put_file(id, data, &mut present, &mut was_present);
        match (was_present, present) {
            (Some(false), true) => self.held.changed(&id, Change::Added),
            (Some(true), false) => self.held.changed(&id, Change::Removed),
            _ => {}
        }
        res
    }

    /// Writes the chunk file; keeps `present` (whether a file is in place now) and
    /// `was_present` (whether one was when we looked first) up to date for the held index.
    fn put_file(
        &self,
        id: ChunkId,
        data: &[u8],
        present: &mut bool,
        was_present: &mut Option<bool>,
    ) -> Result<bool, ChunkError> {
        debug_assert_eq!(ChunkId::of(data), id, "put: id is not BLAKE3(data)");
        injected_fault("chunk-write")?;
        let path = self.path_of(&id);

        // Dedup: adopt an existing copy only if its content still hashes to `id` (a rotted
        // copy must never stand in for bytes we are about to acknowledge), and refresh its
        // mtime so GC's grace period restarts.
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => {
                (*present, *was_present) = (true, Some(true));
                let len = f.metadata()?.len();
                if len == data.len() as u64 {
                    if self.content_matches(&f, &id)? {
                        f.set_modified(SystemTime::now())?;
                        return Ok(false);
                    }
                    drop(f);
                    if self.quarantine_file(&path, &id) {
                        *present = false;
                    }
                    self.metrics.dedup_corrupt();
                } else {
                    // A size mismatch means the existing copy is damaged; replace it rather
                    // than dedup against it.
                    tracing::warn!(chunk = %id, len, expected = data.len(), "existing chunk has wrong size; rewriting");
                }
            }
            // Absent (or removed by GC just now): write it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => *was_present = Some(false),
            Err(e) => return Err(e.into()),
        }

        // A new copy needs space: refused (typed, before touching the disk) under the reserve.
        self.disk.admit()?;
        let dir = self.ensure_shard_dir(&id).map_err(|e| self.io_error(e))?;
        let tmp_path = self
            .tmp
            .join(format!("{}.{}.tmp", id.to_hex(), unique_suffix()));
        let res = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&tmp_path)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            // Rename is atomic; a concurrent put of the same id just replaces identical bytes.
            fs::rename(&tmp_path, &path)?;
            *present = true;
            sync_dir(&dir)
        })();
        if let Err(e) = res {
            // Best effort: a leftover temp file is also removed by the next `open`.
            let _ = fs::remove_file(&tmp_path);
            return Err(self.io_error(e));
        }
        Ok(true)
    }

    /// Whether the open chunk file `f` hashes to `id` (read in full).
    fn content_matches(&self, f: &File, id: &ChunkId) -> io::Result<bool> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(f)?;
        Ok(ChunkId(*hasher.finalize().as_bytes()) == *id)
    }

    /// Moves a bad chunk file to `quarantine/` (logged; a failure leaves it for the rewrite to
    /// replace). Returns whether the file left its place.
    fn quarantine_file(&self, path: &Path, id: &ChunkId) -> bool {
        let dest = self
            .quarantine
            .join(format!("{}.{}", id.to_hex(), unique_suffix()));
        match fs::rename(path, &dest) {
            Ok(()) => {
                tracing::warn!(chunk = %id, quarantined = %dest.display(), "existing chunk copy is corrupt; quarantined before rewriting");
                true
            }
            Err(e) => {
                tracing::warn!(chunk = %id, error = %e, "existing chunk copy is corrupt; quarantine failed, rewriting over it");
                false
            }
        }
    }

    /// A write error as the store reports it: running out of space is `DiskFull` (the disk
    /// filled between the reserve check and the write), anything else `Io`.
    fn io_error(&self, e: io::Error) -> ChunkError {
        if cairn_raft::is_no_space(&e) {
            self.disk.no_space()
        } else {
            e.into()
        }
    }

    /// Blocking body of `get`.
    fn get_blocking(&self, id: ChunkId) -> Result<Bytes, ChunkError> {
        injected_fault("chunk-read")?;
        let path = self.path_of(&id);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkError::NotFound(id)),
            Err(e) => return Err(e.into()),
        };
        let actual = ChunkId::of(&data);
        if actual != id {
            let dest = self
                .quarantine
                .join(format!("{}.{}", id.to_hex(), unique_suffix()));
            match fs::rename(&path, &dest) {
                Ok(()) => {
                    self.held.changed(&id, Change::Removed);
                    tracing::warn!(chunk = %id, %actual, quarantined = %dest.display(), "corrupt chunk quarantined")
                }
                Err(e) => {
                    tracing::warn!(chunk = %id, %actual, error = %e, "corrupt chunk; quarantine failed")
                }
            }
            return Err(ChunkError::Corrupt { id, actual });
        }
        Ok(Bytes::from(data))
    }

    /// Visits every valid chunk file as (id, metadata). Skips tmp, quarantine and junk names.
    fn walk(&self, mut visit: impl FnMut(ChunkId, &fs::Metadata)) -> io::Result<()> {
        for aa in fs::read_dir(&self.root)? {
            let aa = aa?;
            let aa_name = aa.file_name();
            let Some(aa_name) = aa_name.to_str().filter(|n| is_shard_name(n)) else {
                continue;
            };
            if !aa.file_type()?.is_dir() {
                continue;
            }
            for bb in read_dir_if_exists(&aa.path())? {
                let bb = bb?;
                let bb_name = bb.file_name();
                let Some(bb_name) = bb_name.to_str().filter(|n| is_shard_name(n)) else {
                    continue;
                };
                if !bb.file_type()?.is_dir() {
                    continue;
                }
                for f in read_dir_if_exists(&bb.path())? {
                    let f = f?;
                    let name = f.file_name();
                    let Some(name) = name.to_str() else { continue };
                    // Only canonical names (lowercase, in the right shard) are ones `get` can find.
                    let Some(id) = ChunkId::from_hex(name).filter(|id| {
                        id.to_hex() == name && &name[0..2] == aa_name && &name[2..4] == bb_name
                    }) else {
                        continue;
                    };
                    let meta = match f.metadata() {
                        Ok(m) => m,
                        // Deleted concurrently (e.g. by GC): just skip it.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    };
                    if meta.is_file() {
                        visit(id, &meta);
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_shard_name(n: &str) -> bool {
    n.len() == 2
        && n.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Like `read_dir`, but a directory removed concurrently reads as empty.
fn read_dir_if_exists(dir: &Path) -> io::Result<Vec<io::Result<fs::DirEntry>>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

impl ChunkStore {
    /// Opens the store at `root`, creating it (and its `tmp/` and `quarantine/` dirs) if needed,
    /// and deletes temp files left over by a crash. Blocking; call it at startup.
    ///
    /// Returns `Err(Io)` if the directories cannot be created or the temp dir cannot be cleaned.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ChunkError> {
        let root: PathBuf = root.into();
        let existed = root.is_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&root)?;
        if !existed {
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let tmp = root.join(TMP_DIR);
        let quarantine = root.join(QUARANTINE_DIR);
        create_dir_durable(&root, &tmp)?;
        create_dir_durable(&root, &quarantine)?;

        // Temp files are never referenced by anyone after a restart: a put that had not
        // renamed its file had not been acknowledged.
        let mut removed = 0u64;
        for entry in fs::read_dir(&tmp)? {
            let entry = entry?;
            let p = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&p)?;
            } else {
                fs::remove_file(&p)?;
            }
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(root = %root.display(), removed, "removed leftover chunk temp files");
        }

        let metrics = ChunkMetrics::default();
        let disk = DiskGuard::new(root.clone(), metrics.clone());
        let held = Held::new(root.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                quarantine,
                pins: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                durable_dirs: Mutex::new(HashSet::new()),
                metrics,
                disk,
                held,
            }),
        })
    }

    /// Returns the root directory this store was opened at.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The store's free-space guard (set the reserve with [`DiskGuard::set_reserve`]).
    pub fn disk(&self) -> &DiskGuard {
        &self.inner.disk
    }

    /// Whether the store refuses new chunk copies now (free space under the reserve).
    pub fn is_full(&self) -> bool {
        self.inner.disk.is_full()
    }

    /// Durably stores `data` under `id`; the caller must have computed `id = BLAKE3(data)`
    /// (checked only in debug builds).
    ///
    /// Returns `Ok(true)` if the chunk was newly written, `Ok(false)` if a copy with the same
    /// content already existed (verified by hashing it) — then its mtime is refreshed so GC's
    /// grace period restarts. An existing file of the wrong size is overwritten, one of the
    /// right size but wrong content is quarantined and rewritten (both return `true`). When
    /// this returns `Ok`, the chunk survives a crash or power loss. Concurrent puts of the same
    /// id both succeed. A new copy is refused with `Err(DiskFull)` while
    /// free space is under the reserve (a verified dedup hit is still accepted: it takes no
    /// space). Holds the chunk's lock ([`Self::lock`]) throughout.
    pub async fn put(&self, id: ChunkId, data: Bytes) -> Result<bool, ChunkError> {
        let lock = self.lock(id).await;
        let inner = self.inner.clone();
        let len = data.len() as u64;
        let written = blocking(move || inner.put_blocking(id, &data))
            .await
            .inspect_err(|e| self.note_io_error(IoOp::Write, e))?;
        drop(lock);
        self.inner.metrics.stored(written, len);
        Ok(written)
    }

    /// Reads the whole chunk and re-verifies its BLAKE3 hash.
    ///
    /// Returns the bytes, `Err(NotFound)` if no such chunk is stored, or `Err(Corrupt)` if the
    /// content no longer hashes to `id` — in that case the file has been moved to
    /// `<root>/quarantine/` (so a later `has` is false and a re-`put` rewrites it).
    pub async fn get(&self, id: &ChunkId) -> Result<Bytes, ChunkError> {
        let inner = self.inner.clone();
        let id = *id;
        let res = blocking(move || inner.get_blocking(id)).await;
        if let Err(e) = &res {
            self.note_io_error(IoOp::Read, e);
        }
        self.inner.metrics.read(&res);
        res
    }

    /// Counts an I/O error of the disk (not a missing or corrupt chunk, nor a full disk).
    pub(crate) fn note_io_error(&self, op: IoOp, e: &ChunkError) {
        if let ChunkError::Io(io) = e {
            self.inner.disk.io_error(op, io);
        }
    }

    /// Returns whether a chunk file for `id` exists (its content is not verified).
    pub async fn has(&self, id: &ChunkId) -> Result<bool, ChunkError> {
        let path = self.inner.path_of(id);
        blocking(move || match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// The size of the chunk file for `id`, `None` if there is none.
    pub async fn size(&self, id: &ChunkId) -> Result<Option<u64>, ChunkError> {
        let path = self.inner.path_of(id);
        blocking(move || match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file().then_some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// Takes the chunk's lock, waiting for a `put` of it (or another holder) to finish. While
    /// the returned guard lives no `put` of `id` runs; GC holds it from its reference check to
    /// [`ChunkLock::delete`].
    pub async fn lock(&self, id: ChunkId) -> ChunkLock {
        let mutex = self
            .inner
            .locks
            .lock()
            .entry(id)
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let guard = mutex.clone().lock_owned().await;
        ChunkLock {
            store: self.clone(),
            id,
            mutex,
            guard: Some(guard),
        }
    }

    /// Removes the chunk file. Returns `Ok(true)` if it was removed, `Ok(false)` if absent.
    ///
    /// Checks neither pins nor references nor the chunk lock: tests and tools only. GC deletes
    /// through [`ChunkLock::delete`].
    pub async fn delete(&self, id: &ChunkId) -> Result<bool, ChunkError> {
        self.delete_file(id).await
    }

    async fn delete_file(&self, id: &ChunkId) -> Result<bool, ChunkError> {
        let path = self.inner.path_of(id);
        let (inner, id) = (self.inner.clone(), *id);
        // No directory fsync: a deletion lost to a crash only leaves garbage GC finds again.
        let deleted = blocking(move || match fs::remove_file(&path) {
            Ok(()) => {
                inner.held.changed(&id, Change::Removed);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        })
        .await?;
        if deleted {
            self.inner.metrics.deleted();
        }
        Ok(deleted)
    }

    /// Pins `id` so GC will not remove it while an in-flight write references it; returns a
    /// guard that releases the pin on drop. Pins are counted: the chunk stays pinned until every
    /// guard for it is dropped. Cheap and non-blocking.
    pub fn pin(&self, id: ChunkId) -> ChunkPin {
        *self.inner.pins.lock().entry(id).or_insert(0) += 1;
        ChunkPin {
            inner: self.inner.clone(),
            id,
        }
    }

    /// Returns whether at least one [`ChunkPin`] for `id` is alive.
    pub fn is_pinned(&self, id: &ChunkId) -> bool {
        self.inner.pins.lock().contains_key(id)
    }

    /// Returns every stored chunk whose file mtime is more than `age` in the past (GC
    /// candidates), in no particular order. Skips `tmp/`, `quarantine/` and any file whose name
    /// is not a canonical lowercase hex id in its proper shard. Pinned chunks are *not*
    /// filtered out: check [`ChunkStore::is_pinned`] right before deleting.
    pub async fn list_older_than(&self, age: Duration) -> Result<Vec<ChunkId>, ChunkError> {
        Ok(self.scan(age).await?.older)
    }

    /// Walks the whole store once: the chunks older than `age` (as [`Self::list_older_than`]),
    /// the number of chunk files and their bytes, and the number of quarantined files. Updates
    /// the `cairn_chunk_stored_*` and `cairn_chunk_quarantined` gauges.
    pub async fn scan(&self, age: Duration) -> Result<Scan, ChunkError> {
        let inner = self.inner.clone();
        let scan = blocking(move || {
            let now = SystemTime::now();
            let mut scan = Scan::default();
            inner.walk(|id, meta| {
                scan.chunks += 1;
                scan.bytes += meta.len();
                // An unreadable mtime or one in the future counts as "young": never collect it.
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|elapsed| elapsed > age);
                if old {
                    scan.older.push(id);
                }
            })?;
            scan.quarantined = read_dir_if_exists(&inner.quarantine)?.len() as u64;
            Ok(scan)
        })
        .await?;
        self.inner.metrics.scanned(&scan);
        Ok(scan)
    }

    /// Returns whether the chunk file exists and its mtime is more than `age` in the past
    /// (GC re-checks this right before deleting: a dedup write refreshes the mtime).
    pub async fn is_older_than(&self, id: &ChunkId, age: Duration) -> Result<bool, ChunkError> {
        let path = self.inner.path_of(id);
        blocking(move || match fs::metadata(&path) {
            Ok(m) => Ok(m
                .modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|elapsed| elapsed > age)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// The digests of the chunk ids held for `partition` (of `partitions`), one per range
    /// ([`crate::ranges`]); `None` for a range whose digests are unknown until the next
    /// [`Self::refresh_held`] lists it (every range before the first one). In memory: no disk
    /// access.
    pub fn held_digests(&self, partitions: u32, partition: u32) -> Vec<Option<Digest>> {
        self.inner.held.digests(partitions, partition)
    }

    /// Brings the held digests up to date with the disk: dirties ranges whose directories
    /// changed without the store changing them (one `stat` per shard directory), then lists
    /// the dirty ranges again (names only). Returns `(ranges dirtied, ranges listed)`.
    pub async fn refresh_held(&self, partitions: u32) -> Result<(usize, usize), ChunkError> {
        let inner = self.inner.clone();
        blocking(move || {
            let dirtied = inner.held.check_stamps(partitions);
            let mut listed = 0;
            for r in inner.held.dirty() {
                if inner.held.relist(r)? {
                    listed += 1;
                }
            }
            Ok((dirtied, listed))
        })
        .await
    }

    /// The store's metrics (`cairn_chunk_*`); register them once with
    /// [`ChunkMetrics::register`].
    pub fn metrics(&self) -> &ChunkMetrics {
        &self.inner.metrics
    }

    /// Returns `(number of chunk files, total bytes)` over all stored chunks (excluding temp and
    /// quarantined files).
    pub async fn usage(&self) -> Result<(u64, u64), ChunkError> {
        let inner = self.inner.clone();
        blocking(move || {
            let (mut n, mut bytes) = (0u64, 0u64);
            inner.walk(|_, meta| {
                n += 1;
                bytes += meta.len();
            })?;
            Ok((n, bytes))
        })
        .await
    }
}

/// One walk over the store ([`ChunkStore::scan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Chunks whose file is older than the age asked for (GC candidates), in no order.
    pub older: Vec<ChunkId>,
    /// Chunk files stored (excluding temp and quarantined files).
    pub chunks: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Files in `quarantine/`.
    pub quarantined: u64,
}

/// Guard returned by [`ChunkStore::lock`]: no `put` of the chunk runs while it lives.
pub struct ChunkLock {
    store: ChunkStore,
    id: ChunkId,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl ChunkLock {
    /// Returns the locked chunk's id.
    pub fn id(&self) -> ChunkId {
        self.id
    }

    /// Removes the chunk file while holding its lock (GC's delete, after it found the chunk
    /// unreferenced under this same lock). Returns `Ok(true)` if removed, `Ok(false)` if
    /// absent.
    pub async fn delete(&self) -> Result<bool, ChunkError> {
        self.store.delete_file(&self.id).await
    }
}

impl std::fmt::Debug for ChunkLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ChunkLock").field(&self.id).finish()
    }
}

impl Drop for ChunkLock {
    fn drop(&mut self) {
        let mut locks = self.store.inner.locks.lock();
        // Release first; then the map's copy and ours are the only ones left unless someone
        // waits (waiters clone under the map lock, so this count cannot grow meanwhile).
        self.guard.take();
        if Arc::strong_count(&self.mutex) == 2 {
            locks.remove(&self.id);
        }
    }
}

/// Guard returned by [`ChunkStore::pin`]; dropping it releases one pin on the chunk.
pub struct ChunkPin {
    inner: Arc<Inner>,
    id: ChunkId,
}

impl ChunkPin {
    /// Returns the pinned chunk's id.
    pub fn id(&self) -> ChunkId {
        self.id
    }
}

impl std::fmt::Debug for ChunkPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ChunkPin").field(&self.id).finish()
    }
}

impl Drop for ChunkPin {
    fn drop(&mut self) {
        let mut pins = self.inner.pins.lock();
        if let Some(n) = pins.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
