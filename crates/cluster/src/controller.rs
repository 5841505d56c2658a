//! Controllers, run on every node once it belongs to a cluster, as one worker (`controller`,
//! the `cairn_worker::Worker` shape; a pass every 500 ms). Each pass:
//! - refreshes the node's cluster view; registers the node (`ControlService.RegisterNode`,
//!   with its inventory) and sends its heartbeat with fresh stats every
//!   `HEARTBEAT_INTERVAL_SECS` (`ControlService.Heartbeat`, to the system leader first);
//! - on the system-group leader: records gossip's health verdicts (up/suspect/down) in the
//!   catalog, adds registered nodes to the system group (learners, then voters up to the
//!   desired count, replacing voters gossip reports down) and writes a new layout version when
//!   the set of active nodes changes;
//! - for every partition: initialises its group at layout version 1 (on its first replica), and
//!   on the partition's leader moves replicas to match the layout the TiKV way: add the new
//!   replica as a learner, let it catch up, then switch the voter set.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_layout::{LabelSelector, NodeSpec, PlacementPolicy};
use cairn_meta::model::{ClusterConfig, LayoutRecord, NodeHealth, NodeRecord, NodeState};
use cairn_meta::placement::{partition_group, SYSTEM_GROUP};
use cairn_meta::Command;
use cairn_raft::Registry;
use cairn_rpc::pb::HeartbeatRequest;
use openraft::BasicNode;
use parking_lot::Mutex;
use tracing::Instrument;

use crate::control_client::{heartbeat, register_node, RetryPolicy};
use crate::gossip::{Gossip, Health};
use crate::{ClusterSettings, ClusterView};

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn meminfo_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// (capacity, free) bytes of the filesystem holding `path`.
fn disk_stats(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return (0, 0);
    };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return (0, 0);
    }
    let frsize = st.f_frsize as u64;
    (st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize)
}

/// This node's registration record with fresh inventory.
pub fn inventory_record(s: &ClusterSettings, state: NodeState) -> NodeRecord {
    let (cap, free) = disk_stats(&s.data_dir);
    NodeRecord {
        node_id: s.node_id.clone(),
        raft_id: s.raft_id,
        rpc_addr: s.rpc_addr.clone(),
        api_addr: s.api_addr.clone(),
        zone: s.zone.clone(),
        labels: s.labels.clone(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_bytes: meminfo_total(),
        disk_capacity_bytes: cap,
        disk_free_bytes: free,
        state,
        registered_ms: now_ms(),
        health: NodeHealth::Up,
        last_heartbeat_ms: now_ms(),
        health_changed_ms: 0,
        maintenance: false,
    }
}

/// Where this node sends control calls (registration, heartbeats): the system leader first,
/// then the other system-group members, the seeds, and itself (which forwards).
fn control_addrs(s: &ClusterSettings, reg: &Registry) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |a: &str| {
        if !a.is_empty() && !out.iter().any(|x| x == a) {
            out.push(a.to_string());
        }
    };
    if let Some(raft) = reg.raft_handle(SYSTEM_GROUP) {
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if let Some(node) = m
            .current_leader
            .and_then(|l| membership.get_node(&l).cloned())
        {
            push(&node.addr);
        }
        for (_, node) in membership.nodes() {
            push(&node.addr);
        }
    }
    for seed in &s.seeds {
        push(seed);
    }
    push(&s.rpc_addr);
    out
}

