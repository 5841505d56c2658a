//! Background workers of the object service, in the `cairn_worker::Worker` shape:
//!
//! - **upload reaper** (`upload-reaper`) aborts multipart uploads older than the configured
//!   age (items = uploads aborted).
//!
//! Chunk work — reference delivery, GC, anti-entropy — belongs to the chunk layer
//! (`cairn_chunk::{refs, gc, sync}`).

use std::time::Duration;

use cairn_meta::Command;
use cairn_worker::{Progress, Step, Worker, WorkerError};

use crate::service::now_ms;
use crate::{ObjectError, ObjectService};

/// One pass of the abandoned-upload reaper over the partitions this node leads. Returns the
/// number of uploads aborted.
pub async fn reap_uploads(s: &ObjectService, expiry: Duration) -> Result<u64, ObjectError> {
    let reg = s.registry();
    let before = now_ms() - expiry.as_millis() as i64;
    let mut reaped = 0;
    for group in reg.groups() {
        if group == cairn_meta::placement::SYSTEM_GROUP || !reg.is_leader(group) {
            continue;
        }
        for u in reg.meta().uploads_older_than(group, before)? {
            let cmd = Command::AbortUpload {
                bucket: u.bucket.clone(),
                key: u.key.clone(),
                upload_id: u.upload_id.clone(),
            };
            reg.propose(group, cmd).await?;
            reaped += 1;
            tracing::info!(bucket = %u.bucket, key = %u.key, upload_id = %u.upload_id, "aborted abandoned multipart upload");
        }
    }
    Ok(reaped)
}

/// The upload reaper: aborts uploads older than `expiry`, a pass every `interval`.
pub struct UploadReaper {
    service: ObjectService,
    expiry: Duration,
    interval: Duration,
}

impl UploadReaper {
    pub fn new(service: ObjectService, expiry: Duration, interval: Duration) -> Self {
        Self {
            service,
            expiry,
            interval,
        }
    }
}

#[async_trait::async_trait]
impl Worker for UploadReaper {
    fn name(&self) -> &'static str {
        "upload-reaper"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        progress.items(reap_uploads(&self.service, self.expiry).await?);
        Ok(Step::Idle)
    }
}
