//! A node's cached view of the cluster catalog (nodes and layout), refreshed from its local copy
//! of the system group; used to route forwarded requests, and (as `cairn_chunk::Placement`)
//! chunk traffic.

use std::collections::BTreeMap;

use cairn_meta::model::{LayoutRecord, NodeRecord};
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_raft::Registry;
use parking_lot::RwLock;

#[derive(Default)]
pub struct ClusterView {
    nodes: RwLock<BTreeMap<String, NodeRecord>>,
    layout: RwLock<Option<LayoutRecord>>,
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
}
