//! Commands proposed to Raft groups and their results. Applying a command is deterministic:
//! every replica that applies the same log ends in the same state.

use serde::{Deserialize, Serialize};

use crate::bucket_config::CorsRule;
use crate::model::{
    AccessKeyRecord, BucketRecord, ChunkId, ClusterConfig, Grant, KeyStatus, LayoutRecord,
    NodeHealth, NodeRecord, NodeState, ObjectRecord, PartRecord, SealedSecret, Tag, TokenRecord,
    UploadRecord, Versioning, WriteConsistency,
};
use crate::versions::DeleteMarker;

/// A condition checked atomically with a write, inside the state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    #[default]
    None,
    /// The key must not exist (`If-None-Match: *`).
    Absent,
    /// The current version's ETag must equal this (unquoted); `*` means "must exist".
    EtagMatches(String),
}

impl Condition {
    /// Checks the condition against the key's current version (`None`: no object), as the
    /// state machine does inside the apply that commits a write. The refusal is the one S3
    /// answers: `NoSuchKey` (404) for an ETag condition on a key that does not exist,
    /// `PreconditionFailed` (412) for any other condition that does not hold.
    pub fn check(&self, current: Option<&ObjectRecord>) -> Result<(), CommandError> {
        match (self, current) {
            (Condition::None, _) | (Condition::Absent, None) => Ok(()),
            (Condition::Absent, Some(_)) => Err(CommandError::PreconditionFailed),
            (Condition::EtagMatches(_), None) => Err(CommandError::NoSuchKey),
            (Condition::EtagMatches(e), Some(r)) if e == "*" || r.etag == *e => Ok(()),
            (Condition::EtagMatches(_), Some(_)) => Err(CommandError::PreconditionFailed),
        }
    }
}

/// A change to a chunk's reference set, delivered from an object's partition to the chunk's
/// partition through the outbox. Set semantics make redelivery harmless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefOp {
    Add { chunk: ChunkId, owner: String },
    Remove { chunk: ChunkId, owner: String },
}

