//! S3 Object Lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention,
//! Put/GetObjectLegalHold, the `x-amz-object-lock-*` headers of writes and reads, and the
//! `x-amz-bypass-governance-retention` permission. Validation is pure (tested below); the
//! state machine (`cairn_meta::lock`) decides what a lock allows.

use cairn_meta::lock::{
    BucketLock, DefaultRetention, LockChange, LockMode, Retention, RetentionPeriod, VersionLock,
};
use cairn_object::{LockRequest, ObjectRecord};
use http::StatusCode;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use crate::checksum::ChecksumRequest;
use crate::error::{custom_error, ObjectResultExt};
use crate::object::{check_version_id, ts};
use crate::validate::validate_key;
use crate::CairnS3;

/// Longest default retention AWS accepts.
const MAX_DAYS: i32 = 36_500;
const MAX_YEARS: i32 = 100;

/// Left in a request's extensions by the access hook when it asks to bypass GOVERNANCE
/// retention: whether the key holds `s3:BypassGovernanceRetention` on the object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BypassAllowed(pub bool);

/// Whether the request may bypass GOVERNANCE retention: it asks to (`header`) and the access
/// hook found the permission.
pub(crate) fn bypass(header: Option<bool>, ext: &http::Extensions) -> bool {
    header == Some(true) && ext.get::<BypassAllowed>().is_some_and(|b| b.0)
}

fn malformed() -> S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

