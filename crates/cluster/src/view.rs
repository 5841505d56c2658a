//! A node's cached view of the cluster catalog (nodes and layout), refreshed from its local copy
//! of the system group; used to route chunk traffic and forwarded requests.

use std::collections::BTreeMap;

use cairn_meta::model::{ChunkId, LayoutRecord, NodeRecord};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_raft::Registry;
use parking_lot::RwLock;

#[derive(Default)]
pub struct ClusterView {
    nodes: RwLock<BTreeMap<String, NodeRecord>>,
    layout: RwLock<Option<LayoutRecord>>,
    /// Replica moves this node drives now (`/admin/rebalances`).
    moves: crate::rebalance::Moves,
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

    /// (node id, rpc address) of every replica holding `chunk`.
    pub fn chunk_targets(&self, chunk: &ChunkId, partitions: u32) -> Vec<(String, String)> {
        let nodes = self.nodes.read();
        self.replicas(chunk.partition(partitions))
            .into_iter()
            .filter_map(|id| nodes.get(&id).map(|n| (id.clone(), n.rpc_addr.clone())))
            .collect()
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
