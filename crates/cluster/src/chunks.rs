//! Chunk replication. A chunk's hash picks its partition; the layout places the partition on R
//! nodes. Writes go to all R in parallel and return once the write consistency is met (each
//! replica fsyncs before acknowledging). Reads try this node first when it holds a replica,
//! then the others; bytes from a peer are re-hashed before use, and a local copy that is
//! missing or corrupt is repaired from the replica that answered.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_chunk::ChunkStore;
use cairn_meta::model::ChunkId;
use cairn_object::chunk_io::{chunk_error, BoxFuture, ChunkIo};
use cairn_object::ObjectError;
use cairn_raft::Peers;
use cairn_rpc::pb::chunk_service_client::ChunkServiceClient;
use cairn_rpc::pb::chunk_service_server::ChunkService;
use cairn_rpc::pb::{ChunkIds, ChunkPiece, ChunkPresence, DeleteChunkReply, PutChunkReply};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::ClusterView;

/// Bytes per gRPC message when streaming a chunk.
const PIECE: usize = 1 << 20;
/// Largest chunk a peer accepts.
const MAX_CHUNK: usize = 64 << 20;
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

use cairn_meta::model::NodeHealth;
pub use cairn_meta::model::WriteConsistency;

fn parse_id(b: &[u8]) -> Result<ChunkId, Status> {
    let arr: [u8; 32] = b
        .try_into()
        .map_err(|_| Status::invalid_argument("chunk id must be 32 bytes"))?;
    Ok(ChunkId(arr))
}

/// `ChunkService` over this node's chunk store.
pub struct ChunkServer {
    store: ChunkStore,
}

impl ChunkServer {
    pub fn new(store: ChunkStore) -> Self {
        Self { store }
    }
}

type PieceStream = std::pin::Pin<Box<dyn Stream<Item = Result<ChunkPiece, Status>> + Send>>;

#[tonic::async_trait]
impl ChunkService for ChunkServer {
    async fn put_chunk(
        &self,
        request: Request<Streaming<ChunkPiece>>,
    ) -> Result<Response<PutChunkReply>, Status> {
        let mut stream = request.into_inner();
        let mut id: Option<ChunkId> = None;
        let mut buf = BytesMut::new();
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            if id.is_none() {
                id = Some(parse_id(&piece.id)?);
            }
            if buf.len() + piece.data.len() > MAX_CHUNK {
                return Err(Status::invalid_argument("chunk too large"));
            }
            buf.extend_from_slice(&piece.data);
        }
        let id = id.ok_or_else(|| Status::invalid_argument("empty chunk stream"))?;
        let data = buf.freeze();
        // Never store bytes that do not match their address.
        if ChunkId::of(&data) != id {
            return Err(Status::data_loss("chunk bytes do not match their id"));
        }
        let newly_written = self
            .store
            .put(id, data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(PutChunkReply { newly_written }))
    }

    type GetChunkStream = PieceStream;

    async fn get_chunk(
        &self,
        request: Request<cairn_rpc::pb::ChunkId>,
    ) -> Result<Response<Self::GetChunkStream>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        let data = self.store.get(&id).await.map_err(|e| match e {
            cairn_chunk::ChunkError::NotFound(_) => Status::not_found(e.to_string()),
            cairn_chunk::ChunkError::Corrupt { .. } => Status::data_loss(e.to_string()),
            cairn_chunk::ChunkError::Io(_) => Status::internal(e.to_string()),
        })?;
        let mut pieces = Vec::new();
        let mut first = true;
        let mut rest = data;
        loop {
            let take = rest.len().min(PIECE);
            let part = rest.split_to(take);
            pieces.push(Ok(ChunkPiece {
                id: if first { id.0.to_vec() } else { Vec::new() },
                data: part.to_vec(),
            }));
            first = false;
            if rest.is_empty() {
                break;
            }
        }
        Ok(Response::new(Box::pin(futures::stream::iter(pieces))))
    }

    async fn has_chunks(
        &self,
        request: Request<ChunkIds>,
    ) -> Result<Response<ChunkPresence>, Status> {
        let mut present = Vec::new();
        for raw in request.into_inner().ids {
            let id = parse_id(&raw)?;
            present.push(
                self.store
                    .has(&id)
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?,
            );
        }
        Ok(Response::new(ChunkPresence { present }))
    }

    async fn delete_chunk(
        &self,
        request: Request<cairn_rpc::pb::ChunkId>,
    ) -> Result<Response<DeleteChunkReply>, Status> {
        let id = parse_id(&request.into_inner().id)?;
        // Deleting a chunk some object still references is GC's decision, made locally after
        // checking references; a remote delete of a pinned chunk is refused.
        if self.store.is_pinned(&id) {
            return Err(Status::failed_precondition("chunk is in use by a write"));
        }
        let deleted = self
            .store
            .delete(&id)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DeleteChunkReply { deleted }))
    }
}

/// `ChunkIo` that places chunks on their partition's replicas.
pub struct ReplicatedChunks {
    local: ChunkStore,
    node_id: String,
    peers: Peers,
    view: Arc<ClusterView>,
    partitions: u32,
    /// Default write consistency; the cluster configuration changes it live.
    consistency: parking_lot::RwLock<WriteConsistency>,
}

