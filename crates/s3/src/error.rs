//! The one place an [`ObjectError`] becomes an S3 error (code, message, HTTP status).

use cairn_object::{ChecksumAlgo, ObjectError};
use s3s::{s3_error, S3Error, S3ErrorCode};

use crate::checksum::algo_name;

/// Maps an object-service error to the S3 error answered to the client.
pub(crate) fn to_s3_error(err: ObjectError) -> S3Error {
    match err {
        ObjectError::NoSuchBucket => s3_error!(NoSuchBucket, "The specified bucket does not exist"),
        ObjectError::BucketAlreadyExists => s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ),
        ObjectError::BucketNotEmpty => s3_error!(BucketNotEmpty, "The bucket you tried to delete is not empty"),
        ObjectError::NoSuchKey => s3_error!(NoSuchKey, "The specified key does not exist."),
        ObjectError::NoSuchVersion => s3_error!(NoSuchVersion, "The specified version does not exist."),
        ObjectError::NoSuchUpload => s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        ),
        ObjectError::PreconditionFailed => {
            s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
        ObjectError::ConditionalConflict => s3_error!(
            ConditionalRequestConflict,
            "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part."
        ),
        ObjectError::InvalidPart(detail) => {
            let base = "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not have matched the part's entity tag.";
            if detail.is_empty() {
                s3_error!(InvalidPart, "{base}")
            } else {
                s3_error!(InvalidPart, "{base} ({detail})")
            }
        }
        ObjectError::InvalidPartOrder => s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        ),
        ObjectError::EntityTooSmall { part_number } => s3_error!(
            EntityTooSmall,
            "Your proposed upload is smaller than the minimum allowed object size (part {part_number})."
        ),
        ObjectError::EntityTooLarge => {
            s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed object size.")
        }
        ObjectError::BadDigest => s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."),
        ObjectError::ChecksumMismatch { algo } => checksum_mismatch(algo),
        ObjectError::IncompleteBody => s3_error!(
            IncompleteBody,
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        ),
        ObjectError::BodyTooLong => s3_error!(
            InvalidRequest,
            "The request body is longer than the declared Content-Length."
        ),
        ObjectError::InvalidRange => s3_error!(InvalidRange, "The requested range is not satisfiable"),
        ObjectError::InvalidArgument(msg) => S3Error::with_message(S3ErrorCode::InvalidArgument, msg),
        ObjectError::InvalidRequest(msg) => S3Error::with_message(S3ErrorCode::InvalidRequest, msg),
        ObjectError::Body(msg) => {
            // s3s reports a bad aws-chunked chunk or trailer signature as a body error.
            if msg.contains("SignatureMismatch") {
                s3_error!(
                    SignatureDoesNotMatch,
                    "The request signature we calculated does not match the signature you provided."
                )
            } else if msg.contains("Sha256Mismatch") {
                custom_error(
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    http::StatusCode::BAD_REQUEST,
                )
            } else {
                tracing::debug!(error = %msg, "error reading request body");
                s3_error!(IncompleteBody, "The request body could not be read completely: {msg}")
            }
        }
        ObjectError::DataLoss(msg) => {
            tracing::error!(error = %msg, "data loss while serving an S3 request");
            internal_error()
        }
        ObjectError::Storage(msg) => {
            tracing::error!(error = %msg, "storage error while serving an S3 request");
            internal_error()
        }
        ObjectError::Unavailable(msg) => {
            tracing::warn!(error = %msg, "metadata unavailable");
            s3_error!(ServiceUnavailable, "The service is temporarily unavailable. Please retry.")
        }
        // AWS has no "disk full" answer; SlowDown (503) is the one SDKs back off and retry on.
        ObjectError::InsufficientStorage(msg) => {
            tracing::warn!(error = %msg, "write refused: not enough disk space");
            s3_error!(SlowDown, "Please reduce your request rate. (The storage nodes for this data are short of disk space.)")
        }
        // As AWS answers SSE-C reads without, with a wrong, or with a needless customer key.
        ObjectError::CustomerKeyRequired => s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        ),
        ObjectError::WrongCustomerKey => s3_error!(
            AccessDenied,
            "The provided customer key does not match the key the object was encrypted with."
        ),
        ObjectError::CustomerKeyNotApplicable => s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        ),
        ObjectError::InvalidBucketState(msg) => S3Error::with_message(S3ErrorCode::InvalidBucketState, msg),
        // AWS answers a delete or retention change refused by object lock with 403 AccessDenied.
        ObjectError::ObjectLocked(msg) => {
            tracing::debug!(reason = %msg, "refused by object lock");
            s3_error!(AccessDenied, "Access Denied because object protected by object lock.")
        }
        ObjectError::MethodNotAllowed => s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        ),
        ObjectError::PartCustomerKeyRequired => s3_error!(
            InvalidRequest,
            "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters."
        ),
        ObjectError::PartCustomerKeyMismatch => s3_error!(
            InvalidArgument,
            "The provided encryption parameters did not match the ones used originally."
        ),
        ObjectError::KmsKeyNotFound(id) => crate::sse::kms_error(
            "KMS.NotFoundException",
            format!("Invalid keyId {id}"),
        ),
        ObjectError::KmsKeyDisabled(id) => crate::sse::kms_error(
            "KMS.DisabledException",
            format!("{id} is disabled."),
        ),
    }
}

