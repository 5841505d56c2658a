//! S3 Object Lock in the state machines: a bucket's lock configuration (system group, on the
//! [`crate::model::BucketRecord`]) and a version's retention and legal hold (partition groups,
//! on the [`crate::model::ObjectRecord`]).
//!
//! The rules that guard data are decided here, inside the apply of the commands that remove a
//! version (`DeleteObject`, `DeleteVersion`, and a `null` write replacing a `null` version) or
//! change its protection (`SetObjectLock`), so they are linearizable: two nodes can never both
//! see a version unprotected. Time is the command's own `at_ms` (replicated in the log), never
//! the applying node's clock, so every replica decides the same.
//!
//! The rules, as AWS applies them:
//! - A version with a legal hold ON cannot be removed, whatever its retention.
//! - A version whose retention date is still ahead cannot be removed; under GOVERNANCE a
//!   request that asks to bypass governance (and is allowed to: the S3 layer checks
//!   `s3:BypassGovernanceRetention`) may remove it, under COMPLIANCE nothing may.
//! - COMPLIANCE retention may only be kept or extended, never shortened, removed or turned
//!   into GOVERNANCE. GOVERNANCE retention may be extended (or made COMPLIANCE) freely;
//!   shortened, removed or made less strict only with the bypass.
//! - Expired retention protects nothing and may be replaced by anything.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandError, Response};
use crate::keys;
use crate::model::{BucketRecord, ObjectRecord, Versioning};
use crate::store::{decode, encode, MetaStore, BUCKETS, OBJECTS};
use crate::versions::{VersionEntry, NULL_VERSION};
use crate::MetaError;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// S3's two retention modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Removable before the date by a request that bypasses governance with permission.
    Governance,
    /// Removable by no one before the date.
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    /// Parses `GOVERNANCE` or `COMPLIANCE` (exactly, as S3 does).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

/// A version's retention: protected in `mode` until `until_ms` (unix milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub mode: LockMode,
    pub until_ms: i64,
}

impl Retention {
    /// Whether the retention still protects at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.until_ms > now_ms
    }
}

/// The lock of one version (stored on its record; None there: never locked).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionLock {
    #[serde(default)]
    pub retention: Option<Retention>,
    #[serde(default)]
    pub legal_hold: bool,
}

impl VersionLock {
    /// Whether anything protects the version at `now_ms`.
    pub fn protects(&self, now_ms: i64) -> bool {
        self.legal_hold || self.retention.is_some_and(|r| r.active(now_ms))
    }

    /// Whether the version may be removed at `now_ms`; the refusal says why not.
    pub fn check_removal(&self, now_ms: i64, bypass_governance: bool) -> Result<(), CommandError> {
        if self.legal_hold {
            return Err(CommandError::ObjectLocked(
                "the object version is under a legal hold".into(),
            ));
        }
        match self.retention {
            Some(r) if r.active(now_ms) => match r.mode {
                LockMode::Governance if bypass_governance => Ok(()),
                LockMode::Governance => Err(CommandError::ObjectLocked(
                    "the object version is protected by GOVERNANCE retention".into(),
                )),
                LockMode::Compliance => Err(CommandError::ObjectLocked(
                    "the object version is protected by COMPLIANCE retention".into(),
                )),
            },
            _ => Ok(()),
        }
    }

    /// Whether the retention may become `new` (None: removed) at `now_ms`.
    pub fn check_retention_change(
        &self,
        new: Option<&Retention>,
        now_ms: i64,
        bypass_governance: bool,
    ) -> Result<(), CommandError> {
        let Some(old) = self.retention.filter(|r| r.active(now_ms)) else {
            return Ok(());
        };
        let keeps = new.is_some_and(|n| n.until_ms >= old.until_ms);
        match old.mode {
            LockMode::Compliance => {
                if keeps && new.is_some_and(|n| n.mode == LockMode::Compliance) {
                    Ok(())
                } else {
                    Err(CommandError::ObjectLocked(
                        "COMPLIANCE retention can only be extended, never shortened, removed or changed to GOVERNANCE".into(),
                    ))
                }
            }
            LockMode::Governance if keeps || bypass_governance => Ok(()),
            LockMode::Governance => Err(CommandError::ObjectLocked(
                "shortening or removing GOVERNANCE retention needs x-amz-bypass-governance-retention and the s3:BypassGovernanceRetention permission".into(),
            )),
        }
    }
}

/// Whether `record` may be removed at `now_ms` (see [`VersionLock::check_removal`]).
pub fn check_removal(
    record: &ObjectRecord,
    now_ms: i64,
    bypass_governance: bool,
) -> Result<(), CommandError> {
    match &record.lock {
        Some(l) => l.check_removal(now_ms, bypass_governance),
        None => Ok(()),
    }
}

