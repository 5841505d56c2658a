//! Multi-Raft on one node. Each Raft group (the system group 0 and one per partition) is an
//! openraft instance; all of them share one redb database (`<data>/meta.redb`) that holds their
//! logs ([`log_store`], written by a single group-committing writer) and their state machines
//! ([`state_machine`], backed by `cairn_meta::MetaStore`). The [`Registry`] hosts the groups and
//! routes proposals and linearizable reads to them.

// openraft fixes the storage traits' error type (`StorageError`, ~224 bytes); our helpers return
// the same type so `?` composes with the trait methods.
#![allow(clippy::result_large_err)]

pub mod handoff;
pub mod log_health;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod registry;
pub mod state_machine;

use std::io::Cursor;

pub use handoff::{Handoff, HandoffOutcome};
pub use log_health::{fs_space, is_no_space, FsSpace, LogHealth, LogTrouble};
pub use network::{GrpcNetwork, Peers, RaftServer};
pub use registry::{Bootstrap, Registry, RegistryConfig, RouteHint};

openraft::declare_raft_types!(
    /// Raft types shared by every Cairn group.
    pub TypeConfig:
        D = cairn_meta::Command,
        R = cairn_meta::Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type GroupId = u64;
pub type RaftNode = openraft::Raft<TypeConfig>;

/// Why a proposal or a read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft group {0} is not hosted on this node")]
    UnknownGroup(GroupId),
    #[error("raft group {group} is not led by this node (leader: {leader:?} at {addr:?})")]
    NotLeader {
        group: GroupId,
        leader: Option<u64>,
        addr: Option<String>,
    },
    #[error("forwarding to {addr} failed: {msg}")]
    Forward { addr: String, msg: String },
    /// The request never reached `addr` (connection refused or failed): safe to send elsewhere.
    #[error("{addr} is unreachable: {msg}")]
    Unreachable { addr: String, msg: String },
    #[error("raft group {group} failed: {msg}")]
    Group { group: GroupId, msg: String },
    /// This node leads the group but has not heard from a quorum lately (it is probably cut
    /// off; the others elect a new leader). Nothing was proposed.
    #[error("raft group {group}: this leader has not reached a quorum for {millis} ms")]
    NoQuorum { group: GroupId, millis: u64 },
    /// The proposal was accepted by the leader but not committed in time: it may still be.
    #[error("raft group {group}: proposal not committed within {secs} s (outcome unknown)")]
    Timeout { group: GroupId, secs: u64 },
    #[error("metadata store: {0}")]
    Meta(#[from] cairn_meta::MetaError),
    #[error("raft storage: {0}")]
    Storage(String),
}
