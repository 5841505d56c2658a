//! The per-node registry of Raft groups (TiKV's "store"): opens the shared database, starts one
//! openraft instance per group (groups this node is not a member of stay idle and
//! uninitialised until a leader adds them), and routes proposals and linearizable reads to the
//! group's leader: locally when this node leads, otherwise forwarded over gRPC
//! (`ControlService.Propose` / `Query`) to the leader it learns from Raft or from route hints.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_meta::{Command, MetaStore, Query, QueryResult, Response};
use cairn_rpc::pb::control_service_client::ControlServiceClient;
use cairn_rpc::pb::{ProposeRequest, QueryRequest};
use openraft::error::{ClientWriteError, InitializeError, RaftError as OrError};
use openraft::{BasicNode, Config, SnapshotPolicy};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::log_store::LogEngine;
use crate::metrics::{Outcome, RaftMetrics};
use crate::network::{GrpcNetwork, Peers};
use crate::state_machine::GroupStateMachine;
use crate::{GroupId, RaftError, RaftNode};

/// How groups come to life on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// A one-node cluster: every group is initialised with this node as its only voter.
    SingleNode,
    /// Groups are initialised by the cluster layer (`initialize_group`) or joined by a leader.
    Cluster,
}

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
    pub bootstrap: Bootstrap,
    /// This node's TLS identity: peer calls run over mutual TLS with it. `None` only for
    /// in-process tests that serve plain gRPC.
    pub trust: Option<cairn_trust::Trust>,
}

/// Candidate RPC addresses for a group this node cannot route itself (e.g. from the layout).
pub type RouteHint = Arc<dyn Fn(GroupId) -> Vec<String> + Send + Sync>;

/// Largest forwarded reply accepted (a page of 1000 listed objects with long keys).
const MAX_FORWARD_REPLY: usize = 64 << 20;

/// Deadline of one forwarded proposal or read (the leader gives up on a proposal after
/// `PROPOSE_TIMEOUT`).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a proposal or read keeps retrying while a group has no known leader.
const ROUTE_DEADLINE: Duration = Duration::from_secs(10);

/// Interval of the heartbeat rounds (leaders to followers; elections time out after 1–2 s).
const HEARTBEAT: Duration = Duration::from_millis(250);

/// A leader that has not heard from a quorum for this long (longer than an election takes
/// elsewhere) refuses new proposals.
const LEADER_LEASE: Duration = Duration::from_millis(2500);

/// Longest wait for a proposal to commit; after it the client is told the outcome is unknown.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long peer batchers wait for a heartbeat round to be queued completely.
const ROUND_LINGER: Duration = Duration::from_millis(2);

/// The answer a node gives to a forwarded request.
#[derive(Serialize, Deserialize)]
enum Forwarded<T> {
    Ok(T),
    NotLeader {
        leader: Option<u64>,
        addr: Option<String>,
    },
    Failed(String),
}

/// All Raft groups hosted on this node.
pub struct Registry {
    node_id: u64,
    rpc_addr: String,
    groups: HashMap<GroupId, RaftNode>,
    meta: MetaStore,
    metrics: RaftMetrics,
    engine: LogEngine,
    peers: Peers,
    hint: RwLock<Option<RouteHint>>,
    /// Set while this node hands its leaderships off before stopping (`handoff.rs`): no
    /// heartbeats, proposals or leader reads, so the followers' leases run out.
    draining: std::sync::atomic::AtomicBool,
}

impl Registry {
    /// Opens the node's metadata database and starts every group. With
    /// `Bootstrap::SingleNode`, initialises groups that have never run and waits until every
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
        let engine =
            LogEngine::start(db, cfg.dir.clone()).map_err(|e| RaftError::Storage(e.to_string()))?;
        let peers = match &cfg.trust {
            Some(t) => {
                Peers::new(t).map_err(|e| RaftError::Storage(format!("node TLS identity: {e}")))?
            }
            None => Peers::plaintext(),
        };

