//! `ChunkIo`: where the object service's chunk bytes go. On a one-node cluster that is the
//! local store ([`LocalChunks`]); in a cluster, [`crate::ReplicatedChunks`] writes each chunk
//! to its partition's replicas and reads from the nearest healthy one.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use cairn_meta::model::WriteConsistency;

use crate::{ChunkError, ChunkId, ChunkStore};

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
    ) -> BoxFuture<'_, Result<(), ChunkError>>;
    /// Reads a chunk; the bytes returned always match `id`.
    fn get(&self, id: ChunkId) -> BoxFuture<'_, Result<Bytes, ChunkError>>;
}

/// The local chunk store as the only replica (a one-node cluster).
pub struct LocalChunks(pub ChunkStore);

impl ChunkIo for LocalChunks {
    fn put(
        &self,
        id: ChunkId,
        data: Bytes,
        _consistency: Option<WriteConsistency>,
    ) -> BoxFuture<'_, Result<(), ChunkError>> {
        // One replica: every consistency level is met by the local fsync.
        Box::pin(async move { self.0.put(id, data).await.map(|_| ()) })
    }

    fn get(&self, id: ChunkId) -> BoxFuture<'_, Result<Bytes, ChunkError>> {
        Box::pin(async move { self.0.get(&id).await })
    }
}
