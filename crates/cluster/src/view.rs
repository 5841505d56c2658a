//! A node's cached view of the cluster catalog (nodes and layout), refreshed from its local copy
//! of the system group; used to route forwarded requests, and (as `cairn_chunk::Placement`)
//! chunk traffic. It also knows which nodes published that their disk is full
//! ([`spawn_disk_state`]), so chunk writers skip them up front.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_meta::model::{LayoutRecord, NodeRecord};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_raft::Registry;
use parking_lot::RwLock;

#[derive(Default)]
pub struct ClusterView {
    nodes: RwLock<BTreeMap<String, NodeRecord>>,
    layout: RwLock<Option<LayoutRecord>>,
    /// Replica moves this node drives now (`/admin/rebalances`).
    moves: crate::rebalance::Moves,
    /// Nodes whose gossip says their disk is full.
    full: RwLock<BTreeSet<String>>,
}

impl ClusterView {
    /// Reloads nodes and layout from this node's copy of the system group (possibly slightly
    /// stale; routing tolerates that by following leader hints).
    pub fn refresh(&self, reg: &Registry) {
        if let Ok(nodes) = reg.meta().list_nodes(SYSTEM_GROUP) {
            *self.nodes.write() = nodes.into_iter().map(|n| (n.node_id.clone(), n)).collect();
        }
        if let Ok(layout) = reg.meta().layout(SYSTEM_GROUP) {
            *self.layout.write() = layout;
        }
    }

    /// Replaces the set of nodes known to have a full disk.
    pub fn set_full_nodes(&self, nodes: BTreeSet<String>) {
        let mut full = self.full.write();
        if *full != nodes {
            tracing::info!(full = ?nodes, "nodes with a full disk changed");
            *full = nodes;
        }
    }

    /// The nodes known to have a full disk.
    pub fn full_nodes(&self) -> BTreeSet<String> {
        self.full.read().clone()
    }

    /// The replica moves this node's controller drives now.
    pub fn moves(&self) -> &crate::rebalance::Moves {
        &self.moves
    }

    pub fn layout(&self) -> Option<LayoutRecord> {
        self.layout.read().clone()
    }

    pub fn nodes(&self) -> BTreeMap<String, NodeRecord> {
        self.nodes.read().clone()
    }

    pub fn node(&self, id: &str) -> Option<NodeRecord> {
        self.nodes.read().get(id).cloned()
    }

    /// Replica node ids of partition `p`, in layout order (empty without a layout).
    pub fn replicas(&self, p: u32) -> Vec<String> {
        self.layout
            .read()
            .as_ref()
            .and_then(|l| l.assignments.get(p as usize).cloned())
            .unwrap_or_default()
    }

    /// RPC addresses to try for a group this node cannot route itself.
    pub fn group_hint(&self, group: u64) -> Vec<String> {
        let nodes = self.nodes.read();
        if group == SYSTEM_GROUP {
            return nodes.values().map(|n| n.rpc_addr.clone()).collect();
        }
        let p = (group - 1) as u32;
        self.replicas(p)
            .iter()
            .filter_map(|id| nodes.get(id).map(|n| n.rpc_addr.clone()))
            .collect()
    }
}

impl cairn_chunk::Placement for ClusterView {
    fn chunk_replicas(&self, partition: u32) -> Vec<cairn_chunk::Replica> {
        let nodes = self.nodes.read();
        self.replicas(partition)
            .into_iter()
            .filter_map(|id| {
                nodes.get(&id).map(|n| cairn_chunk::Replica {
                    node_id: id.clone(),
                    rpc_addr: n.rpc_addr.clone(),
                    health: n.health,
                })
            })
            .collect()
    }

    fn partitions_on(&self, node_id: &str) -> Option<Vec<u32>> {
        self.layout.read().as_ref().map(|l| {
            l.assignments
                .iter()
                .enumerate()
                .filter(|(_, replicas)| replicas.iter().any(|r| r == node_id))
                .map(|(p, _)| p as u32)
                .collect()
        })
    }

    fn is_full(&self, node_id: &str) -> bool {
        self.full.read().contains(node_id)
    }
}

/// Gossip key: `1` while the node's chunk disk is full (it refuses new chunk copies), else `0`.
pub const GOSSIP_DISK_FULL: &str = "disk_full";

