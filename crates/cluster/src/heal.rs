//! Self-healing placement decisions, pure (no I/O): how each node enters the next layout
//! (re-homing a node down longer than `REPAIR_GRACE_SECS`, drain, remove, maintenance), and
//! the checks the management API runs before draining or removing a node.
//!
//! Rules, in priority order:
//! 1. `Removed` and `Draining` nodes get no slots (drain keeps the node serving: it stays in
//!    the catalog and in its groups until the replica moves finish).
//! 2. A node the failure detector reports down keeps the slots it holds and gets no new ones
//!    (a reboot must not trigger a mass re-replication) — until it has been down for the
//!    repair grace, then it is *lost*: it gets no slots, so the partition leaders move its
//!    replicas (learner → catch-up → voters) and chunk sync copies its chunks to the new
//!    holders from the surviving replicas. Its catalog record stays; when it comes back it is
//!    placed again like a joining node.
//! 3. A node in maintenance is never lost, however long it is down.
//! 4. Re-homing never lowers the replication factor: when fewer than R placeable nodes would
//!    remain, lost nodes that hold slots keep them (the cluster reports itself degraded) until
//!    a node joins.

use std::collections::{BTreeMap, BTreeSet};

use cairn_layout::NodeState as Place;
use cairn_meta::model::{LayoutRecord, NodeHealth, NodeRecord, NodeState};

/// When `n` was last seen alive or judged: the later of its last heartbeat and its last
/// health change (records written before `health_changed_ms` existed have 0 there).
fn down_since_ms(n: &NodeRecord) -> i64 {
    n.health_changed_ms.max(n.last_heartbeat_ms)
}

/// The repair grace and the time it is judged at (unix ms, the system leader's clock).
#[derive(Clone, Copy, Debug)]
pub struct Grace {
    pub grace_ms: i64,
    pub now_ms: i64,
}

/// Whether `n` has been down long enough to be re-homed (and is not in maintenance).
pub fn is_lost(n: &NodeRecord, g: Grace) -> bool {
    n.state != NodeState::Removed
        && n.health == NodeHealth::Down
        && !n.maintenance
        && g.now_ms.saturating_sub(down_since_ms(n)) >= g.grace_ms
}

/// Slots each node holds in `layout`.
fn held(layout: Option<&LayoutRecord>) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for id in layout.iter().flat_map(|l| l.assignments.iter().flatten()) {
        *out.entry(id.as_str()).or_insert(0) += 1;
    }
    out
}

/// How the next layout treats each node (see the module rules), for `replication` replicas.
pub fn placement_states(
    nodes: &[NodeRecord],
    current: Option<&LayoutRecord>,
    replication: usize,
    g: Grace,
) -> BTreeMap<String, Place> {
    let held = held(current);
    let holds = |id: &str| held.get(id).copied().unwrap_or(0) > 0;
    let mut out = BTreeMap::new();
    let mut lost = Vec::new();
    for n in nodes {
        let place = match n.state {
            NodeState::Removed => Place::Removed,
            NodeState::Draining => Place::Draining,
            NodeState::Active | NodeState::Joining => {
                if is_lost(n, g) {
                    lost.push(n);
                    Place::Removed
                } else if n.health == NodeHealth::Down {
                    Place::Down
                } else {
                    Place::Active
                }
            }
        };
        out.insert(n.node_id.clone(), place);
    }
    let placeable = out
        .iter()
        .filter(|(id, p)| **p == Place::Active || (**p == Place::Down && holds(id)))
        .count();
    // Rule 4: keep the lost nodes holding the most slots (then by id) while short of R.
    lost.retain(|n| holds(&n.node_id));
    lost.sort_by(|a, b| {
        held[b.node_id.as_str()]
            .cmp(&held[a.node_id.as_str()])
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    let short = replication.saturating_sub(placeable);
    for n in lost.into_iter().take(short) {
        out.insert(n.node_id.clone(), Place::Down);
    }
    out
}

/// The nodes a layout computed from `states` places: active ones, and down ones that keep
/// the slots they hold in `current`. A current layout placing exactly these needs no change.
pub fn expected_placed(
    states: &BTreeMap<String, Place>,
    current: Option<&LayoutRecord>,
) -> BTreeSet<String> {
    let held = held(current);
    states
        .iter()
        .filter(|(id, p)| {
            **p == Place::Active || (**p == Place::Down && held.contains_key(id.as_str()))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// Why a drain or remove is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealError {
    #[error("node {0} is not registered")]
    UnknownNode(String),
    #[error("node {0} is removed")]
    AlreadyRemoved(String),
    #[error(
        "{what} node {node} would leave {left} node(s) for replication factor {replication}; \
         add a node first or force it"
    )]
    BelowReplication {
        what: &'static str,
        node: String,
        left: usize,
        replication: usize,
    },
    #[error(
        "node {node} still holds {slots} partition replica(s): removing it now drops them \
         below the replication factor; drain it first (or force it)"
    )]
    StillHolds { node: String, slots: usize },
    #[error(
        "partition {partition} is still moving its replica off node {node}; wait for the move \
         (or force it)"
    )]
    StillMoving { node: String, partition: u32 },
}

