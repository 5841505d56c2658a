//! Bucket lifecycle over S3: Put/Get/DeleteBucketLifecycleConfiguration, the configuration
//! checks (answered with the error codes AWS uses), and the `x-amz-expiration` header of
//! objects a rule will expire. The rules themselves decide in `cairn_meta::lifecycle`; the
//! worker that applies them is `cairn_object::lifecycle`.
//!
//! Transitions (to other storage classes) need storage classes, which Cairn does not have:
//! a configuration with any transition answers 501 NotImplemented.

use std::collections::HashSet;

use cairn_meta::lifecycle::{
    Expiration, FilterShape, LifecycleFilter, LifecycleRule as StoredRule, NoncurrentExpiration,
};
use cairn_meta::model::{ObjectRecord, Tag as StoredTag};
use cairn_object::ReadConsistency;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::error::ObjectResultExt;
use crate::CairnS3;

/// Most rules a configuration may hold (AWS's limit).
const MAX_RULES: usize = 1000;
/// Longest rule ID (AWS's limit).
const MAX_ID_LEN: usize = 255;
/// Most noncurrent versions NewerNoncurrentVersions may keep (AWS's limit).
const MAX_NEWER_VERSIONS: i32 = 100;

/// Why a lifecycle configuration is refused; each maps to the S3 error AWS answers.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The XML does not follow the schema (400 MalformedXML).
    #[error("The XML you provided was not well-formed or did not validate against our published schema: {0}")]
    Malformed(&'static str),
    /// A value out of range (400 InvalidArgument).
    #[error("{0}")]
    InvalidArgument(String),
    /// A combination AWS refuses (400 InvalidRequest).
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// Something Cairn does not implement (501 NotImplemented).
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl From<ConfigError> for S3Error {
    fn from(e: ConfigError) -> Self {
        let code = match e {
            ConfigError::Malformed(_) => S3ErrorCode::MalformedXML,
            ConfigError::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
            ConfigError::InvalidRequest(_) => S3ErrorCode::InvalidRequest,
            ConfigError::NotImplemented(_) => S3ErrorCode::NotImplemented,
        };
        S3Error::with_message(code, e.to_string())
    }
}

/// `v` when it is a positive number of days, else InvalidArgument with AWS's message: `'<field>'
/// for <action> action must be a positive integer`.
fn positive(v: i32, field: &str, action: &str) -> Result<u32, ConfigError> {
    u32::try_from(v).ok().filter(|d| *d > 0).ok_or_else(|| {
        ConfigError::InvalidArgument(format!(
            "'{field}' for {action} action must be a positive integer"
        ))
    })
}

fn size(v: i64, what: &str) -> Result<u64, ConfigError> {
    u64::try_from(v).map_err(|_| {
        ConfigError::InvalidArgument(format!("'{what}' must be a non-negative integer"))
    })
}

fn tags(set: Vec<Tag>) -> Result<Vec<StoredTag>, ConfigError> {
    let mut out = Vec::with_capacity(set.len());
    for t in set {
        let (Some(key), Some(value)) = (t.key, t.value) else {
            return Err(ConfigError::Malformed("a Tag needs a Key and a Value"));
        };
        if out.iter().any(|o: &StoredTag| o.key == key) {
            return Err(ConfigError::InvalidRequest(
                "Duplicate Tag Keys are not allowed.",
            ));
        }
        out.push(StoredTag { key, value });
    }
    Ok(out)
}

fn filter(
    f: Option<LifecycleRuleFilter>,
    prefix: Option<String>,
) -> Result<LifecycleFilter, ConfigError> {
    let f = match (f, prefix) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Malformed(
                "a Rule has either a Filter or a Prefix, not both",
            ))
        }
        (None, None) => return Err(ConfigError::Malformed("a Rule needs a Filter or a Prefix")),
        (None, Some(p)) => {
            return Ok(LifecycleFilter {
                prefix: Some(p),
                shape: FilterShape::RulePrefix,
                ..LifecycleFilter::default()
            })
        }
        (Some(f), None) => f,
    };
    let given = [
        f.and.is_some(),
        f.prefix.is_some(),
        f.tag.is_some(),
        f.object_size_greater_than.is_some(),
        f.object_size_less_than.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    if given > 1 {
        return Err(ConfigError::Malformed(
            "a Filter holds one condition; combine several with And",
        ));
    }
    let out = match f.and {
        Some(and) => LifecycleFilter {
            prefix: and.prefix,
            tags: tags(and.tags.unwrap_or_default())?,
            size_greater_than: and
                .object_size_greater_than
                .map(|v| size(v, "ObjectSizeGreaterThan"))
                .transpose()?,
            size_less_than: and
                .object_size_less_than
                .map(|v| size(v, "ObjectSizeLessThan"))
                .transpose()?,
            shape: FilterShape::And,
        },
        None => LifecycleFilter {
            prefix: f.prefix,
            tags: tags(f.tag.into_iter().collect())?,
            size_greater_than: f
                .object_size_greater_than
                .map(|v| size(v, "ObjectSizeGreaterThan"))
                .transpose()?,
            size_less_than: f
                .object_size_less_than
                .map(|v| size(v, "ObjectSizeLessThan"))
                .transpose()?,
            shape: FilterShape::Single,
        },
    };
    if let (Some(gt), Some(lt)) = (out.size_greater_than, out.size_less_than) {
        if lt <= gt {
            return Err(ConfigError::InvalidArgument(
                "ObjectSizeLessThan must be greater than ObjectSizeGreaterThan".into(),
            ));
        }
    }
    Ok(out)
}

