//! Where chunk bytes go. On a one-node cluster that is the local chunk store; in a cluster the
//! replication layer (cairn-cluster) writes each chunk to its partition's replicas and reads
//! from the nearest healthy one. The object service only sees this trait.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use cairn_chunk::{ChunkError, ChunkStore};
use cairn_meta::model::{ChunkId, WriteConsistency};

use crate::ObjectError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Durable chunk writes and verified chunk reads.
pub trait ChunkIo: Send + Sync + 'static {
    /// Stores `data` (whose BLAKE3 is `id`) durably, on as many replicas as `consistency`
    /// (None: the node default) requires, before returning Ok.
    fn put(
        &self,
        id: ChunkId,
        data: Bytes,
        consistency: Option<WriteConsistency>,
    ) -> BoxFuture<'_, Result<(), ObjectError>>;
    /// Reads a chunk; the bytes returned always match `id`.
    fn get(&self, id: ChunkId) -> BoxFuture<'_, Result<Bytes, ObjectError>>;
}

/// Maps chunk-store errors: a missing or corrupt chunk is data loss, anything else is I/O.
pub fn chunk_error(e: ChunkError) -> ObjectError {
    match e {
        ChunkError::Io(e) => ObjectError::Storage(e.to_string()),
        other => ObjectError::DataLoss(other.to_string()),
    }
}

/// The local chunk store as the only replica (a one-node cluster).
pub struct LocalChunks(pub ChunkStore);

impl ChunkIo for LocalChunks {
    fn put(
        &self,
        id: ChunkId,
        data: Bytes,
        _consistency: Option<WriteConsistency>,
    ) -> BoxFuture<'_, Result<(), ObjectError>> {
        // One replica: every consistency level is met by the local fsync.
        Box::pin(async move { self.0.put(id, data).await.map(|_| ()).map_err(chunk_error) })
    }

    fn get(&self, id: ChunkId) -> BoxFuture<'_, Result<Bytes, ObjectError>> {
        Box::pin(async move { self.0.get(&id).await.map_err(chunk_error) })
    }
}
