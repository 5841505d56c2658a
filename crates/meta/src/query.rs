//! Reads of a group's state machine, as values, so a node that does not lead (or host) a group
//! can forward the read to the node that does.

use serde::{Deserialize, Serialize};

use crate::command::RefOp;
use crate::model::{
    BucketRecord, ChunkId, LayoutRecord, NodeRecord, ObjectRecord, PartRecord, UploadRecord,
};
use crate::store::{Listing, MetaStore};
use crate::MetaError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    GetBucket {
        name: String,
    },
    ListBuckets,
    GetObject {
        bucket: String,
        key: String,
    },
    ListObjects {
        bucket: String,
        prefix: String,
        delimiter: Option<String>,
        after: Option<String>,
        max: usize,
    },
    GetUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    ListParts {
        upload_id: String,
        after: u32,
        max: usize,
    },
    ListUploads {
        bucket: String,
        prefix: String,
        delimiter: Option<String>,
        after: Option<(String, Option<String>)>,
        max: usize,
    },
    BucketHasData {
        bucket: String,
    },
    ChunkRefCount {
        chunk: ChunkId,
    },
    ListNodes,
    Layout,
    Audit {
        after: u64,
        max: usize,
    },
    ListAccessKeys,
    ListTokens,
    MasterKeyCheck,
    /// The current cluster configuration.
    ClusterConfig,
    /// Recorded configuration versions after `after`, oldest first.
    ConfigHistory {
        after: u64,
        max: usize,
    },
    // ---- appended ----
    /// Objects and bytes of one bucket (in the partition of its index).
    BucketUsage {
        bucket: String,
    },
    /// Usage of every bucket with objects in the partition.
    PartitionUsage,
    /// Upload intents in the partition's reference sets made on raft node `node` by a process
    /// other than the one started at `boot_ms` (at most `max`), as (chunk, owner) pairs: what
    /// a restarted node sweeps in partitions it holds no replica of.
    StaleIntents {
        node: u64,
        boot_ms: i64,
        max: usize,
    },
    /// The rebalance plan (system group).
    RebalancePlan,
    /// A bucket's S3 settings: tags and CORS (system group).
    BucketConfig {
        name: String,
    },
    // ---- S3 versioning (appended) ----
    /// One version of a key by the id S3 shows (`null` included).
    GetVersion {
        bucket: String,
        key: String,
        version_id: String,
    },
    /// The latest version of a key: the current object, or a delete marker.
    LatestVersion {
        bucket: String,
        key: String,
    },
    /// ListObjectVersions.
    ListVersions {
        bucket: String,
        prefix: String,
        delimiter: Option<String>,
        key_marker: Option<String>,
        version_id_marker: Option<String>,
        max: usize,
    },
    // ---- SSE-KMS key store (appended; system group) ----
    KmsKey {
        name: String,
    },
    ListKmsKeys,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum QueryResult {
    Bucket(Option<BucketRecord>),
    Buckets(Vec<BucketRecord>),
    Object(Option<ObjectRecord>),
    Objects(Listing<ObjectRecord>),
    Upload(Option<UploadRecord>),
    Parts {
        parts: Vec<PartRecord>,
        truncated: bool,
    },
    Uploads(Listing<UploadRecord>),
    Flag(bool),
    Count(usize),
    Nodes(Vec<NodeRecord>),
    Layout(Option<LayoutRecord>),
    Audit(Vec<crate::store::AuditEntry>),
    AccessKeys(Vec<crate::model::AccessKeyRecord>),
    Tokens(Vec<crate::model::TokenRecord>),
    Text(Option<String>),
    Config(Option<crate::model::ClusterConfig>),
    ConfigHistory(Vec<crate::config_doc::ConfigVersion>),
    // ---- appended ----
    Usage(crate::usage::BucketUsage),
    Usages(Vec<(String, crate::usage::BucketUsage)>),
    /// (chunk, owner) reference pairs.
    RefOwners(Vec<(ChunkId, String)>),
    RebalancePlan(crate::rebalance::RebalancePlan),
    /// None: no such bucket.
    BucketConfig(Option<crate::bucket_config::BucketConfig>),
    /// GetVersion / LatestVersion (appended).
    Version(Option<crate::versions::VersionEntry>),
    Versions(crate::versions::VersionListing),
    /// (appended) One key of the SSE-KMS store; None: no such key.
    KmsKey(Option<crate::kms::KmsKeyRecord>),
    KmsKeys(Vec<crate::kms::KmsKeyRecord>),
}

