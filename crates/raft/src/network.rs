//! Raft transport over gRPC. Every group's messages to a peer share one HTTP/2 connection
//! (the node-wide `Peers` pool), and carry their group id, so one `RaftService` on each node
//! serves all groups. Payloads are msgpack-encoded openraft messages.
//!
//! Appends and votes go through a per-peer batcher: whatever is queued for a peer when its
//! sender wakes leaves in one `Batch` call. The registry sends the heartbeats of all the groups
//! a node leads in one instant (a "round"), and the batchers wait for the round to finish, so an
//! idle node costs one call per peer per heartbeat interval instead of one per group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_rpc::pb::raft_service_client::RaftServiceClient;
use cairn_rpc::pb::raft_service_server::RaftService;
use cairn_rpc::pb::{RaftBatch, RaftKind, RaftMessage};
use cairn_rpc::PeerChannel;
use cairn_trust::{Connector, PeerInfo, Trust};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::{GroupId, Registry, TypeConfig};

/// Most messages in one batch call.
const MAX_BATCH: usize = 512;

/// Largest Raft message accepted or sent (snapshots of big partitions).
const MAX_RAFT_MESSAGE: usize = 256 << 20;

/// One message waiting for its peer's batcher.
struct Outgoing {
    msg: RaftMessage,
    deadline: Instant,
    reply: oneshot::Sender<Result<RaftMessage, Status>>,
}

/// Counts of the Raft traffic this node sent through batchers (exported as metrics).
#[derive(Clone, Default)]
pub struct BatchStats {
    /// `Batch` calls made.
    pub calls: Counter,
    /// Messages carried by them.
    pub messages: Counter,
}

/// Client TLS configurations of a node's pool.
struct PeerTls {
    /// Node-to-node calls: mutual TLS checked against the cluster CA.
    cluster: Arc<rustls::ClientConfig>,
    /// `Hello`/`Join` before this node can verify anyone (authenticated by the token MAC).
    join: Arc<rustls::ClientConfig>,
}

#[derive(Default)]
struct PeersInner {
    /// `None` only for in-process tests that serve plain gRPC.
    tls: Option<PeerTls>,
    channels: Mutex<HashMap<String, Channel>>,
    join_channels: Mutex<HashMap<String, Channel>>,
    batchers: Mutex<HashMap<String, mpsc::UnboundedSender<Outgoing>>>,
    /// While set and in the future, a heartbeat round is being sent: batchers wait for it.
    round_until: Arc<Mutex<Option<Instant>>>,
    stats: Arc<BatchStats>,
}

/// A pool of gRPC channels, one per peer address, shared by every group on the node.
#[derive(Clone, Default)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

impl Peers {
    /// A pool whose calls run over mutual TLS with this node's identity.
    pub fn new(trust: &Trust) -> Result<Self, cairn_trust::TrustError> {
        Ok(Self {
            inner: Arc::new(PeersInner {
                tls: Some(PeerTls {
                    cluster: trust.client_config()?,
                    join: cairn_trust::tls::join_client_config()?,
                }),
                ..Default::default()
            }),
        })
    }

    /// A pool of plain-text channels, for in-process tests against plain gRPC servers only.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// The (lazily connected) channel to `addr` (`host:port`) for node-to-node calls: the peer
    /// must present a certificate of the cluster CA, and this node presents its own.
    pub fn channel(&self, addr: &str) -> Result<PeerChannel, tonic::transport::Error> {
        let tls = self.inner.tls.as_ref().map(|t| t.cluster.clone());
        Self::pooled(&self.inner.channels, addr, tls)
    }

    /// A channel for `Hello` and `Join` only: the server's certificate is not checked (this
    /// node may not know the CA yet), so nothing but token-MAC'd answers may be trusted on it.
    pub fn join_channel(&self, addr: &str) -> Result<PeerChannel, tonic::transport::Error> {
        let tls = self.inner.tls.as_ref().map(|t| t.join.clone());
        Self::pooled(&self.inner.join_channels, addr, tls)
    }