/// Registers this node (at start, and again if the catalog lost it or holds other addresses,
/// zone or labels for it), then sends heartbeats.
async fn report(
    s: &ClusterSettings,
    reg: &Registry,
    view: &ClusterView,
    registered: &mut bool,
) -> bool {
    if let Some(me) = view.node(&s.node_id) {
        if me.api_addr != s.api_addr
            || me.rpc_addr != s.rpc_addr
            || me.zone != s.zone
            || me.labels != s.labels
        {
            *registered = false;
        }
    }
    let addrs = control_addrs(s, reg);
    let policy = RetryPolicy::default();
    if !*registered {
        let record = inventory_record(s, NodeState::Active);
        match register_node(reg.peers(), &addrs, &s.cluster_name, &record, policy).await {
            Ok(_) => {
                *registered = true;
                return true;
            }
            Err(e) => {
                tracing::debug!(error = %e.message(), "registration not recorded yet");
                return false;
            }
        }
    }
    let (cap, free) = disk_stats(&s.data_dir);
    let req = HeartbeatRequest {
        node_id: s.node_id.clone(),
        disk_capacity_bytes: cap,
        disk_free_bytes: free,
    };
    match heartbeat(reg.peers(), &addrs, req, policy).await {
        Ok(_) => true,
        Err(e) if e.code() == tonic::Code::NotFound => {
            *registered = false;
            false
        }
        Err(e) => {
            tracing::debug!(error = %e.message(), "heartbeat not recorded");
            false
        }
    }
}

/// The placement policy of a cluster config (selectors were validated when configured; one
/// that no longer parses is skipped with a warning rather than stopping placement).
pub fn placement_policy(c: &ClusterConfig) -> PlacementPolicy {
    let parse = |v: &[String]| -> Vec<LabelSelector> {
        v.iter()
            .filter_map(|s| match s.parse() {
                Ok(sel) => Some(sel),
                Err(e) => {
                    tracing::warn!(selector = %s, error = %e, "ignoring a placement selector");
                    None
                }
            })
            .collect()
    };
    PlacementPolicy {
        require: parse(&c.placement_require),
        prefer: parse(&c.placement_prefer),
        avoid: parse(&c.placement_avoid),
    }
}