fn ms_of(t: &Timestamp) -> i64 {
    let dt: time::OffsetDateTime = t.clone().into();
    i64::try_from(dt.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn mode_of(m: &str) -> Option<LockMode> {
    LockMode::parse(m)
}

/// The `x-amz-object-lock-*` headers of PutObject / CopyObject / CreateMultipartUpload
/// (None: none sent), checked as AWS does at `now_ms`.
pub(crate) fn from_headers(
    mode: Option<&ObjectLockMode>,
    until: Option<&Timestamp>,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
    now_ms: i64,
) -> S3Result<Option<VersionLock>> {
    let retention = match (mode, until) {
        (None, None) => None,
        (Some(m), Some(u)) => {
            let mode = mode_of(m.as_str())
                .ok_or_else(|| s3_error!(InvalidArgument, "Unknown wormMode directive."))?;
            let until_ms = ms_of(u);
            if until_ms <= now_ms {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            Some(Retention { mode, until_ms })
        }
        _ => {
            return Err(s3_error!(
            InvalidArgument,
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
        ))
        }
    };
    let legal_hold = match legal_hold.map(ObjectLockLegalHoldStatus::as_str) {
        None => None,
        Some(ObjectLockLegalHoldStatus::ON) => Some(true),
        Some(ObjectLockLegalHoldStatus::OFF) => Some(false),
        Some(_) => {
            return Err(s3_error!(
                InvalidArgument,
                "Legal Hold must be either of 'ON' or 'OFF'"
            ))
        }
    };
    if retention.is_none() && legal_hold.is_none() {
        return Ok(None);
    }
    Ok(Some(VersionLock {
        retention,
        legal_hold: legal_hold.unwrap_or(false),
    }))
}

/// What a PutObject asks of object lock: its headers and whether it carries an integrity
/// header (`Content-MD5` or an `x-amz-checksum-*` value, in a header or the trailer).
pub(crate) fn put_request(
    mode: Option<&ObjectLockMode>,
    until: Option<&Timestamp>,
    legal_hold: Option<&ObjectLockLegalHoldStatus>,
    sums: &ChecksumRequest,
) -> S3Result<LockRequest> {
    Ok(LockRequest {
        explicit: from_headers(mode, until, legal_hold, now_ms())?,
        integrity_checked: integrity_checked(sums),
    })
}

/// Whether a write carries `Content-MD5` or an `x-amz-checksum-*` value (header or trailer),
/// which AWS requires of writes that will be locked.
pub(crate) fn integrity_checked(sums: &ChecksumRequest) -> bool {
    sums.content_md5.is_some() || sums.expected.is_some() || sums.in_trailer
}

/// The lock headers of GET/HEAD for `record`: mode, retain-until date, legal hold.
pub(crate) fn read_headers(
    record: &ObjectRecord,
) -> (
    Option<ObjectLockMode>,
    Option<ObjectLockRetainUntilDate>,
    Option<ObjectLockLegalHoldStatus>,
) {
    let Some(lock) = &record.lock else {
        return (None, None, None);
    };
    let (mode, until) = match lock.retention {
        Some(r) => (
            Some(ObjectLockMode::from(r.mode.as_str().to_owned())),
            Some(ts(r.until_ms)),
        ),
        None => (None, None),
    };
    (mode, until, Some(legal_hold_status(lock.legal_hold)))
}

fn legal_hold_status(on: bool) -> ObjectLockLegalHoldStatus {
    ObjectLockLegalHoldStatus::from_static(if on {
        ObjectLockLegalHoldStatus::ON
    } else {
        ObjectLockLegalHoldStatus::OFF
    })
}

/// PutObjectLockConfiguration's body → the bucket's lock, checked as AWS does.
pub(crate) fn bucket_lock(conf: Option<&ObjectLockConfiguration>) -> S3Result<BucketLock> {
    let conf = conf.ok_or_else(malformed)?;
    match conf
        .object_lock_enabled
        .as_ref()
        .map(ObjectLockEnabled::as_str)
    {
        Some(ObjectLockEnabled::ENABLED) => {}
        _ => return Err(malformed()),
    }
    let Some(rule) = &conf.rule else {
        return Ok(BucketLock::default());
    };
    let d = rule.default_retention.as_ref().ok_or_else(malformed)?;
    let mode = d
        .mode
        .as_ref()
        .map(|m| mode_of(m.as_str()).ok_or_else(malformed))
        .transpose()?
        .ok_or_else(malformed)?;
    let positive = || {
        s3_error!(
            InvalidArgument,
            "Default retention period must be a positive integer value."
        )
    };
    let too_large = || s3_error!(InvalidArgument, "Default retention period is too large.");
    let period = match (d.days, d.years) {
        (Some(_), Some(_)) | (None, None) => return Err(malformed()),
        (Some(n), None) if n <= 0 => return Err(positive()),
        (None, Some(n)) if n <= 0 => return Err(positive()),
        (Some(n), None) if n > MAX_DAYS => return Err(too_large()),
        (None, Some(n)) if n > MAX_YEARS => return Err(too_large()),
        (Some(n), None) => RetentionPeriod::Days(n.unsigned_abs()),
        (None, Some(n)) => RetentionPeriod::Years(n.unsigned_abs()),
    };
    Ok(BucketLock {
        default_retention: Some(DefaultRetention { mode, period }),
    })
}

fn configuration_of(lock: &BucketLock) -> ObjectLockConfiguration {
    ObjectLockConfiguration {
        object_lock_enabled: Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED)),
        rule: lock.default_retention.map(|d| ObjectLockRule {
            default_retention: Some(DefaultRetention_ {
                mode: Some(ObjectLockRetentionMode::from(d.mode.as_str().to_owned())),
                days: match d.period {
                    RetentionPeriod::Days(n) => i32::try_from(n).ok(),
                    RetentionPeriod::Years(_) => None,
                },
                years: match d.period {
                    RetentionPeriod::Years(n) => i32::try_from(n).ok(),
                    RetentionPeriod::Days(_) => None,
                },
            }),
        }),
    }
}

/// s3s's DTO of the same name as ours.
type DefaultRetention_ = s3s::dto::DefaultRetention;

/// PutObjectRetention's body → the new retention (None: remove it), checked at `now_ms`.
pub(crate) fn retention_of(
    r: Option<&ObjectLockRetention>,
    now_ms: i64,
) -> S3Result<Option<Retention>> {
    let r = r.ok_or_else(malformed)?;
    match (&r.mode, &r.retain_until_date) {
        // An empty Retention removes it (GOVERNANCE with the bypass only).
        (None, None) => Ok(None),
        (Some(m), Some(u)) => {
            let mode = mode_of(m.as_str()).ok_or_else(malformed)?;
            let until_ms = ms_of(u);
            if until_ms <= now_ms {
                return Err(s3_error!(
                    InvalidArgument,
                    "The retain until date must be in the future!"
                ));
            }
            Ok(Some(Retention { mode, until_ms }))
        }
        _ => Err(malformed()),
    }
}

fn legal_hold_of(h: Option<&ObjectLockLegalHold>) -> S3Result<bool> {
    match h
        .and_then(|h| h.status.as_ref())
        .map(ObjectLockLegalHoldStatus::as_str)
    {
        Some(ObjectLockLegalHoldStatus::ON) => Ok(true),
        Some(ObjectLockLegalHoldStatus::OFF) => Ok(false),
        _ => Err(malformed()),
    }
}

fn no_object_lock() -> S3Error {
    custom_error(
        "NoSuchObjectLockConfiguration",
        "The specified object does not have a ObjectLock configuration",
        StatusCode::NOT_FOUND,
    )
}

// ---------------------------------------------------------------- bucket configuration

pub(crate) async fn put_object_lock_configuration(
    s3: &CairnS3,
    req: S3Request<PutObjectLockConfigurationInput>,
) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
    let input = req.input;
    let lock = bucket_lock(input.object_lock_configuration.as_ref())?;
    s3.objects()
        .set_bucket_object_lock(&input.bucket, lock)
        .await
        .s3()?;
    Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
}

