//! `MetaStore`: the state machines of all Raft groups hosted on this node, kept in one redb
//! database (shared with the Raft log store). `apply` is the deterministic transition function;
//! the query functions read committed state.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::{Command, CommandError, RefOp, Response};
use crate::keys;
use crate::model::{
    AccessKeyRecord, BucketRecord, ChunkId, ClusterConfig, LayoutRecord, NodeRecord, ObjectData,
    ObjectRecord, PartRecord, UploadRecord,
};
use crate::MetaError;

pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_objects");
pub(crate) const UPLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_uploads");
pub(crate) const PARTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_parts");
pub(crate) const REFS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_refs");
pub(crate) const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_outbox");
pub(crate) const BUCKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_buckets");
pub(crate) const SM_META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_meta");
pub(crate) const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_nodes");
pub(crate) const AUDIT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_audit");
pub(crate) const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_access_keys");
pub(crate) const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sm_tokens");

/// Every state-machine table, in a fixed order (the snapshot format numbers them; new tables
/// go at the end).
pub(crate) const ALL_TABLES: [TableDefinition<&[u8], &[u8]>; 14] = [
    OBJECTS,
    UPLOADS,
    PARTS,
    REFS,
    OUTBOX,
    BUCKETS,
    SM_META,
    NODES,
    AUDIT,
    KEYS,
    TOKENS,
    crate::usage::USAGE,
    crate::bucket_config::BUCKET_CONFIG,
    crate::versions::VERSIONS,
];
const SM_META_INDEX: usize = 6;

const OUTBOX_SEQ: &str = "outbox_seq";
const CLUSTER_ID: &str = "cluster_id";
use crate::rebalance::LAYOUT;
pub(crate) const CLUSTER_CONFIG: &str = "cluster_config";
pub(crate) const AUDIT_SEQ: &str = "audit_seq";

/// One audited change of the cluster catalog (system group).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    /// When the change was made, from the command (0 when it carries no time).
    pub at_ms: i64,
    pub what: String,
    /// Who asked for the change through the management API (a token name or a root key);
    /// None for changes the cluster makes itself.
    #[serde(default)]
    pub actor: Option<String>,
    /// None: the change was applied; otherwise why it was refused or failed (recorded with
    /// `Command::AuditEvent`).
    #[serde(default)]
    pub outcome: Option<String>,
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, MetaError> {
    rmp_serde::to_vec(v).map_err(|e| MetaError::Codec(e.to_string()))
}

/// Named-field encoding for records whose shape grows over time (see STYLE.md).
pub(crate) fn encode_named<T: Serialize>(v: &T) -> Result<Vec<u8>, MetaError> {
    rmp_serde::to_vec_named(v).map_err(|e| MetaError::Codec(e.to_string()))
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, MetaError> {
    rmp_serde::from_slice(b).map_err(|e| MetaError::Codec(e.to_string()))
}

/// Owner name of an object version in chunk reference sets.
pub fn object_owner(bucket: &str, key: &str, version: &str) -> String {
    format!("o\0{bucket}\0{key}\0{version}")
}

/// Owner name of an uploaded part in chunk reference sets.
pub fn part_owner(upload_id: &str, part_number: u32, version: &str) -> String {
    format!("p\0{upload_id}\0{part_number}\0{version}")
}

/// Owner-name prefix of upload intents in chunk reference sets.
const INTENT_PREFIX: &str = "i\0";

/// Owner name of an upload intent in chunk reference sets: an upload started at `created_ms`
/// by the process of raft node `node` started at `boot_ms`, to be committed in Raft group
/// `group` (unique by `token`), may still reference the chunk. Added to the chunk's partition
/// before the chunk is written, removed after the commit's own reference has been delivered
/// (see `Command::WithIntent`), by the uploader when its commit is refused, or by a sweep once
/// the upload cannot commit any more (expired, or its process is gone and fenced).
pub fn intent_owner(created_ms: i64, node: u64, boot_ms: i64, group: u64, token: &str) -> String {
    format!("{INTENT_PREFIX}{created_ms}\0{node}\0{boot_ms}\0{group}\0{token}")
}

/// What an intent owner name says (see [`intent_owner`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntentOwner {
    pub created_ms: i64,
    pub node: u64,
    pub boot_ms: i64,
    pub group: u64,
}

/// Parses an intent owner name; `None` if `owner` is not one.
pub fn parse_intent(owner: &str) -> Option<IntentOwner> {
    let mut f = owner.strip_prefix(INTENT_PREFIX)?.split('\0');
    Some(IntentOwner {
        created_ms: f.next()?.parse().ok()?,
        node: f.next()?.parse().ok()?,
        boot_ms: f.next()?.parse().ok()?,
        group: f.next()?.parse().ok()?,
    })
}

/// The creation time of an intent owner name; `None` if `owner` is not an intent.
pub fn intent_created_ms(owner: &str) -> Option<i64> {
    parse_intent(owner).map(|i| i.created_ms)
}

/// `sm_meta` name of the fence of `node`'s intents (`Command::FenceIntents`).
fn intent_fence(node: u64) -> String {
    format!("intent_fence/{node}")
}

/// `sm_meta` name of the newest creation time of `node`'s swept intents
/// (`Command::FenceIntentsBefore`).
fn intent_expiry_fence(node: u64) -> String {
    format!("intent_expired/{node}")
}

/// State machines of every group on this node.
#[derive(Clone)]
pub struct MetaStore {
    db: Arc<Database>,
    partitions: u32,
}

