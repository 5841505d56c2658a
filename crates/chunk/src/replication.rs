//! Chunk replication. A chunk's hash picks its partition; the [`Placement`] places the
//! partition on R nodes. Writes go to all R in parallel and return once the write consistency
//! is met (each replica fsyncs before acknowledging). Reads try this node first when it holds a
//! replica, then the others, healthiest first; bytes from a peer are re-hashed before use, and
//! a copy that is missing or corrupt (here or on a peer that answered so) is repaired from the
//! replica that served the read.
//!
//! A replica whose disk is full publishes it (gossip, see [`Placement::is_full`]) and writes
//! skip it up front. One that has not said so yet refuses new chunks (`RESOURCE_EXHAUSTED`, see
//! `disk.rs`); writes then skip it for [`FULL_BACKOFF`] without sending the bytes. Either way
//! it counts as a replica that did not take the copy: a write still meets its consistency level on the others, or
//! fails visibly (`Unavailable`, answered 503 SlowDown), never reports a copy it did not make.
//! The chunk-sync worker of the full node fetches what it missed once it has space again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cairn_meta::model::{NodeHealth, WriteConsistency};
use cairn_raft::Peers;
use cairn_rpc::pb::chunk_service_client::ChunkServiceClient;
use cairn_rpc::pb::ChunkPiece;
use futures::StreamExt;
use tonic::{Request, Status};

use crate::io::{BoxFuture, ChunkIo};
use crate::ranges::{Digest, RANGES};
use crate::rpc::{pieces, MAX_CHUNK, RPC_TIMEOUT};
use crate::{ChunkError, ChunkId, ChunkStore, Placement, Replica, ReplicaError};

/// How long writes skip a replica that answered its disk is full before trying it again.
pub const FULL_BACKOFF: Duration = Duration::from_secs(3);

/// Replicas that recently refused a chunk for lack of space, and when.
#[derive(Default)]
struct FullReplicas(parking_lot::Mutex<HashMap<String, Instant>>);

impl FullReplicas {
    fn mark(&self, node: &str) {
        self.0.lock().insert(node.to_string(), Instant::now());
    }

    /// Whether writes should skip `node` now (it refused less than [`FULL_BACKOFF`] ago).
    fn skip(&self, node: &str) -> bool {
        let mut m = self.0.lock();
        match m.get(node) {
            Some(at) if at.elapsed() < FULL_BACKOFF => true,
            Some(_) => {
                m.remove(node);
                false
            }
            None => false,
        }
    }
}

fn consistency_code(c: WriteConsistency) -> u8 {
    match c {
        WriteConsistency::One => 0,
        WriteConsistency::Quorum => 1,
        WriteConsistency::All => 2,
    }
}

fn consistency_of(code: u8) -> WriteConsistency {
    match code {
        0 => WriteConsistency::One,
        2 => WriteConsistency::All,
        _ => WriteConsistency::Quorum,
    }
}

/// [`ChunkIo`] that places chunks on their partition's replicas.
pub struct ReplicatedChunks {
    local: ChunkStore,
    node_id: String,
    peers: Peers,
    placement: Arc<dyn Placement>,
    partitions: u32,
    /// The node default write consistency (a `WriteConsistency` code; changed at run time).
    consistency: AtomicU8,
    /// Replicas skipped by writes because their disk is full.
    full: Arc<FullReplicas>,
}

/// A `ChunkService` client for `replica` (connections are pooled by `peers`).
fn client(
    peers: &Peers,
    replica: &Replica,
) -> Result<ChunkServiceClient<cairn_rpc::PeerChannel>, ReplicaError> {
    let channel = peers
        .channel(&replica.rpc_addr)
        .map_err(|e| ReplicaError::Unreachable {
            node: replica.node_id.clone(),
            message: e.to_string(),
        })?;
    Ok(ChunkServiceClient::new(channel))
}

fn status_error(node: &str, s: &Status) -> ReplicaError {
    ReplicaError::Status {
        node: node.to_string(),
        code: s.code(),
        message: s.message().to_string(),
    }
}

