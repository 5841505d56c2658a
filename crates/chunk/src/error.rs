//! The chunk layer's error type. Callers match on variants, never on messages; the object
//! service maps them to its own errors in one place (`cairn_object::chunk_io`).

use crate::ChunkId;

/// What went wrong with a chunk operation.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// No copy of the chunk is stored here.
    #[error("chunk {0} not found")]
    NotFound(ChunkId),
    /// The stored copy no longer hashes to its id; it has been quarantined.
    #[error("chunk {id} is corrupt (hash {actual})")]
    Corrupt { id: ChunkId, actual: ChunkId },
    /// The local disk failed.
    #[error("chunk store I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A write reached fewer replicas than its consistency level requires.
    #[error(
        "chunk {id}: {acked} of {required} required replicas acknowledged ({})",
        join(errors)
    )]
    Unavailable {
        id: ChunkId,
        acked: usize,
        required: usize,
        errors: Vec<ReplicaError>,
    },
    /// No replica could serve a verified copy.
    #[error("chunk {id}: no replica could serve it ({})", join(errors))]
    Lost {
        id: ChunkId,
        errors: Vec<ReplicaError>,
    },
    /// Reference metadata (reference sets, outboxes) could not be read or written.
    #[error("chunk references: {0}")]
    Refs(#[from] cairn_raft::RaftError),
    /// The local metadata store failed while reading references.
    #[error("chunk references: {0}")]
    Meta(#[from] cairn_meta::MetaError),
    /// A metadata query answered with a result of the wrong kind.
    #[error("chunk references: unexpected query result {0}")]
    UnexpectedResult(String),
    /// This node's chunk disk has less free space than its reserve: it takes no new chunks.
    #[error("chunk disk full: {free} bytes free, reserve {reserve} (DISK_RESERVE_BYTES)")]
    DiskFull { free: u64, reserve: u64 },
}

impl ChunkError {
    /// Whether the write failed for lack of disk space: here, or on enough replicas that the
    /// write could not reach its consistency level (the client should slow down and retry;
    /// nothing is broken).
    pub fn is_disk_full(&self) -> bool {
        match self {
            ChunkError::DiskFull { .. } => true,
            ChunkError::Unavailable { errors, .. } => errors.iter().any(ReplicaError::is_disk_full),
            _ => false,
        }
    }
}

fn join(errors: &[ReplicaError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why one replica did not take part in a read or write.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// This node's own copy failed.
    #[error("local: {0}")]
    Local(Box<ChunkError>),
    /// The peer could not be reached or did not answer in time.
    #[error("{node}: unreachable: {message}")]
    Unreachable { node: String, message: String },
    /// The peer answered with an error status.
    #[error("{node}: {code:?}: {message}")]
    Status {
        node: String,
        code: tonic::Code,
        message: String,
    },
    /// The peer sent bytes that do not hash to the chunk's id, or too many of them.
    #[error("{node}: returned bad bytes for the chunk")]
    BadBytes { node: String },
}

impl ReplicaError {
    /// Whether the replica refused the write because its disk is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            ReplicaError::Local(e) => matches!(**e, ChunkError::DiskFull { .. }),
            ReplicaError::Status { code, .. } => *code == tonic::Code::ResourceExhausted,
            ReplicaError::Unreachable { .. } | ReplicaError::BadBytes { .. } => false,
        }
    }

    /// Whether the peer answered that its copy is missing or bad (so it should be repaired), as
    /// opposed to being unreachable.
    pub fn repairable(&self) -> bool {
        match self {
            ReplicaError::Status { code, .. } => {
                matches!(code, tonic::Code::NotFound | tonic::Code::DataLoss)
            }
            ReplicaError::BadBytes { .. } => true,
            ReplicaError::Local(_) | ReplicaError::Unreachable { .. } => false,
        }
    }
}
