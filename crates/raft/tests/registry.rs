//! A one-node registry: proposals commit, survive a restart, and the log is compacted by
//! snapshots without losing state.

use cairn_meta::model::BucketRecord;
use cairn_meta::placement::SYSTEM_GROUP;
use cairn_meta::{Command, CommandError, Response};
use cairn_raft::{Registry, RegistryConfig};

fn config(dir: &std::path::Path, snapshot_every: u64) -> RegistryConfig {
    RegistryConfig {
        dir: dir.to_path_buf(),
        node_id: 1,
        rpc_addr: "127.0.0.1:7000".into(),
        partitions: 4,
        snapshot_every,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        trust: None,
    }
}

fn bucket(name: &str) -> Command {
    Command::CreateBucket {
        record: BucketRecord {
            versioning: None,
            object_lock: None,
            name: name.into(),
            created_ms: 1,
            write_consistency: None,
            owner: None,
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_commit_and_survive_restart_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let reg = Registry::open(config(dir.path(), 20)).await.unwrap();
        assert_eq!(reg.groups(), vec![0, 1, 2, 3, 4]);
        assert!(reg.is_leader(SYSTEM_GROUP));
        for i in 0..60 {
            let r = reg
                .propose(SYSTEM_GROUP, bucket(&format!("b{i:03}")))
                .await
                .unwrap();
            assert_eq!(r, Response::Done);
        }
        let r = reg.propose(SYSTEM_GROUP, bucket("b000")).await.unwrap();
        assert_eq!(r, Response::Refused(CommandError::BucketExists));
        reg.read_barrier(SYSTEM_GROUP).await.unwrap();
        assert_eq!(reg.meta().list_buckets(SYSTEM_GROUP).unwrap().len(), 60);
        reg.shutdown().await;
    }
    // The database is released once every group task has dropped its handle.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Restart on the same directory: same state, groups lead again, writes continue.
    let reg = Registry::open(config(dir.path(), 20)).await.unwrap();
    reg.read_barrier(SYSTEM_GROUP).await.unwrap();
    let names: Vec<_> = reg
        .meta()
        .list_buckets(SYSTEM_GROUP)
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names.len(), 60);
    assert_eq!(names[0], "b000");
    assert_eq!(
        reg.propose(SYSTEM_GROUP, bucket("after")).await.unwrap(),
        Response::Done
    );
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_across_groups_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(config(dir.path(), 1000)).await.unwrap();
    let mut tasks = Vec::new();
    for g in 0..=4u64 {
        for i in 0..25 {
            let reg = reg.clone();
            tasks.push(tokio::spawn(async move {
                reg.propose(g, bucket(&format!("g{g}-{i}"))).await
            }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Response::Done);
    }
    for g in 0..=4u64 {
        reg.read_barrier(g).await.unwrap();
        assert_eq!(reg.meta().list_buckets(g).unwrap().len(), 25);
    }
    reg.shutdown().await;
}