        let raft_config = Arc::new(
            Config {
                cluster_name: "cairn".into(),
                heartbeat_interval: HEARTBEAT.as_millis() as u64,
                // The registry sends every group's heartbeats in one round (see `heartbeats`).
                enable_heartbeat: false,
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
            let network = GrpcNetwork::new(group, peers.clone());
            let raft = RaftNode::new(
                cfg.node_id,
                raft_config.clone(),
                network,
                engine.group(group),
                sm,
            )
            .await
            .map_err(|e| RaftError::Group {
                group,
                msg: e.to_string(),
            })?;
            groups.insert(group, raft);
        }
        let metrics = RaftMetrics::default();
        for (group, raft) in &groups {
            metrics.spawn_watcher(*group, raft.metrics());
        }
        let registry = Arc::new(Self {
            node_id: cfg.node_id,
            rpc_addr: cfg.rpc_addr.clone(),
            groups,
            meta,
            metrics,
            engine,
            peers,
            hint: RwLock::new(None),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(heartbeats(Arc::downgrade(&registry)));
        if cfg.bootstrap == Bootstrap::SingleNode {
            let me = BTreeMap::from([(cfg.node_id, BasicNode::new(cfg.rpc_addr.clone()))]);
            for group in registry.groups() {
                // Checking first keeps openraft from logging a refused initialisation.
                if !registry.is_initialized(group).await? {
                    registry.initialize_group(group, me.clone()).await?;
                }
            }
            for group in registry.groups() {
                registry
                    .wait_for_leader(group, Duration::from_secs(30))
                    .await?;
            }
        }
        Ok(registry)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn rpc_addr(&self) -> &str {
        &self.rpc_addr
    }

    /// The node-wide gRPC channel pool.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The state machines (for local reads; use `query` for linearizable ones).
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// Ids of hosted groups, sorted.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut g: Vec<_> = self.groups.keys().copied().collect();
        g.sort_unstable();
        g
    }

    /// The openraft handle of `group`, if hosted.
    pub fn raft_handle(&self, group: GroupId) -> Option<RaftNode> {
        self.groups.get(&group).cloned()
    }

    fn raft(&self, group: GroupId) -> Result<&RaftNode, RaftError> {
        self.groups
            .get(&group)
            .ok_or(RaftError::UnknownGroup(group))
    }

    /// Registers the Raft metrics (`cairn_raft_*`, see [`crate::metrics`]) in `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let groups = self
            .groups()
            .into_iter()
            .filter_map(|g| self.groups.get(&g).map(|r| (g, r.metrics())))
            .collect();
        self.metrics
            .register(registry, self.node_id, groups, self.peers.batch_stats());
        self.engine.health().register(registry);
    }

    /// The Raft log writer's health and free-space floor (see `log_health.rs`).
    pub fn log_health(&self) -> &crate::LogHealth {
        self.engine.health()
    }

    /// Groups whose openraft instance on this node has stopped with a fatal error (a failed
    /// log or state-machine write, for instance); they stay stopped until the node restarts.
    pub fn stopped_groups(&self) -> Vec<GroupId> {
        let mut out: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, r)| r.metrics().borrow().running_state.is_err())
            .map(|(g, _)| *g)
            .collect();
        out.sort_unstable();
        out
    }

    /// [`Registry::propose_local`], counted in the proposal metrics (outcome and, when
    /// committed, the time it took).
    async fn propose_measured(&self, group: GroupId, cmd: Command) -> Result<Response, RaftError> {
        let started = Instant::now();
        let result = self.propose_local(group, cmd).await;
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(RaftError::NotLeader { .. }) => Outcome::NotLeader,
            Err(RaftError::NoQuorum { .. }) => Outcome::NoQuorum,
            Err(RaftError::Timeout { .. }) => Outcome::Timeout,
            Err(_) => Outcome::Error,
        };
        self.metrics.proposal(group, outcome, started.elapsed());
        result
    }

    /// Sets where to send requests for groups this node does not know a leader of.
    pub fn set_route_hint(&self, hint: RouteHint) {
        *self.hint.write() = Some(hint);
    }

    /// Initialises `group` with `members` as voters, unless it was initialised before.
    pub async fn initialize_group(
        &self,
        group: GroupId,
        members: BTreeMap<u64, BasicNode>,
    ) -> Result<(), RaftError> {
        match self.raft(group)?.initialize(members).await {
            Ok(()) => Ok(()),
            Err(OrError::APIError(InitializeError::NotAllowed(_))) => Ok(()), // already initialised
            Err(e) => Err(RaftError::Group {
                group,
                msg: e.to_string(),
            }),
        }
    }

    /// Whether `group` has ever been initialised (or joined) on this node.
    pub async fn is_initialized(&self, group: GroupId) -> Result<bool, RaftError> {
        self.raft(group)?
            .is_initialized()
            .await
            .map_err(|e| RaftError::Group {
                group,
                msg: e.to_string(),
            })
    }

    /// Waits until `group` has a leader (any node).
    pub async fn wait_for_leader(
        &self,
        group: GroupId,
        timeout: Duration,
    ) -> Result<u64, RaftError> {
        let raft = self.raft(group)?;
        let mut rx = raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = rx.borrow().current_leader {
                return Ok(l);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(RaftError::Group {
                        group,
                        msg: "no leader elected in time".into(),
                    })
                }
            }
        }
    }

    /// True if this node currently leads `group`.
    pub fn is_leader(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|r| {
            let m = r.metrics();
            let m = m.borrow();
            // A leader that removed itself from the voters steps down, but its committed vote
            // still names it (openraft 0.9) until a member contacts it again: not a leader.
            m.current_leader == Some(self.node_id)
                && m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == self.node_id)
        })
    }

    /// The current leader of `group` as this node sees it.
    pub fn leader_of(&self, group: GroupId) -> Option<u64> {
        let leader = self
            .groups
            .get(&group)
            .and_then(|r| r.metrics().borrow().current_leader)?;
        // Not itself once it left the voters (see `is_leader`).
        (leader != self.node_id || self.is_leader(group)).then_some(leader)
    }

    /// `NoQuorum` when this node leads `group` (with other voters) but has not heard from a
    /// quorum within `LEADER_LEASE`: openraft 0.9 leaders do not step down by themselves, and
    /// a proposal made now would wait until the partition heals.
    fn check_quorum(&self, group: GroupId, raft: &RaftNode) -> Result<(), RaftError> {
        let m = raft.metrics();
        let m = m.borrow();
        if m.current_leader != Some(self.node_id)
            || m.membership_config.membership().voter_ids().count() <= 1
        {
            return Ok(());
        }
        match m.millis_since_quorum_ack {
            Some(millis) if millis > LEADER_LEASE.as_millis() as u64 => {
                Err(RaftError::NoQuorum { group, millis })
            }
            _ => Ok(()),
        }
    }

    /// Whether this node is handing its leaderships off (see `handoff.rs`).
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts (or ends) the hand-off mode: while set, groups this node leads send no
    /// heartbeats and refuse proposals and leader reads as `NotLeader` without a known leader,
    /// so callers retry until a successor is elected.
    pub(crate) fn set_draining(&self, on: bool) {
        self.draining.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// `NotLeader` (no known leader) while draining or while the log writer is paused for
    /// disk space, and leading `group`: this node is about to give it up (it sends no
    /// heartbeats, so the other replicas elect a leader that can write).
    fn check_draining(&self, group: GroupId) -> Result<(), RaftError> {
        if (self.is_draining() || self.engine.health().is_paused()) && self.is_leader(group) {
            return Err(RaftError::NotLeader {
                group,
                leader: None,
                addr: None,
            });
        }
        Ok(())
    }

    /// Proposes `cmd` to `group` on this node only; `NotLeader` if it does not lead.
    pub async fn propose_local(&self, group: GroupId, cmd: Command) -> Result<Response, RaftError> {
        let raft = self.raft(group)?;
        self.check_draining(group)?;
        self.check_quorum(group, raft)?;
        let written = tokio::time::timeout(PROPOSE_TIMEOUT, raft.client_write(cmd))
            .await
            .map_err(|_| RaftError::Timeout {
                group,
                secs: PROPOSE_TIMEOUT.as_secs(),
            })?;
        match written {
            Ok(resp) => Ok(resp.data),
            Err(OrError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    group,
                    leader: f.leader_id,
                    addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(e) => Err(RaftError::Group {
                group,
                msg: e.to_string(),
            }),
        }
    }

    /// Waits until a read of `group`'s local state machine is linearizable (leader confirmed,
    /// state applied up to the read index); `NotLeader` if this node does not lead.
    pub async fn read_barrier(&self, group: GroupId) -> Result<(), RaftError> {
        let raft = self.raft(group)?;
        self.check_draining(group)?;
        match raft.ensure_linearizable().await {
            Ok(_) => Ok(()),
            Err(OrError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(RaftError::NotLeader {
                    group,
                    leader: f.leader_id,
                    addr: f.leader_node.map(|n| n.addr),
                })
            }
            Err(e) => Err(RaftError::Group {
                group,
                msg: e.to_string(),
            }),
        }
    }

    /// Whether this node holds a replica of `group` (a voter or learner in its membership).
    pub fn is_replica(&self, group: GroupId) -> bool {
        self.groups.get(&group).is_some_and(|r| {
            r.metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&self.node_id)
                .is_some()
        })
    }

    /// A read that may be stale (the "stale-ok" option): served from this node's replica of
    /// `group` without asking the leader, as of what it has applied; a node without a replica
    /// asks the leader like `query`.
    pub async fn query_stale(&self, group: GroupId, q: &Query) -> Result<QueryResult, RaftError> {
        if self.is_replica(group) {
            return Ok(self.meta.query(group, q)?);
        }
        self.query(group, q).await
    }

    /// A linearizable read on this node only; `NotLeader` if it does not lead.
    pub async fn query_local(&self, group: GroupId, q: &Query) -> Result<QueryResult, RaftError> {
        self.read_barrier(group).await?;
        Ok(self.meta.query(group, q)?)
    }

    /// Proposes `cmd` to `group` and returns the state machine's response once the entry is
    /// durably committed and applied, wherever the group's leader is. Retries only when the
    /// command was certainly not applied (no leader, or a node that does not lead).
    pub async fn propose(&self, group: GroupId, cmd: Command) -> Result<Response, RaftError> {
        let payload = rmp_serde::to_vec(&cmd).map_err(|e| RaftError::Storage(e.to_string()))?;
        self.route(group, |reg, target| {
            let cmd = cmd.clone();
            let payload = payload.clone();
            async move {
                match target {
                    None => reg.propose_measured(group, cmd).await,
                    Some(addr) => {
                        let mut c = ControlServiceClient::new(reg.channel(&addr)?)
                            .max_decoding_message_size(MAX_FORWARD_REPLY);
                        let call = c.propose(timed(ProposeRequest {
                            group,
                            command: payload,
                        }));
                        let reply = cairn_rpc::deadline(FORWARD_TIMEOUT, call)
                            .await
                            .map_err(|s| forward_error(&addr, s))?;
                        unwrap_forwarded(group, &addr, &reply.into_inner().response)
                    }
                }
            }
        })
        .await
    }

    /// A linearizable read of `group`'s state, wherever the group's leader is.
    pub async fn query(&self, group: GroupId, q: &Query) -> Result<QueryResult, RaftError> {
        let payload = rmp_serde::to_vec(q).map_err(|e| RaftError::Storage(e.to_string()))?;
        self.route(group, |reg, target| {
            let payload = payload.clone();
            async move {
                match target {
                    None => reg.query_local(group, q).await,
                    Some(addr) => {
                        let mut c = ControlServiceClient::new(reg.channel(&addr)?)
                            .max_decoding_message_size(MAX_FORWARD_REPLY);
                        let call = c.query(timed(QueryRequest {
                            group,
                            query: payload,
                        }));
                        let reply = cairn_rpc::deadline(FORWARD_TIMEOUT, call)
                            .await
                            .map_err(|s| forward_error(&addr, s))?;
                        unwrap_forwarded(group, &addr, &reply.into_inner().result)
                    }
                }
            }
        })
        .await
    }

    fn channel(&self, addr: &str) -> Result<cairn_rpc::PeerChannel, RaftError> {
        self.peers.channel(addr).map_err(|e| RaftError::Forward {
            addr: addr.to_string(),
            msg: e.to_string(),
        })
    }

    /// Runs `attempt` against this node (`None`) or a leader address until it succeeds or fails
    /// for a reason other than "not the leader".
    async fn route<'a, T, F, Fut>(&'a self, group: GroupId, attempt: F) -> Result<T, RaftError>
    where
        F: Fn(&'a Self, Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T, RaftError>> + 'a,
    {
        let deadline = Instant::now() + ROUTE_DEADLINE;
        let mut target: Option<String> = None;
        // Addresses that refused a connection during this request.
        let mut dead: Vec<String> = Vec::new();
        let mut hinted = 0usize;
        loop {
            let (leader_addr, last_err) = match attempt(self, target.clone()).await {
                Err(RaftError::NotLeader { addr, leader, .. }) => (
                    addr.clone(),
                    RaftError::NotLeader {
                        group,
                        leader,
                        addr,
                    },
                ),
                Err(RaftError::Unreachable { addr, msg }) => {
                    dead.push(addr.clone());
                    (None, RaftError::Unreachable { addr, msg })
                }
                other => return other,
            };
            if Instant::now() > deadline {
                return Err(last_err);
            }
            target = match leader_addr {
                Some(a)
                    if a != self.rpc_addr
                        && target.as_deref() != Some(a.as_str())
                        && !dead.contains(&a) =>
                {
                    Some(a)
                }
                _ => {
                    // No usable leader address: try the hinted replicas not known to be down,
                    // in turn; then wait for an election and start over.
                    let hints = self
                        .hint
                        .read()
                        .as_ref()
                        .map(|h| h(group))
                        .unwrap_or_default();
                    let hints: Vec<String> = hints
                        .into_iter()
                        .filter(|a| *a != self.rpc_addr && !dead.contains(a))
                        .collect();
                    if hinted < hints.len() {
                        hinted += 1;
                        Some(hints[hinted - 1].clone())
                    } else {
                        hinted = 0;
                        dead.clear();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        None
                    }
                }
            };
        }
    }

    /// Serves a forwarded proposal (`ControlService.Propose`): msgpack in, msgpack out.
    pub async fn serve_propose(&self, group: GroupId, command: &[u8]) -> Vec<u8> {
        let reply = match rmp_serde::from_slice::<Command>(command) {
            Err(e) => Forwarded::Failed(format!("bad command: {e}")),
            Ok(cmd) => forwarded(self.propose_measured(group, cmd).await),
        };
        rmp_serde::to_vec(&reply).unwrap_or_default()
    }

    /// Serves a forwarded read (`ControlService.Query`).
    pub async fn serve_query(&self, group: GroupId, query: &[u8]) -> Vec<u8> {
        let reply = match rmp_serde::from_slice::<Query>(query) {
            Err(e) => Forwarded::Failed(format!("bad query: {e}")),
            Ok(q) => forwarded(self.query_local(group, &q).await),
        };
        rmp_serde::to_vec(&reply).unwrap_or_default()
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

/// A forwarded request with a deadline, so a hung leader cannot hold a client forever.
fn timed<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(FORWARD_TIMEOUT);
    req
}

/// A gRPC failure talking to `addr`: a failed connection means the request was never sent.
fn forward_error(addr: &str, s: tonic::Status) -> RaftError {
    let not_sent = s.code() == tonic::Code::Unavailable
        && (s.message().contains("connect") || s.message().contains("Connection refused"));
    if not_sent {
        RaftError::Unreachable {
            addr: addr.to_string(),
            msg: s.message().to_string(),
        }
    } else {
        RaftError::Forward {
            addr: addr.to_string(),
            msg: s.message().to_string(),
        }
    }
}

fn forwarded<T>(r: Result<T, RaftError>) -> Forwarded<T> {
    match r {
        Ok(v) => Forwarded::Ok(v),
        Err(RaftError::NotLeader { leader, addr, .. }) => Forwarded::NotLeader { leader, addr },
        Err(e) => Forwarded::Failed(e.to_string()),
    }
}

fn unwrap_forwarded<T: serde::de::DeserializeOwned>(
    group: GroupId,
    addr: &str,
    bytes: &[u8],
) -> Result<T, RaftError> {
    match rmp_serde::from_slice::<Forwarded<T>>(bytes) {
        Ok(Forwarded::Ok(v)) => Ok(v),
        Ok(Forwarded::NotLeader { leader, addr }) => Err(RaftError::NotLeader {
            group,
            leader,
            addr,
        }),
        Ok(Forwarded::Failed(msg)) => Err(RaftError::Forward {
            addr: addr.to_string(),
            msg,
        }),
        Err(e) => Err(RaftError::Forward {
            addr: addr.to_string(),
            msg: format!("bad reply: {e}"),
        }),
    }
}

/// Sends the heartbeats of every group this node leads in one instant, every `HEARTBEAT`, so
/// the peer batchers carry them in one call per peer (TiKV merges ticks the same way). Stops
/// when the registry is gone.
async fn heartbeats(registry: std::sync::Weak<Registry>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(reg) = registry.upgrade() else {
            return;
        };
        if reg.is_draining() || reg.engine.health().is_paused() {
            // Handing off, or unable to write the log: the followers' leases must run out so
            // they elect a leader that can commit (see `handoff.rs`, `log_health.rs`).
            continue;
        }
        reg.peers.open_round(ROUND_LINGER);
        for (group, raft) in &reg.groups {
            if raft.metrics().borrow().current_leader != Some(reg.node_id) {
                continue;
            }
            if let Err(e) = raft.trigger().heartbeat().await {
                tracing::debug!(group, error = %e, "heartbeat not sent");
            }
        }
    }
}