/// Nodes other than `node_id` that can hold replicas: active or joining, not lost.
fn others_placeable(nodes: &[NodeRecord], node_id: &str, g: Grace) -> usize {
    nodes
        .iter()
        .filter(|n| n.node_id != node_id)
        .filter(|n| matches!(n.state, NodeState::Active | NodeState::Joining))
        .filter(|n| !is_lost(n, g))
        .count()
}

fn find<'a>(nodes: &'a [NodeRecord], node_id: &str) -> Result<&'a NodeRecord, HealError> {
    let n = nodes
        .iter()
        .find(|n| n.node_id == node_id)
        .ok_or_else(|| HealError::UnknownNode(node_id.into()))?;
    if n.state == NodeState::Removed {
        return Err(HealError::AlreadyRemoved(node_id.into()));
    }
    Ok(n)
}

/// Whether `node_id` may be drained: refused (unless `force`) when the other placeable nodes
/// are fewer than `replication`, since the layout would then shrink every partition it holds.
pub fn check_drain(
    nodes: &[NodeRecord],
    node_id: &str,
    replication: usize,
    force: bool,
    g: Grace,
) -> Result<(), HealError> {
    find(nodes, node_id)?;
    let left = others_placeable(nodes, node_id, g);
    if !force && left < replication {
        return Err(HealError::BelowReplication {
            what: "draining",
            node: node_id.into(),
            left,
            replication,
        });
    }
    Ok(())
}

