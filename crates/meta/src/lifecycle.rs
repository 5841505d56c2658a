//! S3 bucket lifecycle, the pure part: the stored rules (validated by the S3 layer, kept in the
//! bucket's row of `sm_bucket_config`), how a rule's filter matches an object, and what a rule
//! decides for one key's versions or one multipart upload at a given time.
//!
//! Time is counted in *lifecycle days* of `day_ms` milliseconds (86 400 000 in production; the
//! `LIFECYCLE_DAY_SECS` setting shortens it for tests and demos). As AWS does, an age-based
//! action is due at the start of the first day boundary (midnight UTC with real days) at or
//! after `start + days × day`: [`due_at`].
//!
//! Nothing here reads a clock or a table: the worker (`cairn-object` `lifecycle.rs`) feeds it
//! the state it scanned and `now`, and carries each decision out through a replicated
//! `Command::LifecycleExpire` whose apply re-checks that the key is still as scanned
//! (`crate::lifecycle_sm`).

use serde::{Deserialize, Serialize};

use crate::model::{ObjectRecord, Tag, UploadRecord};
use crate::versions::VersionEntry;

/// One lifecycle rule as PutBucketLifecycleConfiguration gave it (validated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    /// Unique within the configuration (the S3 layer makes one up when none is given).
    pub id: String,
    /// `Status` Enabled (true) or Disabled.
    pub enabled: bool,
    pub filter: LifecycleFilter,
    #[serde(default)]
    pub expiration: Option<Expiration>,
    #[serde(default)]
    pub noncurrent_expiration: Option<NoncurrentExpiration>,
    /// AbortIncompleteMultipartUpload's DaysAfterInitiation.
    #[serde(default)]
    pub abort_upload_days: Option<u32>,
}

/// Which objects a rule applies to: all conditions must hold (an empty filter matches all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleFilter {
    /// Key prefix (None or empty: every key).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Every tag must be on the object with the same value.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The object must be larger than this many bytes.
    #[serde(default)]
    pub size_greater_than: Option<u64>,
    /// The object must be smaller than this many bytes.
    #[serde(default)]
    pub size_less_than: Option<u64>,
    /// How the client wrote it, so GetBucketLifecycleConfiguration answers the same shape.
    #[serde(default)]
    pub shape: FilterShape,
}

/// The XML form a filter was given in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterShape {
    /// `<Filter>` with at most one condition directly inside (or none: matches all).
    #[default]
    Single,
    /// `<Filter><And>…</And></Filter>`.
    And,
    /// The rule-level `<Prefix>` of the original API (no `<Filter>`).
    RulePrefix,
}

/// The `Expiration` action of a rule (exactly one of its fields is set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiration {
    /// Days after the object's last modification.
    #[serde(default)]
    pub days: Option<u32>,
    /// A date (unix ms, midnight UTC) from which matching objects expire.
    #[serde(default)]
    pub date_ms: Option<i64>,
    /// Remove a delete marker that is its key's only version.
    #[serde(default)]
    pub expired_object_delete_marker: bool,
}

/// The `NoncurrentVersionExpiration` action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoncurrentExpiration {
    /// Days after a version became noncurrent.
    pub days: u32,
    /// How many of the newest noncurrent versions to keep whatever their age.
    #[serde(default)]
    pub newer_versions: Option<u32>,
}

/// The start of the first lifecycle day at or after `start_ms + days × day_ms`: when an action
/// of `days` days on something dated `start_ms` is due. With 86 400 000 ms days that is the
/// next midnight UTC, as AWS computes it.
pub fn due_at(start_ms: i64, days: u32, day_ms: i64) -> i64 {
    let day_ms = day_ms.max(1);
    let t = start_ms.saturating_add(i64::from(days).saturating_mul(day_ms));
    t.div_euclid(day_ms)
        .saturating_add(i64::from(t.rem_euclid(day_ms) != 0))
        .saturating_mul(day_ms)
}

impl LifecycleFilter {
    /// Whether an object `key` of `size` bytes with `tags` is one this filter selects.
    pub fn matches(&self, key: &str, size: u64, tags: &[Tag]) -> bool {
        self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.tags.iter().all(|want| {
                tags.iter()
                    .any(|t| t.key == want.key && t.value == want.value)
            })
            && self.size_greater_than.is_none_or(|n| size > n)
            && self.size_less_than.is_none_or(|n| size < n)
    }

    /// Whether it selects delete markers (no size, no tags): only prefix conditions can hold.
    fn matches_marker(&self, key: &str) -> bool {
        self.tags.is_empty() && self.size_greater_than.is_none() && self.matches(key, 0, &[])
    }

    /// Whether it selects an upload to `key` (AWS allows only prefix filters on this action).
    fn matches_upload(&self, key: &str) -> bool {
        self.tags.is_empty()
            && self.size_greater_than.is_none()
            && self.size_less_than.is_none()
            && self.matches(key, 0, &[])
    }
}