/// Layout for `nodes` (capacity-weighted, zones, placement policy, minimal movement from
/// `previous`); `states` (`heal::placement_states`) says how each node is placed, a node
/// missing there is placed by its catalog state.
pub fn compute_layout(
    nodes: &[NodeRecord],
    states: &BTreeMap<String, cairn_layout::NodeState>,
    partitions: u32,
    replication: usize,
    policy: &PlacementPolicy,
    previous: Option<&LayoutRecord>,
) -> Option<LayoutRecord> {
    // Nodes that have not reported their disk yet weigh as much as the largest known one.
    let known = nodes
        .iter()
        .map(|n| n.disk_capacity_bytes)
        .filter(|c| *c > 1)
        .max()
        .unwrap_or(1);
    let specs: Vec<NodeSpec> = nodes
        .iter()
        .map(|n| NodeSpec {
            id: n.node_id.clone(),
            capacity: if n.disk_capacity_bytes > 1 {
                n.disk_capacity_bytes
            } else {
                known
            },
            zone: n.zone.clone(),
            labels: n.labels.clone(),
            state: states.get(&n.node_id).copied().unwrap_or(match n.state {
                NodeState::Active | NodeState::Joining => cairn_layout::NodeState::Active,
                NodeState::Draining => cairn_layout::NodeState::Draining,
                NodeState::Removed => cairn_layout::NodeState::Removed,
            }),
        })
        .collect();
    let prev = previous.map(|p| cairn_layout::Layout {
        version: p.version,
        partitions,
        replication: p.replication,
        assignments: p.assignments.clone(),
    });
    match cairn_layout::compute_layout(&specs, partitions, replication, policy, prev.as_ref()) {
        Ok(l) => Some(LayoutRecord {
            version: l.version,
            replication: l.replication,
            assignments: l.assignments,
            created_ms: now_ms(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "layout could not be computed");
            None
        }
    }
}

/// The controller worker (`controller`): one pass per step, a pass every 500 ms; items =
/// passes. Run it with `cairn_worker::Workers::spawn`.
pub struct Controller {
    s: ClusterSettings,
    reg: Arc<Registry>,
    view: Arc<ClusterView>,
    gossip: Option<Arc<Gossip>>,
    /// Partition groups whose replica move is in flight (on a spawned task).
    moving: Arc<Mutex<HashSet<u64>>>,
    /// The chunk layer, through which moves copy a partition's chunks to its new holders.
    chunks: Option<Arc<cairn_chunk::ReplicatedChunks>>,
    last_heartbeat: Option<Instant>,
    registered: bool,
    /// The layout settings of the configuration the layout was last checked against.
    layout_inputs: Option<LayoutInputs>,
    /// The replica moves last published in gossip.
    published_moves: Option<u64>,
}

impl Controller {
    /// The controllers of this node; installs the registry's route hint (the view's replicas
    /// of a group) right away.
    pub fn new(
        s: ClusterSettings,
        reg: Arc<Registry>,
        view: Arc<ClusterView>,
        gossip: Option<Arc<Gossip>>,
    ) -> Self {
        {
            let view = view.clone();
            reg.set_route_hint(Arc::new(move |g| view.group_hint(g)));
        }
        Self {
            s,
            reg,
            view,
            gossip,
            moving: Arc::default(),
            chunks: None,
            last_heartbeat: None,
            registered: false,
            layout_inputs: None,
            published_moves: None,
        }
    }

    /// Lets partition moves copy chunks through `chunks` (without it a move is reported done
    /// once the voters changed, and chunk sync alone fills the new holders).
    pub fn with_chunks(mut self, chunks: Arc<cairn_chunk::ReplicatedChunks>) -> Self {
        self.chunks = Some(chunks);
        self
    }

    /// One pass of every controller.
    async fn pass(&mut self) {
        let (s, reg, view) = (&self.s, &self.reg, &self.view);
        view.refresh(reg);
        if self
            .last_heartbeat
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(s.heartbeat_secs))
            && report(s, reg, view, &mut self.registered).await
        {
            self.last_heartbeat = Some(Instant::now());
        }
        if reg.is_leader(SYSTEM_GROUP) {
            if let Some(g) = self.gossip.as_deref() {
                health_step(reg, view, g).await;
            }
            system_membership(s, reg, view, self.gossip.as_deref()).await;
            layout_step(
                s,
                reg,
                view,
                self.gossip.as_deref(),
                &mut self.layout_inputs,
            )
            .await;
        } else {
            // Leading again later starts from what the layout says.
            self.layout_inputs = None;
        }
        partitions_step(s, reg, view, self.chunks.as_ref(), &self.moving).await;
        if let Some(g) = self.gossip.as_deref() {
            view.moves().publish(g, &mut self.published_moves);
        }
    }
}

#[async_trait::async_trait]
impl cairn_worker::Worker for Controller {
    fn name(&self) -> &'static str {
        "controller"
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(500)
    }

    async fn step(
        &mut self,
        progress: &cairn_worker::Progress,
    ) -> Result<cairn_worker::Step, cairn_worker::WorkerError> {
        self.pass().await;
        progress.items(1);
        progress.queue(self.moving.lock().len() as u64);
        Ok(cairn_worker::Step::Idle)
    }
}