impl RefOp {
    pub fn chunk(&self) -> &ChunkId {
        match self {
            RefOp::Add { chunk, .. } | RefOp::Remove { chunk, .. } => chunk,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    // ---- system group ----
    CreateBucket {
        record: BucketRecord,
    },
    DeleteBucket {
        name: String,
    },
    /// Records the cluster's identity once, at formation; refused if already set to another id.
    FormCluster {
        cluster_id: String,
        name: String,
    },
    /// Records a new version of the cluster-wide settings (`config.version` must be the next
    /// one; the partition count never changes).
    SetClusterConfig {
        config: ClusterConfig,
    },
    /// Adds an access key valid on every node; refused if the key id exists with another
    /// secret.
    PutAccessKey {
        record: AccessKeyRecord,
    },
    /// Adds or updates a node's registration (addresses, zone, labels, inventory). A node
    /// already in the catalog keeps its lifecycle state (e.g. draining) and health.
    RegisterNode {
        record: NodeRecord,
    },
    /// A node's periodic liveness report with fresh stats; refused for unknown nodes.
    Heartbeat {
        node_id: String,
        disk_capacity_bytes: u64,
        disk_free_bytes: u64,
        at_ms: i64,
    },
    /// Moves a node through its lifecycle (joining → active → draining → removed).
    SetNodeState {
        node_id: String,
        state: NodeState,
        at_ms: i64,
    },
    /// The failure detector's verdict on a node changed.
    SetNodeHealth {
        node_id: String,
        health: NodeHealth,
        at_ms: i64,
    },
    /// Changes a bucket's settings.
    SetBucketConsistency {
        name: String,
        write_consistency: Option<WriteConsistency>,
    },
    /// Stores a new layout version; refused unless `layout.version` is the next version.
    SetLayout {
        layout: LayoutRecord,
    },

    // ---- partition groups ----
    PutObject {
        bucket: String,
        key: String,
        record: ObjectRecord,
        condition: Condition,
    },
    /// Removes the current version of `bucket/key` (a bucket that never versioned). Refused
    /// with `ObjectLocked` while object lock protects it at `at_ms` (`crate::lock`).
    DeleteObject {
        bucket: String,
        key: String,
        /// When the delete was asked (unix ms): object lock compares retention against it, so
        /// every replica decides the same. Appended with a default (older logs: 0).
        #[serde(default)]
        at_ms: i64,
        /// The request bypasses GOVERNANCE retention (and may: the front end checked the
        /// `s3:BypassGovernanceRetention` permission). Appended with a default.
        #[serde(default)]
        bypass_governance: bool,
    },
    CreateUpload {
        record: UploadRecord,
    },
    PutPart {
        bucket: String,
        key: String,
        upload_id: String,
        part: PartRecord,
    },
    /// Turns an upload into an object. `parts` are the (number, etag) pairs the record was
    /// built from; the apply re-checks them so a part replaced meanwhile fails the completion.
    CompleteUpload {
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String)>,
        record: ObjectRecord,
        condition: Condition,
    },
    AbortUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// Applied in a chunk's partition: update reference sets.
    RefOps {
        ops: Vec<RefOp>,
    },
    /// Applied in an object's partition: outbox entries up to `up_to` (inclusive) were delivered.
    OutboxAck {
        up_to: u64,
    },

    // ---- system group: keys and tokens (appended: older logs number the variants above) ----
    /// Records `record` (sealed, fingerprinted) as the root key configured on `node_id`. The
    /// node stops vouching for any other root key; a root key no node vouches for any more is
    /// deleted (revoked everywhere). A deleted key or a secret rotated away is refused, so a
    /// node still configured with a revoked root key cannot bring it back.
    SetRootKey {
        node_id: String,
        record: AccessKeyRecord,
    },
    /// Adds a new (non-root) access key; refused if the id was ever used.
    CreateAccessKey {
        record: AccessKeyRecord,
    },
    UpdateAccessKey {
        access_key: String,
        change: KeyChange,
        at_ms: i64,
    },
    /// Deletes a key: its record stays as a tombstone without secret or grants.
    DeleteAccessKey {
        access_key: String,
        at_ms: i64,
    },
    /// Records which master key seals this cluster's secrets (set once).
    SetMasterKeyCheck {
        check: String,
    },
    CreateToken {
        record: TokenRecord,
    },
    /// Revokes the unrevoked token(s) named `name`.
    RevokeToken {
        name: String,
        at_ms: i64,
    },
    /// `command`, with every audit entry it writes attributed to `actor` (a token name or a
    /// root key): how management-API changes are audited with who made them.
    Audited {
        actor: String,
        command: Box<Command>,
    },
    /// A new version of the cluster configuration from the management API (a change or a
    /// rollback, `rollback_of` naming the version restored). Refused unless `config.version`
    /// is the next one, something changes and every changed setting is valid for the
    /// registered nodes (`crate::config_doc::validate_change`). Recorded in the history with
    /// `actor` and `message`.
    ChangeConfig {
        config: ClusterConfig,
        actor: String,
        message: String,
        rollback_of: Option<u64>,
    },
    /// Writes only an audit entry: something worth auditing that is not a change of this
    /// state machine (a node shutdown), or a change the management API refused (`outcome`:
    /// why; None: it happened). Wrap it in `Audited` to name the actor.
    AuditEvent {
        what: String,
        outcome: Option<String>,
        at_ms: i64,
    },

    // ---- partition groups: safe GC (appended) ----
    /// Applied in an object's partition: `command` (a `PutObject` or `PutPart`) whose chunks
    /// were first covered by the upload intent `intent` (an owner made by
    /// [`crate::store::intent_owner`], added to each chunk's reference set before any byte was
    /// sent). When `command` succeeds, a `RefOp::Remove` of the intent for each of `chunks` is
    /// queued in the outbox *after* the command's own `Add`s, so a chunk's reference set never
    /// goes empty between the upload and the commit's references reaching it. When `command`
    /// is refused nothing is queued: the uploader removes its intents itself.
    WithIntent {
        intent: String,
        chunks: Vec<ChunkId>,
        command: Box<Command>,
    },
    /// Applied in an object's partition: from now on a `WithIntent` whose intent was made on
    /// raft node `node` by a process other than the one started at `boot_ms` is refused. Once
    /// committed, no upload of an earlier process of that node can commit here any more, so its
    /// intents naming this partition may be removed (`cairn_chunk::intents::sweep`).
    FenceIntents {
        node: u64,
        boot_ms: i64,
    },
    /// Sets or clears a node's maintenance flag (suppresses re-homing it while it is down);
    /// refused for unknown nodes.
    SetNodeMaintenance {
        node_id: String,
        on: bool,
        at_ms: i64,
    },
    /// Applied in an object's partition: from now on a `WithIntent` whose intent was made on
    /// raft node `node` at or before `created_ms` (the time written in the intent's own name)
    /// is refused. The sweep commits this before removing intents older than the TTL, so an
    /// upload still alive past it (a stalled process, a clock far off) can no longer commit
    /// references to chunks GC may collect: safety rests on this fence, not on the clocks.
    FenceIntentsBefore {
        node: u64,
        created_ms: i64,
    },

    // ---- system group: the rebalance plan (appended; see `crate::rebalance`) ----
    /// A partition leader (`node`) claims a slot to move `partition` from its voters `from` to
    /// `to`; refused while the plan is paused or `rebalance.max_moves` moves are in flight (a
    /// move already in flight is taken over).
    RebalanceStart {
        partition: u32,
        node: String,
        from: Vec<String>,
        to: Vec<String>,
        at_ms: i64,
    },
    /// The move of `partition` reached voters `reached` and its new holders hold every
    /// referenced chunk (`bytes` copied): done, or planned again if the target changed.
    RebalanceFinish {
        partition: u32,
        reached: Vec<String>,
        bytes: u64,
        at_ms: i64,
    },
    /// Pauses (no move starts) or resumes the rebalance.
    SetRebalancePaused {
        paused: bool,
        at_ms: i64,
    },
    /// Drops the planned moves: writes a layout keeping them in place and holds it while the
    /// nodes a layout should place are `expected`.
    CancelRebalance {
        expected: Vec<String>,
        at_ms: i64,
    },

    // ---- S3 tagging and CORS (appended) ----
    /// Applied in an object's partition: replaces the tags of the current version of
    /// `bucket/key` in place (same version, data and references). Refused with `NoSuchKey`
    /// when there is no such object, or when `version` names another version than the current
    /// one.
    SetObjectTags {
        bucket: String,
        key: String,
        version: Option<String>,
        tags: Vec<Tag>,
    },
    /// System group: replaces bucket `name`'s tags (empty: removes them).
    SetBucketTags {
        name: String,
        tags: Vec<Tag>,
    },
    /// System group: sets (Some) or removes (None) bucket `name`'s CORS rules.
    SetBucketCors {
        name: String,
        cors: Option<Vec<CorsRule>>,
    },
    /// System group: sets (Some) or removes (None) bucket `name`'s policy (JSON text).
    SetBucketPolicy {
        name: String,
        policy: Option<String>,
    },
    /// System group: sets (Some) or removes (None) bucket `name`'s public access block.
    SetPublicAccessBlock {
        name: String,
        block: Option<crate::bucket_config::PublicAccessBlock>,
    },
    /// System group: sets (Some) or removes (None) bucket `name`'s ownership controls.
    SetBucketOwnership {
        name: String,
        ownership: Option<crate::bucket_config::ObjectOwnership>,
    },

    // ---- S3 versioning (appended; see `crate::versions`) ----
    /// System group: sets bucket `name`'s versioning state.
    SetBucketVersioning {
        name: String,
        state: Versioning,
    },
    /// Applied in an object's partition: makes `marker` the latest version of `bucket/key`
    /// (DELETE without a version id on a versioned bucket). The previous current version
    /// becomes noncurrent, or is dropped when both are `null` versions.
    PutDeleteMarker {
        bucket: String,
        key: String,
        marker: DeleteMarker,
    },
    /// Applied in an object's partition: removes version `version_id` (as S3 shows it: an id
    /// or `null`) of `bucket/key` for good; the next newest becomes current when it is an
    /// object. Answers `Response::DeletedVersion`. Refused with `ObjectLocked` while object
    /// lock protects the version at `at_ms` (`crate::lock`).
    DeleteVersion {
        bucket: String,
        key: String,
        version_id: String,
        /// When the delete was asked (unix ms), as in `DeleteObject`. Appended with a default.
        #[serde(default)]
        at_ms: i64,
        /// As in `DeleteObject`. Appended with a default.
        #[serde(default)]
        bypass_governance: bool,
    },

    // ---- S3 object lock (appended; see `crate::lock`) ----
    /// System group: enables object lock on bucket `name` (or replaces its default rule).
    /// Refused with `InvalidBucketState` unless the bucket's versioning is Enabled.
    SetBucketObjectLock {
        name: String,
        lock: crate::lock::BucketLock,
    },
    /// Applied in an object's partition: changes the retention or legal hold of version
    /// `version_id` (None: the current version) of `bucket/key` in place. A retention change
    /// is refused with `ObjectLocked` when it would weaken an active retention at `at_ms`
    /// (GOVERNANCE may be weakened with `bypass_governance`, COMPLIANCE never).
    SetObjectLock {
        bucket: String,
        key: String,
        version_id: Option<String>,
        change: crate::lock::LockChange,
        bypass_governance: bool,
        at_ms: i64,
    },

    // ---- S3 tagging of any version (appended) ----
    /// Applied in an object's partition: replaces the tags of version `version_id` (as S3
    /// shows it: an id or `null`) of `bucket/key`, current or noncurrent, in place (same
    /// version, data and references). Refused with `NoSuchKey` when there is no such version,
    /// and `Invalid` when it is a delete marker.
    SetVersionTags {
        bucket: String,
        key: String,
        version_id: String,
        tags: Vec<Tag>,
    },

    // ---- S3 ACLs (appended; see `crate::acl`) ----
    /// System group: replaces bucket `name`'s ACL grants (empty: private).
    SetBucketAcl {
        name: String,
        acl: Vec<crate::acl::AclGrant>,
    },
    /// Applied in an object's partition: replaces the ACL grants of version `version_id` of
    /// `bucket/key` (None: the current version), in place. Refused like `SetVersionTags`.
    SetObjectAcl {
        bucket: String,
        key: String,
        version_id: Option<String>,
        acl: Vec<crate::acl::AclGrant>,
    },

    // ---- S3 bucket lifecycle (appended; see `crate::lifecycle`) ----
    /// System group: sets (Some) or removes (None) bucket `name`'s lifecycle rules.
    SetBucketLifecycle {
        name: String,
        rules: Option<Vec<crate::lifecycle::LifecycleRule>>,
    },
    /// Applied in an object's partition by the lifecycle worker of its leader: `command` (the
    /// `DeleteObject`, `PutDeleteMarker` or `DeleteVersion` of `bucket/key` a user's DELETE
    /// would propose) if `target` still holds when it applies, else refused with
    /// `PreconditionFailed` (the key changed since the scan, or the action was already taken).
    LifecycleExpire {
        bucket: String,
        key: String,
        target: crate::lifecycle_sm::LifecycleTarget,
        command: Box<Command>,
    },

    // ---- SSE-KMS key store (appended; see `crate::kms`) ----
    /// System group: adds a key to the store. Refused with `KmsKeyExists` when the name is
    /// taken, unless `if_absent` (the default key's creation on first use), which then keeps
    /// the existing key.
    CreateKmsKey {
        record: crate::kms::KmsKeyRecord,
        if_absent: bool,
    },
    /// System group: enables or disables key `name`.
    SetKmsKeyEnabled {
        name: String,
        enabled: bool,
        at_ms: i64,
    },
    /// System group: sets (Some) or removes (None) bucket `name`'s default encryption.
    SetBucketEncryption {
        name: String,
        encryption: Option<crate::bucket_config::BucketEncryption>,
    },
}

/// A change to an existing access key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyChange {
    /// Active or Disabled (deleting is `DeleteAccessKey`).
    Status(KeyStatus),
    /// Adds a grant, replacing one on the same bucket pattern.
    Grant(Grant),
    /// Removes the grant on this bucket pattern.
    RemoveGrant(String),
    AllowCreateBucket(bool),
    /// A new secret; the old one is never accepted again.
    Rotate {
        sealed: SealedSecret,
        fingerprint: String,
    },
    /// Replaces the plaintext secret of a record written by an older release with the same
    /// secret sealed (refused for records that are sealed already).
    Seal {
        sealed: SealedSecret,
        fingerprint: String,
    },
}

