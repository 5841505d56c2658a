//! Where chunk bytes go: the chunk layer's [`ChunkIo`] (local store on one node, replication in
//! a cluster). The object service only sees that trait; this file is the one place chunk-layer
//! errors become object errors.

use cairn_chunk::ChunkError;
pub use cairn_chunk::{BoxFuture, ChunkIo, LocalChunks};

use crate::ObjectError;

/// Maps chunk-layer errors: a missing or corrupt chunk is data loss, a write below its
/// consistency level or unreachable metadata is unavailability, anything else is storage.
pub fn chunk_error(e: ChunkError) -> ObjectError {
    match e {
        ChunkError::NotFound(_) | ChunkError::Corrupt { .. } | ChunkError::Lost { .. } => {
            ObjectError::DataLoss(e.to_string())
        }
        ChunkError::Unavailable { .. } | ChunkError::Refs(_) => {
            ObjectError::Unavailable(e.to_string())
        }
        ChunkError::Io(_) | ChunkError::Meta(_) | ChunkError::UnexpectedResult(_) => {
            ObjectError::Storage(e.to_string())
        }
    }
}