/// Adds registered nodes to the system group; promotes learners to voters up to the desired
/// count once they have caught up.
async fn system_membership(
    s: &ClusterSettings,
    reg: &Registry,
    view: &ClusterView,
    gossip: Option<&Gossip>,
) {
    let Some(raft) = reg.raft_handle(SYSTEM_GROUP) else {
        return;
    };
    // The cluster's setting, once recorded; this node's until then.
    let desired = reg
        .meta()
        .cluster_config(SYSTEM_GROUP)
        .ok()
        .flatten()
        .map_or(s.desired_voters, |c| c.desired_voters);
    let metrics = raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    let known: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    for n in view.nodes().values() {
        if n.state == NodeState::Removed || known.contains(&n.raft_id) {
            continue;
        }
        tracing::info!(node = %n.node_id, "adding node to the system group as a learner");
        if let Err(e) = raft
            .add_learner(n.raft_id, BasicNode::new(n.rpc_addr.clone()), false)
            .await
        {
            tracing::warn!(node = %n.node_id, error = %e, "add learner failed");
        }
    }
    // Voters: keep the healthy ones, replace voters gossip reports down with caught-up,
    // healthy learners, and fill up to the desired count (seed 001 §1.3).
    let nodes = view.nodes();
    let health = |id: u64| -> Health {
        match (gossip, nodes.values().find(|n| n.raft_id == id)) {
            (Some(g), Some(n)) => g.health(&n.node_id),
            _ => Health::Unknown,
        }
    };
    let last = metrics.last_log_index.unwrap_or(0);
    // A removed node gives up its vote as soon as a replacement is there.
    let removed = |id: u64| {
        nodes
            .values()
            .any(|n| n.raft_id == id && n.state == NodeState::Removed)
    };
    let candidates: Vec<u64> = membership
        .learner_ids()
        .filter(|id| !removed(*id))
        .filter(|id| {
            metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .is_some_and(|m| m.index + 10 >= last)
        })
        .filter(|id| match health(*id) {
            Health::Up => true,
            // Without gossip (one node) there is no health signal: caught up is enough.
            Health::Unknown => gossip.is_none(),
            _ => false,
        })
        .collect();
    let mut new_voters: BTreeSet<u64> = voters
        .iter()
        .copied()
        .filter(|id| health(*id) != Health::Down && !removed(*id))
        .collect();
    for id in candidates {
        if new_voters.len() >= desired {
            break;
        }
        new_voters.insert(id);
    }
    // Fewer voters wanted (the cluster config changed): demote others than this leader.
    while new_voters.len() > desired.max(1) {
        let Some(id) = new_voters.iter().rev().copied().find(|id| *id != s.raft_id) else {
            break;
        };
        new_voters.remove(&id);
    }
    // Never shrink the voter set for lack of replacements: a down voter still holds its vote.
    if new_voters == voters || new_voters.len() < voters.len().min(desired) {
        return;
    }
    tracing::info!(?voters, ?new_voters, "changing system-group voters");
    // `retain`: demoted voters stay learners and can be promoted again when they return.
    if let Err(e) = raft.change_membership(new_voters, true).await {
        tracing::warn!(error = %e, "system voter change failed");
    }
}

/// Records the failure detector's verdicts in the catalog (audited), so every node and the
/// status show which nodes are up, suspect or down.
async fn health_step(reg: &Registry, view: &ClusterView, gossip: &Gossip) {
    for n in view.nodes().values() {
        if n.state == NodeState::Removed {
            continue;
        }
        let health = match gossip.health(&n.node_id) {
            Health::Up => NodeHealth::Up,
            Health::Suspect => NodeHealth::Suspect,
            Health::Down => NodeHealth::Down,
            // Not seen by gossip yet (just started): no verdict.
            Health::Unknown => continue,
        };
        if health == n.health {
            continue;
        }
        tracing::info!(node = %n.node_id, from = n.health.as_str(), to = health.as_str(), "node health changed");
        let cmd = Command::SetNodeHealth {
            node_id: n.node_id.clone(),
            health,
            at_ms: now_ms(),
        };
        if let Err(e) = reg.propose(SYSTEM_GROUP, cmd).await {
            tracing::debug!(error = %e, "node health not recorded");
        }
    }
}

/// The settings of the cluster configuration a layout is computed from: replication factor and
/// placement policy (require, prefer, avoid).
type LayoutInputs = (usize, Vec<String>, Vec<String>, Vec<String>);

fn layout_inputs(c: &ClusterConfig) -> LayoutInputs {
    (
        c.replication,
        c.placement_require.clone(),
        c.placement_prefer.clone(),
        c.placement_avoid.clone(),
    )
}

