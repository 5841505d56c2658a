//! The cluster's health in one answer (`GET /cluster/health`, `cairn cluster health`), judged
//! from a status report: node health (gossip, else heartbeat age) and, per partition, how many
//! of the layout's replicas are up. A partition keeps serving while a majority of its replicas
//! is up; the cluster is `unavailable` when the system group has no leader or a partition lost
//! its majority, `degraded` when any node is not up or any partition is short of replicas,
//! else `healthy`.

use serde::{Deserialize, Serialize};

use crate::status::ClusterStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthLevel {
    Healthy,
    Degraded,
    Unavailable,
}

/// Node counts by health (removed nodes are not counted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeCounts {
    pub total: usize,
    pub up: usize,
    pub suspect: usize,
    pub down: usize,
}

/// Partition counts by replica health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PartitionHealthCounts {
    pub total: usize,
    /// Every replica up.
    pub healthy: usize,
    /// A majority up, but not all.
    pub degraded: usize,
    /// No majority of replicas up: writes (and linearizable reads) stop.
    pub unavailable: usize,
    /// Fewer replicas up than the replication factor (a down replica, or a layout that could
    /// place fewer: re-homing waits for a node to join).
    #[serde(default)]
    pub under_replicated: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterHealth {
    pub status: HealthLevel,
    pub reporting_node: String,
    pub system_leader: Option<String>,
    pub layout_version: u64,
    pub nodes: NodeCounts,
    pub partitions: PartitionHealthCounts,
    /// One line per problem, worst first, for people.
    pub problems: Vec<String>,
    /// `fully replicated`, or `degraded: N partitions under-replicated`.
    #[serde(default)]
    pub redundancy: String,
}

/// Judges `s`.
pub fn judge(s: &ClusterStatus) -> ClusterHealth {
    let mut nodes = NodeCounts::default();
    let mut unavailable_problems = Vec::new();
    let mut degraded_problems = Vec::new();
    let live: Vec<_> = s.nodes.iter().filter(|n| n.state != "removed").collect();
    for n in &live {
        nodes.total += 1;
        match n.health.as_str() {
            "up" => nodes.up += 1,
            "suspect" => {
                nodes.suspect += 1;
                degraded_problems.push(format!("node {} is suspect", n.node_id));
            }
            _ => {
                nodes.down += 1;
                degraded_problems.push(format!("node {} is down", n.node_id));
            }
        }
    }
    let up = |id: &str| live.iter().any(|n| n.node_id == id && n.health == "up");
    let mut partitions = PartitionHealthCounts::default();
    for p in &s.partitions {
        partitions.total += 1;
        let replicas = p.replicas.len();
        let alive = p.replicas.iter().filter(|r| up(r)).count();
        if alive < s.replication {
            partitions.under_replicated += 1;
        }
        if replicas > 0 && alive == replicas {
            partitions.healthy += 1;
        } else if alive * 2 > replicas {
            partitions.degraded += 1;
        } else {
            partitions.unavailable += 1;
        }
    }
    if partitions.degraded > 0 {
        degraded_problems.push(format!(
            "{} partition(s) have replicas that are not up",
            partitions.degraded
        ));
    }
    if partitions.unavailable > 0 {
        unavailable_problems.push(format!(
            "{} partition(s) have no majority of replicas up",
            partitions.unavailable
        ));
    }
    if s.system_leader.is_none() {
        unavailable_problems.insert(0, "the system group has no leader".to_string());
    }
    if s.layout_version == 0 {
        degraded_problems.push("no layout yet (nodes still joining?)".to_string());
    }
    let status = if !unavailable_problems.is_empty() {
        HealthLevel::Unavailable
    } else if !degraded_problems.is_empty() {
        HealthLevel::Degraded
    } else {
        HealthLevel::Healthy
    };
    unavailable_problems.extend(degraded_problems);
    let redundancy = match partitions.under_replicated {
        0 => "fully replicated".to_string(),
        n => format!("degraded: {n} partitions under-replicated"),
    };
    ClusterHealth {
        status,
        reporting_node: s.reporting_node.clone(),
        system_leader: s.system_leader.clone(),
        layout_version: s.layout_version,
        nodes,
        partitions,
        problems: unavailable_problems,
        redundancy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{NodeStatus, PartitionStatus};

    fn node(id: &str, health: &str) -> NodeStatus {
        NodeStatus {
            node_id: id.into(),
            rpc_addr: String::new(),
            api_addr: String::new(),
            state: "active".into(),
            health: health.into(),
            catalog_health: health.into(),
            zone: None,
            cpus: 1,
            memory_bytes: 0,
            disk_capacity_bytes: 0,
            disk_free_bytes: 0,
            last_heartbeat_ms: 0,
            partitions: 0,
            leads: 0,
        }
    }

    fn status(nodes: Vec<NodeStatus>, parts: &[&[&str]]) -> ClusterStatus {
        ClusterStatus {
            reporting_node: "n1".into(),
            cluster_id: Some("c".into()),
            cluster_name: "cairn".into(),
            system_leader: Some("n1".into()),
            system_voters: vec!["n1".into()],
            layout_version: 1,
            replication: 3,
            nodes,
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, r)| PartitionStatus {
                    partition: i as u32,
                    replicas: r.iter().map(|s| s.to_string()).collect(),
                    leader: None,
                })
                .collect(),
        }
    }

    #[test]
    fn all_up_is_healthy() {
        let s = status(
            vec![node("n1", "up"), node("n2", "up"), node("n3", "up")],
            &[&["n1", "n2", "n3"], &["n2", "n3", "n1"]],
        );
        let h = judge(&s);
        assert_eq!(h.status, HealthLevel::Healthy);
        assert_eq!(h.nodes.up, 3);
        assert_eq!(h.partitions.healthy, 2);
        assert!(h.problems.is_empty());
        assert_eq!(h.redundancy, "fully replicated");
    }

    #[test]
    fn one_node_down_degrades_two_lose_the_majority() {
        let mut nodes = vec![node("n1", "up"), node("n2", "up"), node("n3", "down")];
        let parts: &[&[&str]] = &[&["n1", "n2", "n3"], &["n3"]];
        let h = judge(&status(nodes.clone(), &parts[..1]));
        assert_eq!(h.status, HealthLevel::Degraded);
        assert_eq!((h.nodes.down, h.partitions.degraded), (1, 1));
        assert_eq!(h.partitions.under_replicated, 1);
        assert_eq!(h.redundancy, "degraded: 1 partitions under-replicated");
        // A single-replica partition on the down node is unavailable.
        let h = judge(&status(nodes.clone(), parts));
        assert_eq!(h.status, HealthLevel::Unavailable);
        assert_eq!(h.partitions.unavailable, 1);
        nodes[1].health = "suspect".into();
        let h = judge(&status(nodes, &parts[..1]));
        assert_eq!(h.status, HealthLevel::Unavailable);
        assert_eq!(h.nodes.suspect, 1);
        assert!(h.problems[0].contains("no majority"), "{:?}", h.problems);
    }

    #[test]
    fn no_system_leader_is_unavailable_and_removed_nodes_do_not_count() {
        let mut gone = node("n9", "down");
        gone.state = "removed".into();
        let mut s = status(vec![node("n1", "up"), gone], &[&["n1"]]);
        assert_eq!(judge(&s).status, HealthLevel::Healthy);
        assert_eq!(judge(&s).nodes.total, 1);
        s.system_leader = None;
        let h = judge(&s);
        assert_eq!(h.status, HealthLevel::Unavailable);
        assert_eq!(h.problems[0], "the system group has no leader");
    }
}