impl ReplicatedChunks {
    pub fn new(
        local: ChunkStore,
        node_id: String,
        peers: Peers,
        view: Arc<ClusterView>,
        partitions: u32,
        consistency: WriteConsistency,
    ) -> Self {
        Self {
            local,
            node_id,
            peers,
            view,
            partitions,
            consistency: parking_lot::RwLock::new(consistency),
        }
    }

    /// Sets the write consistency used when neither the request nor the bucket names one.
    pub fn set_write_consistency(&self, consistency: WriteConsistency) {
        *self.consistency.write() = consistency;
    }

    /// The write consistency used when neither the request nor the bucket names one.
    pub fn write_consistency(&self) -> WriteConsistency {
        *self.consistency.read()
    }

    async fn put_remote(
        peers: Peers,
        addr: String,
        id: ChunkId,
        data: Bytes,
    ) -> Result<(), String> {
        let channel = peers.channel(&addr).map_err(|e| e.to_string())?;
        let mut client = ChunkServiceClient::new(channel);
        let mut pieces = Vec::new();
        let mut rest = data;
        let mut first = true;
        loop {
            let part = rest.split_to(rest.len().min(PIECE));
            pieces.push(ChunkPiece {
                id: if first { id.0.to_vec() } else { Vec::new() },
                data: part.to_vec(),
            });
            first = false;
            if rest.is_empty() {
                break;
            }
        }
        let mut req = Request::new(futures::stream::iter(pieces));
        req.set_timeout(RPC_TIMEOUT);
        cairn_rpc::deadline(RPC_TIMEOUT, client.put_chunk(req))
            .await
            .map(|_| ())
            .map_err(|s| format!("{addr}: {}", s.message()))
    }

    /// Reads a chunk from a peer and re-hashes it. On failure, says whether the peer answered
    /// that its copy is missing or bad (so it should be repaired), as opposed to unreachable.
    async fn get_remote(&self, addr: &str, id: ChunkId) -> Result<Bytes, (bool, String)> {
        let channel = self
            .peers
            .channel(addr)
            .map_err(|e| (false, e.to_string()))?;
        let mut client = ChunkServiceClient::new(channel);
        let mut req = Request::new(cairn_rpc::pb::ChunkId { id: id.0.to_vec() });
        req.set_timeout(RPC_TIMEOUT);
        let bad_copy =
            |s: &Status| matches!(s.code(), tonic::Code::NotFound | tonic::Code::DataLoss);
        // The deadline covers the whole transfer, enforced here (see `cairn_rpc::deadline`).
        let fetch = async {
            let mut stream = client
                .get_chunk(req)
                .await
                .map_err(|s| (bad_copy(&s), format!("{addr}: {}", s.message())))?
                .into_inner();
            let mut buf = BytesMut::new();
            while let Some(piece) = stream.next().await {
                let piece =
                    piece.map_err(|s| (bad_copy(&s), format!("{addr}: {}", s.message())))?;
                if buf.len() + piece.data.len() > MAX_CHUNK {
                    return Err((true, format!("{addr}: chunk too large")));
                }
                buf.extend_from_slice(&piece.data);
            }
            Ok(buf)
        };
        let buf = tokio::time::timeout(RPC_TIMEOUT, fetch)
            .await
            .map_err(|_| (false, format!("{addr}: no answer within {RPC_TIMEOUT:?}")))??;
        let data = buf.freeze();
        if ChunkId::of(&data) != id {
            return Err((
                true,
                format!("{addr}: returned bytes that do not match chunk {id}"),
            ));
        }
        Ok(data)
    }

    /// Read repair: gives replicas that reported a missing or bad copy the good bytes, in the
    /// background (anti-entropy would also find them, later).
    fn repair_remote(&self, id: ChunkId, data: &Bytes, bad: Vec<(String, String)>) {
        for (node, addr) in bad {
            let (peers, data) = (self.peers.clone(), data.clone());
            tokio::spawn(async move {
                match Self::put_remote(peers, addr, id, data).await {
                    Ok(()) => {
                        tracing::info!(chunk = %id, to = %node, "read repair restored a replica's copy")
                    }
                    Err(e) => {
                        tracing::warn!(chunk = %id, to = %node, error = %e, "read repair failed")
                    }
                }
            });
        }
    }
}