/// Writes a new layout when the set of nodes it should place differs from the current
/// layout's (a node joined, drains, was removed, or was down longer than `REPAIR_GRACE_SECS`
/// and is re-homed: see `heal`), or when the configuration's replication factor or placement
/// policy changed since `seen` (on the first pass of a new leader: when the layout's
/// replication is not the configured one).
async fn layout_step(
    s: &ClusterSettings,
    reg: &Registry,
    view: &ClusterView,
    gossip: Option<&Gossip>,
    seen: &mut Option<LayoutInputs>,
) {
    let mut nodes: Vec<NodeRecord> = view.nodes().into_values().collect();
    // A catalog verdict this leader's failure detector does not confirm (a new leader whose
    // gossip has not judged the node yet, a node back while no leader recorded it) is not
    // acted on: only a node both say is down can be re-homed.
    if let Some(g) = gossip {
        for n in &mut nodes {
            if n.health == NodeHealth::Down && g.health(&n.node_id) != Health::Down {
                // Down, but not long enough: it keeps its slots and gets no new ones.
                n.health_changed_ms = now_ms();
            }
        }
    }
    let current = view.layout();
    let config = reg.meta().cluster_config(SYSTEM_GROUP).ok().flatten();
    let (replication, policy) = match &config {
        Some(c) => (c.replication, placement_policy(c)),
        None => (s.replication, PlacementPolicy::default()),
    };
    let grace = crate::heal::Grace {
        grace_ms: (s.repair_grace_secs as i64).saturating_mul(1000),
        now_ms: now_ms(),
    };
    let states = crate::heal::placement_states(&nodes, current.as_ref(), replication, grace);
    let expected = crate::heal::expected_placed(&states, current.as_ref());
    if expected.is_empty() {
        // Nobody has registered yet (the first pass after start): nothing to place.
        return;
    }
    let inputs = config.as_ref().map(layout_inputs);
    if let Some(cur) = &current {
        let placed: BTreeSet<String> = cur.assignments.iter().flatten().cloned().collect();
        let settings_changed = match (seen.as_ref(), inputs.as_ref()) {
            (Some(a), Some(b)) => a != b,
            // A new leader: recompute only if a replication change was not applied yet.
            (None, Some(i)) => cur.replication != i.0.min(expected.len()),
            _ => false,
        };
        if placed == expected && !settings_changed {
            seen.clone_from(&inputs);
            return;
        }
        // A cancelled rebalance's layout stands until the nodes to place change (or the
        // settings do): recomputing now would plan the cancelled moves again.
        let held = reg
            .meta()
            .rebalance_plan(SYSTEM_GROUP)
            .is_ok_and(|p| p.holds(cur.version, &expected));
        if held && !settings_changed {
            seen.clone_from(&inputs);
            return;
        }
    }
    let Some(next) = compute_layout(
        &nodes,
        &states,
        s.partitions,
        replication,
        &policy,
        current.as_ref(),
    ) else {
        return;
    };
    if current
        .as_ref()
        .is_some_and(|c| c.assignments == next.assignments)
    {
        seen.clone_from(&inputs);
        return;
    }
    let rehomed: Vec<&str> = states
        .iter()
        .filter(|(id, p)| {
            **p == cairn_layout::NodeState::Removed
                && nodes
                    .iter()
                    .any(|n| &n.node_id == *id && n.state != NodeState::Removed)
        })
        .map(|(id, _)| id.as_str())
        .collect();
    tracing::info!(version = next.version, ?rehomed, "writing a new layout");
    match reg
        .propose(SYSTEM_GROUP, Command::SetLayout { layout: next })
        .await
    {
        // Checked against these settings; a failure retries on the next pass.
        Ok(_) => seen.clone_from(&inputs),
        Err(e) => tracing::warn!(error = %e, "layout update failed"),
    }
}