/// Whether `node_id` may be removed: refused (unless `force`) while the current layout still
/// places replicas on it, while a replica move still takes data off it (`moving_from`:
/// partitions whose move starts from a voter set holding it), or when fewer than
/// `replication` placeable nodes would remain.
pub fn check_remove(
    nodes: &[NodeRecord],
    layout: Option<&LayoutRecord>,
    moving_from: &[u32],
    node_id: &str,
    replication: usize,
    force: bool,
    g: Grace,
) -> Result<(), HealError> {
    find(nodes, node_id)?;
    if force {
        return Ok(());
    }
    let slots = held(layout).get(node_id).copied().unwrap_or(0);
    if slots > 0 {
        return Err(HealError::StillHolds {
            node: node_id.into(),
            slots,
        });
    }
    if let Some(p) = moving_from.first() {
        return Err(HealError::StillMoving {
            node: node_id.into(),
            partition: *p,
        });
    }
    let left = others_placeable(nodes, node_id, g);
    if left < replication {
        return Err(HealError::BelowReplication {
            what: "removing",
            node: node_id.into(),
            left,
            replication,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 5_000;
    const NOW: i64 = 1_000_000;
    const G: Grace = Grace {
        grace_ms: GRACE,
        now_ms: NOW,
    };

    fn node(id: &str) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            raft_id: 1,
            rpc_addr: String::new(),
            api_addr: String::new(),
            zone: None,
            labels: Default::default(),
            cpus: 1,
            memory_bytes: 0,
            disk_capacity_bytes: 0,
            disk_free_bytes: 0,
            state: NodeState::Active,
            registered_ms: 0,
            health: NodeHealth::Up,
            last_heartbeat_ms: NOW,
            health_changed_ms: 0,
            maintenance: false,
        }
    }

    /// Down since `ago_ms` before NOW.
    fn down(id: &str, ago_ms: i64) -> NodeRecord {
        let mut n = node(id);
        n.health = NodeHealth::Down;
        n.health_changed_ms = NOW - ago_ms;
        n.last_heartbeat_ms = NOW - ago_ms - 1000;
        n
    }

    fn layout(parts: &[&[&str]]) -> LayoutRecord {
        LayoutRecord {
            version: 1,
            replication: 3,
            assignments: parts
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect(),
            created_ms: 0,
        }
    }

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_node_down_within_the_grace_keeps_its_slots() {
        let nodes = [node("a"), node("b"), node("c"), down("d", GRACE - 1)];
        let l = layout(&[&["a", "b", "d"], &["b", "c", "a"]]);
        let st = placement_states(&nodes, Some(&l), 3, G);
        assert_eq!(st["d"], Place::Down);
        assert_eq!(expected_placed(&st, Some(&l)), ids(&["a", "b", "c", "d"]));
    }

    #[test]
    fn a_node_down_past_the_grace_is_rehomed_unless_in_maintenance() {
        let mut nodes = vec![node("a"), node("b"), node("c"), down("d", GRACE)];
        let l = layout(&[&["a", "b", "d"], &["b", "c", "a"]]);
        let st = placement_states(&nodes, Some(&l), 3, G);
        assert_eq!(st["d"], Place::Removed);
        assert_eq!(expected_placed(&st, Some(&l)), ids(&["a", "b", "c"]));
        nodes[3].maintenance = true;
        let st = placement_states(&nodes, Some(&l), 3, G);
        assert_eq!(st["d"], Place::Down);
    }

    #[test]
    fn rehoming_never_drops_below_the_replication_factor() {
        // d was re-homed already; now b is lost too: only a and c remain, so b keeps its
        // slots (degraded, quorum kept) and d stays out.
        let nodes = [
            node("a"),
            down("b", GRACE * 2),
            node("c"),
            down("d", GRACE * 9),
        ];
        let l = layout(&[&["a", "b", "c"], &["b", "c", "a"]]);
        let st = placement_states(&nodes, Some(&l), 3, G);
        assert_eq!(st["b"], Place::Down);
        assert_eq!(st["d"], Place::Removed);
        assert_eq!(expected_placed(&st, Some(&l)), ids(&["a", "b", "c"]));
        // RF 3 on 3 nodes: the lost node stays placed.
        let nodes = [node("a"), node("b"), down("c", GRACE * 2)];
        let st = placement_states(&nodes, Some(&l), 3, G);
        assert_eq!(st["c"], Place::Down);
    }

    #[test]
    fn the_layout_algorithm_moves_a_lost_nodes_replicas() {
        let mut nodes = vec![node("a"), node("b"), node("c"), node("d")];
        let specs = |nodes: &[NodeRecord], st: &BTreeMap<String, Place>| -> Vec<_> {
            nodes
                .iter()
                .map(|n| cairn_layout::NodeSpec {
                    id: n.node_id.clone(),
                    capacity: 1,
                    zone: None,
                    labels: Default::default(),
                    state: st[&n.node_id],
                })
                .collect()
        };
        let st = placement_states(&nodes, None, 3, G);
        let policy = cairn_layout::PlacementPolicy::default();
        let l1 =
            cairn_layout::compute_layout(&specs(&nodes, &st), 8, 3, &policy, None).expect("layout");
        assert!(l1.assignments.iter().flatten().any(|n| n == "d"));
        nodes[3] = down("d", GRACE);
        let st = placement_states(&nodes, None, 3, G);
        let l2 = cairn_layout::compute_layout(&specs(&nodes, &st), 8, 3, &policy, Some(&l1))
            .expect("layout");
        assert!(l2.assignments.iter().all(|p| p.len() == 3));
        assert!(!l2.assignments.iter().flatten().any(|n| n == "d"));
    }

    #[test]
    fn drain_and_remove_are_refused_below_the_replication_factor_unless_forced() {
        let nodes = [node("a"), node("b"), node("c"), node("d")];
        assert!(check_drain(&nodes, "d", 3, false, G).is_ok());
        assert!(matches!(
            check_drain(&nodes[..3], "c", 3, false, G),
            Err(HealError::BelowReplication { left: 2, .. })
        ));
        assert!(check_drain(&nodes[..3], "c", 3, true, G).is_ok());
        assert!(matches!(
            check_drain(&nodes, "x", 3, true, G),
            Err(HealError::UnknownNode(_))
        ));
        let l = layout(&[&["a", "b", "d"]]);
        assert!(matches!(
            check_remove(&nodes, Some(&l), &[], "d", 3, false, G),
            Err(HealError::StillHolds { slots: 1, .. })
        ));
        assert!(check_remove(&nodes, Some(&l), &[], "d", 3, true, G).is_ok());
        let l = layout(&[&["a", "b", "c"]]);
        assert!(check_remove(&nodes, Some(&l), &[], "d", 3, false, G).is_ok());
        assert!(matches!(
            check_remove(&nodes, Some(&l), &[4], "d", 3, false, G),
            Err(HealError::StillMoving { partition: 4, .. })
        ));
        // A lost node does not count towards what remains.
        let nodes = [node("a"), node("b"), down("c", GRACE), node("d")];
        assert!(matches!(
            check_remove(&nodes, Some(&l), &[], "d", 3, false, G),
            Err(HealError::BelowReplication { left: 2, .. })
        ));
        let mut removed = node("d");
        removed.state = NodeState::Removed;
        assert!(matches!(
            check_remove(&[removed], None, &[], "d", 3, true, G),
            Err(HealError::AlreadyRemoved(_))
        ));
    }
}