/// The nodes `members` (gossip's view) says have a full disk; a node that is down is left out
/// (its last word is stale, and writes to it fail anyway).
fn full_members(
    members: Vec<(String, crate::gossip::Health, BTreeMap<String, String>)>,
) -> BTreeSet<String> {
    members
        .into_iter()
        .filter(|(_, health, meta)| {
            *health != crate::gossip::Health::Down
                && meta.get(GOSSIP_DISK_FULL).map(String::as_str) == Some("1")
        })
        .map(|(id, _, _)| id)
        .collect()
}

/// Every `period` until `shutdown`: publishes this node's disk state (`disk`) in gossip and
/// records the nodes whose disk is full in `view`. Holds gossip weakly (the server shuts it
/// down by unwrapping its only `Arc`).
pub fn spawn_disk_state(
    view: Arc<ClusterView>,
    gossip: Weak<crate::gossip::Gossip>,
    disk: cairn_chunk::DiskGuard,
    period: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut published: Option<bool> = None;
        loop {
            let Some(g) = gossip.upgrade() else { return };
            let full = disk.is_full();
            if published != Some(full) {
                g.set(GOSSIP_DISK_FULL, if full { "1" } else { "0" });
                published = Some(full);
            }
            view.set_full_nodes(full_members(g.members()));
            drop(g);
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_chunk::Placement;
    use cairn_meta::model::{NodeHealth, NodeState};

    fn node(id: &str, health: NodeHealth) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            raft_id: 1,
            rpc_addr: format!("{id}:7001"),
            api_addr: format!("{id}:7000"),
            zone: None,
            labels: BTreeMap::new(),
            cpus: 1,
            memory_bytes: 0,
            disk_capacity_bytes: 0,
            disk_free_bytes: 0,
            state: NodeState::Active,
            registered_ms: 0,
            health,
            last_heartbeat_ms: 0,
            health_changed_ms: 0,
            maintenance: false,
        }
    }

    #[test]
    fn nodes_that_publish_a_full_disk_are_steered_around_unless_down() {
        use crate::gossip::Health;
        let meta = |v: &str| BTreeMap::from([(GOSSIP_DISK_FULL.to_string(), v.to_string())]);
        let full = full_members(vec![
            ("a".into(), Health::Up, meta("1")),
            ("b".into(), Health::Up, meta("0")),
            ("c".into(), Health::Down, meta("1")),
            ("d".into(), Health::Suspect, meta("1")),
            ("e".into(), Health::Up, BTreeMap::new()),
        ]);
        assert_eq!(full, BTreeSet::from(["a".to_string(), "d".to_string()]));
        let view = ClusterView::default();
        view.set_full_nodes(full);
        assert!(view.is_full("a") && !view.is_full("b") && !view.is_full("c"));
    }

    #[test]
    fn placement_follows_the_layout_and_skips_unknown_nodes() {
        let view = ClusterView::default();
        assert_eq!(view.partitions_on("a"), None);
        assert!(view.chunk_replicas(0).is_empty());
        *view.nodes.write() = [("a", NodeHealth::Up), ("b", NodeHealth::Down)]
            .into_iter()
            .map(|(id, h)| (id.to_string(), node(id, h)))
            .collect();
        *view.layout.write() = Some(LayoutRecord {
            version: 1,
            replication: 2,
            assignments: vec![
                vec!["a".into(), "b".into()],
                vec!["b".into(), "ghost".into()],
            ],
            created_ms: 0,
        });
        let r = view.chunk_replicas(0);
        assert_eq!(
            r.iter()
                .map(|r| (r.node_id.as_str(), r.rpc_addr.as_str(), r.health))
                .collect::<Vec<_>>(),
            vec![
                ("a", "a:7001", NodeHealth::Up),
                ("b", "b:7001", NodeHealth::Down)
            ]
        );
        // A node without a catalog record has no address: it is left out.
        assert_eq!(view.chunk_replicas(1).len(), 1);
        assert_eq!(view.partitions_on("a"), Some(vec![0]));
        assert_eq!(view.partitions_on("b"), Some(vec![0, 1]));
        assert_eq!(view.partitions_on("c"), Some(vec![]));
    }
}