/// The period of a bucket's default retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionPeriod {
    Days(u32),
    Years(u32),
}

/// A bucket's default retention: applied to every new version written without explicit lock
/// headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub period: RetentionPeriod,
}

impl DefaultRetention {
    /// The retention of a version written at `at_ms` (a year counts 365 days).
    pub fn retention_from(&self, at_ms: i64) -> Retention {
        let days = match self.period {
            RetentionPeriod::Days(d) => i64::from(d),
            RetentionPeriod::Years(y) => i64::from(y) * 365,
        };
        Retention {
            mode: self.mode,
            until_ms: at_ms.saturating_add(days.saturating_mul(DAY_MS)),
        }
    }
}

/// A bucket's object lock configuration (on its record; None there: lock not enabled). Once
/// enabled it is never disabled; only the default rule changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketLock {
    #[serde(default)]
    pub default_retention: Option<DefaultRetention>,
}

/// What `Command::SetObjectLock` changes on a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockChange {
    /// PutObjectRetention (None: remove the retention).
    Retention(Option<Retention>),
    /// PutObjectLegalHold.
    LegalHold(bool),
}

impl MetaStore {
    /// Applies `SetBucketObjectLock` (system group) and `SetObjectLock` (a partition group).
    pub(crate) fn apply_lock(
        &self,
        txn: &WriteTransaction,
        group: u64,
        cmd: &Command,
    ) -> Result<Response, MetaError> {
        match cmd {
            Command::SetBucketObjectLock { name, lock } => {
                let mut t = txn.open_table(BUCKETS)?;
                let k = keys::bucket(group, name);
                let mut rec: BucketRecord = match t.get(k.as_slice())? {
                    Some(v) => decode(v.value())?,
                    None => return Ok(Response::Refused(CommandError::NoSuchBucket)),
                };
                // Checked here, not only by the S3 layer: a concurrent Suspend must not slip
                // between the check and the change.
                if rec.versioning != Some(Versioning::Enabled) {
                    return Ok(Response::Refused(CommandError::InvalidBucketState(
                        "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration".into(),
                    )));
                }
                rec.object_lock = Some(*lock);
                t.insert(k.as_slice(), encode(&rec)?.as_slice())?;
                drop(t);
                self.audit(txn, group, 0, format!("bucket {name} object lock {lock:?}"))?;
                Ok(Response::Done)
            }
            Command::SetObjectLock {
                bucket,
                key,
                version_id,
                change,
                bypass_governance,
                at_ms,
            } => {
                let found = match version_id {
                    Some(v) => self.version_in(txn, group, bucket, key, v)?,
                    None => self.latest_in(txn, group, bucket, key)?,
                };
                let mut record = match found {
                    Some(VersionEntry::Object(r)) => r,
                    Some(VersionEntry::Marker(_)) if version_id.is_some() => {
                        return Ok(Response::Refused(CommandError::MethodNotAllowed))
                    }
                    _ if version_id.is_some() => {
                        return Ok(Response::Refused(CommandError::NoSuchVersion))
                    }
                    _ => return Ok(Response::Refused(CommandError::NoSuchKey)),
                };
                let mut lock = record.lock.clone().unwrap_or_default();
                match change {
                    LockChange::Retention(new) => {
                        if let Err(e) =
                            lock.check_retention_change(new.as_ref(), *at_ms, *bypass_governance)
                        {
                            return Ok(Response::Refused(e));
                        }
                        lock.retention = *new;
                    }
                    LockChange::LegalHold(on) => lock.legal_hold = *on,
                }
                // Kept even when nothing locks any more: a legal hold set OFF reads as OFF.
                record.lock = Some(lock);
                // Same version, data and size: no reference or usage change.
                self.replace_version(txn, group, bucket, key, &record)?;
                Ok(Response::Done)
            }
            other => Ok(Response::Refused(CommandError::Invalid(format!(
                "not an object lock command: {other:?}"
            )))),
        }
    }

