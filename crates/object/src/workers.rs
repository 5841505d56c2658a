//! Background workers of the object service. Each has the same shape: a loop with a period,
//! a status struct (exposed to the management plane) and tracing.
//!
//! - **ref sync** delivers chunk-reference updates from each partition's outbox to the chunk's
//!   partition (set semantics: redelivery after a crash is harmless), then acknowledges them.
//! - **gc** deletes chunk files that are older than the grace period, unreferenced, not pinned
//!   by an in-flight write and not named by an undelivered outbox entry.
//! - **upload reaper** aborts multipart uploads older than the configured age.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::placement::partition_group;
use cairn_meta::{Command, Query, QueryResult, RefOp};
use tokio::sync::watch;

use crate::service::now_ms;
use crate::{ObjectError, ObjectService};

/// Timing of the background workers.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub ref_sync_interval: Duration,
    pub gc_interval: Duration,
    pub gc_grace: Duration,
    pub upload_expiry: Duration,
    pub upload_reap_interval: Duration,
}

/// Counters the workers keep; read by the management plane and `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerStatus {
    pub refs_delivered: AtomicU64,
    pub gc_passes: AtomicU64,
    pub gc_chunks_deleted: AtomicU64,
    pub uploads_reaped: AtomicU64,
    pub errors: AtomicU64,
}

/// Starts the workers; they stop when `shutdown` flips to true.
pub fn spawn(
    service: ObjectService,
    cfg: WorkerConfig,
    shutdown: watch::Receiver<bool>,
) -> Arc<WorkerStatus> {
    let status = Arc::new(WorkerStatus::default());
    spawn_loop(
        "ref-sync",
        cfg.ref_sync_interval,
        shutdown.clone(),
        status.clone(),
        {
            let s = service.clone();
            move |st| {
                let s = s.clone();
                async move { deliver_refs(&s, &st).await }
            }
        },
    );
    let grace = cfg.gc_grace;
    spawn_loop("gc", cfg.gc_interval, shutdown.clone(), status.clone(), {
        let s = service.clone();
        move |st| {
            let s = s.clone();
            async move { collect_garbage(&s, grace, &st).await }
        }
    });
    let expiry = cfg.upload_expiry;
    spawn_loop(
        "upload-reaper",
        cfg.upload_reap_interval,
        shutdown,
        status.clone(),
        {
            let s = service;
            move |st| {
                let s = s.clone();
                async move { reap_uploads(&s, expiry, &st).await }
            }
        },
    );
    status
}

fn spawn_loop<F, Fut>(
    name: &'static str,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    status: Arc<WorkerStatus>,
    mut pass: F,
) where
    F: FnMut(Arc<WorkerStatus>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ObjectError>> + Send,
{
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                tracing::debug!(worker = name, "stopping");
                return;
            }
            if let Err(e) = pass(status.clone()).await {
                status.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(worker = name, error = %e, "background pass failed");
            }
        }
    });
}

/// One delivery pass over every partition this node leads.
pub async fn deliver_refs(s: &ObjectService, status: &WorkerStatus) -> Result<(), ObjectError> {
    let reg = s.registry();
    let partitions = s.partitions();
    for group in reg.groups() {
        if !reg.is_leader(group) {
            continue;
        }
        loop {
            let pending = reg.meta().outbox(group, 1024)?;
            let Some(&(up_to, _)) = pending.last() else {
                break;
            };
            // Keep outbox order per target partition.
            let mut by_target: BTreeMap<u64, Vec<RefOp>> = BTreeMap::new();
            for (_, op) in pending.iter() {
                let target = partition_group(op.chunk().partition(partitions));
                by_target.entry(target).or_default().push(op.clone());
            }
            for (target, ops) in by_target {
                let n = ops.len() as u64;
                reg.propose(target, Command::RefOps { ops }).await?;
                status.refs_delivered.fetch_add(n, Ordering::Relaxed);
            }
            reg.propose(group, Command::OutboxAck { up_to }).await?;
            if pending.len() < 1024 {
                break;
            }
        }
    }
    Ok(())
}

/// One GC pass: deletes chunk files that nothing references any more.
pub async fn collect_garbage(
    s: &ObjectService,
    grace: Duration,
    status: &WorkerStatus,
) -> Result<(), ObjectError> {
    let chunks = s.chunks();
    let reg = s.registry();
    let candidates = chunks
        .list_older_than(grace)
        .await
        .map_err(|e| ObjectError::Storage(e.to_string()))?;
    status.gc_passes.fetch_add(1, Ordering::Relaxed);
    if candidates.is_empty() {
        return Ok(());
    }
    // References committed but not yet delivered must protect their chunks too.
    let mut pending = HashSet::new();
    for group in reg.groups() {
        for (_, op) in reg.meta().outbox(group, usize::MAX)? {
            if let RefOp::Add { chunk, .. } = op {
                pending.insert(chunk);
            }
        }
    }
    let partitions = s.partitions();
    for id in candidates {
        if pending.contains(&id) || chunks.is_pinned(&id) {
            continue;
        }
        let group = partition_group(id.partition(partitions));
        match reg
            .query(group, &Query::ChunkRefCount { chunk: id })
            .await?
        {
            QueryResult::Count(0) => {}
            QueryResult::Count(_) => continue,
            other => {
                return Err(ObjectError::Storage(format!(
                    "unexpected query result {other:?}"
                )))
            }
        }
        if chunks.is_pinned(&id) {
            continue;
        }
        if chunks
            .delete(&id)
            .await
            .map_err(|e| ObjectError::Storage(e.to_string()))?
        {
            status.gc_chunks_deleted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(chunk = %id, "collected unreferenced chunk");
        }
    }
    Ok(())
}

/// One pass of the abandoned-upload reaper.
pub async fn reap_uploads(
    s: &ObjectService,
    expiry: Duration,
    status: &WorkerStatus,
) -> Result<(), ObjectError> {
    let reg = s.registry();
    let before = now_ms() - expiry.as_millis() as i64;
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
            status.uploads_reaped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(bucket = %u.bucket, key = %u.key, upload_id = %u.upload_id, "aborted abandoned multipart upload");
        }
    }
    Ok(())
}