/// Why a command was refused by the state machine. The state is unchanged in that case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CommandError {
    #[error("bucket already exists")]
    BucketExists,
    #[error("bucket does not exist")]
    NoSuchBucket,
    #[error("upload does not exist")]
    NoSuchUpload,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("cluster already formed with id {0}")]
    ClusterExists(String),
    #[error("stale layout version (current {0})")]
    StaleLayout(u64),
    #[error("node {0} is not registered")]
    UnknownNode(String),
    #[error("stale cluster config version (current {0})")]
    StaleConfig(u64),
    #[error("access key exists with another secret")]
    AccessKeyExists,
    #[error("{0}")]
    Invalid(String),
    #[error("access key {0} does not exist")]
    NoSuchAccessKey(String),
    #[error("access key {0} was revoked (deleted or rotated away); configure a new one")]
    AccessKeyRevoked(String),
    #[error("a token named {0} exists")]
    TokenExists(String),
    #[error("no active token named {0}")]
    NoSuchToken(String),
    #[error("this node's master key differs from the one that seals the cluster's secrets")]
    MasterKeyMismatch,
    /// A configuration change refused; `field` names the setting (`message` includes it).
    #[error("{message}")]
    InvalidConfig { field: String, message: String },
    /// A replica move may not start now (paused, or at `rebalance.max_moves`).
    #[error("move not started: {0}")]
    RebalanceRefused(String),
    /// A write conditioned on the key's ETag found no object (appended: refusals travel
    /// between nodes, older nodes number the variants above).
    #[error("key does not exist")]
    NoSuchKey,
    /// A bucket setting that the bucket's state does not allow (object lock without
    /// versioning, suspending versioning under object lock): S3's 409 InvalidBucketState.
    #[error("{0}")]
    InvalidBucketState(String),
    /// Object lock protects the version (S3's 403 AccessDenied).
    #[error("{0}")]
    ObjectLocked(String),
    #[error("version does not exist")]
    NoSuchVersion,
    /// The version named is a delete marker (S3's 405 MethodNotAllowed).
    #[error("the version is a delete marker")]
    MethodNotAllowed,
    /// (appended) A KMS key of this name exists.
    #[error("a KMS key named {0} exists")]
    KmsKeyExists(String),
    /// (appended) No KMS key of this name.
    #[error("no KMS key named {0}")]
    NoSuchKmsKey(String),
}