/// Unix milliseconds of a lifecycle `Date`, which must be midnight UTC.
fn date_ms(d: Timestamp) -> Result<i64, ConfigError> {
    let t = time::OffsetDateTime::from(d).to_offset(time::UtcOffset::UTC);
    if t.time() != time::Time::MIDNIGHT {
        return Err(ConfigError::InvalidArgument(
            "'Date' must be at midnight GMT".into(),
        ));
    }
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn expiration(e: LifecycleExpiration, f: &LifecycleFilter) -> Result<Expiration, ConfigError> {
    let given = [
        e.days.is_some(),
        e.date.is_some(),
        e.expired_object_delete_marker.is_some(),
    ]
    .into_iter()
    .filter(|b| *b)
    .count();
    match given {
        0 => {
            return Err(ConfigError::Malformed(
                "Expiration needs Days, Date or ExpiredObjectDeleteMarker",
            ))
        }
        1 => {}
        _ => {
            return Err(ConfigError::Malformed(
                "Expiration takes one of Days, Date and ExpiredObjectDeleteMarker",
            ))
        }
    }
    let marker = e.expired_object_delete_marker.unwrap_or(false);
    if marker && (!f.tags.is_empty() || f.size_greater_than.is_some() || f.size_less_than.is_some())
    {
        return Err(ConfigError::InvalidRequest(
            "ExpiredObjectDeleteMarker cannot be specified with Tags or object size filters.",
        ));
    }
    Ok(Expiration {
        days: e
            .days
            .map(|d| positive(d, "Days", "Expiration"))
            .transpose()?,
        date_ms: e.date.map(date_ms).transpose()?,
        expired_object_delete_marker: marker,
    })
}

fn rule(r: LifecycleRule) -> Result<StoredRule, ConfigError> {
    let enabled = match r.status.as_str() {
        ExpirationStatus::ENABLED => true,
        ExpirationStatus::DISABLED => false,
        _ => return Err(ConfigError::Malformed("Status is Enabled or Disabled")),
    };
    if r.transitions.as_ref().is_some_and(|t| !t.is_empty())
        || r.noncurrent_version_transitions
            .as_ref()
            .is_some_and(|t| !t.is_empty())
    {
        return Err(ConfigError::NotImplemented(
            "Transitions are not implemented: Cairn has a single storage class",
        ));
    }
    let id = r.id.unwrap_or_default();
    if id.chars().count() > MAX_ID_LEN {
        return Err(ConfigError::InvalidArgument(
            "ID length should not exceed allowed limit of 255".into(),
        ));
    }
    let filter = filter(r.filter, r.prefix)?;
    if r.expiration.is_none()
        && r.noncurrent_version_expiration.is_none()
        && r.abort_incomplete_multipart_upload.is_none()
    {
        return Err(ConfigError::InvalidRequest(
            "At least one action needs to be specified in a rule",
        ));
    }
    let expiration = r.expiration.map(|e| expiration(e, &filter)).transpose()?;
    let noncurrent_expiration = match r.noncurrent_version_expiration {
        Some(n) => {
            let Some(days) = n.noncurrent_days else {
                return Err(ConfigError::Malformed(
                    "NoncurrentVersionExpiration needs NoncurrentDays",
                ));
            };
            let newer_versions = match n.newer_noncurrent_versions {
                Some(v) if !(1..=MAX_NEWER_VERSIONS).contains(&v) => {
                    return Err(ConfigError::InvalidArgument(format!(
                        "'NewerNoncurrentVersions' must be between 1 and {MAX_NEWER_VERSIONS}"
                    )))
                }
                v => v.map(|v| v as u32),
            };
            Some(NoncurrentExpiration {
                days: positive(days, "NoncurrentDays", "NoncurrentVersionExpiration")?,
                newer_versions,
            })
        }
        None => None,
    };
    let abort_upload_days = match r.abort_incomplete_multipart_upload {
        Some(a) => {
            let Some(d) = a.days_after_initiation else {
                return Err(ConfigError::Malformed(
                    "AbortIncompleteMultipartUpload needs DaysAfterInitiation",
                ));
            };
            if !filter.tags.is_empty() {
                return Err(ConfigError::InvalidRequest(
                    "AbortIncompleteMultipartUpload cannot be specified with Tags.",
                ));
            }
            if filter.size_greater_than.is_some() || filter.size_less_than.is_some() {
                return Err(ConfigError::InvalidRequest(
                    "AbortIncompleteMultipartUpload cannot be specified with object size filters.",
                ));
            }
            Some(positive(
                d,
                "DaysAfterInitiation",
                "AbortIncompleteMultipartUpload",
            )?)
        }
        None => None,
    };
    Ok(StoredRule {
        id,
        enabled,
        filter,
        expiration,
        noncurrent_expiration,
        abort_upload_days,
    })
}

/// Checks a configuration as AWS does and turns it into stored rules (rules without an ID get
/// one, as AWS gives them).
pub(crate) fn from_dto(c: BucketLifecycleConfiguration) -> Result<Vec<StoredRule>, ConfigError> {
    if c.rules.is_empty() {
        return Err(ConfigError::Malformed(
            "a lifecycle configuration needs a Rule",
        ));
    }
    if c.rules.len() > MAX_RULES {
        return Err(ConfigError::Malformed(
            "a lifecycle configuration holds at most 1000 rules",
        ));
    }
    let mut rules = c
        .rules
        .into_iter()
        .map(rule)
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashSet::new();
    for r in rules.iter().filter(|r| !r.id.is_empty()) {
        if !seen.insert(r.id.clone()) {
            return Err(ConfigError::InvalidArgument(
                "Rule ID must be unique. Found same ID for more than one rule".into(),
            ));
        }
    }
    let mut n = 0;
    for r in rules.iter_mut().filter(|r| r.id.is_empty()) {
        r.id = loop {
            n += 1;
            let id = format!("rule-{n}");
            if seen.insert(id.clone()) {
                break id;
            }
        };
    }
    Ok(rules)
}

fn tag_dto(t: &StoredTag) -> Tag {
    Tag {
        key: Some(t.key.clone()),
        value: Some(t.value.clone()),
    }
}

fn timestamp(ms: i64) -> Option<Timestamp> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .map(Timestamp::from)
}

