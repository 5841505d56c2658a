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
            last_heartbeat: None,
            registered: false,
            layout_inputs: None,
            published_moves: None,
        }
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
        partitions_step(s, reg, view, &self.moving).await;
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

/// Initialises partition groups at layout v1 and moves replicas to match the layout.
async fn partitions_step(
    s: &ClusterSettings,
    reg: &Arc<Registry>,
    view: &Arc<ClusterView>,
    moving: &Arc<Mutex<HashSet<u64>>>,
) {
    let Some(layout) = view.layout() else { return };
    let nodes = view.nodes();
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
        let target: BTreeSet<u64> = members.keys().copied().collect();
        if voters == target {
            continue;
        }
        moving.lock().insert(group);
        let moving = moving.clone();
        let name_of = |id: &u64| {
            nodes
                .values()
                .find(|n| n.raft_id == *id)
                .map_or_else(|| id.to_string(), |n| n.node_id.clone())
        };
        let partition = p as u32;
        view.moves().start(crate::rebalance::Move {
            partition,
            node: s.node_id.clone(),
            from: voters.iter().map(name_of).collect(),
            to: replicas.clone(),
            phase: crate::rebalance::MovePhase::CatchingUp,
            started_ms: now_ms(),
        });
        let view = view.clone();
        tokio::spawn(async move {
            for (id, node) in &members {
                if voters.contains(id) {
                    continue;
                }
                // Blocking: returns once the learner has caught up with the log.
                if let Err(e) = raft.add_learner(*id, node.clone(), true).await {
                    tracing::warn!(group, learner = id, error = %e, "adding partition learner failed");
                    moving.lock().remove(&group);
                    view.moves().finish(partition);
                    return;
                }
            }
            view.moves()
                .set_phase(partition, crate::rebalance::MovePhase::ChangingVoters);
            match raft.change_membership(target.clone(), false).await {
                Ok(_) => {
                    tracing::info!(group, voters = ?target, "partition replicas moved to match the layout")
                }
                Err(e) => tracing::warn!(group, error = %e, "partition membership change failed"),
            }
            moving.lock().remove(&group);
            view.moves().finish(partition);
        });
    }
}
