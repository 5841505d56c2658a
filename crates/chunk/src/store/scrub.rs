//! What the scrubber needs from the store: chunk files listed in id order from a cursor, and
//! a verifying re-read that quarantines a bad copy without ever quarantining a good one that a
//! writer put in place meanwhile.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use super::{blocking, is_shard_name, read_dir_if_exists, sync_dir, unique_suffix, Inner};
use crate::{ChunkError, ChunkId, ChunkStore};

/// Bytes read per `read` call while hashing a chunk file (the file is never held whole).
const READ_BUF: usize = 1 << 20;

/// What a verifying re-read of one chunk file found ([`ChunkStore::verify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verified {
    /// The file hashes to its id; its length in bytes.
    Good(u64),
    /// The file we read was bad, but a writer had already replaced it with a fresh copy by
    /// the time we moved it: the fresh copy is back in place (the next pass checks it).
    Replaced,
}

/// Sorted shard directory names (`aa` or `bb`) under `dir`, skipping anything else.
fn shard_names(dir: &std::path::Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in read_dir_if_exists(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_shard_name(&name) && entry.file_type()?.is_dir() {
            out.push(name);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Inner {
    /// Blocking body of `list_after`.
    fn list_after_blocking(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> io::Result<Vec<(ChunkId, u64)>> {
        let start = after.map(|id| id.to_hex());
        let (start_aa, start_bb) = match &start {
            Some(h) => (&h[0..2], &h[2..4]),
            None => ("", ""),
        };
        let mut out = Vec::new();
        for aa in shard_names(&self.root)? {
            if aa.as_str() < start_aa {
                continue;
            }
            let aa_dir = self.root.join(&aa);
            for bb in shard_names(&aa_dir)? {
                if aa.as_str() == start_aa && bb.as_str() < start_bb {
                    continue;
                }
                let mut files = Vec::new();
                for f in read_dir_if_exists(&aa_dir.join(&bb))? {
                    let f = f?;
                    let name = f.file_name();
                    let Some(name) = name.to_str() else { continue };
                    // Canonical names in the right shard only: the ones `get` can find.
                    let Some(id) = ChunkId::from_hex(name)
                        .filter(|id| id.to_hex() == name && name[0..2] == aa && name[2..4] == bb)
                    else {
                        continue;
                    };
                    if start.as_deref().is_some_and(|s| name <= s) {
                        continue;
                    }
                    match f.metadata() {
                        Ok(m) if m.is_file() => files.push((id, m.len())),
                        Ok(_) => {}
                        // Deleted concurrently (GC): nothing to check.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                files.sort_unstable_by_key(|(id, _)| id.0);
                for f in files {
                    out.push(f);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Blocking body of `verify`.
    fn verify_blocking(&self, id: ChunkId) -> Result<Verified, ChunkError> {
        super::injected_fault("chunk-read")?;
        let path = self.path_of(&id);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ChunkError::NotFound(id)),
            Err(e) => return Err(e.into()),
        };
        // The identity of the file we hash: the quarantine below moves it only if it is still
        // this one.
        let read_meta = file.metadata()?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; READ_BUF];
        let mut len = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        drop(file);
        let actual = ChunkId(*hasher.finalize().as_bytes());
        if actual == id {
            return Ok(Verified::Good(len));
        }

        self.quarantine_if_same(id, actual, &read_meta)
    }

    /// Moves the bad copy of `id` (hashed to `actual`) to quarantine if the file in place is
    /// still the one described by `read_meta`; a fresh copy a writer renamed in meanwhile is
    /// put back. Returns `Err(Corrupt)` when the bad copy left its place, `Ok(Replaced)` when a
    /// fresh copy is (or stays) in place.
    fn quarantine_if_same(
        &self,
        id: ChunkId,
        actual: ChunkId,
        read_meta: &fs::Metadata,
    ) -> Result<Verified, ChunkError> {
        let path = self.path_of(&id);
        let dest = self
            .quarantine
            .join(format!("{}.{}", id.to_hex(), unique_suffix()));
        match fs::rename(&path, &dest) {
            Ok(()) => {}
            // Gone meanwhile (GC): the bad copy is no longer served either way.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ChunkError::Corrupt { id, actual })
            }
            Err(e) => return Err(e.into()),
        }
        let moved = fs::metadata(&dest)?;
        if (moved.dev(), moved.ino()) != (read_meta.dev(), read_meta.ino()) {
            // A put renamed a fresh copy (written from hash-checked bytes) over the bad one
            // between our read and our rename, and we moved that fresh copy: link it back,
            // unless yet another put already placed one (link never replaces a file).
            match fs::hard_link(&dest, &path) {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        sync_dir(dir)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
            fs::remove_file(&dest)?;
            tracing::info!(chunk = %id, "scrub: a corrupt copy was replaced by a writer meanwhile");
            return Ok(Verified::Replaced);
        }
        self.held.changed(&id, super::Change::Removed);
        self.metrics.corrupt_quarantined();
        tracing::warn!(chunk = %id, %actual, quarantined = %dest.display(), "scrub: corrupt chunk quarantined");
        Err(ChunkError::Corrupt { id, actual })
    }
}

impl ChunkStore {
    /// Returns up to `limit` chunk files as `(id, length)` in ascending id order, starting
    /// right after `after` (from the smallest id when `None`); an empty list means the end of
    /// the store. Skips `tmp/`, `quarantine/` and non-canonical names, like every store walk.
    pub async fn list_after(
        &self,
        after: Option<ChunkId>,
        limit: usize,
    ) -> Result<Vec<(ChunkId, u64)>, ChunkError> {
        let inner = self.inner.clone();
        let limit = limit.max(1);
        blocking(move || Ok(inner.list_after_blocking(after, limit)?)).await
    }

    /// Re-reads the chunk file and re-verifies its BLAKE3 hash without counting a read.
    ///
    /// Returns [`Verified::Good`] with the length, [`Verified::Replaced`] when a writer put a
    /// fresh copy in place while the bad one was being checked, `Err(NotFound)` if no file is
    /// stored, or `Err(Corrupt)` after moving the bad file to `<root>/quarantine/` (so a
    /// later `has` is false and a re-`put` writes it again).
    pub async fn verify(&self, id: &ChunkId) -> Result<Verified, ChunkError> {
        let inner = self.inner.clone();
        let id = *id;
        let res = blocking(move || inner.verify_blocking(id)).await;
        if let Err(e) = &res {
            self.note_io_error(crate::IoOp::Read, e);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    #[tokio::test]
    async fn a_fresh_copy_renamed_in_after_the_hash_is_never_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::open(dir.path().join("chunks")).unwrap();
        let good = Bytes::from(vec![42u8; 50_000]);
        let id = ChunkId::of(&good);
        s.put(id, good.clone()).await.unwrap();
        let path = s.inner.path_of(&id);
        let mut bad = good.to_vec();
        bad[7] ^= 1;
        fs::write(&path, &bad).unwrap();
        // The scrubber hashed this file...
        let hashed = fs::metadata(&path).unwrap();
        let actual = ChunkId::of(&bad);
        // ...then a writer renamed a fresh, good copy over it before the quarantine.
        let fresh = dir.path().join("fresh");
        fs::write(&fresh, &good).unwrap();
        fs::rename(&fresh, &path).unwrap();

        let r = s.inner.quarantine_if_same(id, actual, &hashed).unwrap();
        assert_eq!(r, Verified::Replaced);
        assert_eq!(fs::read(&path).unwrap(), good.to_vec());
        assert_eq!(fs::read_dir(&s.inner.quarantine).unwrap().count(), 0);
        assert_eq!(s.verify(&id).await.unwrap(), Verified::Good(50_000));

        // Without a writer in between, the hashed file itself is what leaves.
        fs::write(&path, &bad).unwrap();
        let hashed = fs::metadata(&path).unwrap();
        assert!(matches!(
            s.inner.quarantine_if_same(id, actual, &hashed),
            Err(ChunkError::Corrupt { .. })
        ));
        assert!(!path.exists());
        assert_eq!(fs::read_dir(&s.inner.quarantine).unwrap().count(), 1);
    }
}
