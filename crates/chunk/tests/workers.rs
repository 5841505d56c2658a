//! The chunk layer's workers on a real one-node registry and chunk store, run by
//! `cairn_worker::Workers`: GC deletes exactly the unreferenced, unpinned, old chunk files and
//! reports it in its status and metrics.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunk::gc::Gc;
use cairn_chunk::{ChunkId, ChunkStore};
use cairn_meta::placement::partition_group;
use cairn_meta::{Command, RefOp};
use cairn_worker::{WorkerState, Workers};
use tokio::sync::watch;

const PARTITIONS: u32 = 4;

async fn open(dir: &std::path::Path) -> (Arc<cairn_raft::Registry>, ChunkStore) {
    let store = ChunkStore::open(dir.join("chunks")).unwrap();
    let registry = cairn_raft::Registry::open(cairn_raft::RegistryConfig {
        dir: dir.join("meta"),
        node_id: 1,
        rpc_addr: "127.0.0.1:7000".into(),
        partitions: PARTITIONS,
        snapshot_every: 1000,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        trust: None,
    })
    .await
    .unwrap();
    (registry, store)
}

async fn put(store: &ChunkStore, seed: u8) -> ChunkId {
    let data = Bytes::from(vec![seed; 1000 + seed as usize]);
    let id = ChunkId::of(&data);
    store.put(id, data).await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_worker_keeps_referenced_and_pinned_chunks_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = open(dir.path()).await;
    let garbage = put(&store, 1).await;
    let referenced = put(&store, 2).await;
    let pinned = put(&store, 3).await;
    let _pin = store.pin(pinned);
    let group = partition_group(referenced.partition(PARTITIONS));
    reg.propose(
        group,
        Command::RefOps {
            ops: vec![RefOp::Add {
                chunk: referenced,
                owner: "o\0b\0k\0v1".into(),
            }],
        },
    )
    .await
    .unwrap();
    // Files must be strictly older than the (zero) grace period.
    tokio::time::sleep(Duration::from_millis(20)).await;

    let (tx, rx) = watch::channel(false);
    let workers = Workers::new(rx);
    let mut metrics = prometheus_client::registry::Registry::with_prefix("cairn");
    workers.register_metrics(&mut metrics);
    store.metrics().register(&mut metrics);
    workers
        .spawn(Gc::new(
            reg.clone(),
            store.clone(),
            Duration::ZERO,
            Duration::from_millis(50),
        ))
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.has(&garbage).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "GC never collected the garbage chunk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A few more passes change nothing for the live chunks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(store.has(&referenced).await.unwrap());
    assert!(store.has(&pinned).await.unwrap());
    let status = workers.status("gc").unwrap();
    assert_eq!(status.items, 1, "{status:?}");
    assert_eq!(status.errors, 0, "{status:?}");
    assert_eq!(status.queue_length, Some(0));
    assert!(status.note.unwrap().contains("2 chunks"));

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &metrics).unwrap();
    for needle in [
        "cairn_worker_items_total{worker=\"gc\"} 1",
        "cairn_chunk_deleted_total 1",
        "cairn_chunk_writes_total 3",
        "cairn_chunk_stored_chunks 2",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    // Paused, GC leaves a new garbage chunk alone; resumed, it collects it.
    workers.pause("gc").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while workers.status("gc").unwrap().state != WorkerState::Paused {
        assert!(tokio::time::Instant::now() < deadline, "GC never paused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let later = put(&store, 4).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        store.has(&later).await.unwrap(),
        "a paused GC deleted a chunk"
    );
    workers.resume("gc").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.has(&later).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "resumed GC never collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    tx.send(true).unwrap();
    reg.shutdown().await;
}
