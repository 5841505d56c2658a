//! The object service sits between the S3 handlers and storage:
//! `s3 handler → ObjectService → chunk writer / partition router → Raft group`.
//!
//! It streams request bodies into content-addressed chunks with bounded memory, computes the
//! digests S3 needs in one pass, commits version records through the object's partition group,
//! and reads objects back chunk by chunk, verifying every chunk's hash. Chunk bytes go through
//! the chunk layer (`cairn_chunk`: store, replication, reference sync, GC); this crate's own
//! background worker reaps abandoned uploads.

pub mod chunk_io;
mod conditional;
mod digest;
mod error;
pub mod keys;
pub mod lifecycle;
pub mod mpu_checksum;
mod service;
pub mod sse;
pub mod workers;

pub use cairn_meta::model::{
    BucketRecord, ChecksumAlgo, ChecksumKind, ObjectData, ObjectHeaders, ObjectRecord, PartRecord,
    UploadRecord, WriteConsistency,
};
pub use chunk_io::{ChunkIo, LocalChunks};
pub use conditional::Precondition;
pub use error::ObjectError;
pub use mpu_checksum::CompleteChecksums;
pub use service::{
    default_checksum_applies, kms_key_name, BodyStream, ByteStream, DeleteOutcome, Digests,
    ListMultipartPage, ListPage, ListPartsPage, ListQuery, LockRequest, ObjectService, PartSpec,
    PutOptions, ReadConsistency, ServiceConfig, SseRequest, Verifier, DEFAULT_CHECKSUM,
    MAX_PUT_SIZE, MIN_PART_SIZE,
};
