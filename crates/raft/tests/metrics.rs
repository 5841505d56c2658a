//! The Raft metrics of a one-node registry: group counts by kind, proposals and their commit
//! latency, leader changes and snapshots as they happen.

use std::time::Duration;

use cairn_meta::model::BucketRecord;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::Command;
use cairn_raft::{Registry, RegistryConfig};

fn config(dir: &std::path::Path) -> RegistryConfig {
    RegistryConfig {
        dir: dir.to_path_buf(),
        node_id: 1,
        rpc_addr: "127.0.0.1:7000".into(),
        partitions: 4,
        snapshot_every: 20,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        trust: None,
    }
}

fn text(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
    out
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_reports_its_groups_proposals_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(config(dir.path())).await.unwrap();
    let mut prom = prometheus_client::registry::Registry::with_prefix("cairn");
    reg.register_metrics(&mut prom);

    for i in 0..45 {
        let cmd = Command::CreateBucket {
            record: BucketRecord {
                versioning: None,
                object_lock: None,
                name: format!("b{i:03}"),
                created_ms: 1,
                write_consistency: None,
                owner: None,
            },
        };
        reg.propose(SYSTEM_GROUP, cmd).await.unwrap();
    }
    // Snapshots are built in the background after every 20 entries; openraft's metrics
    // follow the last apply shortly.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = text(&prom);
        let settled = value(&out, "cairn_raft_snapshots_total{kind=\"system\"}") >= 2.0
            && value(&out, "cairn_raft_apply_lag_entries{kind=\"system\"}") == 0.0;
        if settled || tokio::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        value(&out, "cairn_raft_snapshots_total{kind=\"system\"}") >= 2.0,
        "{out}"
    );
    assert_eq!(value(&out, "cairn_raft_groups{kind=\"system\"}"), 1.0);
    assert_eq!(value(&out, "cairn_raft_groups{kind=\"partition\"}"), 4.0);
    assert_eq!(value(&out, "cairn_raft_leaders{kind=\"partition\"}"), 4.0);
    assert_eq!(
        value(&out, "cairn_raft_groups_leaderless{kind=\"system\"}"),
        0.0
    );
    assert_eq!(
        value(
            &out,
            "cairn_raft_proposals_total{kind=\"system\",outcome=\"ok\"}"
        ),
        45.0
    );
    assert_eq!(
        value(
            &out,
            "cairn_raft_commit_duration_seconds_count{kind=\"system\"}"
        ),
        45.0
    );
    assert_eq!(
        value(
            &out,
            "cairn_raft_proposals_total{kind=\"partition\",outcome=\"ok\"}"
        ),
        0.0
    );
    assert_eq!(
        value(&out, "cairn_raft_apply_lag_entries{kind=\"system\"}"),
        0.0
    );
    assert!(value(&out, "cairn_raft_log_entries{kind=\"system\"}") >= 45.0);
    // Each group elected this node once: one change per group.
    assert_eq!(
        value(&out, "cairn_raft_leader_changes_total{kind=\"system\"}"),
        1.0
    );
    assert_eq!(
        value(&out, "cairn_raft_leader_changes_total{kind=\"partition\"}"),
        4.0
    );
    reg.shutdown().await;
}