/// `BadDigest` naming the checksum algorithm, as AWS words it.
pub(crate) fn checksum_mismatch(algo: ChecksumAlgo) -> S3Error {
    s3_error!(
        BadDigest,
        "The {} you specified did not match the calculated checksum.",
        algo_name(algo)
    )
}

/// An error code s3s does not know, with its status.
pub(crate) fn custom_error(
    code: &'static str,
    message: &'static str,
    status: http::StatusCode,
) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    e.set_status_code(status);
    e
}

pub(crate) fn internal_error() -> S3Error {
    s3_error!(
        InternalError,
        "We encountered an internal error. Please try again."
    )
}

/// `Result<T, ObjectError>` → `Result<T, S3Error>`.
pub(crate) trait ObjectResultExt<T> {
    fn s3(self) -> Result<T, S3Error>;
}

impl<T> ObjectResultExt<T> for Result<T, ObjectError> {
    fn s3(self) -> Result<T, S3Error> {
        self.map_err(to_s3_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn check(err: ObjectError, code: S3ErrorCode, status: u16) {
        let e = to_s3_error(err);
        assert_eq!(e.code(), &code);
        assert_eq!(
            e.status_code(),
            StatusCode::from_u16(status).ok(),
            "{code:?}"
        );
        assert!(e.message().is_some_and(|m| !m.is_empty()));
    }

    #[test]
    fn statuses() {
        check(ObjectError::NoSuchBucket, S3ErrorCode::NoSuchBucket, 404);
        check(
            ObjectError::BucketAlreadyExists,
            S3ErrorCode::BucketAlreadyOwnedByYou,
            409,
        );
        check(
            ObjectError::BucketNotEmpty,
            S3ErrorCode::BucketNotEmpty,
            409,
        );
        check(ObjectError::NoSuchKey, S3ErrorCode::NoSuchKey, 404);
        check(ObjectError::NoSuchUpload, S3ErrorCode::NoSuchUpload, 404);
        check(
            ObjectError::PreconditionFailed,
            S3ErrorCode::PreconditionFailed,
            412,
        );
        check(
            ObjectError::ConditionalConflict,
            S3ErrorCode::ConditionalRequestConflict,
            409,
        );
        check(
            ObjectError::InvalidPart("2".into()),
            S3ErrorCode::InvalidPart,
            400,
        );
        check(
            ObjectError::InvalidPartOrder,
            S3ErrorCode::InvalidPartOrder,
            400,
        );
        check(
            ObjectError::EntityTooSmall { part_number: 1 },
            S3ErrorCode::EntityTooSmall,
            400,
        );
        check(
            ObjectError::EntityTooLarge,
            S3ErrorCode::EntityTooLarge,
            400,
        );
        check(ObjectError::BadDigest, S3ErrorCode::BadDigest, 400);
        check(
            ObjectError::ChecksumMismatch {
                algo: ChecksumAlgo::Crc32c,
            },
            S3ErrorCode::BadDigest,
            400,
        );
        check(
            ObjectError::IncompleteBody,
            S3ErrorCode::IncompleteBody,
            400,
        );
        check(ObjectError::BodyTooLong, S3ErrorCode::InvalidRequest, 400);
        check(ObjectError::InvalidRange, S3ErrorCode::InvalidRange, 416);
        check(
            ObjectError::InvalidArgument("x".into()),
            S3ErrorCode::InvalidArgument,
            400,
        );
        check(
            ObjectError::Body("connection reset".into()),
            S3ErrorCode::IncompleteBody,
            400,
        );
        check(
            ObjectError::Body("AwsChunkedStreamError: SignatureMismatch".into()),
            S3ErrorCode::SignatureDoesNotMatch,
            403,
        );
        check(
            ObjectError::Body("UploadStreamError: Sha256Mismatch".into()),
            S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
            400,
        );
        check(
            ObjectError::DataLoss("x".into()),
            S3ErrorCode::InternalError,
            500,
        );
        check(
            ObjectError::Storage("x".into()),
            S3ErrorCode::InternalError,
            500,
        );
        check(
            ObjectError::Unavailable("x".into()),
            S3ErrorCode::ServiceUnavailable,
            503,
        );
        check(
            ObjectError::InsufficientStorage("x".into()),
            S3ErrorCode::SlowDown,
            503,
        );
    }

    #[test]
    fn checksum_message_names_algorithm() {
        let e = to_s3_error(ObjectError::ChecksumMismatch {
            algo: ChecksumAlgo::Sha256,
        });
        assert_eq!(
            e.message(),
            Some("The SHA256 you specified did not match the calculated checksum.")
        );
    }
}
