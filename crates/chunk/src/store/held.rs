//! The held index: per partition and range, the [`Digest`] of the chunk ids this store holds,
//! kept in memory so anti-entropy compares digests instead of looking at every chunk file.
//!
//! Upkeep is incremental: the store's own put, delete and quarantine adjust the digest of the
//! chunk's range as they change the file. Two things can make it disagree with the disk, and
//! both only ever mark a range *dirty* (its digests unknown until it is listed again):
//!
//! - Changes the store did not make (a file removed by hand, a lost directory). Each range
//!   (first id byte, all partitions) remembers the modification time of its `<aa>/<bb>`
//!   directories as of its last listing or own change; [`Held::check_stamps`] stats those
//!   directories (at most 65 536, however many chunks there are) and dirties a range whose
//!   directory changed behind the store's back.
//! - A listing racing an own change: every own change bumps its range's epoch, and a listing
//!   is installed only if the epoch did not move while it ran.
//!
//! A dirty range is listed again (file names only, no per-file `stat`) by
//! [`Held::relist`]; until then [`Held::digests`] reports it unknown, and anti-entropy treats
//! it as differing. The index starts with every range dirty, so the first pass after a start
//! lists the store once.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::{is_shard_name, read_dir_if_exists};
use crate::ranges::{range_of, Digest, RangeDigests, RANGES};
use crate::ChunkId;

/// The state behind the index's lock, built for one partition count.
struct State {
    partitions: u32,
    /// Held digests per partition (absent: nothing held).
    parts: HashMap<u32, RangeDigests>,
    /// Own changes per range (first id byte) since start.
    epochs: Vec<u64>,
    /// Ranges whose digests are unknown until listed again.
    dirty: Vec<bool>,
    /// Per `<aa>/<bb>` directory: its modification time as of the last listing or own change
    /// (`None`: it did not exist).
    stamps: HashMap<[u8; 2], Option<SystemTime>>,
}

impl State {
    fn new(partitions: u32) -> Self {
        Self {
            partitions,
            parts: HashMap::new(),
            epochs: vec![0; RANGES],
            dirty: vec![true; RANGES],
            stamps: HashMap::new(),
        }
    }
}

/// The held index of one store (see the module comment).
pub(super) struct Held {
    root: PathBuf,
    /// `None` until anti-entropy first asks (then the partition count is known).
    state: Mutex<Option<State>>,
}

/// An own change to one chunk file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    Added,
    Removed,
}

/// The modification time of `dir` (`None`: absent or unreadable — either way "changed" when it
/// was present before).
fn mtime(dir: &Path) -> Option<SystemTime> {
    fs::metadata(dir).and_then(|m| m.modified()).ok()
}

fn shard_hex(b: u8) -> String {
    format!("{b:02x}")
}

