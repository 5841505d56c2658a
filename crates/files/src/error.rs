//! The one place an [`ObjectError`] becomes a gRPC status, with a message naming the bucket or
//! file it is about.

use cairn_object::ObjectError;
use tonic::Status;

/// What a call was about, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub bucket: &'a str,
    pub key: Option<&'a str>,
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key {
            Some(k) => write!(f, "`{}/{}`", self.bucket, k),
            None => write!(f, "`{}`", self.bucket),
        }
    }
}

/// Maps an object-service error to the status answered to the client.
pub(crate) fn to_status(err: ObjectError, t: Target<'_>) -> Status {
    match err {
        ObjectError::NoSuchBucket => Status::not_found(format!("no such bucket `{}`", t.bucket)),
        ObjectError::NoSuchKey => Status::not_found(format!("no such file {t}")),
        ObjectError::NoSuchVersion => Status::not_found(format!("no such version of {t}")),
        ObjectError::NoSuchUpload => Status::not_found("no such multipart upload"),
        ObjectError::BucketAlreadyExists => {
            Status::already_exists(format!("bucket `{}` already exists", t.bucket))
        }
        ObjectError::BucketNotEmpty => Status::failed_precondition(format!(
            "bucket `{}` is not empty; delete its files first",
            t.bucket
        )),
        ObjectError::PreconditionFailed => {
            Status::failed_precondition(format!("precondition failed for {t}"))
        }
        // gRPC's code for a lost concurrency race the client may retry.
        ObjectError::ConditionalConflict => {
            Status::aborted(format!("another write changed {t} during this one; retry"))
        }
        ObjectError::EntityTooLarge => Status::invalid_argument(format!(
            "{t} is larger than the {} GiB maximum of a single upload",
            cairn_object::MAX_PUT_SIZE >> 30
        )),
        ObjectError::BadDigest => Status::invalid_argument(format!(
            "the MD5 sent with {t} does not match the bytes received; nothing was stored"
        )),
        ObjectError::IncompleteBody => Status::invalid_argument(format!(
            "the upload of {t} ended before its declared size; nothing was stored"
        )),
        ObjectError::BodyTooLong => Status::invalid_argument(format!(
            "the upload of {t} is longer than its declared size; nothing was stored"
        )),
        ObjectError::InvalidRange => {
            Status::out_of_range(format!("the requested range is outside {t}"))
        }
        e @ (ObjectError::InvalidPart(_)
        | ObjectError::InvalidPartOrder
        | ObjectError::EntityTooSmall { .. }
        | ObjectError::ChecksumMismatch { .. }
        | ObjectError::InvalidArgument(_)
        | ObjectError::InvalidRequest(_)) => Status::invalid_argument(format!("{t}: {e}")),
        ObjectError::Body(msg) => Status::aborted(format!(
            "the upload stream of {t} broke ({msg}); nothing was stored"
        )),
        ObjectError::Unavailable(msg) => {
            Status::unavailable(format!("metadata is unavailable (no quorum?): {msg}"))
        }
        ObjectError::InsufficientStorage(msg) => Status::resource_exhausted(format!(
            "not enough disk space to store {t}; nothing was stored, retry later: {msg}"
        )),
        e @ (ObjectError::CustomerKeyRequired
        | ObjectError::WrongCustomerKey
        | ObjectError::CustomerKeyNotApplicable
        | ObjectError::PartCustomerKeyRequired
        | ObjectError::PartCustomerKeyMismatch
        | ObjectError::KmsKeyNotFound(_)
        | ObjectError::KmsKeyDisabled(_)) => Status::permission_denied(format!(
            "{t}: {e} (SSE-C objects are readable through S3 only)"
        )),
        e @ ObjectError::ObjectLocked(_) => Status::permission_denied(format!("{t}: {e}")),
        e @ (ObjectError::InvalidBucketState(_) | ObjectError::MethodNotAllowed) => {
            Status::failed_precondition(format!("{t}: {e}"))
        }
        ObjectError::DataLoss(msg) => {
            tracing::error!(target = %t, error = %msg, "data loss while serving a file");
            Status::data_loss(format!("stored data of {t} is corrupt or missing: {msg}"))
        }
        ObjectError::Storage(msg) => {
            tracing::error!(target = %t, error = %msg, "storage error while serving a file");
            Status::internal(format!("storage error: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_messages_name_the_target() {
        let f = Target {
            bucket: "b",
            key: Some("k"),
        };
        let s = to_status(ObjectError::NoSuchBucket, f);
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "no such bucket `b`")
        );
        let s = to_status(ObjectError::NoSuchKey, f);
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "no such file `b/k`")
        );
        assert_eq!(
            to_status(ObjectError::Unavailable("x".into()), f).code(),
            Code::Unavailable
        );
        assert_eq!(
            to_status(ObjectError::BucketNotEmpty, f).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            to_status(ObjectError::InvalidRange, f).code(),
            Code::OutOfRange
        );
        assert_eq!(
            to_status(ObjectError::InvalidArgument("bad".into()), f).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            to_status(ObjectError::BucketAlreadyExists, f).code(),
            Code::AlreadyExists
        );
    }
}
