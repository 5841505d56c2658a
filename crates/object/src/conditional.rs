//! Conditional writes: `If-None-Match: *` and `If-Match` on PutObject, CopyObject and
//! CompleteMultipartUpload.
//!
//! The condition itself is checked inside the partition state machine, in the same apply that
//! commits the version ([`cairn_meta::Condition::check`]), so two racing writes can never both
//! pass it. This module holds the object service's side: the precondition a front end asks
//! for, and which error a refused commit becomes. AWS tells two failures apart:
//!
//! - the condition did not hold when the request started (the key existed for
//!   `If-None-Match: *`, another ETag for `If-Match`): 412 PreconditionFailed, or 404 NoSuchKey
//!   for `If-Match` on a key that does not exist;
//! - it held then, but another write changed the key while this one was uploading, and that
//!   write committed first: 409 ConditionalRequestConflict, which tells the client a retry
//!   may now fail (or succeed, after a delete) for reasons that were not there when it began.
//!
//! The state at the start is read (linearizably) before the body is; it only chooses the
//! error, never whether the write commits.

use cairn_meta::model::ObjectRecord;
use cairn_meta::Condition;

use crate::ObjectError;

/// Conditions a write must satisfy at commit time (checked inside the partition state machine,
/// so they are atomic with the write).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    /// `If-None-Match: *`: the key must not exist.
    IfNoneMatchStar,
    /// `If-Match: "etag"`: the current version must have this ETag (unquoted; `*` = exists).
    IfMatch(String),
}

impl Precondition {
    /// The condition the commit command carries.
    pub(crate) fn condition(&self) -> Condition {
        match self {
            Precondition::None => Condition::None,
            Precondition::IfNoneMatchStar => Condition::Absent,
            Precondition::IfMatch(e) => Condition::EtagMatches(e.clone()),
        }
    }
}

/// Whether a write's condition held against the key as it was when the request started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtStart {
    Held,
    Failed,
}

/// Evaluates `p` against `current`, the key's version when the request started (None: no
/// object).
pub(crate) fn at_start(p: &Precondition, current: Option<&ObjectRecord>) -> AtStart {
    match p.condition().check(current) {
        Ok(()) => AtStart::Held,
        Err(_) => AtStart::Failed,
    }
}

/// The error a client gets for a commit refused with `err`: a condition refusal becomes
/// `ConditionalConflict` (409) when the condition held at the start — another write won the
/// race during this one. Every other error is returned as it is.
pub(crate) fn classify(err: ObjectError, start: AtStart) -> ObjectError {
    match (err, start) {
        (ObjectError::PreconditionFailed | ObjectError::NoSuchKey, AtStart::Held) => {
            ObjectError::ConditionalConflict
        }
        (err, _) => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_meta::model::{ObjectData, ObjectHeaders};

    fn object(etag: &str) -> ObjectRecord {
        ObjectRecord {
            versioned: false,
            version: "v".into(),
            size: 0,
            etag: etag.into(),
            last_modified_ms: 0,
            headers: ObjectHeaders::default(),
            checksum: None,
            part_checksums: None,
            parts: None,
            data: ObjectData::Inline(Vec::new()),
            encryption: None,
            lock: None,
        }
    }

    #[test]
    fn conditions_at_the_start() {
        let a = object("aaa");
        assert_eq!(at_start(&Precondition::None, None), AtStart::Held);
        assert_eq!(at_start(&Precondition::None, Some(&a)), AtStart::Held);
        assert_eq!(
            at_start(&Precondition::IfNoneMatchStar, None),
            AtStart::Held
        );
        assert_eq!(
            at_start(&Precondition::IfNoneMatchStar, Some(&a)),
            AtStart::Failed
        );
        let m = |e: &str| Precondition::IfMatch(e.into());
        assert_eq!(at_start(&m("aaa"), Some(&a)), AtStart::Held);
        assert_eq!(at_start(&m("*"), Some(&a)), AtStart::Held);
        assert_eq!(at_start(&m("bbb"), Some(&a)), AtStart::Failed);
        assert_eq!(at_start(&m("aaa"), None), AtStart::Failed);
    }

    #[test]
    fn a_refusal_after_the_condition_held_is_a_conflict() {
        assert!(matches!(
            classify(ObjectError::PreconditionFailed, AtStart::Held),
            ObjectError::ConditionalConflict
        ));
        // If-Match whose key was deleted during the upload.
        assert!(matches!(
            classify(ObjectError::NoSuchKey, AtStart::Held),
            ObjectError::ConditionalConflict
        ));
        assert!(matches!(
            classify(ObjectError::PreconditionFailed, AtStart::Failed),
            ObjectError::PreconditionFailed
        ));
        assert!(matches!(
            classify(ObjectError::NoSuchKey, AtStart::Failed),
            ObjectError::NoSuchKey
        ));
        // Other errors pass through whatever the start was.
        assert!(matches!(
            classify(ObjectError::NoSuchUpload, AtStart::Held),
            ObjectError::NoSuchUpload
        ));
    }
}
