//! `ControlService`: identity and join checks (`Hello`), registration, heartbeats and layout
//! reads for nodes (`RegisterNode`, `Heartbeat`, `GetLayout`), and the server side of leader
//! forwarding (`Propose`, `Query`).

use std::sync::Arc;

use cairn_meta::model::{NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Query, QueryResult, Response as MetaResponse};
use cairn_raft::{RaftError, Registry};
use cairn_rpc::auth::PeerCheck;
use cairn_rpc::pb::control_service_server::ControlService;
use cairn_rpc::pb::{
    GetLayoutReply, GetLayoutRequest, HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest,
    ProposeReply, ProposeRequest, QueryReply, QueryRequest, RegisterNodeReply, RegisterNodeRequest,
};
use tonic::{Request, Response, Status};

use crate::control_client::{labels, layout_reply};
use crate::controller::now_ms;
use crate::ClusterSettings;

/// `HelloReply.cluster_id` of a node whose cluster is being formed.
pub const FORMING: &str = "forming";

pub struct ControlServer {
    registry: Arc<Registry>,
    settings: ClusterSettings,
    peers: PeerCheck,
}

impl ControlServer {
    pub fn new(registry: Arc<Registry>, settings: ClusterSettings) -> Self {
        let peers = PeerCheck::new(settings.join_token.as_deref());
        Self {
            registry,
            settings,
            peers,
        }
    }

    /// Refuses a node of another cluster or without the join token (and logs it).
    fn admit(
        &self,
        peer: Option<std::net::SocketAddr>,
        node_id: &str,
        cluster_name: &str,
        token: &str,
    ) -> Result<(), Status> {
        if cluster_name != self.settings.cluster_name {
            tracing::warn!(?peer, node = %node_id, name = %cluster_name, "refused a node of another cluster");
            return Err(Status::permission_denied(format!(
                "this node belongs to cluster `{}`, not `{}`",
                self.settings.cluster_name, cluster_name
            )));
        }
        if let Some(expected) = &self.settings.join_token {
            if !cairn_rpc::auth::same_secret(token, expected) {
                tracing::warn!(?peer, node = %node_id, "refused a node with a wrong or missing join token");
                return Err(Status::permission_denied(
                    "wrong or missing CLUSTER_JOIN_TOKEN",
                ));
            }
        }
        Ok(())
    }

    fn cluster_id(&self) -> String {
        self.registry
            .meta()
            .cluster_id(SYSTEM_GROUP)
            .ok()
            .flatten()
            .map(|c| c.0)
            .unwrap_or_default()
    }

    /// Commits a system-group command (through its leader) or says why not.
    async fn commit(&self, cmd: Command) -> Result<(), Status> {
        match self.registry.propose(SYSTEM_GROUP, cmd).await {
            Ok(MetaResponse::Refused(CommandError::UnknownNode(n))) => Err(Status::not_found(
                format!("node {n} is not registered: register first"),
            )),
            Ok(MetaResponse::Refused(e)) => Err(Status::failed_precondition(e.to_string())),
            Ok(_) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// A metadata operation that could not be completed now (no leader, leader unreachable).
pub(crate) fn unavailable(e: RaftError) -> Status {
    Status::unavailable(format!("system group: {e}"))
}

#[tonic::async_trait]
impl ControlService for ControlServer {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        self.admit(peer, &req.node_id, &req.cluster_name, &req.join_token)?;
        let mut cluster_id = self.cluster_id();
        if cluster_id.is_empty()
            && self
                .registry
                .is_initialized(SYSTEM_GROUP)
                .await
                .unwrap_or(false)
        {
            // Bootstrapped but the identity is not applied here yet: tell greeters to wait,
            // never to bootstrap a second cluster.
            cluster_id = FORMING.to_string();
        }
        Ok(Response::new(HelloReply {
            node_id: self.settings.node_id.clone(),
            raft_id: self.settings.raft_id,
            cluster_name: self.settings.cluster_name.clone(),
            cluster_id,
            rpc_addr: self.settings.rpc_addr.clone(),
            partitions: self
                .registry
                .meta()
                .cluster_config(SYSTEM_GROUP)
                .ok()
                .flatten()
                .map_or(self.settings.partitions, |c| c.partitions),
        }))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        self.peers.check(&request)?;
        let req = request.into_inner();
        let response = self.registry.serve_propose(req.group, &req.command).await;
        Ok(Response::new(ProposeReply { response }))
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        self.peers.check(&request)?;
        let req = request.into_inner();
        let result = self.registry.serve_query(req.group, &req.query).await;
        Ok(Response::new(QueryReply { result }))
    }

    async fn register_node(
        &self,
        request: Request<RegisterNodeRequest>,
    ) -> Result<Response<RegisterNodeReply>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        let Some(info) = req.node else {
            return Err(Status::invalid_argument("RegisterNode without a node"));
        };
        self.admit(peer, &info.node_id, &req.cluster_name, &req.join_token)?;
        if info.node_id.is_empty() || info.rpc_addr.is_empty() {
            return Err(Status::invalid_argument(
                "a node needs an id and an RPC address",
            ));
        }
        let cluster_id = self.cluster_id();
        if cluster_id.is_empty() {
            return Err(Status::unavailable(
                "this node has not joined a cluster yet",
            ));
        }
        let now = now_ms();
        let record = NodeRecord {
            labels: labels(&info),
            node_id: info.node_id,
            raft_id: info.raft_id,
            rpc_addr: info.rpc_addr,
            api_addr: info.api_addr,
            zone: (!info.zone.is_empty()).then_some(info.zone),
            cpus: info.cpus,
            memory_bytes: info.memory_bytes,
            disk_capacity_bytes: info.disk_capacity_bytes,
            disk_free_bytes: info.disk_free_bytes,
            state: NodeState::Active,
            registered_ms: now,
            health: NodeHealth::Up,
            last_heartbeat_ms: now,
        };
        tracing::info!(node = %record.node_id, addr = %record.rpc_addr, "registering node");
        self.commit(Command::RegisterNode { record }).await?;
        Ok(Response::new(RegisterNodeReply { cluster_id }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        self.peers.check(&request)?;
        let req = request.into_inner();
        self.commit(Command::Heartbeat {
            node_id: req.node_id,
            disk_capacity_bytes: req.disk_capacity_bytes,
            disk_free_bytes: req.disk_free_bytes,
            at_ms: now_ms(),
        })
        .await?;
        let layout_version = self
            .registry
            .meta()
            .layout(SYSTEM_GROUP)
            .ok()
            .flatten()
            .map_or(0, |l| l.version);
        Ok(Response::new(HeartbeatReply { layout_version }))
    }

    async fn get_layout(
        &self,
        request: Request<GetLayoutRequest>,
    ) -> Result<Response<GetLayoutReply>, Status> {
        self.peers.check(&request)?;
        match self.registry.query(SYSTEM_GROUP, &Query::Layout).await {
            Ok(QueryResult::Layout(l)) => Ok(Response::new(layout_reply(l.as_ref()))),
            Ok(other) => Err(Status::internal(format!(
                "unexpected answer to a layout query: {other:?}"
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }
}
