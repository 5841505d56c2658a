//! The cluster status report served on `GET /cluster/status` and printed by
//! `cairn cluster status`.

use cairn_meta::model::NodeState;
use cairn_meta::placement::{partition_group, SYSTEM_GROUP};
use cairn_raft::Registry;
use serde::{Deserialize, Serialize};

use crate::gossip::Health;
use crate::{ClusterSettings, ClusterView};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    pub node_id: String,
    pub rpc_addr: String,
    pub api_addr: String,
    pub state: String,
    /// `up`, `suspect` or `down`: gossip's failure detector, else the age of the node's last
    /// heartbeat.
    pub health: String,
    /// The verdict recorded in the catalog by the system leader (audited when it changes).
    #[serde(default)]
    pub catalog_health: String,
    pub zone: Option<String>,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub disk_capacity_bytes: u64,
    pub disk_free_bytes: u64,
    pub last_heartbeat_ms: i64,
    pub partitions: usize,
    pub leads: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionStatus {
    pub partition: u32,
    pub replicas: Vec<String>,
    /// As seen by the reporting node (None when it does not host the group or no leader).
    pub leader: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub reporting_node: String,
    pub cluster_id: Option<String>,
    pub cluster_name: String,
    pub system_leader: Option<String>,
    pub system_voters: Vec<String>,
    pub layout_version: u64,
    pub replication: usize,
    pub nodes: Vec<NodeStatus>,
    pub partitions: Vec<PartitionStatus>,
}

/// Builds the report from this node's view; `heartbeat_secs`/`timeout_secs` classify health.
pub fn cluster_status(
    s: &ClusterSettings,
    reg: &Registry,
    view: &ClusterView,
    gossip: Option<&crate::gossip::Gossip>,
    now_ms: i64,
    timeout_secs: u64,
) -> ClusterStatus {
    view.refresh(reg);
    let nodes = view.nodes();
    let by_raft = |id: u64| {
        nodes
            .values()
            .find(|n| n.raft_id == id)
            .map(|n| n.node_id.clone())
    };
    let layout = view.layout();
    let mut partitions = Vec::new();
    if let Some(l) = &layout {
        for (p, replicas) in l.assignments.iter().enumerate() {
            let leader = reg.leader_of(partition_group(p as u32)).and_then(by_raft);
            partitions.push(PartitionStatus {
                partition: p as u32,
                replicas: replicas.clone(),
                leader,
            });
        }
    }
    let system_voters = reg
        .raft_handle(SYSTEM_GROUP)
        .map(|r| {
            r.metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(by_raft)
        .collect();
    let nodes_out = nodes
        .values()
        .map(|n| {
            let age = (now_ms - n.last_heartbeat_ms).max(0) as u64;
            // Gossip (SWIM-style failure detection) decides; the age of the last Raft
            // heartbeat is the fallback for nodes gossip has not seen.
            let gossiped = gossip
                .map(|g| g.health(&n.node_id))
                .filter(|h| *h != Health::Unknown);
            let health = if n.state == NodeState::Removed {
                "removed"
            } else if let Some(h) = gossiped {
                match h {
                    Health::Up => "up",
                    Health::Suspect => "suspect",
                    _ => "down",
                }
            } else if age <= s.heartbeat_secs * 2000 {
                "up"
            } else if age <= timeout_secs * 1000 {
                "suspect"
            } else {
                "down"
            };
            NodeStatus {
                node_id: n.node_id.clone(),
                rpc_addr: n.rpc_addr.clone(),
                api_addr: n.api_addr.clone(),
                state: format!("{:?}", n.state).to_lowercase(),
                health: health.to_string(),
                zone: n.zone.clone(),
                cpus: n.cpus,
                memory_bytes: n.memory_bytes,
                disk_capacity_bytes: n.disk_capacity_bytes,
                disk_free_bytes: n.disk_free_bytes,
                last_heartbeat_ms: n.last_heartbeat_ms,
                catalog_health: n.health.as_str().to_string(),
                partitions: partitions
                    .iter()
                    .filter(|p| p.replicas.contains(&n.node_id))
                    .count(),
                leads: partitions
                    .iter()
                    .filter(|p| p.leader.as_deref() == Some(n.node_id.as_str()))
                    .count(),
            }
        })
        .collect();
    ClusterStatus {
        reporting_node: s.node_id.clone(),
        cluster_id: reg
            .meta()
            .cluster_id(SYSTEM_GROUP)
            .ok()
            .flatten()
            .map(|c| c.0),
        cluster_name: s.cluster_name.clone(),
        system_leader: reg.leader_of(SYSTEM_GROUP).and_then(by_raft),
        system_voters,
        layout_version: layout.as_ref().map(|l| l.version).unwrap_or(0),
        replication: layout.as_ref().map(|l| l.replication).unwrap_or(1),
        nodes: nodes_out,
        partitions,
    }
}
