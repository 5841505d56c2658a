//! S3 versioning in a partition's state machine.
//!
//! The current version of a key stays in `sm_objects` (so GET, HEAD and ListObjects read one
//! row, as without versioning). Every other version, and every delete marker, lives in
//! `sm_versions` under `g | bucket | 0 | key | 0 | sort key`, where the sort key is the
//! version's id: ids are drawn newest-first sortable ([`encode_version_id`]), so one ordered
//! scan lists a key's versions newest first (ListObjectVersions). Invariant: when
//! `sm_objects` has no row for a key, its newest `sm_versions` entry (if any) is a delete
//! marker; deleting a version re-establishes it by promoting the next newest object.
//!
//! Every version's record keeps its own chunk references (owner names carry the internal
//! `version`), and usage counts every object version; deleting a version drops both.
//! A version's `versioned` flag says whether S3 shows it by id or as `null`: a write on a
//! bucket that is not Enabled replaces the key's `null` version wherever it is.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, RefOp, Response};
use crate::keys;
use crate::model::{BucketRecord, ObjectData, ObjectRecord, Versioning};
use crate::store::{decode, encode, encode_named, object_owner, MetaStore, BUCKETS, OBJECTS};
use crate::MetaError;

/// `g | bucket | 0 | key | 0 | sort key` → [`Row`] (named msgpack).
pub(crate) const VERSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_versions");

/// The id S3 shows for versions written while a bucket was not versioning.
pub const NULL_VERSION: &str = "null";

/// A new version id for a write at `micros` (unix microseconds, strictly increasing per
/// process) with random `salt`: 16 hex digits of the inverted time then 8 of salt, so ids
/// sort newest first as plain strings and are URL-safe.
pub fn encode_version_id(micros: u64, salt: u32) -> String {
    format!("{:016x}{salt:08x}", u64::MAX - micros)
}

/// Whether `s` has the shape of a version id this store hands out: 24 lowercase hex digits
/// (or 32, the ids of releases before versioning, still naming multipart objects).
pub fn is_version_id(s: &str) -> bool {
    matches!(s.len(), 24 | 32)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where a version sorts among its key's versions: ids of [`encode_version_id`] as they are;
/// older ids (random, from before versioning) after them all, as the oldest.
fn sort_key(version: &str) -> String {
    if version.len() == 24 && is_version_id(version) {
        version.to_owned()
    } else {
        format!("~{version}")
    }
}

/// A delete marker: the latest version of a key that reads as deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteMarker {
    /// Internal id (sorts like object versions).
    pub version: String,
    /// False: the key's `null` version (written while the bucket was Suspended).
    pub versioned: bool,
    pub last_modified_ms: i64,
}

impl DeleteMarker {
    pub fn version_id(&self) -> &str {
        if self.versioned {
            &self.version
        } else {
            NULL_VERSION
        }
    }
}

/// One version of a key.
// Objects are the common entry; boxing them would cost an allocation per version read.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionEntry {
    Object(ObjectRecord),
    Marker(DeleteMarker),
}

impl VersionEntry {
    pub fn version(&self) -> &str {
        match self {
            Self::Object(r) => &r.version,
            Self::Marker(m) => &m.version,
        }
    }

    /// The id S3 shows.
    pub fn version_id(&self) -> &str {
        match self {
            Self::Object(r) => r.version_id(),
            Self::Marker(m) => m.version_id(),
        }
    }

    fn is_null(&self) -> bool {
        self.version_id() == NULL_VERSION
    }
}

/// The stored row: a version marker plus named fields.
#[derive(Serialize, Deserialize)]
enum Row {
    V1(VersionEntry),
}

pub(crate) fn read_row(b: &[u8]) -> Result<VersionEntry, MetaError> {
    match decode::<Row>(b)? {
        Row::V1(e) => Ok(e),
    }
}

fn write_row(e: &VersionEntry) -> Result<Vec<u8>, MetaError> {
    encode_named(&Row::V1(e.clone()))
}

/// `g | bucket | 0 | key | 0` — the prefix of a key's noncurrent versions.
pub(crate) fn key_prefix(group: u64, bucket: &str, key: &str) -> Vec<u8> {
    let mut k = keys::object(group, bucket, key);
    k.push(keys::SEP);
    k
}

pub(crate) fn version_key(group: u64, bucket: &str, key: &str, version: &str) -> Vec<u8> {
    let mut k = key_prefix(group, bucket, key);
    k.extend_from_slice(sort_key(version).as_bytes());
    k
}