impl LifecycleRule {
    /// When the current version `r` of `key` expires under this rule (None: never, or the rule
    /// is disabled or does not select it).
    pub fn current_expiry(&self, key: &str, r: &ObjectRecord, day_ms: i64) -> Option<i64> {
        let e = self.expiration.as_ref().filter(|_| self.enabled)?;
        if !self.filter.matches(key, r.size, &r.headers.tags) {
            return None;
        }
        match (e.days, e.date_ms) {
            (Some(d), _) => Some(due_at(r.last_modified_ms, d, day_ms)),
            (None, Some(date)) => Some(date),
            (None, None) => None,
        }
    }
}

/// The earliest expiry of the current version `r` of `key` among `rules`, with the rule that
/// sets it: what `x-amz-expiration` announces.
pub fn expiry_of<'a>(
    rules: &'a [LifecycleRule],
    key: &str,
    r: &ObjectRecord,
    day_ms: i64,
) -> Option<(i64, &'a str)> {
    rules
        .iter()
        .filter_map(|rule| Some((rule.current_expiry(key, r, day_ms)?, rule.id.as_str())))
        .min_by_key(|(at, _)| *at)
}

/// One key's versions as the worker scanned them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersions {
    pub key: String,
    /// The latest version: the current object, or the delete marker that hides the key.
    pub latest: Option<VersionEntry>,
    /// The other versions, newest first.
    pub noncurrent: Vec<VersionEntry>,
}

/// What the lifecycle does to one version. Each names the internal version it acts on, which
/// the state machine checks is still in the scanned position before acting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Expire the current object (delete it, or add a delete marker on a versioned bucket).
    ExpireCurrent { version: String },
    /// Remove a noncurrent version (`version_id` as S3 shows it).
    RemoveNoncurrent { version: String, version_id: String },
    /// Remove the delete marker that is the key's only version.
    RemoveLoneMarker { version: String, version_id: String },
}

fn last_modified(e: &VersionEntry) -> i64 {
    match e {
        VersionEntry::Object(r) => r.last_modified_ms,
        VersionEntry::Marker(m) => m.last_modified_ms,
    }
}

/// What `rules` decide for key `k` at `now_ms`, in the order to carry them out (noncurrent
/// removals before the marker they leave alone).
pub fn decide(rules: &[LifecycleRule], k: &KeyVersions, now_ms: i64, day_ms: i64) -> Vec<Decision> {
    let enabled: Vec<&LifecycleRule> = rules.iter().filter(|r| r.enabled).collect();
    let mut out = Vec::new();
    // Current version.
    if let Some(VersionEntry::Object(r)) = &k.latest {
        let due = enabled
            .iter()
            .filter_map(|rule| rule.current_expiry(&k.key, r, day_ms))
            .any(|at| now_ms >= at);
        if due {
            out.push(Decision::ExpireCurrent {
                version: r.version.clone(),
            });
        }
    }
    // Noncurrent versions: each became noncurrent when its successor was written.
    let mut removed = 0;
    for (j, v) in k.noncurrent.iter().enumerate() {
        let successor = if j == 0 {
            k.latest.as_ref()
        } else {
            k.noncurrent.get(j - 1)
        };
        let since = successor.map(last_modified).unwrap_or(last_modified(v));
        let selected = |f: &LifecycleFilter| match v {
            VersionEntry::Object(r) => f.matches(&k.key, r.size, &r.headers.tags),
            VersionEntry::Marker(_) => f.matches_marker(&k.key),
        };
        let due = enabled.iter().any(|rule| {
            rule.noncurrent_expiration.as_ref().is_some_and(|n| {
                // `j` counts the newer noncurrent versions of this one.
                j as u64 >= u64::from(n.newer_versions.unwrap_or(0))
                    && selected(&rule.filter)
                    && now_ms >= due_at(since, n.days, day_ms)
            })
        });
        if due {
            removed += 1;
            out.push(Decision::RemoveNoncurrent {
                version: v.version().to_owned(),
                version_id: v.version_id().to_owned(),
            });
        }
    }
    // A delete marker left as the only version.
    if let Some(VersionEntry::Marker(m)) = &k.latest {
        if removed == k.noncurrent.len() {
            let due = enabled.iter().any(|rule| {
                rule.filter.matches_marker(&k.key)
                    && rule.expiration.as_ref().is_some_and(|e| {
                        e.expired_object_delete_marker
                            || e.days
                                .is_some_and(|d| now_ms >= due_at(m.last_modified_ms, d, day_ms))
                    })
            });
            if due {
                out.push(Decision::RemoveLoneMarker {
                    version: m.version.clone(),
                    version_id: m.version_id().to_owned(),
                });
            }
        }
    }
    out
}