impl ReplicatedChunks {
    /// Replication over `local` (this node's store, as `node_id`), reaching peers through
    /// `peers` at the addresses `placement` gives; `consistency` is the default for writes
    /// that do not name one.
    pub fn new(
        local: ChunkStore,
        node_id: String,
        peers: Peers,
        placement: Arc<dyn Placement>,
        partitions: u32,
        consistency: WriteConsistency,
    ) -> Self {
        Self {
            local,
            node_id,
            peers,
            placement,
            partitions,
            consistency: AtomicU8::new(consistency_code(consistency)),
            full: Arc::default(),
        }
    }

    /// Changes the default write consistency (writes already in flight keep theirs).
    pub fn set_write_consistency(&self, consistency: WriteConsistency) {
        self.consistency
            .store(consistency_code(consistency), Ordering::Relaxed);
    }

    /// The default write consistency.
    pub fn write_consistency(&self) -> WriteConsistency {
        consistency_of(self.consistency.load(Ordering::Relaxed))
    }

    /// This node's chunk store.
    pub fn local(&self) -> &ChunkStore {
        &self.local
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The placement the layer routes by.
    pub fn placement(&self) -> &Arc<dyn Placement> {
        &self.placement
    }

    /// The partition `id` belongs to.
    pub fn partition_of(&self, id: &ChunkId) -> u32 {
        id.partition(self.partitions)
    }

    /// The replicas of `id`'s partition (empty without a layout).
    pub fn replicas_of(&self, id: &ChunkId) -> Vec<Replica> {
        self.placement.chunk_replicas(id.partition(self.partitions))
    }

    /// Which of `ids` `replica` holds (a chunk file exists there; its content is verified by
    /// every read and by that node's scrubber), in the order of `ids`.
    pub async fn held_by(
        &self,
        replica: &Replica,
        ids: &[ChunkId],
    ) -> Result<Vec<bool>, ReplicaError> {
        let node = replica.node_id.as_str();
        let mut client = client(&self.peers, replica)?;
        let mut req = Request::new(cairn_rpc::pb::ChunkIds {
            ids: ids.iter().map(|id| id.0.to_vec()).collect(),
        });
        req.set_timeout(RPC_TIMEOUT);
        let answer = tokio::time::timeout(RPC_TIMEOUT, client.has_chunks(req))
            .await
            .map_err(|_| ReplicaError::Unreachable {
                node: node.to_string(),
                message: format!("no answer within {RPC_TIMEOUT:?}"),
            })?
            .map_err(|s| status_error(node, &s))?
            .into_inner();
        if answer.present.len() != ids.len() {
            return Err(ReplicaError::Unreachable {
                node: node.to_string(),
                message: format!(
                    "answered for {} chunks, asked about {}",
                    answer.present.len(),
                    ids.len()
                ),
            });
        }
        Ok(answer.present)
    }

    async fn put_remote(
        peers: Peers,
        replica: Replica,
        id: ChunkId,
        data: Bytes,
    ) -> Result<(), ReplicaError> {
        let mut client = client(&peers, &replica)?;
        let node = replica.node_id;
        let mut req = Request::new(futures::stream::iter(pieces(id, data)));
        req.set_timeout(RPC_TIMEOUT);
        cairn_rpc::deadline(RPC_TIMEOUT, client.put_chunk(req))
            .await
            .map(|_| ())
            .map_err(|s| status_error(&node, &s))
    }

    /// Reads a chunk from a peer and re-hashes it.
    async fn get_remote(&self, replica: &Replica, id: ChunkId) -> Result<Bytes, ReplicaError> {
        let node = replica.node_id.as_str();
        let mut client = client(&self.peers, replica)?;
        let mut req = Request::new(cairn_rpc::pb::ChunkId { id: id.0.to_vec() });
        req.set_timeout(RPC_TIMEOUT);
        // The deadline covers the whole transfer, enforced here (see `cairn_rpc::deadline`).
        let fetch = async {
            let mut stream = client
                .get_chunk(req)
                .await
                .map_err(|s| status_error(node, &s))?
                .into_inner();
            let mut buf = BytesMut::new();
            while let Some(piece) = stream.next().await {
                let piece: ChunkPiece = piece.map_err(|s| status_error(node, &s))?;
                if buf.len() + piece.data.len() > MAX_CHUNK {
                    return Err(ReplicaError::BadBytes {
                        node: node.to_string(),
                    });
                }
                buf.extend_from_slice(&piece.data);
            }
            Ok(buf)
        };
        let buf = tokio::time::timeout(RPC_TIMEOUT, fetch)
            .await
            .map_err(|_| ReplicaError::Unreachable {
                node: node.to_string(),
                message: format!("no answer within {RPC_TIMEOUT:?}"),
            })??;
        let data = buf.freeze();
        if ChunkId::of(&data) != id {
            return Err(ReplicaError::BadBytes {
                node: node.to_string(),
            });
        }
        Ok(data)
    }

    /// Read repair: gives replicas that reported a missing or bad copy the good bytes, in the
    /// background (anti-entropy would also find them, later).
    fn repair_remote(&self, id: ChunkId, data: &Bytes, bad: Vec<Replica>) {
        for replica in bad {
            let (peers, data) = (self.peers.clone(), data.clone());
            let metrics = self.local.metrics().clone();
            tokio::spawn(async move {
                let node = replica.node_id.clone();
                match Self::put_remote(peers, replica, id, data).await {
                    Ok(()) => {
                        metrics.read_repaired();
                        tracing::info!(chunk = %id, to = %node, "read repair restored a replica's copy")
                    }
                    Err(e) => {
                        tracing::warn!(chunk = %id, to = %node, error = %e, "read repair failed")
                    }
                }
            });
        }
    }

    async fn put_replicated(
        &self,
        id: ChunkId,
        data: Bytes,
        consistency: Option<WriteConsistency>,
    ) -> Result<(), ChunkError> {
        let targets = self.replicas_of(&id);
        if targets.is_empty() {
            // No layout yet (a node on its own): the local store is the only replica.
            return self.local.put(id, data).await.map(|_| ());
        }
        let required = consistency
            .unwrap_or_else(|| self.write_consistency())
            .required(targets.len());
        let mut writes = futures::stream::FuturesUnordered::new();
        let mut errors = Vec::new();
        for replica in targets.iter().cloned() {
            let data = data.clone();
            let skip = match replica.node_id != self.node_id {
                false => None,
                true if self.placement.is_full(&replica.node_id) => {
                    Some("skipped: the replica published that its disk is full")
                }
                true if self.full.skip(&replica.node_id) => {
                    Some("skipped: the replica's disk was full moments ago")
                }
                true => None,
            };
            if let Some(message) = skip {
                // Steer around a full replica: the copy is counted as not made.
                self.local.metrics().replica_full();
                errors.push(ReplicaError::Status {
                    node: replica.node_id,
                    code: tonic::Code::ResourceExhausted,
                    message: message.into(),
                });
                continue;
            }
            if replica.node_id == self.node_id {
                let store = self.local.clone();
                writes.push(tokio::spawn(async move {
                    store
                        .put(id, data)
                        .await
                        .map(|_| ())
                        .map_err(|e| ReplicaError::Local(Box::new(e)))
                }));
            } else {
                let (peers, full) = (self.peers.clone(), self.full.clone());
                let metrics = self.local.metrics().clone();
                writes.push(tokio::spawn(async move {
                    let node = replica.node_id.clone();
                    let r = Self::put_remote(peers, replica, id, data).await;
                    // Marked here, not in the loop below: writes left running after the
                    // consistency level was met are seen too.
                    if r.as_ref().is_err_and(ReplicaError::is_disk_full) {
                        full.mark(&node);
                        metrics.replica_full();
                    }
                    r
                }));
            }
        }
        let mut acked = 0;
        if errors.len() > targets.len() - required.min(targets.len()) {
            writes.clear();
        }
        while let Some(r) = writes.next().await {
            match r {
                Ok(Ok(())) => acked += 1,
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(ReplicaError::Local(Box::new(ChunkError::Io(
                    std::io::Error::other(e.to_string()),
                )))),
            }
            if acked >= required {
                // The rest finish in the background (their tasks are detached).
                return Ok(());
            }
            if errors.len() > targets.len() - required {
                break;
            }
        }
        self.local.metrics().write_unavailable();
        tracing::warn!(chunk = %id, acked, required, ?errors, "chunk write did not reach its consistency level");
        Err(ChunkError::Unavailable {
            id,
            acked,
            required,
            errors,
        })
    }

    async fn get_replicated(&self, id: ChunkId) -> Result<Bytes, ChunkError> {
        let targets = self.replicas_of(&id);
        let local_replica = targets.is_empty() || targets.iter().any(|r| r.node_id == self.node_id);
        let mut errors = Vec::new();
        if local_replica {
            match self.local.get(&id).await {
                Ok(b) => return Ok(b),
                Err(e) => errors.push(ReplicaError::Local(Box::new(e))),
            }
        } else if let Ok(b) = self.local.get(&id).await {
            // A leftover copy from an older layout is still a verified copy.
            return Ok(b);
        }
        // Nearest healthy replica first: the catalog's health verdicts order the others.
        let mut remotes: Vec<Replica> = targets
            .into_iter()
            .filter(|r| r.node_id != self.node_id)
            .collect();
        remotes.sort_by_key(|r| health_rank(r.health));
        let mut bad = Vec::new();
        for replica in remotes {
            match self.get_remote(&replica, id).await {
                Ok(b) => {
                    // A full disk takes no copies (chunk sync restores them once it has space).
                    if local_replica && !self.local.is_full() {
                        // Read repair: this node should hold a copy and did not.
                        if let Err(e) = self.local.put(id, b.clone()).await {
                            tracing::warn!(chunk = %id, error = %e, "read repair failed");
                        } else {
                            self.local.metrics().read_repaired();
                            tracing::info!(chunk = %id, from = %replica.node_id, "read repair restored a local chunk copy");
                        }
                    }
                    self.repair_remote(id, &b, bad);
                    return Ok(b);
                }
                Err(e) => {
                    if e.repairable() {
                        bad.push(replica);
                    }
                    errors.push(e);
                }
            }
        }
        self.local.metrics().lost();
        Err(ChunkError::Lost { id, errors })
    }
}

/// How [`ReplicatedChunks::restore_local`] ended without an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// This node's copy was rewritten from the verified bytes of replica `from`.
    From(String),
    /// The layout no longer places the chunk on this node: its copy was a leftover, and
    /// nothing is restored here (the chunk's replicas hold it).
    NotPlacedHere,
}