/// Referenced chunks listed (and asked about) per batch when a move copies chunks.
const COPY_BATCH: usize = 256;

/// What a partition move needs besides the Raft handle (cloned into its task).
struct MoveJob {
    group: u64,
    partition: u32,
    raft: cairn_raft::RaftNode,
    /// The layout's replicas (node id → Raft member) and ids, in layout order.
    members: BTreeMap<u64, BasicNode>,
    target_ids: Vec<String>,
    /// Voters now, and where the plan says the move started (the holders of the data).
    voters: BTreeSet<u64>,
    from_ids: Vec<String>,
}

/// Initialises partition groups at layout v1, and on each partition's leader moves replicas
/// to match the layout within the rebalance plan (`cairn_meta::rebalance`): a move starts only
/// once the system group granted it a slot (`RebalanceStart`: refused while paused or at
/// `rebalance.max_moves`), adds the new replicas as learners, changes the voters, copies the
/// partition's chunks to the new holders, and only then reports it done (`RebalanceFinish`).
/// A move in flight whose leader changed is continued by the new leader without a new slot.
async fn partitions_step(
    s: &ClusterSettings,
    reg: &Arc<Registry>,
    view: &Arc<ClusterView>,
    chunks: Option<&Arc<cairn_chunk::ReplicatedChunks>>,
    moving: &Arc<Mutex<HashSet<u64>>>,
) {
    let Some(layout) = view.layout() else { return };
    let nodes = view.nodes();
    // This node's copy of the system group (possibly a little stale: the state machine has
    // the last word on every slot, this only saves proposals that would be refused).
    let plan = reg.meta().rebalance_plan(SYSTEM_GROUP).unwrap_or_default();
    view.moves().set_plan_counts(plan.counts());
    let max_moves = cairn_meta::rebalance::max_moves(
        reg.meta()
            .cluster_config(SYSTEM_GROUP)
            .ok()
            .flatten()
            .as_ref(),
    );
    let mut slots_seen_free = max_moves.saturating_sub(plan.counts().moving);
    let name_of = |id: &u64| {
        nodes
            .values()
            .find(|n| n.raft_id == *id)
            .map_or_else(|| id.to_string(), |n| n.node_id.clone())
    };
    for (p, replicas) in layout.assignments.iter().enumerate() {
        let group = partition_group(p as u32);
        let members: BTreeMap<u64, BasicNode> = replicas
            .iter()
            .filter_map(|id| {
                nodes
                    .get(id)
                    .map(|n| (n.raft_id, BasicNode::new(n.rpc_addr.clone())))
            })
            .collect();
        if members.len() != replicas.len() {
            continue;
        }
        if layout.version == 1 && replicas.first() == Some(&s.node_id) {
            match reg.is_initialized(group).await {
                Ok(false) => {
                    if let Err(e) = reg.initialize_group(group, members.clone()).await {
                        tracing::warn!(group, error = %e, "partition group initialisation failed");
                    }
                    continue;
                }
                Ok(true) => {}
                Err(_) => continue,
            }
        }
        if !reg.is_leader(group) || moving.lock().contains(&group) {
            continue;
        }
        let Some(raft) = reg.raft_handle(group) else {
            continue;
        };
        let membership = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        if !voters.contains(&reg.node_id()) {
            // A leader that moved itself out has stepped down (its metrics lag): the group's
            // next leader continues, and no slot is claimed for a move this node cannot make.
            continue;
        }
        let target: BTreeSet<u64> = members.keys().copied().collect();
        let partition = p as u32;
        let entry = plan.moves.get(&partition);
        let in_flight = entry.is_some_and(|m| m.state == cairn_meta::rebalance::MoveState::Moving);
        // A planned partition whose voters are already the target (moved without the plan)
        // still needs its chunks copied: it claims a slot like any other.
        if voters == target && !entry.is_some_and(|m| m.state.active()) {
            continue;
        }
        let voter_ids: Vec<String> = voters.iter().map(name_of).collect();
        if in_flight && entry.and_then(|m| m.node.as_deref()) != Some(s.node_id.as_str()) {
            // Taking over a move another leader started: the plan names who drives it now
            // (a move in flight keeps its slot; this is never refused for the bound).
            let cmd = Command::RebalanceStart {
                partition,
                node: s.node_id.clone(),
                from: entry.map_or_else(|| voter_ids.clone(), |m| m.from.clone()),
                to: replicas.clone(),
                at_ms: now_ms(),
            };
            if let Err(e) = reg.propose(SYSTEM_GROUP, cmd).await {
                tracing::debug!(group, error = %e, "taking over a partition move not recorded");
            }
        }
        if !in_flight {
            if plan.paused || slots_seen_free == 0 {
                // Planned: waits for a slot (or for resume).
                continue;
            }
            let cmd = Command::RebalanceStart {
                partition,
                node: s.node_id.clone(),
                from: voter_ids.clone(),
                to: replicas.clone(),
                at_ms: now_ms(),
            };
            match reg.propose(SYSTEM_GROUP, cmd).await {
                Ok(cairn_meta::Response::Done) => slots_seen_free -= 1,
                Ok(cairn_meta::Response::Refused(e)) => {
                    tracing::debug!(group, reason = %e, "partition move waits for a slot");
                    slots_seen_free = 0;
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(group, error = %e, "partition move slot not granted");
                    continue;
                }
            }
        }
        // The plan's starting voters hold the data; a fresh start recorded the voters now
        // (unless they already were the target: then the plan's `from` still holds it).
        let from_ids = match entry {
            Some(m) if in_flight || voters == target => m.from.clone(),
            _ => voter_ids.clone(),
        };
        moving.lock().insert(group);
        view.moves().start(crate::rebalance::Move {
            partition,
            node: s.node_id.clone(),
            from: from_ids.clone(),
            to: replicas.clone(),
            phase: if voters == target {
                crate::rebalance::MovePhase::CopyingChunks
            } else {
                crate::rebalance::MovePhase::CatchingUp
            },
            started_ms: now_ms(),
            chunks_total: 0,
            chunks_done: 0,
            bytes_moved: 0,
        });
        let job = MoveJob {
            group,
            partition,
            raft,
            members,
            target_ids: replicas.clone(),
            voters,
            from_ids,
        };
        let (reg, view, moving) = (reg.clone(), view.clone(), moving.clone());
        let chunks = chunks.cloned();
        let span = tracing::info_span!("partition_move", group, partition);
        tokio::spawn(
            async move {
                run_move(&reg, &view, chunks.as_deref(), &job).await;
                moving.lock().remove(&job.group);
                view.moves().finish(job.partition);
            }
            .instrument(span),
        );
    }
}

