//! `cairn-layout`: the pure layout algorithm of Cairn.
//!
//! A *layout* maps each of P partitions (a power of two, default 64) to an ordered list of R
//! replica nodes (default 3). This crate only computes layouts; it does no I/O and keeps no
//! state. The system group stores layout versions and the rebalance controller applies
//! [`diff`]s between them (learner → catch up → promote → remove), so everything here is a
//! deterministic function of its inputs: the same nodes, policy and previous layout always give
//! the same layout, on every node and every run.
//!
//! Rules, in priority order (see [`compute_layout`] for details):
//! 1. **Eligibility** (hard): a node is eligible when it is `Active`, matches every `require`
//!    selector and has non-zero capacity (unless every candidate has zero capacity). `Down`
//!    nodes keep the slots they already hold but receive no new ones. `Draining`/`Removed`
//!    nodes lose everything.
//! 2. **Replication**: every partition gets exactly `R = min(replication, eligible)` distinct
//!    nodes.
//! 3. **Zones**: no partition puts more than `c` replicas in one zone, where `c` is the smallest
//!    cap that can be met (`c = 1`, i.e. distinct zones, whenever there are at least R zones).
//!    A node without a zone is its own failure domain.
//! 4. **Capacity**: each node's number of replica slots is within one of its capacity-weighted
//!    share (after the caps above: a node cannot hold a partition twice, a zone cannot exceed
//!    its per-partition cap). `avoid` nodes only receive what the others cannot hold.
//! 5. **Minimal movement**: among all layouts meeting 1–4 (every node at its rounded-down
//!    share or one above), the one keeping the most (partition, node) pairs of `previous` is
//!    chosen — exactly, via min-cost flow; which nodes round up is part of that choice.
//! 6. **Leaders**: the first replica of each partition is chosen to spread leaders as evenly
//!    as possible (±1 when the replica sets allow it), then to keep the previous leader, then
//!    to favour `prefer` nodes.

mod algorithm;
mod conjunction;
mod selector;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use algorithm::compute_layout;
pub use conjunction::SelectorSet;
pub use selector::{LabelSelector, SelectorError, SelectorOp};

/// Identifier of a storage node, unique in the cluster.
pub type NodeId = String;

/// Default number of partitions of a new cluster.
pub const DEFAULT_PARTITIONS: u32 = 64;
/// Default replication factor.
pub const DEFAULT_REPLICATION: usize = 3;
/// Largest partition count accepted; keeps the flow costs comfortably inside `i64`.
pub const MAX_PARTITIONS: u32 = 1 << 16;

/// Lifecycle state of a node, as far as placement is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Healthy member: may receive new replicas.
    Active,
    /// Being emptied on purpose: must lose every replica it holds.
    Draining,
    /// Unreachable: keeps the replicas it holds (a short outage must not trigger a mass
    /// re-replication) but receives no new ones. The caller marks it `Removed` after its grace
    /// period to re-home its data.
    Down,
    /// Gone for good: must lose every replica it holds.
    Removed,
}

/// What the layout needs to know about one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Unique node id; also the deterministic tie-breaker everywhere.
    pub id: NodeId,
    /// Storage capacity in bytes, used as the node's weight. Zero means "stores nothing"
    /// (a gateway-only node) unless every candidate node has zero capacity.
    pub capacity: u64,
    /// Failure domain. Nodes without a zone are each their own failure domain.
    pub zone: Option<String>,
    /// Free-form labels matched by [`LabelSelector`]s.
    pub labels: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: NodeState,
}

impl NodeSpec {
    /// An `Active` node with no zone and no labels.
    pub fn new(id: impl Into<NodeId>, capacity: u64) -> Self {
        Self {
            id: id.into(),
            capacity,
            zone: None,
            labels: BTreeMap::new(),
            state: NodeState::Active,
        }
    }

    /// Sets the zone (builder style).
    pub fn with_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Adds one label (builder style).
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the state (builder style).
    pub fn with_state(mut self, state: NodeState) -> Self {
        self.state = state;
        self
    }

    /// Whether the node satisfies `sel`.
    pub fn matches(&self, sel: &LabelSelector) -> bool {
        sel.matches(&self.labels, self.zone.as_deref())
    }
}

/// Label-based placement rules applied to every partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementPolicy {
    /// Hard filter: a replica may only live on a node matching *all* of these.
    pub require: Vec<LabelSelector>,
    /// Affinity: among otherwise equal choices (rounding of capacity shares, leader choice,
    /// order of new replicas), nodes matching *any* of these come first.
    pub prefer: Vec<LabelSelector>,
    /// Anti-affinity: nodes matching *any* of these get replicas only when the other
    /// eligible nodes cannot hold them all.
    pub avoid: Vec<LabelSelector>,
}

impl PlacementPolicy {
    /// Whether `node` passes every `require` selector.
    pub fn allows(&self, node: &NodeSpec) -> bool {
        self.require.iter().all(|s| node.matches(s))
    }

