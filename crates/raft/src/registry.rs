//! The per-node registry of Raft groups (TiKV's "store"): opens the shared database, starts one
//! openraft instance per hosted group, and routes proposals and linearizable reads to them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_meta::{Command, MetaStore, Query, QueryResult, Response};
use openraft::error::{ClientWriteError, InitializeError, RaftError as OrError};
use openraft::{BasicNode, Config, SnapshotPolicy};

use crate::log_store::LogEngine;
use crate::network::LocalOnlyNetwork;
use crate::state_machine::GroupStateMachine;
use crate::{GroupId, RaftError, RaftNode};

/// What the registry needs to start.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Directory holding `meta.redb`.
    pub dir: PathBuf,
    pub node_id: u64,
    /// Address peers use to reach this node's RPC port (stored in group membership).
    pub rpc_addr: String,
    /// Number of partitions P (groups 1..=P; group 0 is the system group).
    pub partitions: u32,
    /// Entries between snapshots (after which the log is compacted).
    pub snapshot_every: u64,
}

/// All Raft groups hosted on this node.
pub struct Registry {
    node_id: u64,
    groups: HashMap<GroupId, RaftNode>,
    meta: MetaStore,
    engine: LogEngine,
}

impl Registry {
    /// Opens the node's metadata database and starts every group, initialising groups that
    /// have never run (a one-node cluster: this node is the only voter). Waits until every
    /// group has a leader.
    pub async fn open(cfg: RegistryConfig) -> Result<Arc<Self>, RaftError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| RaftError::Storage(e.to_string()))?;
        let path = cfg.dir.join("meta.redb");
        let db = tokio::task::spawn_blocking(move || {
            redb::Database::builder()
                .set_cache_size(128 << 20)
                .create(path)
        })
        .await
        .map_err(|e| RaftError::Storage(e.to_string()))?
        .map_err(|e| RaftError::Storage(e.to_string()))?;
        let db = Arc::new(db);
        let meta = MetaStore::new(db.clone(), cfg.partitions)?;
        let engine = LogEngine::start(db).map_err(|e| RaftError::Storage(e.to_string()))?;

        let raft_config = Arc::new(
            Config {
                cluster_name: "cairn".into(),
                heartbeat_interval: 250,
                election_timeout_min: 1000,
                election_timeout_max: 2000,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(cfg.snapshot_every),
                max_in_snapshot_log_to_keep: 500,
                ..Default::default()
            }
            .validate()
            .map_err(|e| RaftError::Storage(e.to_string()))?,
        );

        let mut groups = HashMap::new();
        for group in 0..=u64::from(cfg.partitions) {
            let sm = GroupStateMachine::new(meta.clone(), group)
                .map_err(|e| RaftError::Storage(e.to_string()))?;
            let raft = RaftNode::new(
                cfg.node_id,
                raft_config.clone(),
                LocalOnlyNetwork,
                engine.group(group),
                sm,
            )
            .await
            .map_err(|e| RaftError::Group {
                group,
                msg: e.to_string(),
            })?;
            let members = BTreeMap::from([(cfg.node_id, BasicNode::new(cfg.rpc_addr.clone()))]);
            match raft.initialize(members).await {
                Ok(()) => {}
                Err(OrError::APIError(InitializeError::NotAllowed(_))) => {} // already initialised
                Err(e) => {
                    return Err(RaftError::Group {
                        group,
                        msg: e.to_string(),
                    })
                }
            }
            groups.insert(group, raft);
        }
        let registry = Arc::new(Self {
            node_id: cfg.node_id,
            groups,
            meta,
            engine,
        });
        for (group, raft) in &registry.groups {
            raft.wait(Some(Duration::from_secs(30)))
                .current_leader(cfg.node_id, "startup")
                .await
                .map_err(|e| RaftError::Group {
                    group: *group,
                    msg: format!("no leader at startup: {e}"),
                })?;
        }
        Ok(registry)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The state machines (for reads after `read_barrier`).
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// Ids of hosted groups, sorted.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut g: Vec<_> = self.groups.keys().copied().collect();
        g.sort_unstable();
        g
    }

    fn raft(&self, group: GroupId) -> Result<&RaftNode, RaftError> {
        self.groups
            .get(&group)
            .ok_or(RaftError::UnknownGroup(group))
    }

    /// True if this node currently leads `group`.
    pub fn is_leader(&self, group: GroupId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|r| r.metrics().borrow().current_leader == Some(self.node_id))
    }

    /// Proposes `cmd` to `group` and returns the state machine's response once the entry is
    /// durably committed and applied.
    pub async fn propose(&self, group: GroupId, cmd: Command) -> Result<Response, RaftError> {
        let raft = self.raft(group)?;
        match raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(OrError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    group,
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(RaftError::Group {
                group,
                msg: e.to_string(),
            }),
        }
    }

    /// Waits until a read of `group`'s local state machine is linearizable (leader confirmed,
    /// state applied up to the read index).
    pub async fn read_barrier(&self, group: GroupId) -> Result<(), RaftError> {
        let raft = self.raft(group)?;
        match raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(OrError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    group,
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(RaftError::Group {
                group,
                msg: e.to_string(),
            }),
        }
    }

    /// A linearizable read of `group`'s state.
    pub async fn query(&self, group: GroupId, q: &Query) -> Result<QueryResult, RaftError> {
        self.read_barrier(group).await?;
        Ok(self.meta.query(group, q)?)
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        for raft in self.groups.values() {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(error = %e, "raft group shutdown failed");
            }
        }
        self.engine.stop();
    }
}
