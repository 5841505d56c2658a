//! S3 bucket lifecycle, the service side: storing a bucket's rules, and the commands the
//! lifecycle worker (`crate::lifecycle`) proposes — built here so they are the very commands a
//! user's DELETE makes (`versions.rs`).

use cairn_meta::lifecycle::LifecycleRule;
use cairn_meta::model::Versioning;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::versions::DeleteMarker;
use cairn_meta::Command;

use super::{new_version, now_ms, ObjectService};
use crate::ObjectError;

impl ObjectService {
    /// Sets (Some) or removes (None) bucket `name`'s lifecycle rules (validated by the caller),
    /// or `NoSuchBucket`.
    pub async fn set_bucket_lifecycle(
        &self,
        name: &str,
        rules: Option<Vec<LifecycleRule>>,
    ) -> Result<(), ObjectError> {
        let cmd = Command::SetBucketLifecycle {
            name: name.to_string(),
            rules,
        };
        self.propose_ok(SYSTEM_GROUP, cmd).await?;
        Ok(())
    }

    /// The command that expires the current object of `bucket/key` as a DELETE without a
    /// version id would on a bucket in `versioning` state: removes it (never versioned), or
    /// makes a delete marker (an id'd one when Enabled, the `null` one when Suspended).
    pub(crate) fn expire_command(
        bucket: &str,
        key: &str,
        versioning: Option<Versioning>,
    ) -> Command {
        match versioning {
            None => Command::DeleteObject {
                bucket: bucket.to_string(),
                key: key.to_string(),
                // Object lock decides against this time; lifecycle never bypasses GOVERNANCE.
                at_ms: now_ms(),
                bypass_governance: false,
            },
            Some(state) => Command::PutDeleteMarker {
                bucket: bucket.to_string(),
                key: key.to_string(),
                marker: DeleteMarker {
                    version: new_version(),
                    versioned: state == Versioning::Enabled,
                    last_modified_ms: now_ms(),
                },
            },
        }
    }

    /// Sets how long one lifecycle day lasts (`LIFECYCLE_DAY_SECS`; real days by default).
    pub fn set_lifecycle_day(&self, day: std::time::Duration) {
        let ms = i64::try_from(day.as_millis()).unwrap_or(i64::MAX).max(1);
        self.inner
            .lifecycle_day_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Milliseconds in one lifecycle day.
    pub fn lifecycle_day_ms(&self) -> i64 {
        self.inner
            .lifecycle_day_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partition group holding `bucket`'s objects.
    pub(crate) fn bucket_group(&self, bucket: &str) -> cairn_raft::GroupId {
        self.group_of(bucket)
    }
}
