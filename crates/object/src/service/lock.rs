//! S3 Object Lock in the object service: creating a bucket with lock, its configuration, the
//! lock a new version gets (explicit headers, else the bucket's default retention), and the
//! retention and legal hold of existing versions. The rules that protect a version are applied
//! by the state machine (`cairn_meta::lock`), inside the apply of every command that removes
//! or weakens it; this file only picks the commands and their time.

use cairn_meta::lock::{BucketLock, LockChange, VersionLock};
use cairn_meta::model::{BucketRecord, UploadRecord, Versioning, WriteConsistency};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::versions::VersionEntry;
use cairn_meta::Command;

use super::{now_ms, ObjectService, ReadConsistency};
use crate::ObjectError;

/// What a write asks of object lock.
#[derive(Clone, Debug, Default)]
pub struct LockRequest {
    /// Lock headers of the request (`x-amz-object-lock-*`); None: none were sent.
    pub explicit: Option<VersionLock>,
    /// The request carried `Content-MD5` or an `x-amz-checksum-*` value, which AWS requires of
    /// a PutObject whose version gets a lock.
    pub integrity_checked: bool,
}

/// AWS's answer to lock headers on a bucket without object lock.
pub(crate) fn missing_lock_configuration() -> ObjectError {
    ObjectError::InvalidRequest("Bucket is missing Object Lock Configuration".into())
}

/// The lock of a version written at `at_ms` into `bucket`: the explicit retention, else the
/// bucket's default retention; the explicit legal hold. None when nothing locks it.
/// `InvalidRequest` when lock headers name a bucket without object lock.
pub(crate) fn version_lock(
    bucket: &BucketRecord,
    explicit: Option<&VersionLock>,
    at_ms: i64,
) -> Result<Option<VersionLock>, ObjectError> {
    let Some(config) = bucket.object_lock else {
        return match explicit {
            Some(_) => Err(missing_lock_configuration()),
            None => Ok(None),
        };
    };
    let retention = explicit
        .and_then(|l| l.retention)
        .or_else(|| config.default_retention.map(|d| d.retention_from(at_ms)));
    let lock = VersionLock {
        retention,
        legal_hold: explicit.is_some_and(|l| l.legal_hold),
    };
    Ok((lock != VersionLock::default()).then_some(lock))
}

/// Whether the object `upload` completes into will be locked: it was created with lock headers,
/// or the bucket has a default retention.
pub(crate) fn upload_locked(bucket: &BucketRecord, upload: &UploadRecord) -> bool {
    upload.lock.is_some()
        || bucket
            .object_lock
            .is_some_and(|l| l.default_retention.is_some())
}

impl ObjectService {
    /// Creates a bucket with object lock enabled (and so versioning Enabled), owned by `owner`.
    pub async fn create_bucket_with_lock(
        &self,
        name: &str,
        write_consistency: Option<WriteConsistency>,
        owner: Option<&str>,
    ) -> Result<BucketRecord, ObjectError> {
        let record = BucketRecord {
            versioning: Some(Versioning::Enabled),
            name: name.to_string(),
            created_ms: now_ms(),
            write_consistency,
            owner: owner.map(str::to_string),
            object_lock: Some(BucketLock::default()),
        };
        self.propose_ok(
            SYSTEM_GROUP,
            Command::CreateBucket {
                record: record.clone(),
            },
        )
        .await?;
        Ok(record)
    }

    /// Enables object lock on bucket `name` or replaces its default retention
    /// (`InvalidBucketState` unless its versioning is Enabled).
    pub async fn set_bucket_object_lock(
        &self,
        name: &str,
        lock: BucketLock,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketObjectLock {
            name: name.to_string(),
            lock,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// Changes the retention or legal hold of version `version_id` (None: the current one) of
    /// `bucket/key`. `InvalidRequest` on a bucket without object lock; `ObjectLocked` when the
    /// change would weaken a retention it may not; `NoSuchKey` / `NoSuchVersion` /
    /// `MethodNotAllowed` (a delete marker).
    pub async fn set_object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: LockChange,
        bypass_governance: bool,
    ) -> Result<(), ObjectError> {
        let b = self.head_bucket(bucket).await?;
        if b.object_lock.is_none() {
            return Err(missing_lock_configuration());
        }
        let cmd = Command::SetObjectLock {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: version_id.map(str::to_string),
            change,
            bypass_governance,
            at_ms: now_ms(),
        };
        self.propose_ok(self.group_of(bucket), cmd).await?;
        Ok(())
    }

    /// The lock of version `version_id` (None: the current one) of `bucket/key` (None: never
    /// locked). `InvalidRequest` on a bucket without object lock; `NoSuchKey` /
    /// `NoSuchVersion` / `MethodNotAllowed` (a delete marker).
    pub async fn object_lock(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<VersionLock>, ObjectError> {
        let b = self.head_bucket(bucket).await?;
        if b.object_lock.is_none() {
            return Err(missing_lock_configuration());
        }
        let rc = ReadConsistency::Linearizable;
        let record = match version_id {
            Some(v) => match self.get_version(bucket, key, v, rc).await? {
                VersionEntry::Object(r) => r,
                VersionEntry::Marker(_) => return Err(ObjectError::MethodNotAllowed),
            },
            None => self.head_object(bucket, key).await?,
        };
        Ok(record.lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_meta::lock::{DefaultRetention, LockMode, Retention, RetentionPeriod};

    fn bucket(lock: Option<BucketLock>) -> BucketRecord {
        BucketRecord {
            name: "b".into(),
            created_ms: 0,
            write_consistency: None,
            owner: None,
            versioning: Some(Versioning::Enabled),
            object_lock: lock,
        }
    }

    #[test]
    fn explicit_headers_need_a_lock_bucket() {
        let hold = VersionLock {
            retention: None,
            legal_hold: true,
        };
        assert!(matches!(
            version_lock(&bucket(None), Some(&hold), 0),
            Err(ObjectError::InvalidRequest(_))
        ));
        assert_eq!(version_lock(&bucket(None), None, 0).unwrap(), None);
        assert_eq!(
            version_lock(&bucket(Some(BucketLock::default())), None, 0).unwrap(),
            None
        );
    }

    #[test]
    fn default_retention_fills_in_what_headers_leave_out() {
        let default = BucketLock {
            default_retention: Some(DefaultRetention {
                mode: LockMode::Governance,
                period: RetentionPeriod::Days(1),
            }),
        };
        let b = bucket(Some(default));
        let got = version_lock(&b, None, 1_000).unwrap().unwrap();
        assert_eq!(
            got.retention,
            Some(Retention {
                mode: LockMode::Governance,
                until_ms: 1_000 + 86_400_000
            })
        );
        assert!(!got.legal_hold);
        // A legal hold alone keeps the default retention.
        let hold = VersionLock {
            retention: None,
            legal_hold: true,
        };
        let got = version_lock(&b, Some(&hold), 0).unwrap().unwrap();
        assert!(got.legal_hold && got.retention.is_some());
        // An explicit retention wins.
        let explicit = VersionLock {
            retention: Some(Retention {
                mode: LockMode::Compliance,
                until_ms: 5,
            }),
            legal_hold: false,
        };
        assert_eq!(
            version_lock(&b, Some(&explicit), 0).unwrap(),
            Some(explicit)
        );
    }
}