/// The stored rules as GetBucketLifecycleConfiguration answers them (in the shape given).
pub(crate) fn to_dto(rules: &[StoredRule]) -> LifecycleRules {
    rules
        .iter()
        .map(|r| {
            let f = &r.filter;
            let (filter, prefix) = match f.shape {
                FilterShape::RulePrefix => (None, f.prefix.clone()),
                FilterShape::And => (
                    Some(LifecycleRuleFilter {
                        and: Some(LifecycleRuleAndOperator {
                            prefix: f.prefix.clone(),
                            tags: (!f.tags.is_empty())
                                .then(|| f.tags.iter().map(tag_dto).collect()),
                            object_size_greater_than: f.size_greater_than.map(|v| v as i64),
                            object_size_less_than: f.size_less_than.map(|v| v as i64),
                        }),
                        ..LifecycleRuleFilter::default()
                    }),
                    None,
                ),
                FilterShape::Single => (
                    Some(LifecycleRuleFilter {
                        prefix: f.prefix.clone(),
                        tag: f.tags.first().map(tag_dto),
                        object_size_greater_than: f.size_greater_than.map(|v| v as i64),
                        object_size_less_than: f.size_less_than.map(|v| v as i64),
                        and: None,
                    }),
                    None,
                ),
            };
            LifecycleRule {
                id: Some(r.id.clone()),
                status: ExpirationStatus::from_static(if r.enabled {
                    ExpirationStatus::ENABLED
                } else {
                    ExpirationStatus::DISABLED
                }),
                filter,
                prefix,
                expiration: r.expiration.as_ref().map(|e| LifecycleExpiration {
                    days: e.days.map(|d| d as i32),
                    date: e.date_ms.and_then(timestamp),
                    expired_object_delete_marker: e.expired_object_delete_marker.then_some(true),
                }),
                noncurrent_version_expiration: r.noncurrent_expiration.as_ref().map(|n| {
                    NoncurrentVersionExpiration {
                        noncurrent_days: Some(n.days as i32),
                        newer_noncurrent_versions: n.newer_versions.map(|v| v as i32),
                    }
                }),
                abort_incomplete_multipart_upload: r.abort_upload_days.map(|d| {
                    AbortIncompleteMultipartUpload {
                        days_after_initiation: Some(d as i32),
                    }
                }),
                transitions: None,
                noncurrent_version_transitions: None,
            }
        })
        .collect()
}

