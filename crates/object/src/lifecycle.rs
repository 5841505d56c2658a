//! The lifecycle worker (`lifecycle`): applies buckets' lifecycle rules — expiring current
//! objects, removing noncurrent versions and lone delete markers, aborting old multipart
//! uploads — at a throttled rate, with counts in `cairn_lifecycle_*` metrics.
//!
//! Cluster consistency: a bucket's objects live in one partition, and only the node leading
//! that partition scans it (from its own replica) and proposes the actions. Each action is a
//! `Command::LifecycleExpire` (or the plain `AbortUpload` a user's abort makes) whose apply
//! re-checks the version is still where the scan saw it (`cairn_meta::lifecycle_sm`), so an
//! action proposed twice — a leader change mid-pass, two nodes briefly both believing they
//! lead — applies once. The rules decide in `cairn_meta::lifecycle` (pure).
//!
//! A pass starts every `interval`: it lists the buckets with enabled rules whose partition this
//! node leads (system-group replica, local), then walks each bucket a page of keys per step,
//! waiting out the rate limit (objects per second, 0 unlimited, changeable at run time).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cairn_meta::lifecycle::{abort_due, decide, Decision, LifecycleRule};
use cairn_meta::lifecycle_sm::LifecycleTarget;
use cairn_meta::model::Versioning;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Response};
use cairn_raft::GroupId;
use cairn_worker::{Progress, RateLimit, Step, Worker, WorkerError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::service::now_ms;
use crate::{ObjectError, ObjectService};

/// Keys scanned per step when the rate is unlimited.
const PAGE: usize = 100;

/// `cairn_lifecycle_*` metrics of this node's lifecycle worker. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct LifecycleMetrics {
    scanned: Counter,
    expired: Counter,
    versions_removed: Counter,
    markers_removed: Counter,
    uploads_aborted: Counter,
    last_pass: Gauge,
}

impl LifecycleMetrics {
    /// Registers every `lifecycle_*` metric in `registry` (the node's `cairn`-prefixed one).
    pub fn register(&self, registry: &mut Registry) {
        let counters: [(&str, &str, &Counter); 5] = [
            (
                "lifecycle_objects_scanned",
                "Object versions and delete markers the lifecycle worker examined",
                &self.scanned,
            ),
            (
                "lifecycle_objects_expired",
                "Current objects expired by lifecycle rules (deleted, or hidden by a delete marker)",
                &self.expired,
            ),
            (
                "lifecycle_versions_removed",
                "Noncurrent versions removed by NoncurrentVersionExpiration",
                &self.versions_removed,
            ),
            (
                "lifecycle_delete_markers_removed",
                "Expired delete markers (the only version of their key) removed",
                &self.markers_removed,
            ),
            (
                "lifecycle_uploads_aborted",
                "Incomplete multipart uploads aborted by AbortIncompleteMultipartUpload",
                &self.uploads_aborted,
            ),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register(
            "lifecycle_last_pass_timestamp_seconds",
            "Unix time this node's lifecycle worker last finished a pass (0: never)",
            self.last_pass.clone(),
        );
    }
}

/// A bucket still to walk in the current pass.
struct BucketWork {
    name: String,
    group: GroupId,
    versioning: Option<Versioning>,
    rules: Vec<LifecycleRule>,
    /// The last key done (None: from the start).
    after: Option<String>,
    uploads_done: bool,
}

/// The pass in progress.
struct Pass {
    number: u64,
    buckets: VecDeque<BucketWork>,
    total: usize,
    scanned: u64,
    actions: u64,
}

/// The lifecycle worker of one node.
pub struct LifecycleWorker {
    service: ObjectService,
    interval: Duration,
    /// Objects per second (0: unlimited), shared with whoever tunes it.
    rate: RateLimit,
    metrics: LifecycleMetrics,
    pass: Option<Pass>,
    passes: u64,
    last_pass_ms: Option<i64>,
}

impl LifecycleWorker {
    /// A worker starting a pass every `interval`, scanning at most `rate` objects per second;
    /// a lifecycle day lasts as long as `service` says ([`ObjectService::set_lifecycle_day`]).
    pub fn new(service: ObjectService, interval: Duration, rate: RateLimit) -> Self {
        Self {
            service,
            interval,
            rate,
            metrics: LifecycleMetrics::default(),
            pass: None,
            passes: 0,
            last_pass_ms: None,
        }
    }

