//! Per-bucket settings made through the S3 API: the bucket's tags, its CORS configuration, its
//! bucket policy, public access block, object ownership controls and lifecycle rules (system group, table
//! `sm_bucket_config`, one row per bucket whose settings differ from the defaults).
//!
//! They live in their own table rather than in [`crate::model::BucketRecord`] so the bucket
//! record (positional msgpack, built in many places) keeps its shape; the row is named msgpack
//! behind a version marker (STYLE.md, "stored formats say their version"). Deleting a bucket
//! drops its row in the same apply, and creating one clears any row left under its name.
//!
//! The S3 layer validates tags and rules before proposing them; the state machine only stores
//! them, so the matching rules (`cairn-s3` `cors.rs`) can change without touching the log.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, Response};
use crate::keys;
use crate::model::Tag;
use crate::store::{decode, encode_named, MetaStore, BUCKETS};
use crate::MetaError;

/// `g | bucket` → [`Row`] (named msgpack).
pub(crate) const BUCKET_CONFIG: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("sm_bucket_config");

/// The S3-level settings of one bucket. The default is a bucket without tags, CORS or policy,
/// with every public access block on and ownership `BucketOwnerEnforced` (AWS's defaults for
/// a new bucket since 2023).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketConfig {
    /// Bucket tags (PutBucketTagging); empty: none (GetBucketTagging answers NoSuchTagSet).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// CORS rules in the order given (the first that matches a request applies); None: no
    /// CORS configuration (NoSuchCORSConfiguration, and preflights are refused).
    #[serde(default)]
    pub cors: Option<Vec<CorsRule>>,
    /// The bucket policy as PutBucketPolicy gave it (JSON, validated by the S3 layer, which
    /// compiles it); None: no policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// The public access block; None after DeletePublicAccessBlock (nothing blocked).
    #[serde(default = "default_public_access_block")]
    pub public_access_block: Option<PublicAccessBlock>,
    /// Object ownership controls; None after DeleteBucketOwnershipControls.
    #[serde(default = "default_ownership")]
    pub ownership: Option<ObjectOwnership>,
    /// The bucket's ACL grants beyond the owner's (empty: private), enforced only while
    /// ownership is not `BucketOwnerEnforced`.
    #[serde(default)]
    pub acl: Vec<crate::acl::AclGrant>,
    /// Lifecycle rules (PutBucketLifecycleConfiguration, validated by the S3 layer); None: no
    /// lifecycle configuration (NoSuchLifecycleConfiguration).
    #[serde(default)]
    pub lifecycle: Option<Vec<crate::lifecycle::LifecycleRule>>,
    /// Default encryption (PutBucketEncryption), applied to writes that ask for none; None:
    /// no configuration (ServerSideEncryptionConfigurationNotFoundError). Appended.
    #[serde(default)]
    pub encryption: Option<BucketEncryption>,
}

/// A bucket's default encryption: SSE-S3, or SSE-KMS with a key of the key store (None: the
/// default key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    /// `S3` or `Kms` (SSE-C cannot be a default).
    pub algorithm: crate::model::SseAlgorithm,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Echoed as given (Cairn has no per-bucket KMS key cache to turn on).
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

impl Default for BucketConfig {
    fn default() -> Self {
        Self {
            tags: Vec::new(),
            cors: None,
            policy: None,
            public_access_block: default_public_access_block(),
            ownership: default_ownership(),
            acl: Vec::new(),
            lifecycle: None,
            encryption: None,
        }
    }
}

fn default_public_access_block() -> Option<PublicAccessBlock> {
    Some(PublicAccessBlock::all())
}

fn default_ownership() -> Option<ObjectOwnership> {
    Some(ObjectOwnership::BucketOwnerEnforced)
}

impl BucketConfig {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The four switches of PutPublicAccessBlock (a missing one is false, as in AWS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    #[serde(default)]
    pub block_public_acls: bool,
    #[serde(default)]
    pub ignore_public_acls: bool,
    #[serde(default)]
    pub block_public_policy: bool,
    #[serde(default)]
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// Every switch on: the default of a new bucket.
    pub fn all() -> Self {
        Self {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }
    }
}

/// PutBucketOwnershipControls' `ObjectOwnership`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// ACLs are disabled; the bucket owner owns every object (the default).
    BucketOwnerEnforced,
    BucketOwnerPreferred,
    ObjectWriter,
}

impl ObjectOwnership {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BucketOwnerEnforced => "BucketOwnerEnforced",
            Self::BucketOwnerPreferred => "BucketOwnerPreferred",
            Self::ObjectWriter => "ObjectWriter",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BucketOwnerEnforced" => Some(Self::BucketOwnerEnforced),
            "BucketOwnerPreferred" => Some(Self::BucketOwnerPreferred),
            "ObjectWriter" => Some(Self::ObjectWriter),
            _ => None,
        }
    }
}

/// One CORS rule as PutBucketCors gave it (validated by the S3 layer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default)]
    pub id: Option<String>,
    /// Origins, each with at most one `*` wildcard.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Upper-case methods among GET, PUT, POST, DELETE, HEAD.
    #[serde(default)]
    pub allowed_methods: Vec<String>,
    /// Header names a preflight may ask for, each with at most one `*` wildcard.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers a browser may show to the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age_seconds: Option<i32>,
}

/// The stored row: a version marker plus named fields.
#[derive(Serialize, Deserialize)]
enum Row {
    V1(BucketConfig),
}

