//! S3 versioning: the bucket's state, reads and deletes by version id, delete markers and
//! ListObjectVersions. The state machine keeps the versions (`cairn_meta::versions`); this
//! file picks the command a request becomes from the bucket's versioning state.

use cairn_meta::model::Versioning;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::versions::{DeleteMarker, VersionEntry, VersionListing};
use cairn_meta::{Command, Query, QueryResult, Response};

use super::{new_version, now_ms, unexpected, ObjectService, ReadConsistency};
use crate::ObjectError;

/// What a DELETE did, for the response headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The version removed or the marker created (None: unversioned bucket, no version id).
    pub version_id: Option<String>,
    /// The version removed was a delete marker, or a marker was created.
    pub delete_marker: bool,
}

impl ObjectService {
    /// Sets bucket `name`'s versioning state (`NoSuchBucket`).
    pub async fn set_bucket_versioning(
        &self,
        name: &str,
        state: Versioning,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketVersioning {
            name: name.to_string(),
            state,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Version `version_id` (`null` included) of `bucket/key`, or `NoSuchVersion`.
    pub async fn get_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
        rc: ReadConsistency,
    ) -> Result<VersionEntry, ObjectError> {
        let q = Query::GetVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.to_string(),
        };
        match self.query_with(self.group_of(bucket), q, rc).await? {
            QueryResult::Version(v) => v.ok_or(ObjectError::NoSuchVersion),
            other => Err(unexpected(other)),
        }
    }

    /// The latest version of `bucket/key` (object or delete marker), if any.
    pub async fn latest_version(
        &self,
        bucket: &str,
        key: &str,
        rc: ReadConsistency,
    ) -> Result<Option<VersionEntry>, ObjectError> {
        let q = Query::LatestVersion {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        match self.query_with(self.group_of(bucket), q, rc).await? {
            QueryResult::Version(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// DELETE as S3 does it: with a version id, removes that version for good; without one,
    /// removes the object (never-versioned bucket) or makes a delete marker (an id'd one when
    /// Enabled, the `null` one when Suspended). `bypass_governance`: the request may remove a
    /// version under GOVERNANCE retention (the caller checked the permission).
    pub async fn delete_object_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        bypass_governance: bool,
    ) -> Result<DeleteOutcome, ObjectError> {
        let b = self.head_bucket(bucket).await?;
        let group = self.group_of(bucket);
        if let Some(v) = version_id {
            // Object lock may refuse this (`ObjectLocked`): decided in the apply, at `at_ms`.
            let cmd = Command::DeleteVersion {
                bucket: bucket.to_string(),
                key: key.to_string(),
                version_id: v.to_string(),
                at_ms: now_ms(),
                bypass_governance,
            };
            let marker = match self.propose_ok(group, cmd).await? {
                Response::DeletedVersion { marker, .. } => marker,
                _ => false,
            };
            return Ok(DeleteOutcome {
                version_id: Some(v.to_string()),
                delete_marker: marker,
            });
        }
        let Some(state) = b.versioning else {
            self.propose_ok(
                group,
                Command::DeleteObject {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    at_ms: now_ms(),
                    bypass_governance,
                },
            )
            .await?;
            return Ok(DeleteOutcome::default());
        };
        let marker = DeleteMarker {
            version: new_version(),
            versioned: state == Versioning::Enabled,
            last_modified_ms: now_ms(),
        };
        let id = marker.version_id().to_string();
        let cmd = Command::PutDeleteMarker {
            bucket: bucket.to_string(),
            key: key.to_string(),
            marker,
        };
        self.propose_ok(group, cmd).await?;
        Ok(DeleteOutcome {
            version_id: Some(id),
            delete_marker: true,
        })
    }

    /// One page of ListObjectVersions.
    #[allow(clippy::too_many_arguments)]
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        version_id_marker: Option<&str>,
        max: usize,
        rc: ReadConsistency,
    ) -> Result<VersionListing, ObjectError> {
        self.head_bucket_with(bucket, rc).await?;
        let q = Query::ListVersions {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            delimiter: delimiter.map(str::to_string),
            key_marker: key_marker.map(str::to_string),
            version_id_marker: version_id_marker.map(str::to_string),
            max,
        };
        match self.query_with(self.group_of(bucket), q, rc).await? {
            QueryResult::Versions(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }
}