/// One partition move, on the partition's leader: learners, voters, chunks, then the report.
/// Any failure leaves the move in flight in the plan (it keeps its slot); the next controller
/// pass (here, or on a new leader) continues it.
async fn run_move(
    reg: &Registry,
    view: &ClusterView,
    chunks: Option<&cairn_chunk::ReplicatedChunks>,
    job: &MoveJob,
) {
    let (partition, raft) = (job.partition, &job.raft);
    let target: BTreeSet<u64> = job.members.keys().copied().collect();
    if job.voters != target {
        for (id, node) in &job.members {
            if job.voters.contains(id) {
                continue;
            }
            // Blocking: returns once the learner has caught up with the log.
            if let Err(e) = raft.add_learner(*id, node.clone(), true).await {
                tracing::warn!(learner = id, error = %e, "adding partition learner failed");
                return;
            }
        }
        view.moves()
            .set_phase(partition, crate::rebalance::MovePhase::ChangingVoters);
        // Not `retain`: a leader kept as a learner would go on leading a group it no longer
        // votes in (openraft lets a non-voter lead); dropped, it steps down once this commits.
        match raft.change_membership(target.clone(), false).await {
            Ok(_) => {
                tracing::info!(voters = ?target, "partition replicas moved to match the layout")
            }
            Err(e) => {
                tracing::warn!(error = %e, "partition membership change failed");
                return;
            }
        }
    }
    view.moves()
        .set_phase(partition, crate::rebalance::MovePhase::CopyingChunks);
    // Old holders keep their copies (and serve reads through read fallback) until this is
    // done: a move is done only when every new holder has every referenced chunk.
    let bytes = match chunks {
        Some(io) => match copy_chunks(reg, view, io, job).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "copying the partition's chunks to its new holders failed; retrying");
                return;
            }
        },
        // A node without a chunk layer (tests): chunk sync is left to do it.
        None => 0,
    };
    // Done with the old holders: drop the learners the voter change left behind.
    let leftover: BTreeSet<u64> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .learner_ids()
        .filter(|id| !target.contains(id))
        .collect();
    if !leftover.is_empty() {
        if let Err(e) = raft
            .change_membership(
                openraft::ChangeMembers::RemoveNodes(leftover.clone()),
                false,
            )
            .await
        {
            tracing::warn!(learners = ?leftover, error = %e, "dropping the former replicas failed; retrying");
            return;
        }
    }
    let cmd = Command::RebalanceFinish {
        partition,
        reached: job.target_ids.clone(),
        bytes,
        at_ms: now_ms(),
    };
    match reg.propose(SYSTEM_GROUP, cmd).await {
        Ok(_) => tracing::info!(bytes, "partition move done"),
        Err(e) => tracing::warn!(error = %e, "partition move done but not recorded; retrying"),
    }
}