impl Held {
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            root,
            state: Mutex::new(None),
        }
    }

    fn bb_dir(&self, key: [u8; 2]) -> PathBuf {
        self.root.join(shard_hex(key[0])).join(shard_hex(key[1]))
    }

    /// Records an own change of `id`'s file (called right after the file changed).
    pub(super) fn changed(&self, id: &ChunkId, change: Change) {
        let mut guard = self.state.lock();
        let Some(s) = guard.as_mut() else { return };
        let r = usize::from(range_of(id));
        s.epochs[r] = s.epochs[r].wrapping_add(1);
        let d = s.parts.entry(id.partition(s.partitions)).or_default();
        match change {
            Change::Added => d.add(id),
            Change::Removed => d.remove(id),
        }
        // The directory changed because of us: re-stamp it so the next check does not list
        // the range again (one `stat`, under the lock so stamps and digests move together).
        let key = [id.0[0], id.0[1]];
        let stamp = mtime(&self.bb_dir(key));
        s.stamps.insert(key, stamp);
    }

    /// Starts the index for `partitions` (every range dirty) if it is not running for that
    /// count yet.
    fn ensure(&self, partitions: u32) {
        let mut guard = self.state.lock();
        if guard.as_ref().map(|s| s.partitions) != Some(partitions) {
            *guard = Some(State::new(partitions));
        }
    }

    /// The held digests of `partition`, `None` for a range not known right now (dirty), and
    /// for every range while the index does not run for `partitions` (only
    /// [`Self::check_stamps`] starts it: a peer asking with another count must not reset it).
    pub(super) fn digests(&self, partitions: u32, partition: u32) -> Vec<Option<Digest>> {
        let guard = self.state.lock();
        let Some(s) = guard.as_ref().filter(|s| s.partitions == partitions) else {
            return vec![None; RANGES];
        };
        let d = s.parts.get(&partition);
        (0..RANGES)
            .map(|r| match s.dirty[r] {
                true => None,
                false => Some(d.map(|d| d.0[r]).unwrap_or_default()),
            })
            .collect()
    }

    /// Stats every directory the index knows and dirties the ranges where one changed without
    /// the store changing it. Blocking. Returns the number of ranges dirtied.
    pub(super) fn check_stamps(&self, partitions: u32) -> usize {
        self.ensure(partitions);
        let known: Vec<([u8; 2], Option<SystemTime>)> = match self.state.lock().as_ref() {
            Some(s) => s.stamps.iter().map(|(k, v)| (*k, *v)).collect(),
            None => return 0,
        };
        let mut changed = Vec::new();
        for (key, stamp) in known {
            if mtime(&self.bb_dir(key)) != stamp {
                changed.push((key, stamp));
            }
        }
        let mut guard = self.state.lock();
        let Some(s) = guard.as_mut() else { return 0 };
        let mut dirtied = 0;
        for (key, compared) in changed {
            // An own change since our stat re-stamped the directory (and adjusted the digest
            // itself): only a stamp that still is the one we compared against means a change
            // we did not make.
            if s.stamps.get(&key) != Some(&compared) {
                continue;
            }
            let r = usize::from(key[0]);
            if !s.dirty[r] {
                s.dirty[r] = true;
                dirtied += 1;
            }
        }
        dirtied
    }

    /// The dirty ranges now.
    pub(super) fn dirty(&self) -> Vec<u8> {
        match self.state.lock().as_ref() {
            Some(s) => (0..=u8::MAX).filter(|&r| s.dirty[usize::from(r)]).collect(),
            None => Vec::new(),
        }
    }

    /// Lists range `r` (every partition) from the disk and installs its digests, unless an own
    /// change raced the listing (then it stays dirty for the next pass). Blocking. Returns
    /// whether the range is clean now.
    pub(super) fn relist(&self, r: u8) -> io::Result<bool> {
        match self.list(r)? {
            Some(l) => Ok(self.install(l)),
            None => Ok(false),
        }
    }

    /// Reads range `r` from the disk (`None` before the index runs).
    fn list(&self, r: u8) -> io::Result<Option<Listing>> {
        let (partitions, epoch) = match self.state.lock().as_ref() {
            Some(s) => (s.partitions, s.epochs[usize::from(r)]),
            None => return Ok(None),
        };
        let aa_dir = self.root.join(shard_hex(r));
        // Stamps first: a change made while we list shows as a changed stamp next time.
        let mut stamps: Vec<([u8; 2], Option<SystemTime>)> = Vec::new();
        let mut ids: Vec<ChunkId> = Vec::new();
        for bb in read_dir_if_exists(&aa_dir)? {
            let bb = bb?;
            let name = bb.file_name();
            let Some(bb_name) = name.to_str().filter(|n| is_shard_name(n)) else {
                continue;
            };
            if !bb.file_type()?.is_dir() {
                continue;
            }
            let Ok(b) = u8::from_str_radix(bb_name, 16) else {
                continue;
            };
            let key = [r, b];
            stamps.push((key, mtime(&self.bb_dir(key))));
            for f in read_dir_if_exists(&bb.path())? {
                let f = f?;
                let name = f.file_name();
                let Some(name) = name.to_str() else { continue };
                // The same canonical-name rule as every store walk: only files `get` can find.
                let Some(id) = ChunkId::from_hex(name)
                    .filter(|id| id.to_hex() == name && id.0[0] == r && id.0[1] == b)
                else {
                    continue;
                };
                // The entry's type comes with the listing on common file systems: no `stat`.
                if f.file_type().is_ok_and(|t| t.is_file()) {
                    ids.push(id);
                }
            }
        }
        let mut listed: HashMap<u32, Digest> = HashMap::new();
        for id in &ids {
            listed.entry(id.partition(partitions)).or_default().add(id);
        }
        Ok(Some(Listing {
            range: r,
            partitions,
            epoch,
            stamps,
            listed,
        }))
    }

    /// Installs a listing unless the range changed since it started; returns whether it did.
    fn install(&self, l: Listing) -> bool {
        let Listing {
            range: r,
            partitions,
            epoch,
            stamps,
            listed,
        } = l;
        let mut guard = self.state.lock();
        let Some(s) = guard.as_mut() else {
            return false;
        };
        let ri = usize::from(r);
        if s.partitions != partitions || s.epochs[ri] != epoch {
            return false;
        }
        for d in s.parts.values_mut() {
            d.0[ri] = Digest::default();
        }
        for (p, d) in listed {
            s.parts.entry(p).or_default().0[ri] = d;
        }
        s.stamps.retain(|k, _| k[0] != r);
        s.stamps.extend(stamps);
        s.dirty[ri] = false;
        true
    }
}