pub(crate) async fn put_bucket_lifecycle_configuration(
    s3: &CairnS3,
    req: S3Request<PutBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
    let input = req.input;
    let Some(config) = input.lifecycle_configuration else {
        return Err(ConfigError::Malformed("a LifecycleConfiguration body is required").into());
    };
    let rules = from_dto(config)?;
    s3.objects()
        .set_bucket_lifecycle(&input.bucket, Some(rules))
        .await
        .s3()?;
    s3.inner.access_cache.invalidate(&input.bucket);
    Ok(S3Response::new(
        PutBucketLifecycleConfigurationOutput::default(),
    ))
}

pub(crate) async fn get_bucket_lifecycle_configuration(
    s3: &CairnS3,
    req: S3Request<GetBucketLifecycleConfigurationInput>,
) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    match config.lifecycle {
        Some(rules) => Ok(S3Response::new(GetBucketLifecycleConfigurationOutput {
            rules: Some(to_dto(&rules)),
            transition_default_minimum_object_size: None,
        })),
        None => Err(s3_error!(
            NoSuchLifecycleConfiguration,
            "The lifecycle configuration does not exist"
        )),
    }
}

/// Removes the lifecycle configuration (204, also when there was none).
pub(crate) async fn delete_bucket_lifecycle(
    s3: &CairnS3,
    req: S3Request<DeleteBucketLifecycleInput>,
) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
    s3.objects()
        .set_bucket_lifecycle(&req.input.bucket, None)
        .await
        .s3()?;
    s3.inner.access_cache.invalidate(&req.input.bucket);
    Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
}