    /// Refuses a write of a `null` version (`new_versioned` false) over a locked `null`
    /// version it would replace: the current record `old`, or the noncurrent `null` version.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_null_replace(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
        old: Option<&ObjectRecord>,
        new_versioned: bool,
        at_ms: i64,
    ) -> Result<Result<(), CommandError>, MetaError> {
        if new_versioned {
            return Ok(Ok(()));
        }
        if let Some(o) = old.filter(|o| !o.versioned) {
            return Ok(check_removal(o, at_ms, false));
        }
        match self.version_in(txn, group, bucket, key, NULL_VERSION)? {
            Some(VersionEntry::Object(r)) => Ok(check_removal(&r, at_ms, false)),
            _ => Ok(Ok(())),
        }
    }

    /// The latest entry of `bucket/key` as seen inside `txn`.
    fn latest_in(
        &self,
        txn: &WriteTransaction,
        group: u64,
        bucket: &str,
        key: &str,
    ) -> Result<Option<VersionEntry>, MetaError> {
        let objects = txn.open_table(OBJECTS)?;
        if let Some(v) = objects.get(keys::object(group, bucket, key).as_slice())? {
            return Ok(Some(VersionEntry::Object(decode(v.value())?)));
        }
        drop(objects);
        self.first_version_in(txn, group, bucket, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(mode: LockMode, until_ms: i64, legal_hold: bool) -> VersionLock {
        VersionLock {
            retention: Some(Retention { mode, until_ms }),
            legal_hold,
        }
    }

    fn ret(mode: LockMode, until_ms: i64) -> Retention {
        Retention { mode, until_ms }
    }

    use LockMode::*;

    #[test]
    fn removal_follows_retention_and_legal_hold() {
        let now = 1_000;
        assert!(VersionLock::default().check_removal(now, false).is_ok());
        // Active retention.
        assert!(lock(Governance, 2_000, false)
            .check_removal(now, false)
            .is_err());
        assert!(lock(Governance, 2_000, false)
            .check_removal(now, true)
            .is_ok());
        assert!(lock(Compliance, 2_000, false)
            .check_removal(now, true)
            .is_err());
        // Expired (the date itself is no longer protected).
        assert!(lock(Compliance, 1_000, false)
            .check_removal(now, false)
            .is_ok());
        assert!(lock(Governance, 999, false)
            .check_removal(now, false)
            .is_ok());
        // A legal hold blocks even with bypass and expired retention.
        assert!(lock(Governance, 0, true).check_removal(now, true).is_err());
        let hold = VersionLock {
            retention: None,
            legal_hold: true,
        };
        assert!(hold.check_removal(now, true).is_err());
        assert!(hold.protects(now));
        assert!(!lock(Compliance, 10, false).protects(now));
    }

    #[test]
    fn compliance_is_never_shortened() {
        let now = 1_000;
        let l = lock(Compliance, 5_000, false);
        assert!(l
            .check_retention_change(Some(&ret(Compliance, 5_000)), now, false)
            .is_ok());
        assert!(l
            .check_retention_change(Some(&ret(Compliance, 9_000)), now, false)
            .is_ok());
        for bypass in [false, true] {
            assert!(l
                .check_retention_change(Some(&ret(Compliance, 4_999)), now, bypass)
                .is_err());
            assert!(l
                .check_retention_change(Some(&ret(Governance, 9_000)), now, bypass)
                .is_err());
            assert!(l.check_retention_change(None, now, bypass).is_err());
        }
        // Once expired, anything goes.
        assert!(l.check_retention_change(None, 5_000, false).is_ok());
    }

    #[test]
    fn governance_shortens_only_with_bypass() {
        let now = 1_000;
        let l = lock(Governance, 5_000, false);
        assert!(l
            .check_retention_change(Some(&ret(Governance, 6_000)), now, false)
            .is_ok());
        assert!(l
            .check_retention_change(Some(&ret(Compliance, 6_000)), now, false)
            .is_ok());
        assert!(l
            .check_retention_change(Some(&ret(Governance, 2_000)), now, false)
            .is_err());
        assert!(l.check_retention_change(None, now, false).is_err());
        assert!(l
            .check_retention_change(Some(&ret(Governance, 2_000)), now, true)
            .is_ok());
        assert!(l.check_retention_change(None, now, true).is_ok());
        // Nothing to shorten on an unlocked version.
        assert!(VersionLock::default()
            .check_retention_change(None, now, false)
            .is_ok());
    }

    #[test]
    fn default_retention_counts_days_and_years() {
        let d = DefaultRetention {
            mode: Governance,
            period: RetentionPeriod::Days(2),
        };
        assert_eq!(d.retention_from(10).until_ms, 10 + 2 * DAY_MS);
        let y = DefaultRetention {
            mode: Compliance,
            period: RetentionPeriod::Years(1),
        };
        assert_eq!(y.retention_from(0), ret(Compliance, 365 * DAY_MS));
        assert_eq!(LockMode::parse("GOVERNANCE"), Some(Governance));
        assert_eq!(LockMode::parse("governance"), None);
        assert_eq!(Compliance.as_str(), "COMPLIANCE");
    }
}
