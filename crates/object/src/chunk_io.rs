//! Where chunk bytes go: the chunk layer's [`ChunkIo`] (local store on one node, replication in
//! a cluster). The object service only sees that trait; this file is the one place chunk-layer
//! errors become object errors.

use cairn_chunk::ChunkError;
pub use cairn_chunk::{BoxFuture, ChunkIo, LocalChunks};

use crate::ObjectError;

/// Maps chunk-layer errors: a missing or corrupt chunk is data loss, a write refused for lack of
/// space (here or on the replicas it needed) is insufficient storage, a write below its
/// consistency level or unreachable metadata is unavailability, anything else is storage.
pub fn chunk_error(e: ChunkError) -> ObjectError {
    if e.is_disk_full() {
        return ObjectError::InsufficientStorage(e.to_string());
    }
    match e {
        ChunkError::DiskFull { .. } => ObjectError::InsufficientStorage(e.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_chunk::{ChunkId, ReplicaError};

    #[test]
    fn disk_full_is_insufficient_storage_not_a_storage_error() {
        let full = ChunkError::DiskFull {
            free: 1,
            reserve: 2,
        };
        assert!(matches!(
            chunk_error(full),
            ObjectError::InsufficientStorage(_)
        ));
        let id = ChunkId::of(b"x");
        // A write that missed its consistency level because replicas were full.
        let below = ChunkError::Unavailable {
            id,
            acked: 1,
            required: 2,
            errors: vec![ReplicaError::Status {
                node: "n2".into(),
                code: tonic::Code::ResourceExhausted,
                message: "full".into(),
            }],
        };
        assert!(matches!(
            chunk_error(below),
            ObjectError::InsufficientStorage(_)
        ));
        let unreachable = ChunkError::Unavailable {
            id,
            acked: 1,
            required: 2,
            errors: vec![ReplicaError::Unreachable {
                node: "n2".into(),
                message: "down".into(),
            }],
        };
        assert!(matches!(
            chunk_error(unreachable),
            ObjectError::Unavailable(_)
        ));
        let local = ChunkError::Unavailable {
            id,
            acked: 0,
            required: 1,
            errors: vec![ReplicaError::Local(Box::new(ChunkError::DiskFull {
                free: 0,
                reserve: 1,
            }))],
        };
        assert!(matches!(
            chunk_error(local),
            ObjectError::InsufficientStorage(_)
        ));
    }
}
