//! `ControlService`: greeting and joining (`Hello`, `JoinChallenge`, `Join`: open calls, each
//! proved with the join token's MAC, never the token), registration, heartbeats and layout
//! reads for nodes (`RegisterNode`, `Heartbeat`, `GetLayout`), and the server side of leader
//! forwarding (`Propose`, `Query`). Everything but the join calls is reachable only with a node
//! certificate of this cluster (`gate.rs`), and a node speaks only for itself: the node id in
//! `RegisterNode`/`Heartbeat` must be the certificate's.

use std::sync::Arc;

use cairn_meta::model::{NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Query, QueryResult, Response as MetaResponse};
use cairn_raft::{RaftError, Registry};
use cairn_rpc::pb::control_service_server::ControlService;
use cairn_rpc::pb::{
    GetLayoutReply, GetLayoutRequest, HeartbeatReply, HeartbeatRequest, HelloReply, HelloRequest,
    JoinChallengeReply, JoinChallengeRequest, JoinReply, JoinRequest, JoinSecrets, NodeExecReply,
    NodeExecRequest, NodeMetricsReply, NodeMetricsRequest, ProposeReply, ProposeRequest,
    QueryReply, QueryRequest, RegisterNodeReply, RegisterNodeRequest,
};
use cairn_trust::join::{JoinKeyring, NonceBook, HELLO_SKEW};
use cairn_trust::PeerInfo;
use tonic::{Request, Response, Status};

use crate::control_client::{labels, layout_reply};
use crate::controller::now_ms;
use crate::ClusterSettings;

/// `HelloReply.cluster_id` of a node whose cluster is being formed.
pub const FORMING: &str = "forming";

pub struct ControlServer {
    registry: Arc<Registry>,
    settings: ClusterSettings,
    key: Option<JoinKeyring>,
    /// Server nonces handed out by `JoinChallenge`, each good for one `Join` within a minute.
    challenges: NonceBook,
    /// Greeting nonces seen lately: a replayed `Hello` is refused.
    greetings: NonceBook,
    /// This node's management plane, for `NodeExec` / `NodeMetrics`.
    plane: crate::plane::NodePlane,
}

/// The node a call comes from, as named by its verified client certificate.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.node.clone())
        .ok_or_else(|| {
            Status::unauthenticated("this call needs a node certificate of this cluster")
        })
}

fn remote<T>(request: &Request<T>) -> Option<std::net::SocketAddr> {
    request
        .extensions()
        .get::<PeerInfo>()
        .and_then(|p| p.remote)
}

/// The MAC fields of a greeting.
pub(crate) fn hello_fields(r: &HelloRequest) -> Vec<Vec<u8>> {
    vec![
        r.cluster_name.clone().into_bytes(),
        r.node_id.clone().into_bytes(),
        r.nonce.clone(),
        r.unix_secs.to_be_bytes().to_vec(),
    ]
}

/// The MAC fields of a greeting's answer (bound to the greeting's nonce).
pub(crate) fn hello_reply_fields(nonce: &[u8], r: &HelloReply) -> Vec<Vec<u8>> {
    vec![
        nonce.to_vec(),
        r.node_id.clone().into_bytes(),
        r.raft_id.to_be_bytes().to_vec(),
        r.cluster_name.clone().into_bytes(),
        r.cluster_id.clone().into_bytes(),
        r.rpc_addr.clone().into_bytes(),
        r.partitions.to_be_bytes().to_vec(),
        vec![u8::from(r.can_admit)],
    ]
}

pub(crate) fn join_fields(r: &JoinRequest) -> Vec<Vec<u8>> {
    vec![
        r.cluster_name.clone().into_bytes(),
        r.node_id.clone().into_bytes(),
        r.client_nonce.clone(),
        r.server_nonce.clone(),
        r.csr_der.clone(),
    ]
}

pub(crate) fn join_reply_fields(req: &JoinRequest, r: &JoinReply) -> Vec<Vec<u8>> {
    vec![
        req.client_nonce.clone(),
        req.server_nonce.clone(),
        req.node_id.clone().into_bytes(),
        r.node_cert_der.clone(),
        r.sealed.clone(),
    ]
}