impl ReplicatedChunks {
    /// Rewrites this node's copy of `id` (missing or just quarantined) from another replica,
    /// healthiest first, through the same verified fetch as reads; replicas that answered
    /// that their copy is missing or bad are sent the good bytes too.
    ///
    /// Returns `Err(Lost)` (without counting a lost read: no client asked) when no replica
    /// could serve a verified copy, including when this node is the only one (no layout).
    pub async fn restore_local(&self, id: ChunkId) -> Result<Restored, ChunkError> {
        let targets = self.replicas_of(&id);
        if !targets.is_empty() && !targets.iter().any(|r| r.node_id == self.node_id) {
            return Ok(Restored::NotPlacedHere);
        }
        let mut remotes: Vec<Replica> = targets
            .into_iter()
            .filter(|r| r.node_id != self.node_id)
            .collect();
        remotes.sort_by_key(|r| health_rank(r.health));
        let (mut errors, mut bad) = (Vec::new(), Vec::new());
        for replica in remotes {
            match self.get_remote(&replica, id).await {
                Ok(b) => {
                    self.local.put(id, b.clone()).await?;
                    self.repair_remote(id, &b, bad);
                    return Ok(Restored::From(replica.node_id));
                }
                Err(e) => {
                    if e.repairable() {
                        bad.push(replica);
                    }
                    errors.push(e);
                }
            }
        }
        Err(ChunkError::Lost { id, errors })
    }
}

