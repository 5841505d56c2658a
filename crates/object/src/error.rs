use thiserror::Error;

/// What can go wrong in an object operation. The S3 layer maps each variant to one S3 error code.
#[derive(Debug, Error)]
pub enum ObjectError {
    #[error("bucket does not exist")]
    NoSuchBucket,
    #[error("bucket already exists")]
    BucketAlreadyExists,
    #[error("bucket is not empty")]
    BucketNotEmpty,
    #[error("key does not exist")]
    NoSuchKey,
    #[error("version does not exist")]
    NoSuchVersion,
    #[error("multipart upload does not exist")]
    NoSuchUpload,
    #[error("precondition failed")]
    PreconditionFailed,
    /// A conditional write whose condition held when it started lost the race to another
    /// write of the key that committed during its upload (S3's 409 ConditionalRequestConflict).
    #[error("another write changed the key during this conditional write")]
    ConditionalConflict,
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    #[error("part {part_number} is smaller than the 5 MiB minimum")]
    EntityTooSmall { part_number: u32 },
    #[error("object is larger than the maximum allowed size")]
    EntityTooLarge,
    #[error("content MD5 does not match")]
    BadDigest,
    #[error("{algo:?} checksum does not match")]
    ChecksumMismatch {
        algo: cairn_meta::model::ChecksumAlgo,
    },
    #[error("body ended before Content-Length bytes were received")]
    IncompleteBody,
    #[error("body is longer than Content-Length")]
    BodyTooLong,
    #[error("requested range is not satisfiable")]
    InvalidRange,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("error reading request body: {0}")]
    Body(String),
    #[error("stored data is corrupt or missing: {0}")]
    DataLoss(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("metadata is unavailable: {0}")]
    Unavailable(String),
    /// The data could not be stored for lack of disk space (on this node, or on enough replicas
    /// that the write could not reach its consistency level). Nothing was acknowledged; retry
    /// later or through another node.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
    /// A request S3 refuses as InvalidRequest (checksum algorithm or type mismatches).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An SSE-C object read or copied without the customer's key.
    #[error("the object is encrypted with a customer key; send it (SSE-C headers)")]
    CustomerKeyRequired,
    /// An SSE-C object read with another key than it was written with.
    #[error("the customer key does not match the object's")]
    WrongCustomerKey,
    /// SSE-C headers on an object that is not SSE-C encrypted.
    #[error("the encryption parameters are not applicable to this object")]
    CustomerKeyNotApplicable,
    /// A bucket setting the bucket's state does not allow (object lock without versioning,
    /// suspending versioning under object lock): S3's 409 InvalidBucketState.
    #[error("invalid bucket state: {0}")]
    InvalidBucketState(String),
    /// Object lock protects the version from this change or removal (S3's 403 AccessDenied).
    #[error("object locked: {0}")]
    ObjectLocked(String),
    /// The version named is a delete marker, which this operation cannot act on (S3's 405).
    #[error("the version is a delete marker")]
    MethodNotAllowed,
    /// A part of an SSE-C multipart upload sent without the upload's customer key.
    #[error("the multipart upload requested encryption; each part must send its customer key")]
    PartCustomerKeyRequired,
    /// A part of an SSE-C multipart upload sent with another customer key.
    #[error("the customer key differs from the one the multipart upload was started with")]
    PartCustomerKeyMismatch,
    /// SSE-KMS named a key the key store does not hold.
    #[error("KMS key {0} does not exist")]
    KmsKeyNotFound(String),
    /// SSE-KMS named (or an object is encrypted with) a disabled key.
    #[error("KMS key {0} is disabled")]
    KmsKeyDisabled(String),
}