/// Sends every chunk referenced in `job`'s partition to each new holder that lacks it (from
/// this node's store or an old holder). Returns the bytes sent in this attempt plus those an
/// earlier attempt on this node sent.
async fn copy_chunks(
    reg: &Registry,
    view: &ClusterView,
    io: &cairn_chunk::ReplicatedChunks,
    job: &MoveJob,
) -> Result<u64, cairn_chunk::ChunkError> {
    let nodes = view.nodes();
    let replica = |id: &String| {
        nodes.get(id).map(|n| cairn_chunk::Replica {
            node_id: id.clone(),
            rpc_addr: n.rpc_addr.clone(),
            health: n.health,
        })
    };
    let new_holders: Vec<cairn_chunk::Replica> = job
        .target_ids
        .iter()
        .filter(|id| !job.from_ids.contains(id) && **id != io.node_id())
        .filter_map(replica)
        .collect();
    let mut sources: Vec<cairn_chunk::Replica> = job
        .from_ids
        .iter()
        .chain(job.target_ids.iter())
        .filter_map(replica)
        .collect();
    // Healthy holders first: a down old holder (a re-homed node) would only cost timeouts.
    sources.sort_by_key(|r| r.health as u8);
    let before = view.moves().bytes_moved(job.partition);
    if new_holders.is_empty() {
        return Ok(before);
    }
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let batch = reg
            .meta()
            .referenced_chunks(job.group, cursor.as_ref(), COPY_BATCH)?;
        cursor = batch.last().copied();
        let more = batch.len() == COPY_BATCH;
        ids.extend(batch);
        if !more {
            break;
        }
    }
    let total = (ids.len() * new_holders.len()) as u64;
    let mut done = 0u64;
    view.moves().progress(job.partition, total, 0, 0);
    for batch in ids.chunks(COPY_BATCH) {
        for target in &new_holders {
            let sent = io.ensure_copies(batch, target, &sources).await?;
            done += batch.len() as u64;
            view.moves().progress(job.partition, total, done, sent);
        }
    }
    Ok(view.moves().bytes_moved(job.partition))
}