pub(crate) async fn get_object_lock_configuration(
    s3: &CairnS3,
    req: S3Request<GetObjectLockConfigurationInput>,
) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
    let read = crate::consistency::read(&req.headers)?;
    let bucket = s3
        .objects()
        .head_bucket_with(&req.input.bucket, read)
        .await
        .s3()?;
    let Some(lock) = bucket.object_lock else {
        return Err(custom_error(
            "ObjectLockConfigurationNotFoundError",
            "Object Lock configuration does not exist for this bucket",
            StatusCode::NOT_FOUND,
        ));
    };
    Ok(S3Response::new(GetObjectLockConfigurationOutput {
        object_lock_configuration: Some(configuration_of(&lock)),
    }))
}

// ---------------------------------------------------------------- retention and legal hold

pub(crate) async fn put_object_retention(
    s3: &CairnS3,
    req: S3Request<PutObjectRetentionInput>,
) -> S3Result<S3Response<PutObjectRetentionOutput>> {
    let bypass = bypass(req.input.bypass_governance_retention, &req.extensions);
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    let retention = retention_of(input.retention.as_ref(), now_ms())?;
    s3.objects()
        .set_object_lock(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            LockChange::Retention(retention),
            bypass,
        )
        .await
        .s3()?;
    Ok(S3Response::new(PutObjectRetentionOutput::default()))
}

pub(crate) async fn get_object_retention(
    s3: &CairnS3,
    req: S3Request<GetObjectRetentionInput>,
) -> S3Result<S3Response<GetObjectRetentionOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    let lock = s3
        .objects()
        .object_lock(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .s3()?;
    let Some(r) = lock.and_then(|l| l.retention) else {
        return Err(no_object_lock());
    };
    Ok(S3Response::new(GetObjectRetentionOutput {
        retention: Some(ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from(r.mode.as_str().to_owned())),
            retain_until_date: Some(ts(r.until_ms)),
        }),
    }))
}

pub(crate) async fn put_object_legal_hold(
    s3: &CairnS3,
    req: S3Request<PutObjectLegalHoldInput>,
) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    let on = legal_hold_of(input.legal_hold.as_ref())?;
    s3.objects()
        .set_object_lock(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            LockChange::LegalHold(on),
            false,
        )
        .await
        .s3()?;
    Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
}