impl ReplicatedChunks {
    /// The cluster's partition count.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The held digests `replica` reports for `partition`'s ranges (`None`: a range it does
    /// not know right now), for anti-entropy between replicas.
    pub async fn peer_range_digests(
        &self,
        replica: &Replica,
        partition: u32,
    ) -> Result<Vec<Option<Digest>>, ReplicaError> {
        let node = replica.node_id.as_str();
        let mut client = client(&self.peers, replica)?;
        let mut req = Request::new(cairn_rpc::pb::RangeDigestsRequest {
            partition,
            partitions: self.partitions,
        });
        // Small and answered from memory: a peer slower than this is skipped for the pass.
        const DIGESTS_TIMEOUT: Duration = Duration::from_secs(5);
        req.set_timeout(DIGESTS_TIMEOUT);
        let reply = cairn_rpc::deadline(DIGESTS_TIMEOUT, client.range_digests(req))
            .await
            .map_err(|s| status_error(node, &s))?
            .into_inner();
        // A reply of the wrong shape is treated as knowing nothing rather than trusted.
        if reply.ranges.len() != RANGES {
            return Ok(vec![None; RANGES]);
        }
        Ok(reply
            .ranges
            .iter()
            .map(|r| {
                r.known
                    .then(|| Digest::from_wire(r.count, &r.sum))
                    .flatten()
            })
            .collect())
    }

