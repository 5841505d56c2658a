//! Bucket usage (objects and bytes per bucket), kept incrementally in the partition that holds
//! the bucket's object index: every apply that adds, replaces or removes an object version
//! (`PutObject`, `DeleteObject`, `CompleteUpload`) updates the bucket's row of `sm_usage` in
//! the same transaction, so reading usage never scans objects.
//!
//! A group that holds objects written before usage was kept (no `usage_counted` marker) is
//! counted once, by a scan inside the first apply that touches usage; every replica applies
//! the same log to the same state, so the scan is as deterministic as any other apply. Until
//! then, reads of such a group count by scanning too.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::model::ObjectRecord;
use crate::store::{decode, encode, encode_named, MetaStore, OBJECTS, SM_META};
use crate::MetaError;

/// `g | bucket` → [`UsageRow`] (named msgpack).
pub(crate) const USAGE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_usage");

/// Set in a group's `sm_meta` once its usage rows account for every object it holds.
const USAGE_COUNTED: &str = "usage_counted";

/// Objects and bytes (object sizes, before replication) of one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUsage {
    pub objects: u64,
    pub bytes: u64,
}

impl BucketUsage {
    /// The usage after an object version of size `old` (None: there was none) is replaced by
    /// one of size `new` (None: the object is gone). Saturates instead of wrapping.
    pub fn replace(self, old: Option<u64>, new: Option<u64>) -> Self {
        let mut u = self;
        if let Some(o) = old {
            u.objects = u.objects.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(o);
        }
        if let Some(n) = new {
            u.objects = u.objects.saturating_add(1);
            u.bytes = u.bytes.saturating_add(n);
        }
        u
    }

