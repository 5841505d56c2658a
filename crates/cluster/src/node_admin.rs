//! What the cluster asks of one node's management plane: the actions `POST /cluster/exec`
//! fans out to the nodes a label selector matches (run over the mTLS RPC port, so only
//! members can ask), and the node status report both `GET /status` and `/cluster/nodes` show.
//! The binary implements [`NodeAdmin`]; this crate only carries the calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One action on one node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum NodeAction {
    /// The node's status report (`GET /status`).
    Status,
    /// Replace the node's log filter (`PUT /log-level`), e.g. `debug` or `info,cairn_raft=debug`.
    LogLevel { level: String },
    /// Stop the node cleanly (`POST /shutdown`): stop accepting, finish in-flight requests,
    /// hand off Raft leadership, exit 0.
    Shutdown,
}

/// Why a node could not run an action.
#[derive(Debug, thiserror::Error)]
pub enum NodeActionError {
    /// The action's arguments are wrong (an unparsable log filter): the caller's fault.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The node tried and failed.
    #[error("{0}")]
    Failed(String),
}

/// A node's management plane, as the cluster reaches it.
pub trait NodeAdmin: Send + Sync + 'static {
    /// Runs `action` on this node on behalf of `actor` (the operator token's name, for the
    /// audit trail) and returns its JSON answer.
    fn exec<'a>(
        &'a self,
        action: NodeAction,
        actor: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<serde_json::Value, NodeActionError>>;
}

/// `GET /status` of one node.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeStatusReport {
    pub node_id: String,
    /// The binary's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub uptime_secs: u64,
    pub zone: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// What the node does: `system-voter`, `system-learner`, `s3`, `files`.
    pub roles: Vec<String>,
    pub rpc_addr: String,
    pub api_addr: String,
    pub admin_addr: String,
    pub partitions: PartitionCounts,
    pub disk: DiskReport,
    /// Whether `/ready` answers 200, and if not, why.
    pub ready: bool,
    pub not_ready_reasons: Vec<String>,
    /// The current log filter.
    pub log_level: String,
    /// Every background worker of the node (GC, ref sync, chunk sync, controllers, ...).
    #[serde(default)]
    pub workers: Vec<cairn_worker::WorkerStatus>,
}

/// Raft groups this node holds a replica of, and leads.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Partition groups with a replica here (the system group not counted).
    pub held: usize,
    /// Partition groups this node leads.
    pub led: usize,
    /// Whether this node leads the system group.
    pub system_leader: bool,
}

/// The data directory's file system.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskReport {
    pub path: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Bytes of chunk files this node stores.
    pub chunk_bytes: u64,
    /// Free bytes new chunks must leave (`DISK_RESERVE_BYTES`).
    #[serde(default)]
    pub reserve_bytes: u64,
    /// Free space is under the reserve: this node refuses new chunk copies (reads go on) until
    /// space is freed.
    #[serde(default)]
    pub full: bool,
    /// Chunk reads and writes that failed with an I/O error since the node started.
    #[serde(default)]
    pub io_errors: u64,
}