    /// Makes sure `target` holds every chunk of `ids` (a rebalance moving a partition to a new
    /// holder): asks it which it has, and sends each missing one from this node's store or,
    /// failing that, from the first of `sources` that serves a verified copy. Returns the bytes
    /// sent. Stops at the first chunk it cannot place (`Unavailable` when `target` did not
    /// answer or refused it, `Lost` when no source could serve it); the caller retries later.
    pub async fn ensure_copies(
        &self,
        ids: &[ChunkId],
        target: &Replica,
        sources: &[Replica],
    ) -> Result<u64, ChunkError> {
        let Some(first) = ids.first().copied() else {
            return Ok(0);
        };
        let unavailable = |id: ChunkId, e: ReplicaError| ChunkError::Unavailable {
            id,
            acked: 0,
            required: 1,
            errors: vec![e],
        };
        let present = self
            .held_by(target, ids)
            .await
            .map_err(|e| unavailable(first, e))?;
        let mut sent = 0u64;
        for (i, id) in ids.iter().copied().enumerate() {
            if present.get(i).copied().unwrap_or(false) {
                continue;
            }
            let data = match self.local.get(&id).await {
                Ok(b) => b,
                Err(_) => {
                    let mut found = None;
                    let mut errors = Vec::new();
                    for src in sources.iter().filter(|r| r.node_id != target.node_id) {
                        match self.get_remote(src, id).await {
                            Ok(b) => {
                                found = Some(b);
                                break;
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                    found.ok_or(ChunkError::Lost { id, errors })?
                }
            };
            let len = data.len() as u64;
            Self::put_remote(self.peers.clone(), target.clone(), id, data)
                .await
                .map_err(|e| unavailable(id, e))?;
            sent += len;
        }
        Ok(sent)
    }
}

/// Sort key of a health verdict: up first, down last.
fn health_rank(h: NodeHealth) -> u8 {
    h as u8
}

impl ChunkIo for ReplicatedChunks {
    fn put(
        &self,
        id: ChunkId,
        data: Bytes,
        consistency: Option<WriteConsistency>,
    ) -> BoxFuture<'_, Result<(), ChunkError>> {
        Box::pin(self.put_replicated(id, data, consistency))
    }

    fn get(&self, id: ChunkId) -> BoxFuture<'_, Result<Bytes, ChunkError>> {
        Box::pin(self.get_replicated(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_codes_round_trip() {
        for c in [
            WriteConsistency::One,
            WriteConsistency::Quorum,
            WriteConsistency::All,
        ] {
            assert_eq!(consistency_of(consistency_code(c)), c);
        }
    }
}
