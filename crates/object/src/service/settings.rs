//! Object tags and per-bucket S3 settings (tags, CORS): small linearizable reads and single
//! commands, no data path. Tags given at upload time travel in `ObjectHeaders::tags` instead.

use cairn_meta::acl::AclGrant;
use cairn_meta::bucket_config::{BucketConfig, CorsRule, ObjectOwnership, PublicAccessBlock};
use cairn_meta::model::Tag;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, Query, QueryResult};

use super::{unexpected, ObjectService, ReadConsistency};
use crate::ObjectError;

impl ObjectService {
    /// Replaces the tags of the current version of `bucket/key` (of version `version` only,
    /// when given). `NoSuchBucket`, or `NoSuchKey` when there is no such object or version.
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        tags: Vec<Tag>,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket).await?;
        let cmd = Command::SetObjectTags {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version: version.map(str::to_string),
            tags,
        };
        self.propose_ok(self.group_of(bucket), cmd).await?;
        Ok(())
    }

    /// Replaces the tags of version `version_id` (as S3 shows it: an id or `null`) of
    /// `bucket/key`, current or noncurrent. `NoSuchVersion` when there is no such version,
    /// `InvalidArgument` for a delete marker.
    pub async fn set_version_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        tags: Vec<Tag>,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket).await?;
        let cmd = Command::SetVersionTags {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
            tags,
        };
        match self.propose_ok(self.group_of(bucket), cmd).await {
            Ok(_) => Ok(()),
            Err(ObjectError::NoSuchKey) => Err(ObjectError::NoSuchVersion),
            Err(e) => Err(e),
        }
    }

    /// Replaces bucket `name`'s ACL grants (empty: private), or `NoSuchBucket`.
    pub async fn set_bucket_acl(&self, name: &str, acl: Vec<AclGrant>) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketAcl {
            name: name.to_string(),
            acl,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Replaces the ACL grants of version `version_id` (None: the current version) of
    /// `bucket/key`. `NoSuchKey` / `NoSuchVersion` when there is no such object or version.
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        acl: Vec<AclGrant>,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket).await?;
        let cmd = Command::SetObjectAcl {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
            acl,
        };
        match self.propose_ok(self.group_of(bucket), cmd).await {
            Ok(_) => Ok(()),
            Err(ObjectError::NoSuchKey) if version_id.is_some() => Err(ObjectError::NoSuchVersion),
            Err(e) => Err(e),
        }
    }

    /// Bucket `name`'s S3 settings (linearizable, or this node's replica with `Stale`), or
    /// `NoSuchBucket`.
    pub async fn bucket_config(
        &self,
        name: &str,
        rc: ReadConsistency,
    ) -> Result<BucketConfig, ObjectError> {
        let q = Query::BucketConfig {
            name: name.to_string(),
        };
        match self.query_with(SYSTEM_GROUP, q, rc).await? {
            QueryResult::BucketConfig(c) => c.ok_or(ObjectError::NoSuchBucket),
            other => Err(unexpected(other)),
        }
    }

    /// Sets (Some) or removes (None) bucket `name`'s default encryption, or `NoSuchBucket`.
    pub async fn set_bucket_encryption(
        &self,
        name: &str,
        encryption: Option<cairn_meta::bucket_config::BucketEncryption>,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketEncryption {
            name: name.to_string(),
            encryption,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Replaces bucket `name`'s tags (empty: removes them), or `NoSuchBucket`.
    pub async fn set_bucket_tags(&self, name: &str, tags: Vec<Tag>) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketTags {
            name: name.to_string(),
            tags,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Sets (Some) or removes (None) bucket `name`'s CORS rules, or `NoSuchBucket`.
    pub async fn set_bucket_cors(
        &self,
        name: &str,
        cors: Option<Vec<CorsRule>>,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketCors {
            name: name.to_string(),
            cors,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Sets (Some) or removes (None) bucket `name`'s policy (JSON checked by the caller), or
    /// `NoSuchBucket`.
    pub async fn set_bucket_policy(
        &self,
        name: &str,
        policy: Option<String>,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketPolicy {
            name: name.to_string(),
            policy,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Sets (Some) or removes (None) bucket `name`'s public access block, or `NoSuchBucket`.
    pub async fn set_public_access_block(
        &self,
        name: &str,
        block: Option<PublicAccessBlock>,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetPublicAccessBlock {
            name: name.to_string(),
            block,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Sets (Some) or removes (None) bucket `name`'s ownership controls, or `NoSuchBucket`.
    pub async fn set_bucket_ownership(
        &self,
        name: &str,
        ownership: Option<ObjectOwnership>,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketOwnership {
            name: name.to_string(),
            ownership,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }
}