pub(crate) async fn get_object_legal_hold(
    s3: &CairnS3,
    req: S3Request<GetObjectLegalHoldInput>,
) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    let lock = s3
        .objects()
        .object_lock(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .s3()?;
    let Some(lock) = lock else {
        return Err(no_object_lock());
    };
    Ok(S3Response::new(GetObjectLegalHoldOutput {
        legal_hold: Some(ObjectLockLegalHold {
            status: Some(legal_hold_status(lock.legal_hold)),
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        ts(ms)
    }

    fn code(e: S3Error) -> String {
        e.code().as_str().to_owned()
    }

    #[test]
    fn put_headers_come_in_pairs_and_point_ahead() {
        let gov = ObjectLockMode::from_static(ObjectLockMode::GOVERNANCE);
        let now = 1_000_000;
        assert_eq!(from_headers(None, None, None, now).unwrap(), None);
        let l = from_headers(Some(&gov), Some(&t(now + 5_000)), None, now)
            .unwrap()
            .unwrap();
        assert_eq!(
            l.retention,
            Some(Retention {
                mode: LockMode::Governance,
                until_ms: now + 5_000
            })
        );
        assert!(!l.legal_hold);
        assert_eq!(
            code(from_headers(Some(&gov), None, None, now).unwrap_err()),
            "InvalidArgument"
        );
        assert_eq!(
            code(from_headers(None, Some(&t(now + 5_000)), None, now).unwrap_err()),
            "InvalidArgument"
        );
        assert_eq!(
            code(from_headers(Some(&gov), Some(&t(now - 1)), None, now).unwrap_err()),
            "InvalidArgument"
        );
        let bad = ObjectLockMode::from_static("FOREVER");
        assert_eq!(
            code(from_headers(Some(&bad), Some(&t(now + 5)), None, now).unwrap_err()),
            "InvalidArgument"
        );
        let on = ObjectLockLegalHoldStatus::from_static("ON");
        let hold = from_headers(None, None, Some(&on), now).unwrap().unwrap();
        assert!(hold.legal_hold && hold.retention.is_none());
        let maybe = ObjectLockLegalHoldStatus::from_static("MAYBE");
        assert!(from_headers(None, None, Some(&maybe), now).is_err());
    }

    fn conf(mode: Option<&str>, days: Option<i32>, years: Option<i32>) -> ObjectLockConfiguration {
        ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static("Enabled")),
            rule: Some(ObjectLockRule {
                default_retention: Some(s3s::dto::DefaultRetention {
                    mode: mode.map(|m| ObjectLockRetentionMode::from(m.to_owned())),
                    days,
                    years,
                }),
            }),
        }
    }

    #[test]
    fn bucket_configurations_are_checked_like_aws() {
        let ok = bucket_lock(Some(&conf(Some("GOVERNANCE"), Some(1), None))).unwrap();
        assert_eq!(
            ok.default_retention,
            Some(DefaultRetention {
                mode: LockMode::Governance,
                period: RetentionPeriod::Days(1)
            })
        );
        let y = bucket_lock(Some(&conf(Some("COMPLIANCE"), None, Some(2)))).unwrap();
        assert_eq!(
            y.default_retention.map(|d| d.period),
            Some(RetentionPeriod::Years(2))
        );
        // Round trip through the DTO.
        let back = configuration_of(&ok);
        assert_eq!(bucket_lock(Some(&back)).unwrap(), ok);
        let cases = [
            (conf(Some("GOVERNANCE"), Some(1), Some(1)), "MalformedXML"),
            (conf(Some("GOVERNANCE"), None, None), "MalformedXML"),
            (conf(None, Some(1), None), "MalformedXML"),
            (conf(Some("SOFT"), Some(1), None), "MalformedXML"),
            (conf(Some("GOVERNANCE"), Some(0), None), "InvalidArgument"),
            (conf(Some("GOVERNANCE"), None, Some(-1)), "InvalidArgument"),
            (
                conf(Some("GOVERNANCE"), Some(36_501), None),
                "InvalidArgument",
            ),
            (conf(Some("GOVERNANCE"), None, Some(101)), "InvalidArgument"),
        ];
        for (c, want) in cases {
            assert_eq!(code(bucket_lock(Some(&c)).unwrap_err()), want, "{c:?}");
        }
        // Enabled without a rule: lock on, no default retention.
        let bare = ObjectLockConfiguration {
            object_lock_enabled: Some(ObjectLockEnabled::from_static("Enabled")),
            rule: None,
        };
        assert_eq!(bucket_lock(Some(&bare)).unwrap(), BucketLock::default());
        let off = ObjectLockConfiguration {
            object_lock_enabled: None,
            rule: None,
        };
        assert_eq!(code(bucket_lock(Some(&off)).unwrap_err()), "MalformedXML");
        assert_eq!(code(bucket_lock(None).unwrap_err()), "MalformedXML");
    }

    #[test]
    fn retention_bodies() {
        let now = 1_000;
        let r = ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from_static("COMPLIANCE")),
            retain_until_date: Some(t(5_000)),
        };
        assert_eq!(
            retention_of(Some(&r), now).unwrap(),
            Some(Retention {
                mode: LockMode::Compliance,
                until_ms: 5_000
            })
        );
        let empty = ObjectLockRetention {
            mode: None,
            retain_until_date: None,
        };
        assert_eq!(retention_of(Some(&empty), now).unwrap(), None);
        let half = ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from_static("COMPLIANCE")),
            retain_until_date: None,
        };
        assert_eq!(
            code(retention_of(Some(&half), now).unwrap_err()),
            "MalformedXML"
        );
        let past = ObjectLockRetention {
            mode: Some(ObjectLockRetentionMode::from_static("GOVERNANCE")),
            retain_until_date: Some(t(10)),
        };
        assert_eq!(
            code(retention_of(Some(&past), now).unwrap_err()),
            "InvalidArgument"
        );
        assert!(legal_hold_of(None).is_err());
        assert!(legal_hold_of(Some(&ObjectLockLegalHold {
            status: Some(ObjectLockLegalHoldStatus::from_static("ON"))
        }))
        .unwrap());
    }
}