/// The `x-amz-expiration` value for the current version `r` of `bucket/key`, when a rule of
/// the bucket will expire it: `expiry-date="<HTTP date>", rule-id="<id>"`. None without rules
/// (or when the settings cannot be read: the header is advisory).
pub(crate) async fn expiration_header(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    r: &ObjectRecord,
) -> Option<String> {
    // From the per-bucket settings cache (one local read per bucket per second), not a read
    // per request: the header is advisory, and a change through this node drops the entry.
    let access = s3.inner.access_cache.get(bucket).await.ok()?;
    let rules = access.lifecycle.as_deref()?;
    let day_ms = s3.objects().lifecycle_day_ms();
    let (at, id) = cairn_meta::lifecycle::expiry_of(rules, key, r, day_ms)?;
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(at).ok()?);
    Some(format!(
        "expiry-date=\"{}\", rule-id=\"{}\"",
        httpdate::fmt_http_date(when),
        id.replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_rule() -> LifecycleRule {
        LifecycleRule {
            id: Some("r1".into()),
            status: ExpirationStatus::from_static(ExpirationStatus::ENABLED),
            filter: Some(LifecycleRuleFilter {
                prefix: Some("logs/".into()),
                ..LifecycleRuleFilter::default()
            }),
            expiration: Some(LifecycleExpiration {
                days: Some(3),
                ..LifecycleExpiration::default()
            }),
            abort_incomplete_multipart_upload: None,
            noncurrent_version_expiration: None,
            noncurrent_version_transitions: None,
            prefix: None,
            transitions: None,
        }
    }

    fn check(rules: Vec<LifecycleRule>) -> Result<Vec<StoredRule>, ConfigError> {
        from_dto(BucketLifecycleConfiguration { rules })
    }

    fn kind(r: Result<Vec<StoredRule>, ConfigError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(ConfigError::Malformed(_)) => "MalformedXML",
            Err(ConfigError::InvalidArgument(_)) => "InvalidArgument",
            Err(ConfigError::InvalidRequest(_)) => "InvalidRequest",
            Err(ConfigError::NotImplemented(_)) => "NotImplemented",
        }
    }

    #[test]
    fn a_valid_configuration_round_trips() {
        let mut and = base_rule();
        and.id = None;
        and.filter = Some(LifecycleRuleFilter {
            and: Some(LifecycleRuleAndOperator {
                prefix: Some("a/".into()),
                tags: Some(vec![Tag {
                    key: Some("k".into()),
                    value: Some("v".into()),
                }]),
                object_size_greater_than: Some(10),
                object_size_less_than: Some(20),
            }),
            ..LifecycleRuleFilter::default()
        });
        let mut legacy = base_rule();
        legacy.id = Some("legacy".into());
        legacy.filter = None;
        legacy.prefix = Some("old/".into());
        let rules = vec![base_rule(), and.clone(), legacy.clone()];
        let stored = check(rules).unwrap();
        assert_eq!(stored[1].id, "rule-1");
        assert_eq!(stored[1].filter.shape, FilterShape::And);
        let back = to_dto(&stored);
        assert_eq!(back[0], base_rule());
        assert_eq!(back[1].filter, and.filter);
        assert_eq!(back[2].prefix, legacy.prefix);
        assert!(back[2].filter.is_none());
    }

    #[test]
    fn errors_carry_the_codes_aws_answers() {
        let with = |f: &dyn Fn(&mut LifecycleRule)| {
            let mut r = base_rule();
            f(&mut r);
            kind(check(vec![r]))
        };
        assert_eq!(kind(check(vec![])), "MalformedXML");
        let many: Vec<_> = (0..1001)
            .map(|i| LifecycleRule {
                id: Some(format!("r{i}")),
                ..base_rule()
            })
            .collect();
        assert_eq!(kind(check(many)), "MalformedXML");
        assert_eq!(
            kind(check(vec![base_rule(), base_rule()])),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| r.status = ExpirationStatus::from("On".to_owned())),
            "MalformedXML"
        );
        assert_eq!(with(&|r| r.id = Some("x".repeat(256))), "InvalidArgument");
        assert_eq!(with(&|r| r.prefix = Some("p".into())), "MalformedXML");
        assert_eq!(with(&|r| { r.filter = None }), "MalformedXML");
        assert_eq!(
            with(&|r| r.filter.as_mut().unwrap().object_size_greater_than = Some(1)),
            "MalformedXML"
        );
        assert_eq!(with(&|r| r.expiration = None), "InvalidRequest");
        assert_eq!(
            with(&|r| r.expiration.as_mut().unwrap().days = Some(0)),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| r.expiration.as_mut().unwrap().expired_object_delete_marker = Some(true)),
            "MalformedXML"
        );
        assert_eq!(
            with(&|r| r.expiration = Some(LifecycleExpiration::default())),
            "MalformedXML"
        );
        let noon = Timestamp::from(time::macros::datetime!(2030-01-01 12:00 UTC));
        assert_eq!(
            with(&|r| {
                r.expiration = Some(LifecycleExpiration {
                    date: Some(noon.clone()),
                    ..LifecycleExpiration::default()
                })
            }),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| {
                r.noncurrent_version_expiration = Some(NoncurrentVersionExpiration {
                    noncurrent_days: Some(0),
                    newer_noncurrent_versions: None,
                })
            }),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| {
                r.noncurrent_version_expiration = Some(NoncurrentVersionExpiration {
                    noncurrent_days: Some(1),
                    newer_noncurrent_versions: Some(101),
                })
            }),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| {
                r.abort_incomplete_multipart_upload = Some(AbortIncompleteMultipartUpload {
                    days_after_initiation: Some(-1),
                })
            }),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| {
                r.filter = Some(LifecycleRuleFilter {
                    tag: Some(Tag {
                        key: Some("k".into()),
                        value: Some("v".into()),
                    }),
                    ..LifecycleRuleFilter::default()
                });
                r.abort_incomplete_multipart_upload = Some(AbortIncompleteMultipartUpload {
                    days_after_initiation: Some(1),
                });
            }),
            "InvalidRequest"
        );
        assert_eq!(
            with(&|r| {
                r.filter = Some(LifecycleRuleFilter {
                    and: Some(LifecycleRuleAndOperator {
                        object_size_greater_than: Some(10),
                        object_size_less_than: Some(10),
                        ..LifecycleRuleAndOperator::default()
                    }),
                    ..LifecycleRuleFilter::default()
                })
            }),
            "InvalidArgument"
        );
        assert_eq!(
            with(&|r| {
                r.transitions = Some(vec![Transition {
                    days: Some(30),
                    date: None,
                    storage_class: Some(TransitionStorageClass::from_static(
                        TransitionStorageClass::GLACIER,
                    )),
                }])
            }),
            "NotImplemented"
        );
    }
}
