//! Raft transport over gRPC. Every group's messages to a peer share one HTTP/2 connection
//! (the node-wide `Peers` pool), and carry their group id, so one `RaftService` on each node
//! serves all groups. Payloads are msgpack-encoded openraft messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_rpc::pb::raft_service_client::RaftServiceClient;
use cairn_rpc::pb::raft_service_server::RaftService;
use cairn_rpc::pb::RaftMessage;
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
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::{GroupId, Registry, TypeConfig};

/// A pool of gRPC channels, one per peer address, shared by every group on the node.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    /// The (lazily connected) channel to `addr` (`host:port`).
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some(c) = self.channels.lock().get(addr) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        self.channels
            .lock()
            .insert(addr.to_string(), channel.clone());
        Ok(channel)
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
    client: Option<RaftServiceClient<Channel>>,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        let client = match self.peers.channel(&node.addr) {
            Ok(c) => Some(RaftServiceClient::new(c)),
            Err(e) => {
                tracing::warn!(addr = %node.addr, error = %e, "bad peer address");
                None
            }
        };
        GrpcPeer {
            group: self.group,
            target,
            addr: node.addr.clone(),
            client,
        }
    }
}

type Rpc<T, E> = Result<T, RPCError<u64, BasicNode, E>>;

impl GrpcPeer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: &'static str,
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
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable(format!("no channel to {}", self.addr)));
        };
        let payload =
            rmp_serde::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = Request::new(RaftMessage {
            group: self.group,
            payload,
        });
        request.set_timeout(option.hard_ttl());
        let reply = match kind {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let reply = reply.map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                unreachable(format!("{} {}: {}", self.addr, kind, s.message()))
            }
            _ => RPCError::Network(NetworkError::new(&std::io::Error::other(
                s.message().to_string(),
            ))),
        })?;
        let result: Result<Resp, E> = rmp_serde::from_slice(&reply.into_inner().payload)
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
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<u64>, RaftError<u64>> {
        self.call("vote", &rpc, &option).await
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

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let req: AppendEntriesRequest<TypeConfig> = decode(&m.payload)?;
        let result = self.raft(m.group)?.append_entries(req).await;
        Ok(Response::new(RaftMessage {
            group: m.group,
            payload: encode(&result)?,
        }))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let req: VoteRequest<u64> = decode(&m.payload)?;
        let result = self.raft(m.group)?.vote(req).await;
        Ok(Response::new(RaftMessage {
            group: m.group,
            payload: encode(&result)?,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let m = request.into_inner();
        let req: InstallSnapshotRequest<TypeConfig> = decode(&m.payload)?;
        let result = self.raft(m.group)?.install_snapshot(req).await;
        Ok(Response::new(RaftMessage {
            group: m.group,
            payload: encode(&result)?,
        }))
    }
}