    fn pooled(
        pool: &Mutex<HashMap<String, Channel>>,
        addr: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<PeerChannel, tonic::transport::Error> {
        if let Some(c) = pool.lock().get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            // A peer cut off mid-call is noticed within ~4 s, not when the call's deadline ends.
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        let channel = match tls {
            Some(cfg) => endpoint.connect_with_connector_lazy(Connector::new(cfg)),
            None => endpoint.connect_lazy(),
        };
        pool.lock().insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Counts of batched Raft traffic sent by this node.
    pub fn batch_stats(&self) -> &BatchStats {
        &self.inner.stats
    }

    /// Marks the start of a heartbeat round lasting at most `linger`.
    pub(crate) fn open_round(&self, linger: Duration) {
        *self.inner.round_until.lock() = Some(Instant::now() + linger);
    }

    /// The queue of the batcher for `addr`, started on first use.
    fn batcher(
        &self,
        addr: &str,
    ) -> Result<mpsc::UnboundedSender<Outgoing>, tonic::transport::Error> {
        if let Some(tx) = self.inner.batchers.lock().get(addr) {
            if !tx.is_closed() {
                return Ok(tx.clone());
            }
        }
        let channel = self.channel(addr)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let client = RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        tokio::spawn(run_batcher(
            client,
            rx,
            self.inner.round_until.clone(),
            self.inner.stats.clone(),
        ));
        self.inner
            .batchers
            .lock()
            .insert(addr.to_string(), tx.clone());
        Ok(tx)
    }
}

/// Sends what is queued for one peer, a batch at a time; batches are not waited for, so a slow
/// reply never holds back the next heartbeat.
async fn run_batcher(
    client: RaftServiceClient<PeerChannel>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    round_until: Arc<Mutex<Option<Instant>>>,
    stats: Arc<BatchStats>,
) {
    while let Some(first) = rx.recv().await {
        let until = *round_until.lock();
        if let Some(until) = until {
            if until > Instant::now() {
                tokio::time::sleep_until(until).await;
            }
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        stats.calls.inc();
        stats.messages.inc_by(batch.len() as u64);
        tokio::spawn(send_batch(client.clone(), batch));
    }
}

async fn send_batch(mut client: RaftServiceClient<PeerChannel>, batch: Vec<Outgoing>) {
    let now = Instant::now();
    let deadline = batch.iter().map(|o| o.deadline).max().unwrap_or(now);
    let mut replies = Vec::with_capacity(batch.len());
    let mut messages = Vec::with_capacity(batch.len());
    for o in batch {
        if o.deadline <= now {
            let _ = o
                .reply
                .send(Err(Status::deadline_exceeded("expired in the send queue")));
            continue;
        }
        messages.push(o.msg);
        replies.push(o.reply);
    }
    if messages.is_empty() {
        return;
    }
    let mut request = Request::new(RaftBatch { messages });
    let budget = deadline.saturating_duration_since(now);
    request.set_timeout(budget);
    match cairn_rpc::deadline(budget, client.batch(request)).await {
        Ok(reply) => {
            let answers = reply.into_inner().messages;
            if answers.len() != replies.len() {
                let msg = format!(
                    "batch reply has {} messages for {} requests",
                    answers.len(),
                    replies.len()
                );
                for r in replies {
                    let _ = r.send(Err(Status::internal(msg.clone())));
                }
                return;
            }
            for (answer, r) in answers.into_iter().zip(replies) {
                let result = if answer.error.is_empty() {
                    Ok(answer)
                } else {
                    Err(Status::internal(answer.error))
                };
                let _ = r.send(result);
            }
        }
        Err(status) => {
            for r in replies {
                let _ = r.send(Err(Status::new(status.code(), status.message())));
            }
        }
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, Status> {
    rmp_serde::to_vec(v).map_err(|e| Status::internal(format!("encoding: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Status> {
    rmp_serde::from_slice(b).map_err(|e| Status::invalid_argument(format!("decoding: {e}")))
}

/// The transport factory of one group.
#[derive(Clone)]
pub struct GrpcNetwork {
    group: GroupId,
    peers: Peers,
}

impl GrpcNetwork {
    pub fn new(group: GroupId, peers: Peers) -> Self {
        Self { group, peers }
    }
}

/// One group's client for one peer.
pub struct GrpcPeer {
    group: GroupId,
    target: u64,
    addr: String,
    peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        GrpcPeer {
            group: self.group,
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

type Rpc<T, E> = Result<T, RPCError<u64, BasicNode, E>>;

impl GrpcPeer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Option<RaftKind>,
        req: &Req,
        option: &RPCOption,
    ) -> Rpc<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable =
            |msg: String| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(msg)));
        let payload =
            rmp_serde::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl();
        let label = match kind {
            Some(RaftKind::Append) => "append",
            Some(RaftKind::Vote) => "vote",
            None => "snapshot",
        };
        let reply = match kind {
            Some(kind) => {
                let queue = self
                    .peers
                    .batcher(&self.addr)
                    .map_err(|e| unreachable(format!("no channel to {}: {e}", self.addr)))?;
                let (tx, rx) = oneshot::channel();
                let msg = RaftMessage {
                    group: self.group,
                    payload,
                    kind: kind as i32,
                    error: String::new(),
                };
                let out = Outgoing {
                    msg,
                    deadline: Instant::now() + ttl,
                    reply: tx,
                };
                if queue.send(out).is_err() {
                    return Err(unreachable(format!("{} batcher stopped", self.addr)));
                }
                match tokio::time::timeout(ttl, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(Status::cancelled("batch dropped")),
                    Err(_) => Err(Status::deadline_exceeded("no reply in time")),
                }
            }
            None => {
                let channel = self
                    .peers
                    .channel(&self.addr)
                    .map_err(|e| unreachable(format!("no channel to {}: {e}", self.addr)))?;
                let mut client = RaftServiceClient::new(channel)
                    .max_decoding_message_size(MAX_RAFT_MESSAGE)
                    .max_encoding_message_size(MAX_RAFT_MESSAGE);
                let mut request = Request::new(RaftMessage {
                    group: self.group,
                    payload,
                    kind: 0,
                    error: String::new(),
                });
                request.set_timeout(ttl);
                client
                    .install_snapshot(request)
                    .await
                    .map(|r| r.into_inner())
            }
        };
        let reply = reply.map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                unreachable(format!("{} {}: {}", self.addr, label, s.message()))
            }
            _ => RPCError::Network(NetworkError::new(&std::io::Error::other(
                s.message().to_string(),
            ))),
        })?;
        let result: Result<Resp, E> = rmp_serde::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GrpcPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>, RaftError<u64>> {
        self.call(Some(RaftKind::Append), &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        self.call(None, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<u64>, RaftError<u64>> {
        self.call(Some(RaftKind::Vote), &rpc, &option).await
    }
}

/// The node's `RaftService`: hands each message to the group it names.
pub struct RaftServer {
    registry: Arc<Registry>,
}

impl RaftServer {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    fn raft(&self, group: GroupId) -> Result<crate::RaftNode, Status> {
        self.registry
            .raft_handle(group)
            .ok_or_else(|| Status::not_found(format!("group {group} is not hosted here")))
    }
}

/// The Raft id the caller's certificate lets it speak for (`None`: a plain in-process test
/// server without TLS, where there is no identity to check).
fn caller<T>(request: &Request<T>) -> Result<Option<u64>, Status> {
    match request.extensions().get::<PeerInfo>() {
        None => Ok(None),
        Some(PeerInfo { node: Some(n), .. }) => Ok(Some(cairn_trust::raft_id(n))),
        Some(_) => Err(Status::unauthenticated(
            "Raft calls need a node certificate of this cluster",
        )),
    }
}

/// Refuses a message whose vote names another node than the caller's certificate.
fn check_sender(caller: Option<u64>, claimed: Option<u64>) -> Result<(), Status> {
    match caller {
        Some(c) if claimed != Some(c) => {
            tracing::warn!(
                caller = c,
                ?claimed,
                "refused a Raft message sent in another node's name"
            );
            Err(Status::permission_denied(
                "the Raft message names another node than the caller's certificate",
            ))
        }
        _ => Ok(()),
    }
}

impl RaftServer {
    async fn append(
        &self,
        caller: Option<u64>,
        group: GroupId,
        payload: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = decode(payload)?;
        check_sender(caller, req.vote.leader_id().voted_for())?;
        encode(&self.raft(group)?.append_entries(req).await)
    }

    async fn vote(
        &self,
        caller: Option<u64>,
        group: GroupId,
        payload: &[u8],
    ) -> Result<Vec<u8>, Status> {
        let req: VoteRequest<u64> = decode(payload)?;
        check_sender(caller, req.vote.leader_id().voted_for())?;
        encode(&self.raft(group)?.vote(req).await)
    }

    /// One message of a batch; a failure is reported in the reply, not for the whole batch.
    async fn one(&self, caller: Option<u64>, m: RaftMessage) -> RaftMessage {
        let result = match RaftKind::try_from(m.kind) {
            Ok(RaftKind::Append) => self.append(caller, m.group, &m.payload).await,
            Ok(RaftKind::Vote) => self.vote(caller, m.group, &m.payload).await,
            Err(_) => Err(Status::invalid_argument(format!(
                "unknown raft message kind {}",
                m.kind
            ))),
        };
        let (payload, error) = match result {
            Ok(p) => (p, String::new()),
            Err(s) => (Vec::new(), s.message().to_string()),
        };
        RaftMessage {
            group: m.group,
            payload,
            kind: m.kind,
            error,
        }
    }
}

fn reply(group: GroupId, payload: Vec<u8>) -> Response<RaftMessage> {
    Response::new(RaftMessage {
        group,
        payload,
        kind: 0,
        error: String::new(),
    })
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let caller = caller(&request)?;
        let m = request.into_inner();
        Ok(reply(
            m.group,
            self.append(caller, m.group, &m.payload).await?,
        ))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let caller = caller(&request)?;
        let m = request.into_inner();
        Ok(reply(
            m.group,
            RaftServer::vote(self, caller, m.group, &m.payload).await?,
        ))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let caller = caller(&request)?;
        let m = request.into_inner();
        let req: InstallSnapshotRequest<TypeConfig> = decode(&m.payload)?;
        check_sender(caller, req.vote.leader_id().voted_for())?;
        let result = self.raft(m.group)?.install_snapshot(req).await;
        Ok(reply(m.group, encode(&result)?))
    }

    async fn timeout_now(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let caller = caller(&request)?;
        let group = request.into_inner().group;
        self.registry.serve_timeout_now(caller, group).await?;
        Ok(reply(group, Vec::new()))
    }

    async fn batch(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatch>, Status> {
        let caller = caller(&request)?;
        let messages = request.into_inner().messages;
        // Different groups proceed independently; replies keep the request order.
        let replies =
            futures::future::join_all(messages.into_iter().map(|m| self.one(caller, m))).await;
        Ok(Response::new(RaftBatch { messages: replies }))
    }
}