/// One range as read from the disk, with what it was read against.
struct Listing {
    range: u8,
    partitions: u32,
    /// The range's epoch when the listing started.
    epoch: u64,
    stamps: Vec<([u8; 2], Option<SystemTime>)>,
    listed: HashMap<u32, Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChunkStore;
    use bytes::Bytes;

    fn chunk(i: u32) -> (ChunkId, Bytes) {
        let data = Bytes::from(format!("held-index chunk {i}"));
        (ChunkId::of(&data), data)
    }

    /// The held digests of `p` once every range is listed.
    fn clean_digests(s: &ChunkStore, partitions: u32, p: u32) -> RangeDigests {
        let held = &s.inner.held;
        held.check_stamps(partitions);
        for r in held.dirty() {
            assert!(held.relist(r).unwrap());
        }
        let d = held.digests(partitions, p);
        RangeDigests(d.into_iter().map(|x| x.unwrap()).collect())
    }

    #[tokio::test]
    async fn own_changes_keep_the_digests_equal_to_a_listing() {
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::open(dir.path()).unwrap();
        let partitions = 4;
        let chunks: Vec<_> = (0..40).map(chunk).collect();
        for (id, data) in &chunks[..20] {
            s.put(*id, data.clone()).await.unwrap();
        }
        // The first look lists the store.
        let before = clean_digests(&s, partitions, 1);
        let want = |held: &[(ChunkId, Bytes)]| {
            RangeDigests::of(
                held.iter()
                    .map(|(id, _)| id)
                    .filter(|id| id.partition(partitions) == 1),
            )
        };
        assert_eq!(before, want(&chunks[..20]));
        // Puts, a dedup put and deletes are kept up without listing again.
        for (id, data) in &chunks[20..] {
            s.put(*id, data.clone()).await.unwrap();
        }
        s.put(chunks[0].0, chunks[0].1.clone()).await.unwrap();
        for (id, _) in &chunks[..5] {
            s.delete(id).await.unwrap();
        }
        assert_eq!(
            s.inner.held.check_stamps(partitions),
            0,
            "own changes are not foreign"
        );
        assert!(s.inner.held.dirty().is_empty());
        let d = s.inner.held.digests(partitions, 1);
        let got = RangeDigests(d.into_iter().map(|x| x.unwrap()).collect());
        assert_eq!(got, want(&chunks[5..]));
    }

    #[tokio::test]
    async fn a_file_removed_behind_the_stores_back_dirties_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::open(dir.path()).unwrap();
        let partitions = 1;
        let chunks: Vec<_> = (0..10).map(chunk).collect();
        for (id, data) in &chunks {
            s.put(*id, data.clone()).await.unwrap();
        }
        clean_digests(&s, partitions, 0);
        let (gone, _) = chunks[3];
        // Some file systems stamp directories coarsely; make the change visible.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::remove_file(s.inner.path_of(&gone)).unwrap();
        assert_eq!(s.inner.held.check_stamps(partitions), 1);
        assert_eq!(s.inner.held.dirty(), vec![range_of(&gone)]);
        assert_eq!(
            s.inner.held.digests(partitions, 0)[usize::from(range_of(&gone))],
            None
        );
        let after = clean_digests(&s, partitions, 0);
        let want = RangeDigests::of(chunks.iter().map(|(id, _)| id).filter(|id| **id != gone));
        assert_eq!(after, want);
    }

    #[tokio::test]
    async fn a_listing_raced_by_an_own_change_stays_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::open(dir.path()).unwrap();
        let (id, data) = chunk(1);
        let held = &s.inner.held;
        // Not running yet: nothing is known.
        assert!(held.digests(1, 0).iter().all(Option::is_none));
        held.check_stamps(1);
        let r = range_of(&id);
        // A listing taken before the put, installed after it, would miss the chunk.
        let stale = held.list(r).unwrap().unwrap();
        s.put(id, data).await.unwrap();
        assert!(!held.install(stale));
        assert_eq!(held.digests(1, 0)[usize::from(r)], None);
        // A listing started after it installs.
        assert!(held.relist(r).unwrap());
        assert_eq!(held.digests(1, 0)[usize::from(r)], Some(Digest::of(&[id])));
    }
}