impl ChunkIo for ReplicatedChunks {
    fn put(
        &self,
        id: ChunkId,
        data: Bytes,
        consistency: Option<WriteConsistency>,
    ) -> BoxFuture<'_, Result<(), ObjectError>> {
        Box::pin(async move {
            let targets = self.view.chunk_targets(&id, self.partitions);
            if targets.is_empty() {
                // No layout yet (a node on its own): the local store is the only replica.
                return self
                    .local
                    .put(id, data)
                    .await
                    .map(|_| ())
                    .map_err(chunk_error);
            }
            let required = consistency
                .unwrap_or_else(|| self.write_consistency())
                .required(targets.len());
            let mut writes = futures::stream::FuturesUnordered::new();
            for (node, addr) in targets.iter().cloned() {
                let data = data.clone();
                if node == self.node_id {
                    let store = self.local.clone();
                    writes.push(tokio::spawn(async move {
                        store
                            .put(id, data)
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    }));
                } else {
                    writes.push(tokio::spawn(Self::put_remote(
                        self.peers.clone(),
                        addr,
                        id,
                        data,
                    )));
                }
            }
            let (mut ok, mut failed) = (0, Vec::new());
            while let Some(r) = writes.next().await {
                match r {
                    Ok(Ok(())) => ok += 1,
                    Ok(Err(e)) => failed.push(e),
                    Err(e) => failed.push(e.to_string()),
                }
                if ok >= required {
                    // The rest finish in the background (their tasks are detached).
                    return Ok(());
                }
                if failed.len() > targets.len() - required {
                    break;
                }
            }
            tracing::warn!(chunk = %id, ok, required, errors = ?failed, "chunk write did not reach its consistency level");
            Err(ObjectError::Unavailable(format!(
                "chunk {id}: {ok} of {required} required replicas acknowledged ({})",
                failed.join("; ")
            )))
        })
    }

    fn get(&self, id: ChunkId) -> BoxFuture<'_, Result<Bytes, ObjectError>> {
        Box::pin(async move {
            let targets = self.view.chunk_targets(&id, self.partitions);
            let local_replica =
                targets.is_empty() || targets.iter().any(|(n, _)| *n == self.node_id);
            let mut errors = Vec::new();
            if local_replica || targets.is_empty() {
                match self.local.get(&id).await {
                    Ok(b) => return Ok(b),
                    Err(e) => errors.push(format!("local: {e}")),
                }
            } else if let Ok(b) = self.local.get(&id).await {
                // A leftover copy from an older layout is still a verified copy.
                return Ok(b);
            }
            // Nearest healthy replica first: the catalog's health verdicts order the others.
            let mut remotes: Vec<(String, String)> = targets
                .iter()
                .filter(|(n, _)| *n != self.node_id)
                .cloned()
                .collect();
            remotes.sort_by_key(|(n, _)| {
                self.view.node(n).map_or(NodeHealth::Down, |r| r.health) as u8
            });
            let mut bad = Vec::new();
            for (node, addr) in remotes {
                match self.get_remote(&addr, id).await {
                    Ok(b) => {
                        if local_replica {
                            // Read repair: this node should hold a copy and did not.
                            if let Err(e) = self.local.put(id, b.clone()).await {
                                tracing::warn!(chunk = %id, error = %e, "read repair failed");
                            } else {
                                tracing::info!(chunk = %id, from = %node, "read repair restored a local chunk copy");
                            }
                        }
                        self.repair_remote(id, &b, bad);
                        return Ok(b);
                    }
                    Err((repairable, e)) => {
                        if repairable {
                            bad.push((node, addr));
                        }
                        errors.push(e);
                    }
                }
            }
            Err(ObjectError::DataLoss(format!(
                "chunk {id}: no replica could serve it ({})",
                errors.join("; ")
            )))
        })
    }
}

/// Anti-entropy for chunks: every chunk referenced in a partition this node replicates must be
/// on this node's disk. Missing ones (a new replica after a layout change, a node that was down
/// while writes landed at QUORUM, a quarantined copy) are fetched from the other replicas.
/// Runs until `shutdown`; `per_pass` bounds the chunks checked per partition per pass.
pub fn spawn_chunk_sync(
    io: Arc<ReplicatedChunks>,
    registry: Arc<cairn_raft::Registry>,
    period: Duration,
    per_pass: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Arc<std::sync::atomic::AtomicU64> {
    let repaired = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = repaired.clone();
    tokio::spawn(async move {
        // Resume point per partition, so large partitions are covered over several passes.
        let mut cursors: std::collections::HashMap<u32, Option<ChunkId>> = Default::default();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let Some(layout) = io.view.layout() else {
                continue;
            };
            for (p, replicas) in layout.assignments.iter().enumerate() {
                if !replicas.contains(&io.node_id) {
                    continue;
                }
                let group = cairn_meta::placement::partition_group(p as u32);
                let cursor = cursors.entry(p as u32).or_default();
                let ids = match registry
                    .meta()
                    .referenced_chunks(group, cursor.as_ref(), per_pass)
                {
                    Ok(ids) => ids,
                    Err(e) => {
                        tracing::warn!(partition = p, error = %e, "chunk sync could not list references");
                        continue;
                    }
                };
                *cursor = if ids.len() < per_pass {
                    None
                } else {
                    ids.last().copied()
                };
                for id in ids {
                    if io.local.has(&id).await.unwrap_or(true) {
                        continue;
                    }
                    // `get` restores the local copy of a chunk this node replicates.
                    match ChunkIo::get(io.as_ref(), id).await {
                        Ok(_) => {
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::warn!(chunk = %id, error = %e, "chunk sync could not fetch a missing chunk")
                        }
                    }
                }
            }
        }
    });
    repaired
}