impl MetaStore {
    /// Wraps `db`, creating the state-machine tables. `partitions` is P, used to route chunk
    /// reference updates to the chunk's partition.
    pub fn new(db: Arc<Database>, partitions: u32) -> Result<Self, MetaError> {
        let txn = db.begin_write()?;
        for t in ALL_TABLES {
            txn.open_table(t)?;
        }
        txn.commit()?;
        Ok(Self { db, partitions })
    }

    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Applies `cmd` to `group`'s state inside `txn`. A refused command changes nothing and
    /// returns `Response::Refused`; an `Err` is a storage failure.
    pub fn apply(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        match cmd {
            Command::CreateBucket { record } => {
                let mut t = txn.open_table(BUCKETS)?;
                let k = keys::bucket(group, &record.name);
                if t.get(k.as_slice())?.is_some() {
                    return Ok(Response::Refused(CommandError::BucketExists));
                }
                t.insert(k.as_slice(), encode(record)?.as_slice())?;
                drop(t);
                Self::drop_bucket_config(txn, group, &record.name)?;
                self.audit(
                    txn,
                    group,
                    record.created_ms,
                    format!("create bucket {}", record.name),
                )?;
                Ok(Response::Done)
            }
            Command::DeleteBucket { name } => {
                let mut t = txn.open_table(BUCKETS)?;
                let k = keys::bucket(group, name);
                if t.remove(k.as_slice())?.is_none() {
                    return Ok(Response::Refused(CommandError::NoSuchBucket));
                }
                drop(t);
                Self::drop_bucket_config(txn, group, name)?;
                self.audit(txn, group, 0, format!("delete bucket {name}"))?;
                Ok(Response::Done)
            }
            Command::FormCluster { cluster_id, name } => {
                let mut meta = txn.open_table(SM_META)?;
                let k = keys::sm_meta(group, CLUSTER_ID);
                if let Some(v) = meta.get(k.as_slice())? {
                    let existing: (String, String) = decode(v.value())?;
                    if existing.0 != *cluster_id {
                        return Ok(Response::Refused(CommandError::ClusterExists(existing.0)));
                    }
                    return Ok(Response::Done);
                }
                meta.insert(
                    k.as_slice(),
                    encode(&(cluster_id.clone(), name.clone()))?.as_slice(),
                )?;
                drop(meta);
                self.audit(txn, group, 0, format!("form cluster {name} ({cluster_id})"))?;
                Ok(Response::Done)
            }
            Command::SetClusterConfig { config } => {
                let mut meta = txn.open_table(SM_META)?;
                let k = keys::sm_meta(group, CLUSTER_CONFIG);
                let current: Option<ClusterConfig> = match meta.get(k.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                let version = current.as_ref().map_or(0, |c| c.version);
                if config.version != version + 1 {
                    return Ok(Response::Refused(CommandError::StaleConfig(version)));
                }
                if current
                    .as_ref()
                    .is_some_and(|c| c.partitions != config.partitions)
                {
                    return Ok(Response::Refused(CommandError::Invalid(
                        "the partition count is fixed at cluster creation".into(),
                    )));
                }
                meta.insert(k.as_slice(), encode(config)?.as_slice())?;
                drop(meta);
                self.record_config_version(
                    txn,
                    group,
                    &crate::config_doc::ConfigVersion {
                        version: config.version,
                        at_ms: config.changed_ms,
                        actor: None,
                        message: "recorded at formation".into(),
                        rollback_of: None,
                        config: config.clone(),
                    },
                )?;
                self.audit(
                    txn,
                    group,
                    config.changed_ms,
                    format!("cluster config v{}: {}", config.version, config.describe()),
                )?;
                Ok(Response::Done)
            }
            Command::PutAccessKey { record } => {
                let mut t = txn.open_table(KEYS)?;
                let k = keys::bucket(group, &record.access_key);
                if let Some(v) = t.get(k.as_slice())? {
                    let existing: AccessKeyRecord = decode(v.value())?;
                    return Ok(
                        if existing.secret_key == record.secret_key
                            && existing.fingerprint == record.fingerprint
                            && existing.status != crate::model::KeyStatus::Deleted
                        {
                            Response::Done
                        } else {
                            Response::Refused(CommandError::AccessKeyExists)
                        },
                    );
                }
                t.insert(k.as_slice(), encode(record)?.as_slice())?;
                drop(t);
                // Never the secret.
                self.audit(
                    txn,
                    group,
                    record.created_ms,
                    format!(
                        "add access key {} ({})",
                        record.access_key, record.description
                    ),
                )?;
                Ok(Response::Done)
            }
            Command::RegisterNode { record } => {
                let mut t = txn.open_table(NODES)?;
                let k = keys::bucket(group, &record.node_id);
                let old: Option<NodeRecord> = match t.get(k.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                if old.is_some() && record.api_addr.is_empty() {
                    // The bootstrap node's placeholder for a peer (no API address yet) never
                    // replaces what the node registered itself.
                    return Ok(Response::Done);
                }
                let mut stored = record.clone();
                // Registering is a sign of life too.
                stored.last_heartbeat_ms = record.last_heartbeat_ms.max(record.registered_ms);
                if let Some(o) = &old {
                    // Lifecycle and health belong to the catalog (drain, failure detector),
                    // not to what a (re)starting node says about itself.
                    stored.state = o.state;
                    stored.health = o.health;
                    stored.registered_ms = o.registered_ms;
                    stored.last_heartbeat_ms = stored.last_heartbeat_ms.max(o.last_heartbeat_ms);
                    stored.health_changed_ms = o.health_changed_ms;
                    stored.maintenance = o.maintenance;
                }
                t.insert(k.as_slice(), encode(&stored)?.as_slice())?;
                drop(t);
                // Only membership changes are audited, not a restart that changes nothing.
                let changed = old.as_ref().is_none_or(|o| {
                    o.rpc_addr != stored.rpc_addr
                        || o.api_addr != stored.api_addr
                        || o.zone != stored.zone
                        || o.labels != stored.labels
                });
                if changed {
                    let what = if old.is_none() { "register" } else { "update" };
                    self.audit(
                        txn,
                        group,
                        record.registered_ms,
                        format!(
                            "{what} node {} at {} ({:?})",
                            stored.node_id, stored.rpc_addr, stored.state
                        ),
                    )?;
                }
                Ok(Response::Done)
            }
            Command::Heartbeat {
                node_id,
                disk_capacity_bytes,
                disk_free_bytes,
                at_ms,
            } => self.update_node(txn, group, node_id, *at_ms, |rec| {
                rec.disk_capacity_bytes = *disk_capacity_bytes;
                rec.disk_free_bytes = *disk_free_bytes;
                rec.last_heartbeat_ms = rec.last_heartbeat_ms.max(*at_ms);
                // Stats only: not a catalog change worth auditing.
                None
            }),
            Command::SetNodeState {
                node_id,
                state,
                at_ms,
            } => self.update_node(txn, group, node_id, *at_ms, |rec| {
                let before = std::mem::replace(&mut rec.state, *state);
                (before != *state).then(|| format!("node {node_id} state {before:?} -> {state:?}"))
            }),
            Command::SetNodeHealth {
                node_id,
                health,
                at_ms,
            } => self.update_node(txn, group, node_id, *at_ms, |rec| {
                let before = std::mem::replace(&mut rec.health, *health);
                if before != *health {
                    rec.health_changed_ms = *at_ms;
                }
                (before != *health).then(|| {
                    format!(
                        "node {node_id} health {} -> {}",
                        before.as_str(),
                        health.as_str()
                    )
                })
            }),
            Command::SetBucketConsistency {
                name,
                write_consistency,
            } => {
                let mut t = txn.open_table(BUCKETS)?;
                let k = keys::bucket(group, name);
                let mut rec: BucketRecord = match t.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(Response::Refused(CommandError::NoSuchBucket)),
                };
                rec.write_consistency = *write_consistency;
                t.insert(k.as_slice(), encode(&rec)?.as_slice())?;
                drop(t);
                self.audit(
                    txn,
                    group,
                    0,
                    format!(
                        "bucket {name} write consistency {}",
                        write_consistency.map_or("default", |c| c.as_str())
                    ),
                )?;
                Ok(Response::Done)
            }
            Command::SetLayout { layout } => {
                let mut meta = txn.open_table(SM_META)?;
                let k = keys::sm_meta(group, LAYOUT);
                let previous: Option<LayoutRecord> = match meta.get(k.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                let current = previous.as_ref().map_or(0, |l| l.version);
                if layout.version != current + 1 {
                    return Ok(Response::Refused(CommandError::StaleLayout(current)));
                }
                meta.insert(k.as_slice(), encode(layout)?.as_slice())?;
                drop(meta);
                // The partitions this layout moves become the rebalance plan.
                let mut plan = Self::read_plan(txn, group)?;
                plan.on_layout(previous.as_ref(), layout, layout.created_ms);
                Self::write_plan(txn, group, &plan)?;
                let nodes: std::collections::BTreeSet<&str> = layout
                    .assignments
                    .iter()
                    .flatten()
                    .map(String::as_str)
                    .collect();
                self.audit(
                    txn,
                    group,
                    layout.created_ms,
                    format!(
                        "layout v{} over {:?} (replication {})",
                        layout.version, nodes, layout.replication
                    ),
                )?;
                Ok(Response::Done)
            }
            Command::PutObject {
                bucket,
                key,
                record,
                condition,
            } => {
                let objects = txn.open_table(OBJECTS)?;
                let k = keys::object(group, bucket, key);
                let old: Option<ObjectRecord> = match objects.get(k.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                if let Err(refusal) = condition.check(old.as_ref()) {
                    return Ok(Response::Refused(refusal));
                }
                drop(objects);
                if let Err(e) = self.check_null_replace(
                    txn,
                    group,
                    bucket,
                    key,
                    old.as_ref(),
                    record.versioned,
                    record.last_modified_ms,
                )? {
                    return Ok(Response::Refused(e));
                }
                // A first count must see the state before this apply (supersede's deltas).
                self.count_usage_once(txn, group)?;
                let mut objects = txn.open_table(OBJECTS)?;
                objects.insert(k.as_slice(), encode(record)?.as_slice())?;
                drop(objects);
                let mut ops = add_ops(
                    record.data.chunks(),
                    &object_owner(bucket, key, &record.version),
                );
                // The old current version becomes noncurrent, or goes (null replaces null).
                ops.extend(self.supersede(
                    txn,
                    group,
                    bucket,
                    key,
                    old,
                    !record.versioned,
                    Some(record.size),
                )?);
                self.push_outbox(txn, group, ops)?;
                Ok(Response::Done)
            }
            Command::DeleteObject {
                bucket,
                key,
                at_ms,
                bypass_governance,
            } => {
                let mut objects = txn.open_table(OBJECTS)?;
                let k = keys::object(group, bucket, key);
                // Object lock: a protected current version is refused before anything changes.
                if let Some(v) = objects.get(k.as_slice())? {
                    let current: ObjectRecord = decode(v.value())?;
                    if let Err(e) = crate::lock::check_removal(&current, *at_ms, *bypass_governance)
                    {
                        return Ok(Response::Refused(e));
                    }
                }
                let old: Option<ObjectRecord> = match objects.remove(k.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                drop(objects);
                // A noncurrent version left by a versioned past becomes current.
                self.promote(txn, group, bucket, key)?;
                match old {
                    Some(old) => {
                        self.account_usage(txn, group, bucket, Some(old.size), None)?;
                        let ops =
                            remove_ops(old.data.chunks(), &object_owner(bucket, key, &old.version));
                        self.push_outbox(txn, group, ops)?;
                        Ok(Response::Deleted(true))
                    }
                    None => Ok(Response::Deleted(false)),
                }
            }
            Command::CreateUpload { record } => {
                let mut t = txn.open_table(UPLOADS)?;
                let k = keys::upload(group, &record.bucket, &record.key, &record.upload_id);
                t.insert(k.as_slice(), encode(record)?.as_slice())?;
                Ok(Response::Done)
            }
            Command::PutPart {
                bucket,
                key,
                upload_id,
                part,
            } => {
                let uploads = txn.open_table(UPLOADS)?;
                if uploads
                    .get(keys::upload(group, bucket, key, upload_id).as_slice())?
                    .is_none()
                {
                    return Ok(Response::Refused(CommandError::NoSuchUpload));
                }
                drop(uploads);
                let mut parts = txn.open_table(PARTS)?;
                let k = keys::part(group, upload_id, part.part_number);
                let old: Option<PartRecord> =
                    match parts.insert(k.as_slice(), encode(part)?.as_slice())? {
                        Some(v) => Some(decode(v.value())?),
                        None => None,
                    };
                drop(parts);
                let mut ops = add_ops(
                    part.data.chunks(),
                    &part_owner(upload_id, part.part_number, &part.version),
                );
                if let Some(old) = old {
                    ops.extend(remove_ops(
                        old.data.chunks(),
                        &part_owner(upload_id, old.part_number, &old.version),
                    ));
                }
                self.push_outbox(txn, group, ops)?;
                Ok(Response::Done)
            }
            Command::CompleteUpload {
                bucket,
                key,
                upload_id,
                parts: wanted,
                record,
                condition,
            } => {
                let mut uploads = txn.open_table(UPLOADS)?;
                let uk = keys::upload(group, bucket, key, upload_id);
                if uploads.get(uk.as_slice())?.is_none() {
                    return Ok(Response::Refused(CommandError::NoSuchUpload));
                }
                let stored = self.read_parts(txn, group, upload_id)?;
                for (n, etag) in wanted {
                    match stored.iter().find(|p| p.part_number == *n) {
                        Some(p) if p.etag == *etag => {}
                        _ => {
                            return Ok(Response::Refused(CommandError::InvalidPart(format!(
                                "part {n}"
                            ))))
                        }
                    }
                }
                let objects = txn.open_table(OBJECTS)?;
                let ok = keys::object(group, bucket, key);
                let old: Option<ObjectRecord> = match objects.get(ok.as_slice())? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                if let Err(refusal) = condition.check(old.as_ref()) {
                    return Ok(Response::Refused(refusal));
                }
                drop(objects);
                if let Err(e) = self.check_null_replace(
                    txn,
                    group,
                    bucket,
                    key,
                    old.as_ref(),
                    record.versioned,
                    record.last_modified_ms,
                )? {
                    return Ok(Response::Refused(e));
                }
                // A first count must see the state before this apply (supersede's deltas).
                self.count_usage_once(txn, group)?;
                let mut objects = txn.open_table(OBJECTS)?;
                objects.insert(ok.as_slice(), encode(record)?.as_slice())?;
                drop(objects);
                uploads.remove(uk.as_slice())?;
                drop(uploads);
                let mut ops = add_ops(
                    record.data.chunks(),
                    &object_owner(bucket, key, &record.version),
                );
                ops.extend(self.supersede(
                    txn,
                    group,
                    bucket,
                    key,
                    old,
                    !record.versioned,
                    Some(record.size),
                )?);
                ops.extend(self.drop_parts(txn, group, upload_id, stored)?);
                self.push_outbox(txn, group, ops)?;
                Ok(Response::Done)
            }
            Command::AbortUpload {
                bucket,
                key,
                upload_id,
            } => {
                let mut uploads = txn.open_table(UPLOADS)?;
                if uploads
                    .remove(keys::upload(group, bucket, key, upload_id).as_slice())?
                    .is_none()
                {
                    return Ok(Response::Refused(CommandError::NoSuchUpload));
                }
                drop(uploads);
                let stored = self.read_parts(txn, group, upload_id)?;
                let ops = self.drop_parts(txn, group, upload_id, stored)?;
                self.push_outbox(txn, group, ops)?;
                Ok(Response::Done)
            }
            Command::RefOps { ops } => {
                let mut refs = txn.open_table(REFS)?;
                for op in ops {
                    match op {
                        RefOp::Add { chunk, owner } => {
                            refs.insert(
                                keys::chunk_ref(group, &chunk.0, owner).as_slice(),
                                [].as_slice(),
                            )?;
                        }
                        RefOp::Remove { chunk, owner } => {
                            refs.remove(keys::chunk_ref(group, &chunk.0, owner).as_slice())?;
                        }
                    }
                }
                Ok(Response::Done)
            }
            Command::SetObjectTags {
                bucket,
                key,
                version,
                tags,
            } => {
                let mut objects = txn.open_table(OBJECTS)?;
                let k = keys::object(group, bucket, key);
                let mut record: ObjectRecord = match objects.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(Response::Refused(CommandError::NoSuchKey)),
                };
                if version.as_ref().is_some_and(|v| *v != record.version) {
                    return Ok(Response::Refused(CommandError::NoSuchKey));
                }
                // Same version, data and size: no reference or usage change.
                record.headers.tags = tags.clone();
                objects.insert(k.as_slice(), encode(&record)?.as_slice())?;
                Ok(Response::Done)
            }
            Command::SetBucketTags { .. }
            | Command::SetBucketCors { .. }
            | Command::SetBucketPolicy { .. }
            | Command::SetPublicAccessBlock { .. }
            | Command::SetBucketOwnership { .. }
            | Command::SetBucketAcl { .. }
            | Command::SetBucketLifecycle { .. }
            | Command::SetBucketEncryption { .. } => self.apply_bucket_config(txn, group, cmd),
            Command::LifecycleExpire {
                bucket,
                key,
                target,
                command,
            } => self.apply_lifecycle_expire(txn, group, bucket, key, target, command),
            Command::SetBucketVersioning { .. }
            | Command::PutDeleteMarker { .. }
            | Command::DeleteVersion { .. }
            | Command::SetVersionTags { .. }
            | Command::SetObjectAcl { .. } => self.apply_versioning(txn, group, cmd),
            Command::SetBucketObjectLock { .. } | Command::SetObjectLock { .. } => {
                self.apply_lock(txn, group, cmd)
            }
            Command::CreateKmsKey { .. } | Command::SetKmsKeyEnabled { .. } => {
                self.apply_kms_command(txn, group, cmd)
            }
            Command::SetRootKey { .. }
            | Command::CreateAccessKey { .. }
            | Command::UpdateAccessKey { .. }
            | Command::DeleteAccessKey { .. }
            | Command::SetMasterKeyCheck { .. }
            | Command::CreateToken { .. }
            | Command::RevokeToken { .. } => self.apply_key_command(txn, group, cmd),
            Command::Audited { actor, command } => {
                let before = self.audit_seq(txn, group)?;
                let r = self.apply(txn, group, command)?;
                self.attribute_audit(txn, group, before, actor)?;
                Ok(r)
            }
            Command::ChangeConfig {
                config,
                actor,
                message,
                rollback_of,
            } => self.apply_config_change(txn, group, config, actor, message, *rollback_of),
            Command::AuditEvent {
                what,
                outcome,
                at_ms,
            } => {
                self.audit(txn, group, *at_ms, what.clone())?;
                if let Some(o) = outcome {
                    self.set_last_audit_outcome(txn, group, o)?;
                }
                Ok(Response::Done)
            }
            Command::WithIntent {
                intent,
                chunks,
                command,
            } => {
                if let Some(i) = parse_intent(intent) {
                    let meta = txn.open_table(SM_META)?;
                    let fence: Option<i64> =
                        match meta.get(keys::sm_meta(group, &intent_fence(i.node)).as_slice())? {
                            Some(v) => Some(decode(v.value())?),
                            None => None,
                        };
                    if fence.is_some_and(|boot| boot != i.boot_ms) {
                        return Ok(Response::Refused(CommandError::Invalid(
                            "the upload's node restarted since it began; its intent is fenced"
                                .into(),
                        )));
                    }
                    let expired: Option<i64> = match meta
                        .get(keys::sm_meta(group, &intent_expiry_fence(i.node)).as_slice())?
                    {
                        Some(v) => Some(decode(v.value())?),
                        None => None,
                    };
                    if expired.is_some_and(|at| i.created_ms <= at) {
                        return Ok(Response::Refused(CommandError::Invalid(
                            "the upload took longer than the intent TTL; its intent was swept"
                                .into(),
                        )));
                    }
                }
                let r = self.apply(txn, group, command)?;
                if matches!(r, Response::Refused(_)) {
                    return Ok(r);
                }
                // After the command's own outbox entries: delivered in order per target
                // partition, each intent leaves a reference set only after the `Add` that
                // replaces it.
                let ops = chunks
                    .iter()
                    .map(|c| RefOp::Remove {
                        chunk: *c,
                        owner: intent.clone(),
                    })
                    .collect();
                self.push_outbox(txn, group, ops)?;
                Ok(r)
            }
            Command::FenceIntents { node, boot_ms } => {
                self.put_sm_meta(txn, group, &intent_fence(*node), boot_ms)?;
                Ok(Response::Done)
            }
            Command::FenceIntentsBefore { node, created_ms } => {
                let name = intent_expiry_fence(*node);
                let before: Option<i64> = {
                    let meta = txn.open_table(SM_META)?;
                    let v = meta.get(keys::sm_meta(group, &name).as_slice())?;
                    match v {
                        Some(v) => Some(decode(v.value())?),
                        None => None,
                    }
                };
                // Only ever raised: a late, lower fence must not reopen swept intents.
                if before.is_none_or(|b| b < *created_ms) {
                    self.put_sm_meta(txn, group, &name, created_ms)?;
                }
                Ok(Response::Done)
            }
            Command::OutboxAck { up_to } => {
                let mut outbox = txn.open_table(OUTBOX)?;
                let start = keys::outbox(group, 0);
                let end = keys::outbox(group, *up_to);
                outbox.retain_in(start.as_slice()..=end.as_slice(), |_, _| false)?;
                Ok(Response::Done)
            }
            Command::RebalanceStart { .. }
            | Command::RebalanceFinish { .. }
            | Command::SetRebalancePaused { .. }
            | Command::CancelRebalance { .. } => self.apply_rebalance(txn, group, cmd),
            Command::SetNodeMaintenance { node_id, on, at_ms } => {
                self.update_node(txn, group, node_id, *at_ms, |rec| {
                    let before = std::mem::replace(&mut rec.maintenance, *on);
                    (before != *on).then(|| {
                        format!(
                            "node {node_id} maintenance {}",
                            if *on { "on" } else { "off" }
                        )
                    })
                })
            }
        }
    }

    /// Appends an audit entry for a state change of the cluster catalog.
    /// Changes a registered node's record with `change`, which returns the audit line when
    /// the change is one worth auditing; `UnknownNode` if the node is not registered.
    fn update_node(
        &self,
        txn: &WriteTransaction,
        group: u64,
        node_id: &str,
        at_ms: i64,
        change: impl FnOnce(&mut NodeRecord) -> Option<String>,
    ) -> Result<Response, MetaError> {
        let mut t = txn.open_table(NODES)?;
        let k = keys::bucket(group, node_id);
        let mut rec: NodeRecord = match t.get(k.as_slice())? {
            Some(v) => decode(v.value())?,
            None => return Ok(Response::Refused(CommandError::UnknownNode(node_id.into()))),
        };
        let audit = change(&mut rec);
        t.insert(k.as_slice(), encode(&rec)?.as_slice())?;
        drop(t);
        if let Some(what) = audit {
            self.audit(txn, group, at_ms, what)?;
        }
        Ok(Response::Done)
    }

    pub(crate) fn audit(
        &self,
        txn: &WriteTransaction,
        group: u64,
        at_ms: i64,
        what: String,
    ) -> Result<(), MetaError> {
        let mut meta = txn.open_table(SM_META)?;
        let seq_key = keys::sm_meta(group, AUDIT_SEQ);
        let seq: u64 = match meta.get(seq_key.as_slice())? {
            Some(v) => decode::<u64>(v.value())? + 1,
            None => 1,
        };
        meta.insert(seq_key.as_slice(), encode(&seq)?.as_slice())?;
        let mut t = txn.open_table(AUDIT)?;
        let entry = AuditEntry {
            seq,
            at_ms,
            what,
            actor: None,
            outcome: None,
        };
        t.insert(
            keys::outbox(group, seq).as_slice(),
            encode(&entry)?.as_slice(),
        )?;
        Ok(())
    }

    /// Records `outcome` on the last audit entry of `group`.
    fn set_last_audit_outcome(
        &self,
        txn: &WriteTransaction,
        group: u64,
        outcome: &str,
    ) -> Result<(), MetaError> {
        let seq = self.audit_seq(txn, group)?;
        let mut t = txn.open_table(AUDIT)?;
        let k = keys::outbox(group, seq);
        let entry: Option<AuditEntry> = match t.get(k.as_slice())? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        if let Some(mut e) = entry {
            e.outcome = Some(outcome.to_string());
            t.insert(k.as_slice(), encode(&e)?.as_slice())?;
        }
        Ok(())
    }

    /// The last audit sequence number written in `group` (0: none).
    pub(crate) fn audit_seq(&self, txn: &WriteTransaction, group: u64) -> Result<u64, MetaError> {
        let meta = txn.open_table(SM_META)?;
        let seq_key = keys::sm_meta(group, AUDIT_SEQ);
        let v = meta.get(seq_key.as_slice())?;
        match v {
            Some(v) => decode::<u64>(v.value()),
            None => Ok(0),
        }
    }

    /// Sets `actor` on the audit entries written after sequence number `after`.
    fn attribute_audit(
        &self,
        txn: &WriteTransaction,
        group: u64,
        after: u64,
        actor: &str,
    ) -> Result<(), MetaError> {
        let last = self.audit_seq(txn, group)?;
        let mut t = txn.open_table(AUDIT)?;
        for seq in after.saturating_add(1)..=last {
            let k = keys::outbox(group, seq);
            let entry: Option<AuditEntry> = match t.get(k.as_slice())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            if let Some(mut e) = entry {
                e.actor = Some(actor.to_string());
                t.insert(k.as_slice(), encode(&e)?.as_slice())?;
            }
        }
        Ok(())
    }

    /// Audit entries of `group` with sequence number > `after`, oldest first, at most `max`.
    pub fn audit_log(
        &self,
        group: u64,
        after: u64,
        max: usize,
    ) -> Result<Vec<AuditEntry>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(AUDIT)?;
        let (s, e) = (
            keys::outbox(group, after.saturating_add(1)),
            keys::group_end(group),
        );
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())?.take(max) {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn read_parts(
        &self,
        txn: &WriteTransaction,
        group: u64,
        upload_id: &str,
    ) -> Result<Vec<PartRecord>, MetaError> {
        let parts = txn.open_table(PARTS)?;
        let start = keys::parts_prefix(group, upload_id);
        let end = keys::prefix_end(&start).unwrap_or_else(|| keys::group_end(group));
        let mut out = Vec::new();
        for item in parts.range(start.as_slice()..end.as_slice())? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Deletes an upload's part records; returns the reference removals for their chunks.
    fn drop_parts(
        &self,
        txn: &WriteTransaction,
        group: u64,
        upload_id: &str,
        stored: Vec<PartRecord>,
    ) -> Result<Vec<RefOp>, MetaError> {
        let mut parts = txn.open_table(PARTS)?;
        let mut ops = Vec::new();
        for p in stored {
            parts.remove(keys::part(group, upload_id, p.part_number).as_slice())?;
            ops.extend(remove_ops(
                p.data.chunks(),
                &part_owner(upload_id, p.part_number, &p.version),
            ));
        }
        Ok(ops)
    }

    pub(crate) fn push_outbox(
        &self,
        txn: &WriteTransaction,
        group: u64,
        ops: Vec<RefOp>,
    ) -> Result<(), MetaError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut meta = txn.open_table(SM_META)?;
        let seq_key = keys::sm_meta(group, OUTBOX_SEQ);
        let mut seq: u64 = match meta.get(seq_key.as_slice())? {
            Some(v) => decode(v.value())?,
            None => 0,
        };
        let mut outbox = txn.open_table(OUTBOX)?;
        for op in ops {
            seq += 1;
            outbox.insert(keys::outbox(group, seq).as_slice(), encode(&op)?.as_slice())?;
        }
        meta.insert(seq_key.as_slice(), encode(&seq)?.as_slice())?;
        Ok(())
    }

    // ---- raw state-machine metadata (used by the Raft adaptor) ----

    /// Stores a small value under `name` in `group`'s metadata, inside `txn`.
    pub fn put_sm_meta<T: Serialize>(
        &self,
        txn: &WriteTransaction,
        group: u64,
        name: &str,
        v: &T,
    ) -> Result<(), MetaError> {
        let mut meta = txn.open_table(SM_META)?;
        meta.insert(keys::sm_meta(group, name).as_slice(), encode(v)?.as_slice())?;
        Ok(())
    }

    /// Reads a value stored by `put_sm_meta`.
    pub fn get_sm_meta<T: DeserializeOwned>(
        &self,
        group: u64,
        name: &str,
    ) -> Result<Option<T>, MetaError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(SM_META)?;
        match meta.get(keys::sm_meta(group, name).as_slice())? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    // ---- queries ----

    pub fn get_bucket(&self, group: u64, name: &str) -> Result<Option<BucketRecord>, MetaError> {
        self.get_one(BUCKETS, &keys::bucket(group, name))
    }

    pub fn list_buckets(&self, group: u64) -> Result<Vec<BucketRecord>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(BUCKETS)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Registered nodes, by node id.
    pub fn list_nodes(&self, group: u64) -> Result<Vec<NodeRecord>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(NODES)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// The current layout, if one was set.
    pub fn layout(&self, group: u64) -> Result<Option<LayoutRecord>, MetaError> {
        self.get_sm_meta(group, LAYOUT)
    }

    /// The cluster-wide settings, once recorded at formation.
    pub fn cluster_config(&self, group: u64) -> Result<Option<ClusterConfig>, MetaError> {
        self.get_sm_meta(group, CLUSTER_CONFIG)
    }

    /// An access key's record.
    pub fn access_key(
        &self,
        group: u64,
        access_key: &str,
    ) -> Result<Option<AccessKeyRecord>, MetaError> {
        self.get_one(KEYS, &keys::bucket(group, access_key))
    }

    /// The cluster's (id, name), once formed.
    pub fn cluster_id(&self, group: u64) -> Result<Option<(String, String)>, MetaError> {
        self.get_sm_meta(group, CLUSTER_ID)
    }

    pub fn get_object(
        &self,
        group: u64,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectRecord>, MetaError> {
        self.get_one(OBJECTS, &keys::object(group, bucket, key))
    }

    pub fn get_upload(
        &self,
        group: u64,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<UploadRecord>, MetaError> {
        self.get_one(UPLOADS, &keys::upload(group, bucket, key, upload_id))
    }

    /// Parts of `upload_id` with number > `after`, at most `max`, plus whether more follow.
    pub fn list_parts(
        &self,
        group: u64,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartRecord>, bool), MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(PARTS)?;
        let start = keys::part(group, upload_id, after.saturating_add(1));
        let end = keys::prefix_end(&keys::parts_prefix(group, upload_id))
            .unwrap_or_else(|| keys::group_end(group));
        let mut out = Vec::new();
        if after == u32::MAX {
            return Ok((out, false));
        }
        for item in t.range(start.as_slice()..end.as_slice())? {
            let (_, v) = item?;
            if out.len() == max {
                return Ok((out, true));
            }
            out.push(decode(v.value())?);
        }
        Ok((out, false))
    }

    /// Whether `bucket` has any object, version, delete marker or open upload in `group`.
    pub fn bucket_has_data(&self, group: u64, bucket: &str) -> Result<bool, MetaError> {
        let txn = self.db.begin_read()?;
        let p = keys::bucket_prefix(group, bucket);
        let end = keys::prefix_end(&p).unwrap_or_else(|| keys::group_end(group));
        for t in [OBJECTS, UPLOADS, crate::versions::VERSIONS] {
            let t = txn.open_table(t)?;
            if t.range(p.as_slice()..end.as_slice())?.next().is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Lists objects of `bucket` in key order: keys starting with `prefix`, strictly after
    /// `after`, rolling keys that contain `delimiter` after the prefix into common prefixes.
    pub fn list_objects(
        &self,
        group: u64,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<Listing<ObjectRecord>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OBJECTS)?;
        let mut listing: Listing<ObjectRecord> =
            list_range(&t, group, bucket, prefix, delimiter, after, max, |k| {
                Some(k.to_string())
            })?;
        // Listings need sizes and ETags, not bytes: drop inline data so a page of small
        // objects stays small (it may be forwarded between nodes).
        for (_, r) in listing.entries.iter_mut() {
            if let ObjectData::Inline(b) = &mut r.data {
                *b = Vec::new();
            }
        }
        Ok(listing)
    }

    /// Lists open uploads of `bucket` ordered by (key, upload id).
    pub fn list_uploads(
        &self,
        group: u64,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<(&str, Option<&str>)>,
        max: usize,
    ) -> Result<Listing<UploadRecord>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(UPLOADS)?;
        // Upload entries are `key 0 upload_id`; the "key" for prefix/delimiter is the part before NUL.
        let after_raw = after.map(|(k, id)| match id {
            Some(id) => format!("{k}\0{id}"),
            // AWS: with only key-marker, uploads for that key are skipped entirely.
            None => format!("{k}\0\u{10FFFF}"),
        });
        list_range(
            &t,
            group,
            bucket,
            prefix,
            delimiter,
            after_raw.as_deref(),
            max,
            |raw| raw.split('\0').next().map(str::to_string),
        )
    }

    /// Owners referencing `chunk` (in the chunk's partition `group`).
    pub fn chunk_ref_count(&self, group: u64, chunk: &ChunkId) -> Result<usize, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(REFS)?;
        let p = keys::refs_prefix(group, &chunk.0);
        let end = keys::prefix_end(&p).unwrap_or_else(|| keys::group_end(group));
        let mut n = 0;
        for item in t.range(p.as_slice()..end.as_slice())? {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Upload intents in `group`'s reference sets created before `before_ms`, as the
    /// `RefOp::Remove`s that drop them (at most `max`). Intents of uploads that crashed are
    /// otherwise never removed.
    pub fn expired_intents(
        &self,
        group: u64,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<(RefOp, IntentOwner)>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(REFS)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (k, _) = item?;
            let kb = k.value();
            if kb.len() < 40 {
                return Err(MetaError::Codec("bad chunk reference key".into()));
            }
            let Ok(owner) = std::str::from_utf8(&kb[40..]) else {
                continue;
            };
            if let Some(i) = parse_intent(owner).filter(|i| i.created_ms < before_ms) {
                let mut id = [0u8; 32];
                id.copy_from_slice(&kb[8..40]);
                out.push((
                    RefOp::Remove {
                        chunk: ChunkId(id),
                        owner: owner.to_string(),
                    },
                    i,
                ));
                if out.len() == max {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Intents in `group`'s reference sets made on raft node `node` by a process other than the
    /// one started at `boot_ms` (an earlier process of that node: its uploads died with it),
    /// with what their owner names say (at most `max`).
    pub fn stale_intents(
        &self,
        group: u64,
        node: u64,
        boot_ms: i64,
        max: usize,
    ) -> Result<Vec<(RefOp, IntentOwner)>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(REFS)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (k, _) = item?;
            let kb = k.value();
            if kb.len() < 40 {
                return Err(MetaError::Codec("bad chunk reference key".into()));
            }
            let Ok(owner) = std::str::from_utf8(&kb[40..]) else {
                continue;
            };
            let Some(i) = parse_intent(owner).filter(|i| i.node == node && i.boot_ms != boot_ms)
            else {
                continue;
            };
            let mut id = [0u8; 32];
            id.copy_from_slice(&kb[8..40]);
            out.push((
                RefOp::Remove {
                    chunk: ChunkId(id),
                    owner: owner.to_string(),
                },
                i,
            ));
            if out.len() == max {
                break;
            }
        }
        Ok(out)
    }

    /// Distinct chunks with at least one reference in `group`, after `after`, at most `max`.
    pub fn referenced_chunks(
        &self,
        group: u64,
        after: Option<&ChunkId>,
        max: usize,
    ) -> Result<Vec<ChunkId>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(REFS)?;
        let start = match after {
            // Every key of `after` is `g | after | owner`; the next chunk starts past them all.
            Some(a) => keys::prefix_end(&keys::refs_prefix(group, &a.0))
                .unwrap_or_else(|| keys::group_end(group)),
            None => keys::group_start(group),
        };
        let end = keys::group_end(group);
        let mut out: Vec<ChunkId> = Vec::new();
        for item in t.range(start.as_slice()..end.as_slice())? {
            let (k, _) = item?;
            let kb = k.value();
            if kb.len() < 40 {
                return Err(MetaError::Codec("bad chunk reference key".into()));
            }
            let mut id = [0u8; 32];
            id.copy_from_slice(&kb[8..40]);
            if out.last().map(|l| l.0) != Some(id) {
                if out.len() == max {
                    break;
                }
                out.push(ChunkId(id));
            }
        }
        Ok(out)
    }

    /// Up to `max` undelivered outbox entries of `group`, oldest first.
    pub fn outbox(&self, group: u64, max: usize) -> Result<Vec<(u64, RefOp)>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(OUTBOX)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())?.take(max) {
            let (k, v) = item?;
            let mut seq = [0u8; 8];
            let kb = k.value();
            if kb.len() != 16 {
                return Err(MetaError::Codec("bad outbox key".into()));
            }
            seq.copy_from_slice(&kb[8..16]);
            out.push((u64::from_be_bytes(seq), decode(v.value())?));
        }
        Ok(out)
    }

    /// Every upload older than `before_ms` in `group` (for the abandoned-upload reaper).
    pub fn uploads_older_than(
        &self,
        group: u64,
        before_ms: i64,
    ) -> Result<Vec<UploadRecord>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(UPLOADS)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut out = Vec::new();
        for item in t.range(s.as_slice()..e.as_slice())? {
            let (_, v) = item?;
            let u: UploadRecord = decode(v.value())?;
            if u.initiated_ms < before_ms {
                out.push(u);
            }
        }
        Ok(out)
    }

    fn get_one<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        key: &[u8],
    ) -> Result<Option<T>, MetaError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(table)?;
        match t.get(key)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    // ---- snapshots ----

    /// Serialises all of `group`'s state (every table's range) into one blob; also returns the
    /// group's state-machine metadata entries read in the same transaction.
    pub fn export_group(&self, group: u64) -> Result<(Vec<u8>, SmMetaEntries), MetaError> {
        let txn = self.db.begin_read()?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut rows: Vec<(u8, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut sm_meta = BTreeMap::new();
        for (i, def) in ALL_TABLES.iter().enumerate() {
            let t = txn.open_table(*def)?;
            for item in t.range(s.as_slice()..e.as_slice())? {
                let (k, v) = item?;
                if i == SM_META_INDEX {
                    let name = String::from_utf8_lossy(&k.value()[8..]).into_owned();
                    sm_meta.insert(name, v.value().to_vec());
                }
                rows.push((i as u8, k.value()[8..].to_vec(), v.value().to_vec()));
            }
        }
        Ok((encode(&rows)?, sm_meta))
    }

    /// Replaces all of `group`'s state with `blob` (from `export_group`), inside `txn`.
    pub fn import_group(
        &self,
        txn: &WriteTransaction,
        group: u64,
        blob: &[u8],
    ) -> Result<(), MetaError> {
        let rows: Vec<(u8, Vec<u8>, Vec<u8>)> = decode(blob)?;
        let (s, e) = (keys::group_start(group), keys::group_end(group));
        let mut tables: Vec<Table<&[u8], &[u8]>> = Vec::new();
        for def in ALL_TABLES {
            let mut t = txn.open_table(def)?;
            t.retain_in(s.as_slice()..e.as_slice(), |_, _| false)?;
            tables.push(t);
        }
        for (i, k, v) in rows {
            let t = tables
                .get_mut(usize::from(i))
                .ok_or_else(|| MetaError::Codec("bad table id".into()))?;
            let mut full = keys::group_start(group);
            full.extend_from_slice(&k);
            t.insert(full.as_slice(), v.as_slice())?;
        }
        Ok(())
    }
}

/// A group's state-machine metadata entries by name (`applied`, `membership`, ...).
pub type SmMetaEntries = BTreeMap<String, Vec<u8>>;

/// One page of a sorted listing.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Listing<T> {
    pub entries: Vec<(String, T)>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last entry key or common prefix emitted.
    pub last: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn list_range<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    group: u64,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
    logical_key: impl Fn(&str) -> Option<String>,
) -> Result<Listing<T>, MetaError> {
    let base = keys::bucket_prefix(group, bucket);
    let mut lo = base.clone();
    lo.extend_from_slice(prefix.as_bytes());
    let hi = keys::prefix_end(&lo).unwrap_or_else(|| keys::group_end(group));
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut cursor: Vec<u8> = lo.clone();
    let mut exclusive = false;
    if let Some(a) = after {
        // A marker inside a common prefix (or equal to it) means that prefix was already
        // returned: resume after every key under it.
        let rolled = delimiter.and_then(|d| {
            let rest = a.strip_prefix(prefix)?;
            let pos = rest.find(d)?;
            Some(&a[..prefix.len() + pos + d.len()])
        });
        let mut k = base.clone();
        match rolled {
            Some(cp) => {
                k.extend_from_slice(cp.as_bytes());
                k.push(0xff);
                if k > cursor {
                    cursor = k;
                }
            }
            None => {
                k.extend_from_slice(a.as_bytes());
                if k >= cursor {
                    cursor = k;
                    exclusive = true;
                }
            }
        }
    }
    let mut out = Listing {
        entries: Vec::new(),
        common_prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    if max == 0 {
        return Ok(out);
    }
    'outer: loop {
        let range = if exclusive {
            t.range::<&[u8]>((
                std::ops::Bound::Excluded(cursor.as_slice()),
                std::ops::Bound::Excluded(hi.as_slice()),
            ))?
        } else {
            t.range::<&[u8]>(cursor.as_slice()..hi.as_slice())?
        };
        for item in range {
            let (k, v) = item?;
            let raw = std::str::from_utf8(&k.value()[base.len()..])
                .map_err(|_| MetaError::Codec("non-utf8 key".into()))?
                .to_string();
            let Some(key) = logical_key(&raw) else {
                continue;
            };
            if let Some(d) = delimiter {
                if let Some(pos) = key[prefix.len()..].find(d) {
                    let cp = key[..prefix.len() + pos + d.len()].to_string();
                    if out.entries.len() + out.common_prefixes.len() == max {
                        out.truncated = true;
                        break 'outer;
                    }
                    // Resume after every key under this common prefix: 0xff never occurs in UTF-8.
                    let mut next = base.clone();
                    next.extend_from_slice(cp.as_bytes());
                    next.push(0xff);
                    out.last = Some(cp.clone());
                    out.common_prefixes.push(cp);
                    cursor = next;
                    exclusive = false;
                    continue 'outer;
                }
            }
            if out.entries.len() + out.common_prefixes.len() == max {
                out.truncated = true;
                break 'outer;
            }
            out.last = Some(raw.clone());
            out.entries.push((key, decode(v.value())?));
        }
        break;
    }
    Ok(out)
}

fn add_ops(chunks: &[crate::model::ChunkRef], owner: &str) -> Vec<RefOp> {
    chunks
        .iter()
        .map(|c| RefOp::Add {
            chunk: c.id,
            owner: owner.to_string(),
        })
        .collect()
}

fn remove_ops(chunks: &[crate::model::ChunkRef], owner: &str) -> Vec<RefOp> {
    chunks
        .iter()
        .map(|c| RefOp::Remove {
            chunk: c.id,
            owner: owner.to_string(),
        })
        .collect()
}