/// Whether `rules` abort upload `u` at `now_ms`.
pub fn abort_due(rules: &[LifecycleRule], u: &UploadRecord, now_ms: i64, day_ms: i64) -> bool {
    rules.iter().filter(|r| r.enabled).any(|rule| {
        rule.abort_upload_days.is_some_and(|d| {
            rule.filter.matches_upload(&u.key) && now_ms >= due_at(u.initiated_ms, d, day_ms)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ObjectData, ObjectHeaders};
    use crate::versions::DeleteMarker;
    use proptest::prelude::*;

    const DAY: i64 = 1000;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: k.into(),
            value: v.into(),
        }
    }

    fn obj(version: &str, size: u64, at: i64, tags: Vec<Tag>) -> ObjectRecord {
        ObjectRecord {
            version: version.into(),
            size,
            etag: "e".into(),
            last_modified_ms: at,
            headers: ObjectHeaders {
                tags,
                ..ObjectHeaders::default()
            },
            checksum: None,
            parts: None,
            data: ObjectData::Inline(Vec::new()),
            versioned: true,
            part_checksums: None,
            encryption: None,
            lock: None,
        }
    }

    fn marker(version: &str, at: i64) -> VersionEntry {
        VersionEntry::Marker(DeleteMarker {
            version: version.into(),
            versioned: true,
            last_modified_ms: at,
        })
    }

    fn rule(filter: LifecycleFilter) -> LifecycleRule {
        LifecycleRule {
            id: "r".into(),
            enabled: true,
            filter,
            ..LifecycleRule::default()
        }
    }

    #[test]
    fn due_at_rounds_up_to_the_next_day_boundary() {
        assert_eq!(due_at(0, 1, DAY), DAY);
        assert_eq!(due_at(1, 1, DAY), 2 * DAY);
        assert_eq!(due_at(999, 2, DAY), 3 * DAY);
        // Real days: an object written at 10:00 UTC with Days=1 expires at the second midnight.
        let day = 86_400_000;
        assert_eq!(due_at(10 * 3_600_000, 1, day), 2 * day);
    }

    #[test]
    fn filters_combine_prefix_tags_and_sizes() {
        let f = LifecycleFilter {
            prefix: Some("logs/".into()),
            tags: vec![tag("a", "1"), tag("b", "2")],
            size_greater_than: Some(10),
            size_less_than: Some(100),
            shape: FilterShape::And,
        };
        let tags = vec![tag("b", "2"), tag("a", "1"), tag("c", "3")];
        assert!(f.matches("logs/x", 50, &tags));
        assert!(!f.matches("data/x", 50, &tags));
        assert!(!f.matches("logs/x", 10, &tags));
        assert!(!f.matches("logs/x", 100, &tags));
        assert!(!f.matches("logs/x", 50, &tags[..1]));
        assert!(!f.matches("logs/x", 50, &[tag("a", "1"), tag("b", "x")]));
        assert!(LifecycleFilter::default().matches("anything", 0, &[]));
    }

    #[test]
    fn current_versions_expire_by_days_or_date() {
        let mut r = rule(LifecycleFilter::default());
        r.expiration = Some(Expiration {
            days: Some(2),
            ..Expiration::default()
        });
        let k = KeyVersions {
            key: "k".into(),
            latest: Some(VersionEntry::Object(obj("v1", 1, 500, vec![]))),
            noncurrent: vec![],
        };
        assert!(decide(std::slice::from_ref(&r), &k, 2999, DAY).is_empty());
        assert_eq!(
            decide(std::slice::from_ref(&r), &k, 3000, DAY),
            vec![Decision::ExpireCurrent {
                version: "v1".into()
            }]
        );
        r.enabled = false;
        assert!(decide(std::slice::from_ref(&r), &k, 9999, DAY).is_empty());
        r.enabled = true;
        r.expiration = Some(Expiration {
            date_ms: Some(7000),
            ..Expiration::default()
        });
        assert!(decide(std::slice::from_ref(&r), &k, 6999, DAY).is_empty());
        assert_eq!(decide(std::slice::from_ref(&r), &k, 7000, DAY).len(), 1);
        let (at, id) =
            expiry_of(std::slice::from_ref(&r), "k", &obj("v", 1, 0, vec![]), DAY).unwrap();
        assert_eq!((at, id), (7000, "r"));
    }

    #[test]
    fn noncurrent_versions_age_from_their_successor_and_newest_are_kept() {
        let mut r = rule(LifecycleFilter::default());
        r.noncurrent_expiration = Some(NoncurrentExpiration {
            days: 1,
            newer_versions: Some(1),
        });
        // v4 current (t=4000); v3 noncurrent since 4000, v2 since 3000, v1 since 2000.
        let k = KeyVersions {
            key: "k".into(),
            latest: Some(VersionEntry::Object(obj("v4", 1, 4000, vec![]))),
            noncurrent: vec![
                VersionEntry::Object(obj("v3", 1, 3000, vec![])),
                marker("v2", 2000),
                VersionEntry::Object(obj("v1", 1, 1000, vec![])),
            ],
        };
        let ids = |d: Vec<Decision>| -> Vec<String> {
            d.into_iter()
                .map(|d| match d {
                    Decision::RemoveNoncurrent { version, .. } => version,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // At 3000 v1 (noncurrent since 2000) is due; v2 since 3000 is not.
        assert_eq!(ids(decide(std::slice::from_ref(&r), &k, 3000, DAY)), ["v1"]);
        // Much later everything but the newest noncurrent one goes.
        assert_eq!(
            ids(decide(std::slice::from_ref(&r), &k, 99_000, DAY)),
            ["v2", "v1"]
        );
    }

    #[test]
    fn a_lone_delete_marker_is_removed_once_nothing_else_remains() {
        let mut r = rule(LifecycleFilter::default());
        r.expiration = Some(Expiration {
            expired_object_delete_marker: true,
            ..Expiration::default()
        });
        let mut k = KeyVersions {
            key: "k".into(),
            latest: Some(marker("m", 10)),
            noncurrent: vec![VersionEntry::Object(obj("v1", 1, 0, vec![]))],
        };
        assert!(decide(std::slice::from_ref(&r), &k, 99_000, DAY).is_empty());
        // With a noncurrent rule removing the version in the same pass, the marker follows.
        r.noncurrent_expiration = Some(NoncurrentExpiration {
            days: 1,
            newer_versions: None,
        });
        let d = decide(std::slice::from_ref(&r), &k, 99_000, DAY);
        assert_eq!(d.len(), 2);
        assert!(matches!(d[1], Decision::RemoveLoneMarker { .. }));
        k.noncurrent.clear();
        r.filter.tags = vec![tag("a", "b")];
        assert!(decide(std::slice::from_ref(&r), &k, 99_000, DAY).is_empty());
    }

    #[test]
    fn uploads_abort_by_age_and_prefix() {
        let mut r = rule(LifecycleFilter {
            prefix: Some("tmp/".into()),
            ..LifecycleFilter::default()
        });
        r.abort_upload_days = Some(1);
        let u = |key: &str| UploadRecord {
            upload_id: "u".into(),
            bucket: "b".into(),
            key: key.into(),
            initiated_ms: 0,
            headers: ObjectHeaders::default(),
            checksum_algo: None,
            checksum_kind: None,
            lock: None,
            encryption: None,
        };
        assert!(abort_due(std::slice::from_ref(&r), &u("tmp/a"), DAY, DAY));
        assert!(!abort_due(
            std::slice::from_ref(&r),
            &u("tmp/a"),
            DAY - 1,
            DAY
        ));
        assert!(!abort_due(std::slice::from_ref(&r), &u("keep/a"), DAY, DAY));
    }

    fn arb_tags() -> impl Strategy<Value = Vec<Tag>> {
        proptest::collection::vec(("[ab]", "[xy]").prop_map(|(k, v)| tag(&k, &v)), 0..3)
    }

    proptest! {
        /// The filter is the conjunction of its conditions, each checked the plain way.
        #[test]
        fn filter_is_the_conjunction_of_its_conditions(
            prefix in proptest::option::of("[ab]{0,2}"),
            want in arb_tags(),
            gt in proptest::option::of(0u64..20),
            lt in proptest::option::of(0u64..20),
            key in "[ab]{0,3}",
            size in 0u64..20,
            have in arb_tags(),
        ) {
            let f = LifecycleFilter {
                prefix: prefix.clone(),
                tags: want.clone(),
                size_greater_than: gt,
                size_less_than: lt,
                shape: FilterShape::And,
            };
            let expect = key.starts_with(prefix.as_deref().unwrap_or(""))
                && want.iter().all(|w| have.contains(w))
                && gt.is_none_or(|g| size > g)
                && lt.is_none_or(|l| size < l);
            prop_assert_eq!(f.matches(&key, size, &have), expect);
            // Dropping a condition never turns a match into a miss.
            if expect {
                let looser = LifecycleFilter { tags: Vec::new(), ..f.clone() };
                prop_assert!(looser.matches(&key, size, &have));
            }
        }

        /// An action is never due before its nominal time, and at most one day after it.
        #[test]
        fn due_at_is_within_a_day_after_the_nominal_time(start in -1_000_000i64..1_000_000, days in 0u32..50, day in 1i64..5000) {
            let at = due_at(start, days, day);
            let nominal = start + i64::from(days) * day;
            prop_assert!(at >= nominal && at < nominal + day);
            prop_assert_eq!(at.rem_euclid(day), 0);
        }
    }
}
