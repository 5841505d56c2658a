//! The rebalance plan in the system group's state machine: a layout change plans moves, slots
//! are granted up to `rebalance.max_moves` and never while paused, a finish records the bytes,
//! and cancel writes a layout keeping the planned partitions in place.

use std::sync::Arc;

use cairn_meta::model::{ClusterConfig, LayoutRecord};
use cairn_meta::rebalance::MoveState;
use cairn_meta::{Command, CommandError, MetaStore, Response};

fn layout(version: u64, parts: &[&[&str]]) -> LayoutRecord {
    LayoutRecord {
        version,
        replication: 2,
        assignments: parts
            .iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect(),
        created_ms: 100 * version as i64,
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn start(p: u32, from: &[&str], to: &[&str]) -> Command {
    Command::RebalanceStart {
        partition: p,
        node: "a".into(),
        from: ids(from),
        to: ids(to),
        at_ms: 1_000,
    }
}

#[test]
fn the_plan_bounds_moves_pauses_and_cancels_through_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("m.redb")).unwrap());
    let meta = MetaStore::new(db.clone(), 3).unwrap();
    let txn = db.begin_write().unwrap();
    let apply = |c: Command| meta.apply(&txn, 0, &c).unwrap();
    let config = ClusterConfig {
        version: 1,
        partitions: 3,
        replication: 2,
        desired_voters: 1,
        rebalance_max_moves: Some(1),
        ..Default::default()
    };
    assert_eq!(apply(Command::SetClusterConfig { config }), Response::Done);
    let l1 = layout(1, &[&["a", "b"], &["a", "b"], &["a", "b"]]);
    assert_eq!(apply(Command::SetLayout { layout: l1 }), Response::Done);
    let l2 = layout(2, &[&["a", "c"], &["c", "b"], &["a", "b"]]);
    assert_eq!(
        apply(Command::SetLayout { layout: l2.clone() }),
        Response::Done
    );
    txn.commit().unwrap();

    let txn = db.begin_write().unwrap();
    let apply = |c: Command| meta.apply(&txn, 0, &c).unwrap();
    // max_moves 1: the second start waits.
    assert_eq!(apply(start(0, &["a", "b"], &["a", "c"])), Response::Done);
    assert!(matches!(
        apply(start(1, &["a", "b"], &["c", "b"])),
        Response::Refused(CommandError::RebalanceRefused(_))
    ));
    assert_eq!(
        apply(Command::RebalanceFinish {
            partition: 0,
            reached: ids(&["a", "c"]),
            bytes: 4096,
            at_ms: 2_000,
        }),
        Response::Done
    );
    assert_eq!(
        apply(Command::SetRebalancePaused {
            paused: true,
            at_ms: 2_100
        }),
        Response::Done
    );
    assert!(matches!(
        apply(start(1, &["a", "b"], &["c", "b"])),
        Response::Refused(CommandError::RebalanceRefused(_))
    ));
    assert_eq!(
        apply(Command::CancelRebalance {
            expected: ids(&["a", "b", "c"]),
            at_ms: 3_000,
        }),
        Response::Done
    );
    txn.commit().unwrap();

    let plan = meta.rebalance_plan(0).unwrap();
    assert_eq!(plan.moves[&0].state, MoveState::Done);
    assert_eq!(plan.moves[&0].bytes, 4096);
    assert_eq!(plan.moves[&1].state, MoveState::Cancelled);
    assert!(plan.paused);
    // The cancel's layout keeps partition 1 on its voters and holds.
    let l3 = meta.layout(0).unwrap().unwrap();
    assert_eq!(l3.version, 3);
    assert_eq!(l3.assignments[0], ids(&["a", "c"]));
    assert_eq!(l3.assignments[1], ids(&["a", "b"]));
    let expected = ids(&["c", "b", "a"]).into_iter().collect();
    assert!(plan.holds(3, &expected));
    let audit: Vec<String> = meta
        .audit_log(0, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.what)
        .collect();
    assert!(audit.iter().any(|w| w == "rebalance paused"), "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|w| w.starts_with("rebalance cancelled: 1 planned")),
        "{audit:?}"
    );
}