impl MetaStore {
    /// The S3 settings of bucket `name` in `group` (the system group); None when the bucket
    /// does not exist, the default when it has none.
    pub fn bucket_config(&self, group: u64, name: &str) -> Result<Option<BucketConfig>, MetaError> {
        let txn = self.db().begin_read()?;
        let k = keys::bucket(group, name);
        if txn.open_table(BUCKETS)?.get(k.as_slice())?.is_none() {
            return Ok(None);
        }
        let t = txn.open_table(BUCKET_CONFIG)?;
        let config = match t.get(k.as_slice())? {
            Some(v) => read_row(v.value())?,
            None => BucketConfig::default(),
        };
        Ok(Some(config))
    }

    /// Applies `SetBucketTags` / `SetBucketCors` / `SetBucketPolicy` / `SetPublicAccessBlock` /
    /// `SetBucketOwnership`: refused with `NoSuchBucket` when the bucket
    /// does not exist.
    pub(crate) fn apply_bucket_config(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        let (name, what) = match cmd {
            Command::SetBucketTags { name, tags } => (name, format!("{} tags", tags.len())),
            Command::SetBucketCors { name, cors } => (
                name,
                match cors {
                    Some(rules) => format!("CORS {} rules", rules.len()),
                    None => "CORS removed".to_owned(),
                },
            ),
            Command::SetBucketPolicy { name, policy } => (
                name,
                if policy.is_some() {
                    "policy set"
                } else {
                    "policy removed"
                }
                .to_owned(),
            ),
            Command::SetPublicAccessBlock { name, block } => {
                (name, format!("public access block {block:?}"))
            }
            Command::SetBucketOwnership { name, ownership } => {
                (name, format!("ownership {ownership:?}"))
            }
            Command::SetBucketAcl { name, acl } => (name, format!("ACL {} grants", acl.len())),
            Command::SetBucketLifecycle { name, rules } => (
                name,
                match rules {
                    Some(rules) => format!("lifecycle {} rules", rules.len()),
                    None => "lifecycle removed".to_owned(),
                },
            ),
            Command::SetBucketEncryption { name, encryption } => {
                (name, format!("default encryption {encryption:?}"))
            }
            other => {
                return Ok(Response::Refused(CommandError::Invalid(format!(
                    "not a bucket setting: {other:?}"
                ))))
            }
        };
        let k = keys::bucket(group, name);
        if txn.open_table(BUCKETS)?.get(k.as_slice())?.is_none() {
            return Ok(Response::Refused(CommandError::NoSuchBucket));
        }
        let mut t = txn.open_table(BUCKET_CONFIG)?;
        let mut config = match t.get(k.as_slice())? {
            Some(v) => read_row(v.value())?,
            None => BucketConfig::default(),
        };
        match cmd {
            Command::SetBucketTags { tags, .. } => config.tags = tags.clone(),
            Command::SetBucketCors { cors, .. } => config.cors = cors.clone(),
            Command::SetBucketPolicy { policy, .. } => config.policy = policy.clone(),
            Command::SetPublicAccessBlock { block, .. } => config.public_access_block = *block,
            Command::SetBucketOwnership { ownership, .. } => config.ownership = *ownership,
            Command::SetBucketAcl { acl, .. } => config.acl = acl.clone(),
            Command::SetBucketLifecycle { rules, .. } => config.lifecycle = rules.clone(),
            Command::SetBucketEncryption { encryption, .. } => {
                config.encryption = encryption.clone()
            }
            _ => {}
        }
        if config.is_empty() {
            t.remove(k.as_slice())?;
        } else {
            t.insert(k.as_slice(), encode_named(&Row::V1(config))?.as_slice())?;
        }
        drop(t);
        self.audit(txn, group, 0, format!("bucket {name} {what}"))?;
        Ok(Response::Done)
    }

    /// Drops bucket `name`'s settings (the bucket is deleted or created anew).
    pub(crate) fn drop_bucket_config(
        txn: &WriteTransaction,
        group: u64,
        name: &str,
    ) -> Result<(), MetaError> {
        let mut t = txn.open_table(BUCKET_CONFIG)?;
        t.remove(keys::bucket(group, name).as_slice())?;
        Ok(())
    }
}

fn read_row(b: &[u8]) -> Result<BucketConfig, MetaError> {
    match decode::<Row>(b)? {
        Row::V1(c) => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_old_fields_default() {
        let c = BucketConfig {
            tags: vec![Tag {
                key: "k".into(),
                value: "v".into(),
            }],
            cors: Some(vec![CorsRule {
                allowed_origins: vec!["*".into()],
                allowed_methods: vec!["GET".into()],
                ..CorsRule::default()
            }]),
            policy: Some("{}".into()),
            public_access_block: None,
            ownership: Some(ObjectOwnership::ObjectWriter),
            acl: vec![crate::acl::AclGrant {
                group: crate::acl::AclGroup::AllUsers,
                permission: crate::acl::AclPermission::Read,
            }],
            lifecycle: Some(vec![crate::lifecycle::LifecycleRule {
                id: "r".into(),
                enabled: true,
                ..Default::default()
            }]),
            encryption: Some(BucketEncryption {
                algorithm: crate::model::SseAlgorithm::Kms,
                kms_key_id: Some("app".into()),
                bucket_key_enabled: true,
            }),
        };
        let b = encode_named(&Row::V1(c.clone())).unwrap();
        assert_eq!(read_row(&b).unwrap(), c);
        // A V1 row that names only some fields (as a future writer dropping one would).
        #[derive(Serialize)]
        enum Partial {
            V1 { tags: Vec<Tag> },
        }
        let b = encode_named(&Partial::V1 { tags: vec![] }).unwrap();
        assert_eq!(read_row(&b).unwrap(), BucketConfig::default());
    }
}