/// The result of applying one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    /// DeleteObject: whether something was deleted.
    Deleted(bool),
    Refused(CommandError),
    /// DeleteVersion (appended): whether the version existed and whether it was a marker.
    DeletedVersion {
        found: bool,
        marker: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectData, ObjectHeaders};

    fn object(etag: &str) -> ObjectRecord {
        ObjectRecord {
            versioned: false,
            version: "v1".into(),
            size: 1,
            etag: etag.into(),
            last_modified_ms: 0,
            headers: ObjectHeaders::default(),
            checksum: None,
            part_checksums: None,
            parts: None,
            data: ObjectData::Inline(vec![0]),
            encryption: None,
            lock: None,
        }
    }

    #[test]
    fn conditions_hold_or_say_why_not() {
        let a = object("aaa");
        let m = |e: &str| Condition::EtagMatches(e.into());
        assert_eq!(Condition::None.check(None), Ok(()));
        assert_eq!(Condition::None.check(Some(&a)), Ok(()));
        // If-None-Match: *
        assert_eq!(Condition::Absent.check(None), Ok(()));
        assert_eq!(
            Condition::Absent.check(Some(&a)),
            Err(CommandError::PreconditionFailed)
        );
        // If-Match
        assert_eq!(m("aaa").check(Some(&a)), Ok(()));
        assert_eq!(m("*").check(Some(&a)), Ok(()));
        assert_eq!(
            m("bbb").check(Some(&a)),
            Err(CommandError::PreconditionFailed)
        );
        assert_eq!(m("aaa").check(None), Err(CommandError::NoSuchKey));
        assert_eq!(m("*").check(None), Err(CommandError::NoSuchKey));
    }
}