    /// Whether `node` matches some `prefer` selector.
    pub fn prefers(&self, node: &NodeSpec) -> bool {
        self.prefer.iter().any(|s| node.matches(s))
    }

    /// Whether `node` matches some `avoid` selector.
    pub fn avoids(&self, node: &NodeSpec) -> bool {
        self.avoid.iter().any(|s| node.matches(s))
    }
}

/// One version of the partition → replicas map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Monotonic version: previous version + 1, or 1 for the first layout.
    pub version: u64,
    /// Number of partitions P (power of two).
    pub partitions: u32,
    /// Effective replication factor R actually used (every partition has exactly R replicas).
    pub replication: usize,
    /// `assignments[p]` = ordered replicas of partition `p`; the first is the preferred leader.
    pub assignments: Vec<Vec<NodeId>>,
}

impl Layout {
    /// Ordered replicas of `partition` (empty if out of range).
    pub fn replicas(&self, partition: u32) -> &[NodeId] {
        self.assignments
            .get(partition as usize)
            .map_or(&[], Vec::as_slice)
    }

    /// Preferred leader of `partition`, if the partition exists.
    pub fn leader(&self, partition: u32) -> Option<&NodeId> {
        self.replicas(partition).first()
    }

    /// Partitions that have a replica on `node`, ascending.
    pub fn partitions_of(&self, node: &str) -> Vec<u32> {
        self.assignments
            .iter()
            .enumerate()
            .filter(|(_, r)| r.iter().any(|n| n == node))
            .map(|(p, _)| p as u32)
            .collect()
    }

    /// Number of replica slots each node holds (nodes holding none are absent).
    pub fn slot_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut m = BTreeMap::new();
        for r in &self.assignments {
            for n in r {
                *m.entry(n.clone()).or_insert(0) += 1;
            }
        }
        m
    }

    /// Number of partitions each node is preferred leader of (nodes leading none are absent).
    pub fn leader_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut m = BTreeMap::new();
        for r in &self.assignments {
            if let Some(n) = r.first() {
                *m.entry(n.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

/// Membership change of one partition between two layouts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    /// The partition.
    pub partition: u32,
    /// Nodes that must gain a replica (in the new layout's order).
    pub add: Vec<NodeId>,
    /// Nodes that must lose their replica (in the old layout's order).
    pub remove: Vec<NodeId>,
}

/// Everything that changes between two layouts, as replica moves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutDiff {
    /// One entry per partition whose replica *set* changed, ascending by partition.
    /// Pure leader-order changes are not moves (no data has to travel).
    pub moves: Vec<PartitionMove>,
}

impl LayoutDiff {
    /// Number of replica copies to create (sum of `add` lengths): the data-movement cost.
    pub fn added_slots(&self) -> usize {
        self.moves.iter().map(|m| m.add.len()).sum()
    }

    /// Number of replica copies to drop (sum of `remove` lengths).
    pub fn removed_slots(&self) -> usize {
        self.moves.iter().map(|m| m.remove.len()).sum()
    }

    /// Whether nothing moves.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

/// Replica moves needed to go from `old` to `new`. Partitions missing on one side (different
/// partition counts) are treated as having no replicas there.
pub fn diff(old: &Layout, new: &Layout) -> LayoutDiff {
    let n = old.assignments.len().max(new.assignments.len());
    let empty: Vec<NodeId> = Vec::new();
    let mut moves = Vec::new();
    for p in 0..n {
        let o = old.assignments.get(p).unwrap_or(&empty);
        let w = new.assignments.get(p).unwrap_or(&empty);
        let add: Vec<NodeId> = w.iter().filter(|x| !o.contains(x)).cloned().collect();
        let remove: Vec<NodeId> = o.iter().filter(|x| !w.contains(x)).cloned().collect();
        if !add.is_empty() || !remove.is_empty() {
            moves.push(PartitionMove {
                partition: p as u32,
                add,
                remove,
            });
        }
    }
    LayoutDiff { moves }
}

/// Why no layout could be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LayoutError {
    /// No `Active` node passes the `require` selectors, and `Down` nodes alone cannot keep the
    /// previous layout.
    #[error("no eligible node: no active node satisfies the placement policy")]
    NoEligibleNodes,
    /// The partition count is zero, not a power of two, or above [`MAX_PARTITIONS`].
    #[error("invalid partition count {0}: must be a power of two between 1 and 65536")]
    InvalidPartitions(u32),
    /// The replication factor is zero.
    #[error("invalid replication factor {0}: must be at least 1")]
    InvalidReplication(usize),
    /// Two node specs share an id.
    #[error("duplicate node id {0:?}")]
    DuplicateNode(NodeId),
    /// No placement satisfies the constraints. Not expected in practice: the algorithm relaxes
    /// zone caps and, last, stops honouring `Down` nodes' slots before giving up.
    #[error(
        "no placement satisfies the constraints ({partitions} partitions x {replication} replicas)"
    )]
    Infeasible {
        /// Partition count asked for.
        partitions: u32,
        /// Effective replication factor tried last.
        replication: usize,
    },
}
