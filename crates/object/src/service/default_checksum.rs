//! The full-object checksum S3 stores for every new object written without one (CRC64NVME,
//! AWS's default since 2025). A PutObject computes it in the ingest pass like any requested
//! checksum; a CopyObject shares the source's chunks without reading them, so a source that has
//! no full-object checksum is read once here to compute the copy's.

use cairn_meta::model::{ChecksumAlgo, ObjectRecord, SseAlgorithm};
use futures::StreamExt;

use super::ObjectService;
use crate::digest::ChecksumHasher;
use crate::ObjectError;

/// The algorithm S3 uses when a client sends no checksum.
pub const DEFAULT_CHECKSUM: ChecksumAlgo = ChecksumAlgo::Crc64Nvme;

/// Whether an object written with these settings gets the default checksum: not an SSE-C
/// object, whose plaintext checksum stored in the clear would tell something about data only
/// the customer's key is meant to reveal.
pub fn default_checksum_applies(sse: Option<SseAlgorithm>) -> bool {
    sse != Some(SseAlgorithm::Customer)
}

impl ObjectService {
    /// `record` with a full-object checksum: unchanged when it has one (or is SSE-C), else
    /// with the default checksum of its plaintext, read once (a copy of a legacy object or of
    /// a multipart object uploaded without checksums).
    pub async fn with_default_checksum(
        &self,
        mut record: ObjectRecord,
    ) -> Result<ObjectRecord, ObjectError> {
        let sse = record.encryption.as_ref().map(|e| e.algorithm);
        if record.checksum.is_some() || !default_checksum_applies(sse) {
            return Ok(record);
        }
        let mut hasher = ChecksumHasher::new(DEFAULT_CHECKSUM);
        let mut body = self.read_object(&record, None);
        while let Some(piece) = body.next().await {
            hasher.update(&piece?);
        }
        record.checksum = Some(hasher.finish());
        // Composite part checksums belong to another algorithm; a full-object CRC has none.
        record.part_checksums = None;
        Ok(record)
    }
}
