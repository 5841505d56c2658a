//! Turning nodes into one store: forming a cluster from seeds (or joining one), the control
//! RPCs, and the controllers that keep Raft membership and partition placement in line with the
//! layout. Chunk replication lives in the chunk layer (`cairn_chunk`), which learns placement
//! from this crate's [`ClusterView`] through `cairn_chunk::Placement`.

pub mod control;
pub mod control_client;
pub mod controller;
pub mod fanout;
pub mod formation;
pub mod gossip;
pub mod heal;
pub mod health;
pub mod node_admin;
pub mod plane;
pub mod rebalance;
pub mod view;

use std::collections::BTreeMap;

// The chunk layer's types under their old `cairn_cluster` paths, so callers written before
// the move (server wiring, live configuration) keep compiling; new code uses `cairn_chunk`.
pub use cairn_chunk::{ChunkServer, ReplicatedChunks, WriteConsistency};
pub use control::ControlServer;
pub use plane::NodePlane;
pub use view::ClusterView;

/// This node's cluster settings.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: String,
    pub raft_id: u64,
    pub rpc_addr: String,
    pub api_addr: String,
    pub cluster_name: String,
    /// The effective join token (the cluster secret); `None` on a restarted member started
    /// without one, which then cannot admit joiners.
    pub join_token: Option<String>,
    /// `CLUSTER_JOIN_TOKEN_ACCEPT`: more tokens whose join and greeting proofs are accepted
    /// (this node proves with `join_token` only). Used while the token is rotated.
    pub join_token_accept: Vec<String>,
    /// `ENCRYPTION_KEY`: the cluster master key given by the operator (else `<data>/master.key`).
    pub encryption_key: Option<String>,
    /// This node's TLS identity (cluster CA, node certificate).
    pub trust: cairn_trust::Trust,
    /// Seed RPC addresses (may include this node's own).
    pub seeds: Vec<String>,
    pub replication: usize,
    pub desired_voters: usize,
    pub zone: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub partitions: u32,
    pub heartbeat_secs: u64,
    pub data_dir: std::path::PathBuf,
    /// Placement policy selectors (recorded in the cluster config at formation).
    pub placement_require: Vec<String>,
    pub placement_prefer: Vec<String>,
    pub placement_avoid: Vec<String>,
    /// `REPAIR_GRACE_SECS`: a node down this long is re-homed (`heal`).
    pub repair_grace_secs: u64,
}

impl ClusterSettings {
    /// The join keys: `join_token` to prove with, plus the accepted tokens to check with.
    pub fn join_keys(&self) -> Option<cairn_trust::join::JoinKeyring> {
        self.join_token
            .as_deref()
            .map(|t| cairn_trust::join::JoinKeyring::new(t, &self.join_token_accept))
    }

    /// The cluster configuration this node would create (version 1).
    pub fn initial_config(&self) -> cairn_meta::model::ClusterConfig {
        cairn_meta::model::ClusterConfig {
            version: 1,
            partitions: self.partitions,
            replication: self.replication,
            desired_voters: self.desired_voters,
            placement_require: self.placement_require.clone(),
            placement_prefer: self.placement_prefer.clone(),
            placement_avoid: self.placement_avoid.clone(),
            changed_ms: controller::now_ms(),
            ..Default::default()
        }
    }
}

/// Records the cluster configuration (version 1, from this node's settings) unless one exists.
pub async fn record_config(
    s: &ClusterSettings,
    reg: &cairn_raft::Registry,
) -> Result<(), ClusterError> {
    use cairn_meta::placement::SYSTEM_GROUP;
    if reg
        .meta()
        .cluster_config(SYSTEM_GROUP)
        .ok()
        .flatten()
        .is_some()
    {
        return Ok(());
    }
    let cmd = cairn_meta::Command::SetClusterConfig {
        config: s.initial_config(),
    };
    match reg.propose(SYSTEM_GROUP, cmd).await? {
        // Someone recorded it first: that one stands.
        cairn_meta::Response::Refused(cairn_meta::CommandError::StaleConfig(_)) => Ok(()),
        cairn_meta::Response::Refused(e) => Err(ClusterError::Other(e.to_string())),
        _ => Ok(()),
    }
}

/// Refuses to run with settings that contradict the cluster's (a different partition count
/// would place every key somewhere else).
pub fn check_config(s: &ClusterSettings, reg: &cairn_raft::Registry) -> Result<(), ClusterError> {
    let config = reg
        .meta()
        .cluster_config(cairn_meta::placement::SYSTEM_GROUP)
        .ok()
        .flatten();
    match config {
        Some(c) if c.partitions != s.partitions => Err(ClusterError::Other(format!(
            "PARTITIONS is {} on this node but the cluster was created with {}: set PARTITIONS={}",
            s.partitions, c.partitions, c.partitions
        ))),
        _ => Ok(()),
    }
}

/// A failure forming or joining a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("seed {seed} refused this node: {msg}")]
    Refused { seed: String, msg: String },
    #[error("raft: {0}")]
    Raft(#[from] cairn_raft::RaftError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Largest request body of a call that needs no node certificate (`Hello`, `Join`).
pub const MAX_UNAUTHENTICATED_BODY: usize = 64 << 10;

/// Serves this node's gRPC services (Raft, control, chunks, files) over TLS on `listener` until
/// `shutdown`. Limits apply before any body is read: a connection cap and a handshake timeout
/// (`cairn_trust::net`), concurrent streams per connection, header size, HTTP/2 keepalive, and
/// the `Gate` layer, which refuses Raft, chunk and control calls (except `Hello`/`Join`, whose
/// bodies it caps) from callers without a node certificate of this cluster. File calls
/// authenticate with S3 credentials.
#[allow(clippy::too_many_arguments)]
pub async fn serve_rpc<F: cairn_rpc::pb::file_service_server::FileService>(
    listener: tokio::net::TcpListener,
    registry: std::sync::Arc<cairn_raft::Registry>,
    trust: cairn_trust::Trust,
    limits: cairn_trust::ListenerLimits,
    control: ControlServer,
    chunks: ChunkServer,
    files: cairn_rpc::pb::file_service_server::FileServiceServer<F>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ClusterError> {
    use cairn_rpc::pb::chunk_service_server::ChunkServiceServer;
    use cairn_rpc::pb::control_service_server::ControlServiceServer;
    use cairn_rpc::pb::raft_service_server::RaftServiceServer;
    use std::time::Duration;
    let incoming = cairn_trust::net::incoming(listener, &trust, limits)
        .map_err(|e| ClusterError::Other(format!("RPC TLS: {e}")))?;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(256)
        .http2_max_header_list_size(16 << 10)
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(gate::GateLayer)
        .add_service(
            RaftServiceServer::new(cairn_raft::RaftServer::new(registry))
                .max_decoding_message_size(256 << 20),
        )
        .add_service(ControlServiceServer::new(control).max_decoding_message_size(64 << 20))
        .add_service(ChunkServiceServer::new(chunks).max_decoding_message_size(8 << 20))
        // Native clients; it authenticates each call itself (S3 credentials).
        .add_service(files)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| ClusterError::Other(format!("RPC server: {e}")))
}

pub mod gate;
pub mod status;