impl MetaStore {
    /// Runs `q` against `group`'s committed state on this node. The caller makes it
    /// linearizable (read barrier on the group's leader) or accepts a stale read.
    pub fn query(&self, group: u64, q: &Query) -> Result<QueryResult, MetaError> {
        Ok(match q {
            Query::GetBucket { name } => QueryResult::Bucket(self.get_bucket(group, name)?),
            Query::ListBuckets => QueryResult::Buckets(self.list_buckets(group)?),
            Query::GetObject { bucket, key } => {
                QueryResult::Object(self.get_object(group, bucket, key)?)
            }
            Query::ListObjects {
                bucket,
                prefix,
                delimiter,
                after,
                max,
            } => QueryResult::Objects(self.list_objects(
                group,
                bucket,
                prefix,
                delimiter.as_deref(),
                after.as_deref(),
                *max,
            )?),
            Query::GetUpload {
                bucket,
                key,
                upload_id,
            } => QueryResult::Upload(self.get_upload(group, bucket, key, upload_id)?),
            Query::ListParts {
                upload_id,
                after,
                max,
            } => {
                let (parts, truncated) = self.list_parts(group, upload_id, *after, *max)?;
                QueryResult::Parts { parts, truncated }
            }
            Query::ListUploads {
                bucket,
                prefix,
                delimiter,
                after,
                max,
            } => {
                let after = after.as_ref().map(|(k, id)| (k.as_str(), id.as_deref()));
                QueryResult::Uploads(self.list_uploads(
                    group,
                    bucket,
                    prefix,
                    delimiter.as_deref(),
                    after,
                    *max,
                )?)
            }
            Query::BucketHasData { bucket } => {
                QueryResult::Flag(self.bucket_has_data(group, bucket)?)
            }
            Query::ChunkRefCount { chunk } => {
                QueryResult::Count(self.chunk_ref_count(group, chunk)?)
            }
            Query::ListNodes => QueryResult::Nodes(self.list_nodes(group)?),
            Query::Layout => QueryResult::Layout(self.layout(group)?),
            Query::Audit { after, max } => QueryResult::Audit(self.audit_log(group, *after, *max)?),
            Query::ListAccessKeys => QueryResult::AccessKeys(self.list_access_keys(group)?),
            Query::ListTokens => QueryResult::Tokens(self.list_tokens(group)?),
            Query::MasterKeyCheck => QueryResult::Text(self.master_key_check(group)?),
            Query::ClusterConfig => QueryResult::Config(self.cluster_config(group)?),
            Query::ConfigHistory { after, max } => {
                QueryResult::ConfigHistory(self.config_history(group, *after, *max)?)
            }
            Query::BucketUsage { bucket } => QueryResult::Usage(self.bucket_usage(group, bucket)?),
            Query::PartitionUsage => QueryResult::Usages(self.partition_usage(group)?),
            Query::StaleIntents { node, boot_ms, max } => QueryResult::RefOwners(
                self.stale_intents(group, *node, *boot_ms, *max)?
                    .into_iter()
                    .filter_map(|(op, _)| match op {
                        RefOp::Remove { chunk, owner } => Some((chunk, owner)),
                        RefOp::Add { .. } => None,
                    })
                    .collect(),
            ),
            Query::RebalancePlan => QueryResult::RebalancePlan(self.rebalance_plan(group)?),
            Query::BucketConfig { name } => {
                QueryResult::BucketConfig(self.bucket_config(group, name)?)
            }
            Query::GetVersion {
                bucket,
                key,
                version_id,
            } => QueryResult::Version(self.get_version(group, bucket, key, version_id)?),
            Query::LatestVersion { bucket, key } => {
                QueryResult::Version(self.latest_version(group, bucket, key)?)
            }
            Query::KmsKey { name } => QueryResult::KmsKey(self.kms_key(group, name)?),
            Query::ListKmsKeys => QueryResult::KmsKeys(self.kms_keys(group)?),
            Query::ListVersions {
                bucket,
                prefix,
                delimiter,
                key_marker,
                version_id_marker,
                max,
            } => QueryResult::Versions(self.list_versions(
                group,
                bucket,
                prefix,
                delimiter.as_deref(),
                key_marker.as_deref(),
                version_id_marker.as_deref(),
                *max,
            )?),
        })
    }
}