pub(crate) fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ControlServer {
    pub fn new(registry: Arc<Registry>, settings: ClusterSettings) -> Self {
        let key = settings.join_keys();
        Self {
            registry,
            settings,
            key,
            challenges: NonceBook::new(std::time::Duration::from_secs(60), 1024),
            greetings: NonceBook::new(2 * HELLO_SKEW, 65536),
            plane: crate::plane::NodePlane::default(),
        }
    }

    /// Serves `NodeExec` / `NodeMetrics` from `plane` (whatever is installed in it, now or
    /// later); without one they answer `UNIMPLEMENTED`.
    pub fn with_node_plane(mut self, plane: crate::plane::NodePlane) -> Self {
        self.plane = plane;
        self
    }

    /// Refuses a node of another cluster (and logs it).
    fn same_cluster(
        &self,
        peer: Option<std::net::SocketAddr>,
        node_id: &str,
        cluster_name: &str,
    ) -> Result<(), Status> {
        if cluster_name != self.settings.cluster_name {
            tracing::warn!(?peer, node = %node_id, name = %cluster_name, "refused a node of another cluster");
            return Err(Status::permission_denied(format!(
                "this node belongs to cluster `{}`, not `{}`",
                self.settings.cluster_name, cluster_name
            )));
        }
        Ok(())
    }

    fn key(&self) -> Result<&JoinKeyring, Status> {
        self.key.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "this node was started without CLUSTER_JOIN_TOKEN and cannot admit nodes",
            )
        })
    }

    /// The cluster secrets a joiner receives.
    fn secrets(&self) -> Result<JoinSecrets, Status> {
        let trust = &self.settings.trust;
        let ca = trust
            .ca()
            .ok_or_else(|| Status::failed_precondition("this node has no cluster CA yet"))?;
        let path = self.settings.data_dir.join("master.key");
        let master_key = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the master key for a joiner");
                return Err(Status::internal("cannot read this node's master key"));
            }
        };
        Ok(JoinSecrets {
            ca_cert_der: ca.to_vec(),
            ca_key_pem: trust.ca_key_pem().unwrap_or_default(),
            master_key,
        })
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
        let peer = remote(&request);
        let req = request.into_inner();
        self.same_cluster(peer, &req.node_id, &req.cluster_name)?;
        // The answer is proved with the token the greeting was proved with.
        let Some(key) = self
            .key()?
            .verify("hello", &refs(&hello_fields(&req)), &req.mac)
        else {
            tracing::warn!(?peer, node = %req.node_id, "refused a greeting without proof of the join token");
            return Err(Status::permission_denied(
                "wrong CLUSTER_JOIN_TOKEN (the greeting's proof does not check)",
            ));
        };
        if unix_secs().abs_diff(req.unix_secs) > HELLO_SKEW.as_secs() {
            return Err(Status::permission_denied(
                "the greeting's clock is more than 5 minutes off: check the node clocks",
            ));
        }
        if !self.greetings.first_sight(&req.nonce) {
            tracing::warn!(?peer, node = %req.node_id, "refused a replayed greeting");
            return Err(Status::permission_denied("replayed greeting"));
        }
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
        let mut reply = HelloReply {
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
            can_admit: self.settings.trust.can_admit(),
            mac: Vec::new(),
        };
        reply.mac = key.mac(
            "hello-reply",
            &refs(&hello_reply_fields(&req.nonce, &reply)),
        );
        Ok(Response::new(reply))
    }

    async fn join_challenge(
        &self,
        _request: Request<JoinChallengeRequest>,
    ) -> Result<Response<JoinChallengeReply>, Status> {
        self.key()?;
        let server_nonce = self
            .challenges
            .issue()
            .ok_or_else(|| Status::resource_exhausted("too many joins in progress: retry later"))?;
        Ok(Response::new(JoinChallengeReply { server_nonce }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let peer = remote(&request);
        let req = request.into_inner();
        self.same_cluster(peer, &req.node_id, &req.cluster_name)?;
        let keys = self.key()?;
        // The challenge is spent whatever happens next: one proof, one try.
        let fresh = self.challenges.take(&req.server_nonce);
        // The secrets are sealed and the answer proved with the token the join was proved with.
        let Some(key) = keys.verify("join", &refs(&join_fields(&req)), &req.mac) else {
            tracing::warn!(?peer, node = %req.node_id, "refused a join without proof of the join token");
            return Err(Status::permission_denied(
                "wrong CLUSTER_JOIN_TOKEN (the join proof does not check)",
            ));
        };
        if !fresh {
            tracing::warn!(?peer, node = %req.node_id, "refused a join with an unknown or used challenge (replay?)");
            return Err(Status::permission_denied(
                "unknown, expired or already used join challenge",
            ));
        }
        if req.node_id.is_empty() || req.client_nonce.len() != cairn_trust::join::NONCE_LEN {
            return Err(Status::invalid_argument(
                "a join needs a node id and a 32-byte nonce",
            ));
        }
        let cert = self
            .settings
            .trust
            .sign(&req.node_id, &req.csr_der)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let secrets = prost::Message::encode_to_vec(&self.secrets()?);
        let sealed = key
            .seal(&req.client_nonce, &req.server_nonce, &req.node_id, &secrets)
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut reply = JoinReply {
            node_cert_der: cert.to_vec(),
            sealed,
            mac: Vec::new(),
        };
        reply.mac = key.mac("join-reply", &refs(&join_reply_fields(&req, &reply)));
        tracing::info!(?peer, node = %req.node_id, "issued a node certificate to a joining node");
        Ok(Response::new(reply))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeReply>, Status> {
        caller(&request)?;
        let req = request.into_inner();
        let response = self.registry.serve_propose(req.group, &req.command).await;
        Ok(Response::new(ProposeReply { response }))
    }

    async fn query(&self, request: Request<QueryRequest>) -> Result<Response<QueryReply>, Status> {
        caller(&request)?;
        let req = request.into_inner();
        let result = self.registry.serve_query(req.group, &req.query).await;
        Ok(Response::new(QueryReply { result }))
    }

    async fn register_node(
        &self,
        request: Request<RegisterNodeRequest>,
    ) -> Result<Response<RegisterNodeReply>, Status> {
        let peer = remote(&request);
        let node = caller(&request)?;
        let req = request.into_inner();
        let Some(info) = req.node else {
            return Err(Status::invalid_argument("RegisterNode without a node"));
        };
        self.same_cluster(peer, &info.node_id, &req.cluster_name)?;
        if info.node_id != node || info.raft_id != cairn_trust::raft_id(&node) {
            tracing::warn!(?peer, cert = %node, claimed = %info.node_id, "refused a registration in another node's name");
            return Err(Status::permission_denied(
                "a node registers only itself: the node id must be its certificate's",
            ));
        }
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
            health_changed_ms: 0,
            maintenance: false,
        };
        tracing::info!(node = %record.node_id, addr = %record.rpc_addr, "registering node");
        self.commit(Command::RegisterNode { record }).await?;
        Ok(Response::new(RegisterNodeReply { cluster_id }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let node = caller(&request)?;
        let req = request.into_inner();
        if req.node_id != node {
            tracing::warn!(cert = %node, claimed = %req.node_id, "refused a heartbeat in another node's name");
            return Err(Status::permission_denied(
                "a node sends only its own heartbeat: the node id must be its certificate's",
            ));
        }
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

    async fn node_exec(
        &self,
        request: Request<NodeExecRequest>,
    ) -> Result<Response<NodeExecReply>, Status> {
        let node = caller(&request)?;
        let req = request.into_inner();
        let actor = format!("{} via node {node}", req.actor);
        let result = self.plane.exec_json(&req.action, &actor).await?;
        Ok(Response::new(NodeExecReply { result }))
    }

    async fn node_metrics(
        &self,
        request: Request<NodeMetricsRequest>,
    ) -> Result<Response<NodeMetricsReply>, Status> {
        caller(&request)?;
        let text = self.plane.metrics_text()?;
        Ok(Response::new(NodeMetricsReply { text }))
    }

    async fn get_layout(
        &self,
        request: Request<GetLayoutRequest>,
    ) -> Result<Response<GetLayoutReply>, Status> {
        caller(&request)?;
        match self.registry.query(SYSTEM_GROUP, &Query::Layout).await {
            Ok(QueryResult::Layout(l)) => Ok(Response::new(layout_reply(l.as_ref()))),
            Ok(other) => Err(Status::internal(format!(
                "unexpected answer to a layout query: {other:?}"
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }
}