    /// The metrics this worker updates (register them once).
    pub fn metrics(&self) -> LifecycleMetrics {
        self.metrics.clone()
    }

    /// The buckets with enabled rules whose partition this node leads, from the local replica
    /// of the system group (a rule change reaches the next pass).
    fn plan(&self) -> Result<VecDeque<BucketWork>, ObjectError> {
        let reg = self.service.registry();
        let mut out = VecDeque::new();
        for b in reg.meta().list_buckets(SYSTEM_GROUP)? {
            let group = self.service.bucket_group(&b.name);
            if !reg.is_leader(group) {
                continue;
            }
            let Some(config) = reg.meta().bucket_config(SYSTEM_GROUP, &b.name)? else {
                continue;
            };
            let rules = config.lifecycle.unwrap_or_default();
            if !rules.iter().any(|r| r.enabled) {
                continue;
            }
            out.push_back(BucketWork {
                name: b.name,
                group,
                versioning: b.versioning,
                rules,
                after: None,
                uploads_done: false,
            });
        }
        Ok(out)
    }

    /// Proposes `cmd` in `group`; true when it applied. A refusal is not a failure of the pass:
    /// the key changed since the scan, the action was already taken, or the delete's own apply
    /// refuses it (a protection the user's DELETE would meet too) — the version stays.
    async fn act(&self, group: GroupId, cmd: Command) -> Result<bool, ObjectError> {
        match self.service.registry().propose(group, cmd).await? {
            Response::Refused(CommandError::PreconditionFailed)
            | Response::Refused(CommandError::NoSuchUpload)
            | Response::Deleted(false)
            | Response::DeletedVersion { found: false, .. } => Ok(false),
            Response::Refused(e) => {
                // Debug: a protected object is refused again at every pass.
                tracing::debug!(error = %e, "lifecycle action refused by the state machine");
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Aborts `w`'s uploads that are due; returns how many.
    async fn abort_uploads(&self, w: &BucketWork, now: i64) -> Result<u64, ObjectError> {
        if !w.rules.iter().any(|r| r.abort_upload_days.is_some()) {
            return Ok(0);
        }
        let mut n = 0;
        let uploads = self
            .service
            .registry()
            .meta()
            .uploads_older_than(w.group, now)?;
        for u in uploads.into_iter().filter(|u| u.bucket == w.name) {
            if !abort_due(&w.rules, &u, now, self.service.lifecycle_day_ms()) {
                continue;
            }
            let cmd = Command::AbortUpload {
                bucket: u.bucket.clone(),
                key: u.key.clone(),
                upload_id: u.upload_id.clone(),
            };
            if self.act(w.group, cmd).await? {
                n += 1;
                self.metrics.uploads_aborted.inc();
                tracing::info!(bucket = %u.bucket, key = %u.key, upload_id = %u.upload_id, "lifecycle aborted an incomplete multipart upload");
            }
        }
        Ok(n)
    }

    /// Walks one page of `w`'s keys; returns (versions scanned, actions taken, more keys left).
    async fn walk_page(
        &self,
        w: &mut BucketWork,
        page: usize,
        now: i64,
    ) -> Result<(u64, u64, bool), ObjectError> {
        let (keys, more) = self.service.registry().meta().lifecycle_keys(
            w.group,
            &w.name,
            w.after.as_deref(),
            page,
        )?;
        let (mut scanned, mut actions) = (0, 0);
        let day_ms = self.service.lifecycle_day_ms();
        for k in &keys {
            let n = u64::from(k.latest.is_some()) + k.noncurrent.len() as u64;
            scanned += n;
            self.metrics.scanned.inc_by(n);
            for d in decide(&w.rules, k, now, day_ms) {
                let (target, command, counter) = match d {
                    Decision::ExpireCurrent { version } => (
                        LifecycleTarget::Current { version },
                        ObjectService::expire_command(&w.name, &k.key, w.versioning),
                        &self.metrics.expired,
                    ),
                    Decision::RemoveNoncurrent {
                        version,
                        version_id,
                    } => (
                        LifecycleTarget::Noncurrent { version },
                        delete_version(&w.name, &k.key, version_id),
                        &self.metrics.versions_removed,
                    ),
                    Decision::RemoveLoneMarker {
                        version,
                        version_id,
                    } => (
                        LifecycleTarget::LoneMarker { version },
                        delete_version(&w.name, &k.key, version_id),
                        &self.metrics.markers_removed,
                    ),
                };
                let cmd = Command::LifecycleExpire {
                    bucket: w.name.clone(),
                    key: k.key.clone(),
                    target: target.clone(),
                    command: Box::new(command),
                };
                if self.act(w.group, cmd).await? {
                    counter.inc();
                    actions += 1;
                    tracing::debug!(bucket = %w.name, key = %k.key, ?target, "lifecycle action applied");
                }
            }
        }
        if let Some(last) = keys.last() {
            w.after = Some(last.key.clone());
        }
        Ok((scanned, actions, more))
    }

    fn note(&self, progress: &Progress) {
        let last = match self.last_pass_ms {
            Some(ms) => format!("last pass ended {}", rfc3339(ms)),
            None => "no pass finished yet".to_owned(),
        };
        let now = match &self.pass {
            Some(p) => format!(
                "pass {}: {} of {} buckets left, {} versions scanned, {} actions; ",
                p.number,
                p.buckets.len(),
                p.total,
                p.scanned,
                p.actions
            ),
            None => String::new(),
        };
        progress.note(format!("{now}{last}"));
    }
}

fn delete_version(bucket: &str, key: &str, version_id: String) -> Command {
    Command::DeleteVersion {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version_id,
        // Object lock decides against this time; lifecycle never bypasses GOVERNANCE.
        at_ms: crate::service::now_ms(),
        bypass_governance: false,
    }
}

/// `ms` as an RFC 3339 UTC time, for notes.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[async_trait::async_trait]
impl Worker for LifecycleWorker {
    fn name(&self) -> &'static str {
        "lifecycle"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn step(&mut self, progress: &Progress) -> Result<Step, WorkerError> {
        let started = Instant::now();
        let now = now_ms();
        let Some(mut pass) = self.pass.take() else {
            let buckets = self.plan()?;
            self.passes += 1;
            self.pass = Some(Pass {
                number: self.passes,
                total: buckets.len(),
                buckets,
                scanned: 0,
                actions: 0,
            });
            self.note(progress);
            return Ok(Step::Busy);
        };
        let Some(mut w) = pass.buckets.pop_front() else {
            self.last_pass_ms = Some(now);
            self.metrics.last_pass.set(now / 1000);
            self.note(progress);
            return Ok(Step::Idle);
        };
        // A partition whose leadership moved is walked by its new leader.
        if !self.service.registry().is_leader(w.group) {
            self.pass = Some(pass);
            return Ok(Step::Busy);
        }
        let rate = self.rate.get();
        let page = match rate {
            0 => PAGE,
            r => (r as usize).clamp(1, PAGE),
        };
        let step = async {
            let mut actions = 0;
            if !w.uploads_done {
                actions += self.abort_uploads(&w, now).await?;
                w.uploads_done = true;
            }
            let (scanned, a, more) = self.walk_page(&mut w, page, now).await?;
            Ok::<_, ObjectError>((scanned, actions + a, more))
        };
        let result = step.await;
        let (scanned, actions, more) = match result {
            Ok(r) => r,
            Err(e) => {
                // Keep the bucket where it was: the next step retries after the interval.
                pass.buckets.push_front(w);
                self.pass = Some(pass);
                return Err(e.into());
            }
        };
        progress.items(actions);
        pass.scanned += scanned;
        pass.actions += actions;
        if more {
            pass.buckets.push_front(w);
        }
        self.pass = Some(pass);
        self.note(progress);
        Ok(match self.rate.delay_after(scanned, started) {
            Some(d) => Step::Throttled(d),
            None => Step::Busy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