    /// Adds `other` (totals across buckets or partitions).
    pub fn plus(self, other: Self) -> Self {
        Self {
            objects: self.objects.saturating_add(other.objects),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// The stored row: a version marker plus named fields (see STYLE.md, "stored formats say
/// their version").
#[derive(Serialize, Deserialize)]
struct UsageRow {
    v: u8,
    objects: u64,
    bytes: u64,
}

fn encode_row(u: BucketUsage) -> Result<Vec<u8>, MetaError> {
    encode_named(&UsageRow {
        v: 1,
        objects: u.objects,
        bytes: u.bytes,
    })
}

fn decode_row(b: &[u8]) -> Result<BucketUsage, MetaError> {
    let r: UsageRow = decode(b)?;
    if r.v != 1 {
        return Err(MetaError::Codec(format!(
            "usage row version {} unknown",
            r.v
        )));
    }
    Ok(BucketUsage {
        objects: r.objects,
        bytes: r.bytes,
    })
}

/// The bucket name of an object key `g | bucket | 0 | key`.
fn bucket_of(full_key: &[u8]) -> Option<&str> {
    let rest = full_key.get(8..)?;
    let end = rest.iter().position(|b| *b == keys::SEP)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Counts `group`'s objects per bucket by scanning them.
fn scan<T: ReadableTable<&'static [u8], &'static [u8]>>(
    objects: &T,
    group: u64,
) -> Result<Vec<(String, BucketUsage)>, MetaError> {
    let (s, e) = (keys::group_start(group), keys::group_end(group));
    let mut out: Vec<(String, BucketUsage)> = Vec::new();
    for item in objects.range(s.as_slice()..e.as_slice())? {
        let (k, v) = item?;
        let Some(bucket) = bucket_of(k.value()) else {
            return Err(MetaError::Codec("bad object key".into()));
        };
        let rec: ObjectRecord = decode(v.value())?;
        match out.last_mut() {
            Some((b, u)) if b == bucket => *u = u.replace(None, Some(rec.size)),
            _ => out.push((
                bucket.to_string(),
                BucketUsage::default().replace(None, Some(rec.size)),
            )),
        }
    }
    Ok(out)
}

impl MetaStore {
    /// Records, inside `txn`, that an object version of size `old` in `bucket` was replaced by
    /// one of size `new` (None on either side: no version). Called after the object table was
    /// changed: a group whose usage was never counted is counted now, change included. A
    /// bucket left with no objects loses its row.
    pub(crate) fn account_usage(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        old: Option<u64>,
        new: Option<u64>,
    ) -> Result<(), MetaError> {
        if self.count_usage_once(txn, group)? {
            return Ok(());
        }
        let mut t = txn.open_table(USAGE)?;
        let k = keys::bucket(group, bucket);
        let current = match t.get(k.as_slice())? {
            Some(v) => decode_row(v.value())?,
            None => BucketUsage::default(),
        };
        let next = current.replace(old, new);
        if next.objects == 0 {
            t.remove(k.as_slice())?;
        } else {
            t.insert(k.as_slice(), encode_row(next)?.as_slice())?;
        }
        Ok(())
    }

    /// Counts `group`'s objects into usage rows unless that was done before (a group written
    /// before usage was kept, or a new one); returns whether it counted now.
    pub(crate) fn count_usage_once(
        &self,
        txn: &WriteTransaction,
        group: u64,
    ) -> Result<bool, MetaError> {
        let mut meta = txn.open_table(SM_META)?;
        let marker = keys::sm_meta(group, USAGE_COUNTED);
        if meta.get(marker.as_slice())?.is_some() {
            return Ok(false);
        }
        meta.insert(marker.as_slice(), encode(&1u8)?.as_slice())?;
        drop(meta);
        let rows = {
            let objects = txn.open_table(OBJECTS)?;
            scan(&objects, group)?
        };
        let mut t = txn.open_table(USAGE)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        t.retain_in(s.as_slice()..e.as_slice(), |_, _| false)?;
        for (bucket, u) in rows {
            t.insert(
                keys::bucket(group, &bucket).as_slice(),
                encode_row(u)?.as_slice(),
            )?;
        }
        Ok(true)
    }

    /// Usage of every bucket with objects in `group`, by bucket name.
    pub fn partition_usage(&self, group: u64) -> Result<Vec<(String, BucketUsage)>, MetaError> {
        let txn = self.db().begin_read()?;
        let meta = txn.open_table(SM_META)?;
        if meta
            .get(keys::sm_meta(group, USAGE_COUNTED).as_slice())?
            .is_none()
        {
            return scan(&txn.open_table(OBJECTS)?, group);
        }
        let t = txn.open_table(USAGE)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (k, v) = item?;
            let name = std::str::from_utf8(&k.value()[8..])
                .map_err(|_| MetaError::Codec("non-utf8 bucket name".into()))?;
            out.push((name.to_string(), decode_row(v.value())?));
        }
        Ok(out)
    }

    /// Usage of `bucket` in `group` (the partition of the bucket's index); zero when it has
    /// no objects.
    pub fn bucket_usage(&self, group: u64, bucket: &str) -> Result<BucketUsage, MetaError> {
        let txn = self.db().begin_read()?;
        let meta = txn.open_table(SM_META)?;
        if meta
            .get(keys::sm_meta(group, USAGE_COUNTED).as_slice())?
            .is_none()
        {
            let all = scan(&txn.open_table(OBJECTS)?, group)?;
            return Ok(all
                .into_iter()
                .find(|(b, _)| b == bucket)
                .map(|(_, u)| u)
                .unwrap_or_default());
        }
        let t = txn.open_table(USAGE)?;
        match t.get(keys::bucket(group, bucket).as_slice())? {
            Some(v) => decode_row(v.value()),
            None => Ok(BucketUsage::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_counts_versions_and_bytes() {
        let u = BucketUsage::default();
        let u = u.replace(None, Some(10));
        assert_eq!(
            u,
            BucketUsage {
                objects: 1,
                bytes: 10
            }
        );
        let u = u.replace(Some(10), Some(4));
        assert_eq!(
            u,
            BucketUsage {
                objects: 1,
                bytes: 4
            }
        );
        let u = u.replace(Some(4), None);
        assert_eq!(u, BucketUsage::default());
        // Never wraps below zero.
        assert_eq!(u.replace(Some(7), None), BucketUsage::default());
        assert_eq!(
            BucketUsage {
                objects: 1,
                bytes: 2
            }
            .plus(BucketUsage {
                objects: 3,
                bytes: 4
            }),
            BucketUsage {
                objects: 4,
                bytes: 6
            }
        );
    }

    #[test]
    fn bucket_names_come_from_object_keys() {
        assert_eq!(bucket_of(&keys::object(3, "photos", "a/b")), Some("photos"));
        assert_eq!(bucket_of(&keys::object(3, "photos", "")), Some("photos"));
        assert_eq!(bucket_of(&[0u8; 4]), None);
    }
}