/// One entry of ListObjectVersions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedVersion {
    pub key: String,
    pub entry: VersionEntry,
    pub is_latest: bool,
}

/// One page of ListObjectVersions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionListing {
    pub entries: Vec<ListedVersion>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    pub next_key_marker: Option<String>,
    /// None after a common prefix.
    pub next_version_id_marker: Option<String>,
}

/// The noncurrent `null` version of a key, if any (at most one exists).
fn find_null(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Option<(Vec<u8>, VersionEntry)>, MetaError> {
    let end = keys::prefix_end(prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
    for item in t.range(prefix..end.as_slice())? {
        let (k, v) = item?;
        let e = read_row(v.value())?;
        if e.is_null() {
            return Ok(Some((k.value().to_vec(), e)));
        }
    }
    Ok(None)
}

/// The noncurrent entry of `bucket/key` that S3 names `version_id` (an id, or `null`), with
/// its table key.
fn find_noncurrent(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    group: u64,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<(Vec<u8>, VersionEntry)>, MetaError> {
    if version_id == NULL_VERSION {
        return find_null(t, &key_prefix(group, bucket, key));
    }
    let vk = version_key(group, bucket, key, version_id);
    let e = match t.get(vk.as_slice())? {
        Some(v) => Some(read_row(v.value())?),
        None => None,
    };
    Ok(e.filter(|e| e.version_id() == version_id).map(|e| (vk, e)))
}

/// The newest noncurrent entry of a key.
pub(crate) fn first_version(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Option<(Vec<u8>, VersionEntry)>, MetaError> {
    let end = keys::prefix_end(prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
    match t.range(prefix..end.as_slice())?.next() {
        Some(item) => {
            let (k, v) = item?;
            Ok(Some((k.value().to_vec(), read_row(v.value())?)))
        }
        None => Ok(None),
    }
}

fn remove_refs(bucket: &str, key: &str, r: &ObjectRecord) -> Vec<RefOp> {
    let owner = object_owner(bucket, key, &r.version);
    r.data
        .chunks()
        .iter()
        .map(|c| RefOp::Remove {
            chunk: c.id,
            owner: owner.clone(),
        })
        .collect()
}

pub(crate) fn range_from<'a>(
    lo: &'a Bound<Vec<u8>>,
    hi: &'a [u8],
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let lo = match lo {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (lo, Bound::Excluded(hi))
}

impl MetaStore {
    /// Version `version_id` (as S3 shows it) of `bucket/key`.
    pub fn get_version(
        &self,
        group: u64,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<VersionEntry>, MetaError> {
        let txn = self.db().begin_read()?;
        let objects = txn.open_table(OBJECTS)?;
        if let Some(v) = objects.get(keys::object(group, bucket, key).as_slice())? {
            let r: ObjectRecord = decode(v.value())?;
            if r.version_id() == version_id {
                return Ok(Some(VersionEntry::Object(r)));
            }
        }
        let t = txn.open_table(VERSIONS)?;
        if version_id == NULL_VERSION {
            return Ok(find_null(&t, &key_prefix(group, bucket, key))?.map(|(_, e)| e));
        }
        match t.get(version_key(group, bucket, key, version_id).as_slice())? {
            // The sort key of a legacy id is shared by its null and id forms: check the id.
            Some(v) => Ok(Some(read_row(v.value())?).filter(|e| e.version_id() == version_id)),
            None => Ok(None),
        }
    }

    /// The latest version of `bucket/key`: its current object, or the delete marker that
    /// hides it.
    pub fn latest_version(
        &self,
        group: u64,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionEntry>, MetaError> {
        let txn = self.db().begin_read()?;
        let objects = txn.open_table(OBJECTS)?;
        if let Some(v) = objects.get(keys::object(group, bucket, key).as_slice())? {
            return Ok(Some(VersionEntry::Object(decode(v.value())?)));
        }
        let t = txn.open_table(VERSIONS)?;
        Ok(first_version(&t, &key_prefix(group, bucket, key))?.map(|(_, e)| e))
    }

    /// ListObjectVersions: keys starting with `prefix` in key order, each key's versions
    /// newest first, after (`key_marker`, `version_id_marker`), at most `max` entries and
    /// common prefixes.
    #[allow(clippy::too_many_arguments)]
    pub fn list_versions(
        &self,
        group: u64,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        max: usize,
    ) -> Result<VersionListing, MetaError> {
        let txn = self.db().begin_read()?;
        let objects = txn.open_table(OBJECTS)?;
        let versions = txn.open_table(VERSIONS)?;
        let base = keys::bucket_prefix(group, bucket);
        let mut lo = base.clone();
        lo.extend_from_slice(prefix.as_bytes());
        let hi = keys::prefix_end(&lo).unwrap_or_else(|| keys::group_end(group));
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut obj_lo = Bound::Included(lo.clone());
        let mut ver_lo = Bound::Included(lo.clone());
        let past = |s: &str| {
            // Past everything under `s`: 0xff never occurs in UTF-8 keys.
            let mut k = base.clone();
            k.extend_from_slice(s.as_bytes());
            k.push(0xff);
            k
        };
        if let Some(km) = key_marker {
            let rolled = delimiter.and_then(|d| {
                let rest = km.strip_prefix(prefix)?;
                let pos = rest.find(d)?;
                Some(&km[..prefix.len() + pos + d.len()])
            });
            let mut ok = base.clone();
            ok.extend_from_slice(km.as_bytes());
            let cand: (Bound<Vec<u8>>, Bound<Vec<u8>>) = if let Some(cp) = rolled {
                (Bound::Included(past(cp)), Bound::Included(past(cp)))
            } else {
                let kp = key_prefix(group, bucket, km);
                let mut after_key = kp.clone();
                after_key.push(0xff);
                let ver = match version_id_marker {
                    None => Bound::Included(after_key),
                    Some(vm) => {
                        let current = match objects.get(ok.as_slice())? {
                            Some(v) => Some(decode::<ObjectRecord>(v.value())?),
                            None => None,
                        };
                        if current.is_some_and(|c| c.version_id() == vm) {
                            Bound::Included(kp)
                        } else if vm == NULL_VERSION {
                            match find_null(&versions, &kp)? {
                                Some((k, _)) => Bound::Excluded(k),
                                None => Bound::Included(after_key),
                            }
                        } else {
                            Bound::Excluded(version_key(group, bucket, km, vm))
                        }
                    }
                };
                (Bound::Excluded(ok), ver)
            };
            // Never before the prefix.
            let later = |b: Bound<Vec<u8>>| match &b {
                Bound::Included(v) | Bound::Excluded(v) if *v < lo => Bound::Included(lo.clone()),
                _ => b,
            };
            obj_lo = later(cand.0);
            ver_lo = later(cand.1);
        }
        let mut out = VersionListing::default();
        if max == 0 {
            return Ok(out);
        }
        loop {
            let next_obj = match objects.range::<&[u8]>(range_from(&obj_lo, &hi))?.next() {
                Some(item) => {
                    let (k, v) = item?;
                    Some((k.value().to_vec(), v.value().to_vec()))
                }
                None => None,
            };
            let next_ver = match versions.range::<&[u8]>(range_from(&ver_lo, &hi))?.next() {
                Some(item) => {
                    let (k, v) = item?;
                    Some((k.value().to_vec(), v.value().to_vec()))
                }
                None => None,
            };
            // Raw keys compare as (key, current first, sort key): NUL ends a key.
            let (is_obj, raw, val) = match (next_obj, next_ver) {
                (None, None) => break,
                (Some((k, v)), None) => (true, k, v),
                (None, Some((k, v))) => (false, k, v),
                (Some((ok, ov)), Some((vk, vv))) => {
                    if ok <= vk {
                        (true, ok, ov)
                    } else {
                        (false, vk, vv)
                    }
                }
            };
            let rest = &raw[base.len()..];
            let key_bytes = if is_obj {
                rest
            } else {
                rest.split(|b| *b == keys::SEP).next().unwrap_or(rest)
            };
            let key = std::str::from_utf8(key_bytes)
                .map_err(|_| MetaError::Codec("non-utf8 key".into()))?
                .to_string();
            if let Some(d) = delimiter {
                if let Some(pos) = key[prefix.len()..].find(d) {
                    let cp = key[..prefix.len() + pos + d.len()].to_string();
                    if out.entries.len() + out.common_prefixes.len() == max {
                        out.truncated = true;
                        break;
                    }
                    obj_lo = Bound::Included(past(&cp));
                    ver_lo = Bound::Included(past(&cp));
                    out.next_key_marker = Some(cp.clone());
                    out.next_version_id_marker = None;
                    out.common_prefixes.push(cp);
                    continue;
                }
            }
            if out.entries.len() + out.common_prefixes.len() == max {
                out.truncated = true;
                break;
            }
            let (mut entry, is_latest) = if is_obj {
                obj_lo = Bound::Excluded(raw.clone());
                (VersionEntry::Object(decode(&val)?), true)
            } else {
                ver_lo = Bound::Excluded(raw.clone());
                let has_current = objects
                    .get(keys::object(group, bucket, &key).as_slice())?
                    .is_some();
                let first =
                    first_version(&versions, &key_prefix(group, bucket, &key))?.map(|(k, _)| k);
                (
                    read_row(&val)?,
                    !has_current && first.as_deref() == Some(raw.as_slice()),
                )
            };
            // A listing needs sizes and ETags, not bytes.
            if let VersionEntry::Object(r) = &mut entry {
                if let ObjectData::Inline(b) = &mut r.data {
                    *b = Vec::new();
                }
            }
            out.next_key_marker = Some(key.clone());
            out.next_version_id_marker = Some(entry.version_id().to_owned());
            out.entries.push(ListedVersion {
                key,
                entry,
                is_latest,
            });
        }
        if !out.truncated {
            out.next_key_marker = None;
            out.next_version_id_marker = None;
        }
        Ok(out)
    }

    /// After a write made a new latest version of `bucket/key` (`new_size`: its bytes, None
    /// for a marker): `old`, the previous current object, becomes noncurrent, except that a
    /// `null` write (`new_is_null`) replaces the key's `null` version wherever it is. Accounts
    /// usage and returns the reference removals to queue.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn supersede(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
        old: Option<ObjectRecord>,
        new_is_null: bool,
        new_size: Option<u64>,
    ) -> Result<Vec<RefOp>, MetaError> {
        let mut ops = Vec::new();
        let mut dropped_current = None;
        let mut dropped_noncurrent = None;
        let mut t = txn.open_table(VERSIONS)?;
        if new_is_null {
            if let Some((k, e)) = find_null(&t, &key_prefix(group, bucket, key))? {
                t.remove(k.as_slice())?;
                if let VersionEntry::Object(r) = e {
                    ops.extend(remove_refs(bucket, key, &r));
                    dropped_noncurrent = Some(r.size);
                }
            }
        }
        if let Some(o) = old {
            if !o.versioned && new_is_null {
                ops.extend(remove_refs(bucket, key, &o));
                dropped_current = Some(o.size);
            } else {
                t.insert(
                    version_key(group, bucket, key, &o.version).as_slice(),
                    write_row(&VersionEntry::Object(o))?.as_slice(),
                )?;
            }
        }
        drop(t);
        // The current change first: it is what a first count of a legacy group sees.
        self.account_usage(txn, group, bucket, dropped_current, new_size)?;
        if dropped_noncurrent.is_some() {
            self.account_usage(txn, group, bucket, dropped_noncurrent, None)?;
        }
        Ok(ops)
    }

    /// Makes the newest noncurrent version of `bucket/key` current when the key has no current
    /// object and that version is an object (not a marker).
    pub(crate) fn promote(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
    ) -> Result<(), MetaError> {
        let mut objects = txn.open_table(OBJECTS)?;
        let ok = keys::object(group, bucket, key);
        if objects.get(ok.as_slice())?.is_some() {
            return Ok(());
        }
        let mut t = txn.open_table(VERSIONS)?;
        if let Some((k, VersionEntry::Object(r))) =
            first_version(&t, &key_prefix(group, bucket, key))?
        {
            t.remove(k.as_slice())?;
            objects.insert(ok.as_slice(), encode(&r)?.as_slice())?;
        }
        Ok(())
    }

    /// Version `version_id` (as S3 shows it) of `bucket/key` as seen inside `txn`.
    pub(crate) fn version_in(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> Result<Option<VersionEntry>, MetaError> {
        let objects = txn.open_table(OBJECTS)?;
        if let Some(v) = objects.get(keys::object(group, bucket, key).as_slice())? {
            let r: ObjectRecord = decode(v.value())?;
            if r.version_id() == version_id {
                return Ok(Some(VersionEntry::Object(r)));
            }
        }
        drop(objects);
        let t = txn.open_table(VERSIONS)?;
        if version_id == NULL_VERSION {
            return Ok(find_null(&t, &key_prefix(group, bucket, key))?.map(|(_, e)| e));
        }
        let found = match t.get(version_key(group, bucket, key, version_id).as_slice())? {
            Some(v) => Some(read_row(v.value())?).filter(|e| e.version_id() == version_id),
            None => None,
        };
        Ok(found)
    }

    /// The newest noncurrent entry of `bucket/key` as seen inside `txn`.
    pub(crate) fn first_version_in(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionEntry>, MetaError> {
        let t = txn.open_table(VERSIONS)?;
        Ok(first_version(&t, &key_prefix(group, bucket, key))?.map(|(_, e)| e))
    }

    /// Rewrites `record` (same internal version) where it lives: the current row of
    /// `bucket/key` or its noncurrent row. Data, references and usage are unchanged.
    pub(crate) fn replace_version(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
        record: &ObjectRecord,
    ) -> Result<(), MetaError> {
        let mut objects = txn.open_table(OBJECTS)?;
        let ok = keys::object(group, bucket, key);
        let is_current = match objects.get(ok.as_slice())? {
            Some(v) => decode::<ObjectRecord>(v.value())?.version == record.version,
            None => false,
        };
        if is_current {
            objects.insert(ok.as_slice(), encode(record)?.as_slice())?;
            return Ok(());
        }
        drop(objects);
        let mut t = txn.open_table(VERSIONS)?;
        t.insert(
            version_key(group, bucket, key, &record.version).as_slice(),
            write_row(&VersionEntry::Object(record.clone()))?.as_slice(),
        )?;
        Ok(())
    }

    /// Applies `SetVersionTags` / `SetObjectAcl`: changes the headers of version `version_id`
    /// (None: the current one) of `bucket/key` with `change` — the current object when it is
    /// that version, else its entry in `sm_versions`. Headers change no data, so no reference
    /// or usage changes.
    fn update_version_headers(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: impl FnOnce(&mut crate::model::ObjectHeaders),
    ) -> Result<Response, MetaError> {
        let mut objects = txn.open_table(OBJECTS)?;
        let ok = keys::object(group, bucket, key);
        let current: Option<ObjectRecord> = match objects.get(ok.as_slice())? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        if let Some(mut c) = current.filter(|c| version_id.is_none_or(|v| c.version_id() == v)) {
            change(&mut c.headers);
            objects.insert(ok.as_slice(), encode(&c)?.as_slice())?;
            return Ok(Response::Done);
        }
        drop(objects);
        let Some(version_id) = version_id else {
            return Ok(Response::Refused(CommandError::NoSuchKey));
        };
        let mut t = txn.open_table(VERSIONS)?;
        let found = find_noncurrent(&t, group, bucket, key, version_id)?;
        match found {
            None => Ok(Response::Refused(CommandError::NoSuchKey)),
            Some((_, VersionEntry::Marker(_))) => Ok(Response::Refused(CommandError::Invalid(
                "a delete marker has no tags or ACL".into(),
            ))),
            Some((k, VersionEntry::Object(mut r))) => {
                change(&mut r.headers);
                t.insert(
                    k.as_slice(),
                    write_row(&VersionEntry::Object(r))?.as_slice(),
                )?;
                Ok(Response::Done)
            }
        }
    }

    /// Applies the versioning commands (`SetBucketVersioning`, `PutDeleteMarker`,
    /// `DeleteVersion`, `SetVersionTags`, `SetObjectAcl`).
    pub(crate) fn apply_versioning(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        match cmd {
            Command::SetBucketVersioning { name, state } => {
                let mut t = txn.open_table(BUCKETS)?;
                let k = keys::bucket(group, name);
                let mut rec: BucketRecord = match t.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(Response::Refused(CommandError::NoSuchBucket)),
                };
                // Object lock needs versioning on for good (checked here so no lock change
                // can race the suspension).
                if rec.object_lock.is_some() && *state != Versioning::Enabled {
                    return Ok(Response::Refused(CommandError::InvalidBucketState(
                        "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.".into(),
                    )));
                }
                rec.versioning = Some(*state);
                t.insert(k.as_slice(), encode(&rec)?.as_slice())?;
                drop(t);
                self.audit(txn, group, 0, format!("bucket {name} versioning {state:?}"))?;
                Ok(Response::Done)
            }
            Command::PutDeleteMarker {
                bucket,
                key,
                marker,
            } => {
                let current = {
                    let objects = txn.open_table(OBJECTS)?;
                    let v = objects.get(keys::object(group, bucket, key).as_slice())?;
                    match v {
                        Some(v) => Some(decode::<ObjectRecord>(v.value())?),
                        None => None,
                    }
                };
                // A `null` marker replaces the `null` version: not while that one is locked.
                if let Err(e) = self.check_null_replace(
                    txn,
                    group,
                    bucket,
                    key,
                    current.as_ref(),
                    marker.versioned,
                    marker.last_modified_ms,
                )? {
                    return Ok(Response::Refused(e));
                }
                self.count_usage_once(txn, group)?;
                let mut objects = txn.open_table(OBJECTS)?;
                let old: Option<ObjectRecord> =
                    match objects.remove(keys::object(group, bucket, key).as_slice())? {
                        Some(v) => Some(decode(v.value())?),
                        None => None,
                    };
                drop(objects);
                let ops = self.supersede(txn, group, bucket, key, old, !marker.versioned, None)?;
                let mut t = txn.open_table(VERSIONS)?;
                t.insert(
                    version_key(group, bucket, key, &marker.version).as_slice(),
                    write_row(&VersionEntry::Marker(marker.clone()))?.as_slice(),
                )?;
                drop(t);
                self.push_outbox(txn, group, ops)?;
                Ok(Response::Done)
            }
            Command::DeleteVersion {
                bucket,
                key,
                version_id,
                at_ms,
                bypass_governance,
            } => {
                // Object lock: a protected version is refused before anything changes. Every
                // removal of a version (S3, lifecycle) comes through here.
                if let Some(VersionEntry::Object(r)) =
                    self.version_in(txn, group, bucket, key, version_id)?
                {
                    if let Err(e) = crate::lock::check_removal(&r, *at_ms, *bypass_governance) {
                        return Ok(Response::Refused(e));
                    }
                }
                self.count_usage_once(txn, group)?;
                let mut objects = txn.open_table(OBJECTS)?;
                let ok = keys::object(group, bucket, key);
                let current: Option<ObjectRecord> = match objects.get(ok.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                let removed = match current {
                    Some(c) if c.version_id() == *version_id => {
                        objects.remove(ok.as_slice())?;
                        Some(VersionEntry::Object(c))
                    }
                    _ => {
                        let mut t = txn.open_table(VERSIONS)?;
                        let found = find_noncurrent(&t, group, bucket, key, version_id)?;
                        if let Some((k, _)) = &found {
                            t.remove(k.as_slice())?;
                        }
                        found.map(|(_, e)| e)
                    }
                };
                drop(objects);
                let Some(entry) = removed else {
                    return Ok(Response::DeletedVersion {
                        found: false,
                        marker: false,
                    });
                };
                let marker = matches!(entry, VersionEntry::Marker(_));
                if let VersionEntry::Object(r) = &entry {
                    self.account_usage(txn, group, bucket, Some(r.size), None)?;
                    self.push_outbox(txn, group, remove_refs(bucket, key, r))?;
                }
                self.promote(txn, group, bucket, key)?;
                Ok(Response::DeletedVersion {
                    found: true,
                    marker,
                })
            }
            Command::SetVersionTags {
                bucket,
                key,
                version_id,
                tags,
            } => self.update_version_headers(txn, group, bucket, key, Some(version_id), |h| {
                h.tags = tags.clone()
            }),
            Command::SetObjectAcl {
                bucket,
                key,
                version_id,
                acl,
            } => self.update_version_headers(txn, group, bucket, key, version_id.as_deref(), |h| {
                h.acl = acl.clone()
            }),
            other => Ok(Response::Refused(CommandError::Invalid(format!(
                "not a versioning command: {other:?}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn newer_ids_sort_first(a in 0u64..u64::MAX / 2, d in 1u64..1_000_000_000, s1: u32, s2: u32) {
            let older = encode_version_id(a, s1);
            let newer = encode_version_id(a + d, s2);
            prop_assert!(newer < older);
            prop_assert!(is_version_id(&older) && is_version_id(&newer));
            prop_assert_eq!(sort_key(&newer), newer.clone());
        }
    }

    #[test]
    fn legacy_ids_sort_last_and_null_is_not_an_id() {
        let legacy = "0123456789abcdef0123456789abcdef";
        assert!(is_version_id(legacy));
        assert!(sort_key(legacy) > sort_key(&encode_version_id(0, 0)));
        assert!(!is_version_id("null"));
        assert!(!is_version_id("ABCDEF0123456789ABCDEF01"));
        assert!(!is_version_id("../etc"));
    }
}
