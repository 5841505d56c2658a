//! Conditional requests (RFC 7232 §6 precedence, as S3 applies it).
//!
//! 1. `If-Match` present: false → 412. When it holds, `If-Unmodified-Since` is not evaluated.
//! 2. Otherwise `If-Unmodified-Since`: modified after the date → 412.
//! 3. `If-None-Match` present: matches → 304 (GET/HEAD). When present, `If-Modified-Since`
//!    is not evaluated.
//! 4. Otherwise `If-Modified-Since`: not modified since the date → 304.
//!
//! For `x-amz-copy-source-if-*` every failure is 412.

use s3s::dto::{ETagCondition, Timestamp};

/// What to do with a request after evaluating its conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Proceed,
    NotModified,
    PreconditionFailed,
}

/// The four conditional headers of a request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Conditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
    pub if_modified_since: Option<&'a Timestamp>,
    pub if_unmodified_since: Option<&'a Timestamp>,
}

/// Does `cond` match an object whose (unquoted) ETag is `etag`? `*` matches any object.
/// ETags are compared by value: S3 ETags are strong, a `W/` prefix from a client is ignored.
pub(crate) fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

/// Unix seconds of an HTTP date (HTTP dates have one-second resolution).
fn secs(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

/// Evaluates `c` against an object with ETag `etag` (unquoted) last modified at
/// `last_modified_ms` (Unix milliseconds).
pub(crate) fn evaluate(c: &Conditions<'_>, etag: &str, last_modified_ms: i64) -> Outcome {
    let modified = last_modified_ms.div_euclid(1000);

    match c.if_match {
        Some(cond) => {
            if !etag_matches(cond, etag) {
                return Outcome::PreconditionFailed;
            }
        }
        None => {
            if let Some(ts) = c.if_unmodified_since {
                if modified > secs(ts) {
                    return Outcome::PreconditionFailed;
                }
            }
        }
    }

    match c.if_none_match {
        Some(cond) => {
            if etag_matches(cond, etag) {
                return Outcome::NotModified;
            }
        }
        None => {
            if let Some(ts) = c.if_modified_since {
                if modified <= secs(ts) {
                    return Outcome::NotModified;
                }
            }
        }
    }

    Outcome::Proceed
}

/// `x-amz-copy-source-if-*`: the same rules, but every failure is a 412.
pub(crate) fn evaluate_copy_source(
    c: &Conditions<'_>,
    etag: &str,
    last_modified_ms: i64,
) -> Outcome {
    match evaluate(c, etag, last_modified_ms) {
        Outcome::Proceed => Outcome::Proceed,
        Outcome::NotModified | Outcome::PreconditionFailed => Outcome::PreconditionFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;

    const ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";
    // 2024-01-01T00:00:00.500Z
    const LM_MS: i64 = 1_704_067_200_500;

    fn tag(s: &str) -> ETagCondition {
        ETagCondition::ETag(ETag::Strong(s.to_owned()))
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from(time::OffsetDateTime::from_unix_timestamp(secs).unwrap())
    }

    const LM_S: i64 = 1_704_067_200;

    #[test]
    fn no_conditions() {
        assert_eq!(
            evaluate(&Conditions::default(), ETAG, LM_MS),
            Outcome::Proceed
        );
    }

    #[test]
    fn single_conditions() {
        let good = tag(ETAG);
        let bad = tag("other");
        let any = ETagCondition::Any;
        let c = |m, n| Conditions {
            if_match: m,
            if_none_match: n,
            ..Default::default()
        };
        assert_eq!(
            evaluate(&c(Some(&good), None), ETAG, LM_MS),
            Outcome::Proceed
        );
        assert_eq!(
            evaluate(&c(Some(&any), None), ETAG, LM_MS),
            Outcome::Proceed
        );
        assert_eq!(
            evaluate(&c(Some(&bad), None), ETAG, LM_MS),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            evaluate(&c(None, Some(&good)), ETAG, LM_MS),
            Outcome::NotModified
        );
        assert_eq!(
            evaluate(&c(None, Some(&any)), ETAG, LM_MS),
            Outcome::NotModified
        );
        assert_eq!(
            evaluate(&c(None, Some(&bad)), ETAG, LM_MS),
            Outcome::Proceed
        );
        let weak = ETagCondition::ETag(ETag::Weak(ETAG.to_owned()));
        assert_eq!(
            evaluate(&c(None, Some(&weak)), ETAG, LM_MS),
            Outcome::NotModified
        );

        let same = at(LM_S);
        let before = at(LM_S - 1);
        let after = at(LM_S + 1);
        let ims = |t| Conditions {
            if_modified_since: Some(t),
            ..Default::default()
        };
        let ius = |t| Conditions {
            if_unmodified_since: Some(t),
            ..Default::default()
        };
        // sub-second part of Last-Modified is ignored: modified "at" LM_S
        assert_eq!(evaluate(&ims(&same), ETAG, LM_MS), Outcome::NotModified);
        assert_eq!(evaluate(&ims(&after), ETAG, LM_MS), Outcome::NotModified);
        assert_eq!(evaluate(&ims(&before), ETAG, LM_MS), Outcome::Proceed);
        assert_eq!(evaluate(&ius(&same), ETAG, LM_MS), Outcome::Proceed);
        assert_eq!(evaluate(&ius(&after), ETAG, LM_MS), Outcome::Proceed);
        assert_eq!(
            evaluate(&ius(&before), ETAG, LM_MS),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn precedence() {
        let good = tag(ETAG);
        let bad = tag("other");
        let before = at(LM_S - 1);
        let after = at(LM_S + 1);

        // If-Match true overrides a failing If-Unmodified-Since (S3 answers 200).
        let c = Conditions {
            if_match: Some(&good),
            if_unmodified_since: Some(&before),
            ..Default::default()
        };
        assert_eq!(evaluate(&c, ETAG, LM_MS), Outcome::Proceed);

        // If-None-Match false (no match) overrides a failing If-Modified-Since.
        let c = Conditions {
            if_none_match: Some(&bad),
            if_modified_since: Some(&after),
            ..Default::default()
        };
        assert_eq!(evaluate(&c, ETAG, LM_MS), Outcome::Proceed);

        // If-None-Match matching + If-Modified-Since true → 304 (S3 documents this).
        let c = Conditions {
            if_none_match: Some(&good),
            if_modified_since: Some(&before),
            ..Default::default()
        };
        assert_eq!(evaluate(&c, ETAG, LM_MS), Outcome::NotModified);

        // 412 wins over 304.
        let c = Conditions {
            if_match: Some(&bad),
            if_none_match: Some(&good),
            ..Default::default()
        };
        assert_eq!(evaluate(&c, ETAG, LM_MS), Outcome::PreconditionFailed);
        let c = Conditions {
            if_unmodified_since: Some(&before),
            if_modified_since: Some(&after),
            ..Default::default()
        };
        assert_eq!(evaluate(&c, ETAG, LM_MS), Outcome::PreconditionFailed);
    }

    #[test]
    fn copy_source_failures_are_412() {
        let good = tag(ETAG);
        let c = Conditions {
            if_none_match: Some(&good),
            ..Default::default()
        };
        assert_eq!(
            evaluate_copy_source(&c, ETAG, LM_MS),
            Outcome::PreconditionFailed
        );
        // copy-source-if-match true + if-unmodified-since false → proceed (AWS documents this)
        let before = at(LM_S - 1);
        let c = Conditions {
            if_match: Some(&good),
            if_unmodified_since: Some(&before),
            ..Default::default()
        };
        assert_eq!(evaluate_copy_source(&c, ETAG, LM_MS), Outcome::Proceed);
    }
}
