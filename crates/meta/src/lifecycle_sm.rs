//! S3 bucket lifecycle in a partition's state machine: the scan the lifecycle worker reads
//! (every key of a bucket with its versions, a page at a time) and the apply of
//! `Command::LifecycleExpire`.
//!
//! The worker decides from a scan of its local replica, so by the time its command applies the
//! key may have changed (a new PUT, a version deleted, the worker of a former leader acting on
//! the same scan). `LifecycleExpire` therefore carries the [`LifecycleTarget`] it decided on —
//! which internal version, in which position — and the apply checks it still holds before it
//! applies the wrapped command, the very `DeleteObject` / `PutDeleteMarker` / `DeleteVersion` a
//! user's DELETE proposes (with every check their apply makes). A stale decision is refused
//! with `PreconditionFailed` and changes nothing, so each expiry happens once, whoever proposes
//! it and however often.

use std::collections::BTreeSet;
use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, Response};
use crate::keys;
use crate::lifecycle::KeyVersions;
use crate::model::{ObjectData, ObjectRecord};
use crate::store::{decode, MetaStore, OBJECTS};
use crate::versions::{
    first_version, key_prefix, range_from, read_row, version_key, VersionEntry, VERSIONS,
};
use crate::MetaError;

/// Where the version a lifecycle decision acts on must still be when it applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LifecycleTarget {
    /// The key's current object is internal version `version` (Expiration).
    Current { version: String },
    /// Internal version `version` of the key exists and is not its latest version
    /// (NoncurrentVersionExpiration).
    Noncurrent { version: String },
    /// The key's only version is the delete marker `version` (ExpiredObjectDeleteMarker).
    LoneMarker { version: String },
}

/// `g | bucket | 0 | key | 0 | 0xff`: past every version entry of `key` (sort keys are ASCII)
/// and before any longer key.
fn past_versions(base: &[u8], key: &str) -> Vec<u8> {
    let mut k = base.to_vec();
    k.extend_from_slice(key.as_bytes());
    k.extend_from_slice(&[keys::SEP, 0xff]);
    k
}

fn strip_inline(e: &mut VersionEntry) {
    if let VersionEntry::Object(r) = e {
        if let ObjectData::Inline(b) = &mut r.data {
            *b = Vec::new();
        }
    }
}

impl MetaStore {
    /// Up to `max` keys of `bucket` after `after` (key order), each with its latest version and
    /// its noncurrent versions newest first (inline bytes dropped). The bool says whether keys
    /// remain after the last one returned.
    pub fn lifecycle_keys(
        &self,
        group: u64,
        bucket: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<KeyVersions>, bool), MetaError> {
        let txn = self.db().begin_read()?;
        let objects = txn.open_table(OBJECTS)?;
        let versions = txn.open_table(VERSIONS)?;
        let base = keys::bucket_prefix(group, bucket);
        let hi = keys::prefix_end(&base).unwrap_or_else(|| keys::group_end(group));
        let key_of = |raw: &[u8]| -> Result<String, MetaError> {
            let rest = &raw[base.len()..];
            let rest = rest.split(|b| *b == keys::SEP).next().unwrap_or(rest);
            String::from_utf8(rest.to_vec()).map_err(|_| MetaError::Codec("non-utf8 key".into()))
        };
        // The next max + 1 keys of each table; the first max of their union are this page.
        let mut found = BTreeSet::new();
        let obj_lo = match after {
            Some(a) => Bound::Excluded(keys::object(group, bucket, a)),
            None => Bound::Included(base.clone()),
        };
        for item in objects
            .range::<&[u8]>(range_from(&obj_lo, &hi))?
            .take(max + 1)
        {
            let (k, _) = item?;
            found.insert(key_of(k.value())?);
        }
        let mut ver_lo = match after {
            Some(a) => Bound::Included(past_versions(&base, a)),
            None => Bound::Included(base.clone()),
        };
        for _ in 0..=max {
            let next = match versions.range::<&[u8]>(range_from(&ver_lo, &hi))?.next() {
                Some(item) => key_of(item?.0.value())?,
                None => break,
            };
            ver_lo = Bound::Included(past_versions(&base, &next));
            found.insert(next);
        }
        let more = found.len() > max;
        let mut out = Vec::new();
        for key in found.into_iter().take(max) {
            let current: Option<ObjectRecord> =
                match objects.get(keys::object(group, bucket, &key).as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
            let prefix = key_prefix(group, bucket, &key);
            let end = keys::prefix_end(&prefix).unwrap_or_else(|| hi.clone());
            let mut all = Vec::new();
            for item in versions.range(prefix.as_slice()..end.as_slice())? {
                let mut e = read_row(item?.1.value())?;
                strip_inline(&mut e);
                all.push(e);
            }
            let latest = match current {
                Some(mut r) => {
                    if let ObjectData::Inline(b) = &mut r.data {
                        *b = Vec::new();
                    }
                    Some(VersionEntry::Object(r))
                }
                // Without a current object the newest entry is the marker hiding the key.
                None if !all.is_empty() => Some(all.remove(0)),
                None => None,
            };
            out.push(KeyVersions {
                key,
                latest,
                noncurrent: all,
            });
        }
        Ok((out, more))
    }

    /// Applies `LifecycleExpire`: `command` (a DeleteObject, PutDeleteMarker or DeleteVersion
    /// of `bucket/key`) if `target` still holds, else `Refused(PreconditionFailed)`.
    pub(crate) fn apply_lifecycle_expire(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
        target: &LifecycleTarget,
        command: &Command,
    ) -> Result<Response, MetaError> {
        let same_key = match command {
            Command::DeleteObject {
                bucket: b, key: k, ..
            }
            | Command::PutDeleteMarker {
                bucket: b, key: k, ..
            }
            | Command::DeleteVersion {
                bucket: b, key: k, ..
            } => b == bucket && k == key,
            _ => false,
        };
        if !same_key {
            return Ok(Response::Refused(CommandError::Invalid(
                "a lifecycle action wraps a delete of its own key".into(),
            )));
        }
        let holds = {
            let objects = txn.open_table(OBJECTS)?;
            let versions = txn.open_table(VERSIONS)?;
            let current: Option<ObjectRecord> =
                match objects.get(keys::object(group, bucket, key).as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
            let prefix = key_prefix(group, bucket, key);
            match target {
                LifecycleTarget::Current { version } => {
                    current.is_some_and(|c| c.version == *version)
                }
                LifecycleTarget::Noncurrent { version } => {
                    let stored =
                        match versions.get(version_key(group, bucket, key, version).as_slice())? {
                            Some(v) => Some(read_row(v.value())?),
                            None => None,
                        };
                    let newest = first_version(&versions, &prefix)?.map(|(_, e)| e);
                    stored.is_some_and(|e| e.version() == version.as_str())
                        && (current.is_some()
                            || newest.is_some_and(|n| n.version() != version.as_str()))
                }
                LifecycleTarget::LoneMarker { version } => {
                    let end = keys::prefix_end(&prefix).unwrap_or_else(|| keys::group_end(group));
                    let mut it = versions.range(prefix.as_slice()..end.as_slice())?;
                    let first = match it.next() {
                        Some(item) => Some(read_row(item?.1.value())?),
                        None => None,
                    };
                    current.is_none()
                        && it.next().is_none()
                        && matches!(first, Some(VersionEntry::Marker(m)) if m.version == *version)
                }
            }
        };
        if !holds {
            return Ok(Response::Refused(CommandError::PreconditionFailed));
        }
        self.apply(txn, group, command)
    }
}
