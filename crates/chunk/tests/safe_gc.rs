//! Safe GC by protocol on a real one-node registry and chunk store, with a zero grace period
//! (so nothing below is protected by timing): an upload intent keeps a chunk from GC until the
//! commit's reference has replaced it, a refused or abandoned upload releases it, a crashed
//! uploader's intent expires, GC's check-and-delete excludes writes of the chunk, and a dedup
//! write never adopts a corrupt copy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunk::gc::collect_garbage;
use cairn_chunk::intents::{sweep, INTENT_TTL};
use cairn_chunk::refs::deliver_refs;
use cairn_chunk::{ChunkId, ChunkStore, Intent};
use cairn_meta::model::{ChunkRef, ObjectData, ObjectRecord};
use cairn_meta::placement::{bucket_partition, partition_group};
use cairn_meta::store::{intent_created_ms, intent_owner, object_owner};
use cairn_meta::{Command, CommandError, Condition, Query, QueryResult, RefOp, Response};
use cairn_raft::Registry;

const PARTITIONS: u32 = 4;

async fn open(dir: &std::path::Path) -> (Arc<Registry>, ChunkStore) {
    let store = ChunkStore::open(dir.join("chunks")).unwrap();
    let registry = Registry::open(cairn_raft::RegistryConfig {
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

fn chunk(seed: u8) -> (ChunkId, Bytes) {
    let data = Bytes::from(vec![seed; 3000 + seed as usize]);
    (ChunkId::of(&data), data)
}

/// GC with a zero grace period, after the files are strictly older than it.
async fn gc(reg: &Registry, store: &ChunkStore) -> u64 {
    tokio::time::sleep(Duration::from_millis(20)).await;
    collect_garbage(reg, store, Duration::ZERO).await.unwrap()
}

async fn ref_count(reg: &Registry, id: ChunkId) -> u64 {
    let group = partition_group(id.partition(PARTITIONS));
    match reg
        .query(group, &Query::ChunkRefCount { chunk: id })
        .await
        .unwrap()
    {
        QueryResult::Count(n) => n as u64,
        other => panic!("unexpected {other:?}"),
    }
}

fn record(version: &str, chunks: &[(ChunkId, Bytes)]) -> ObjectRecord {
    ObjectRecord {
        versioned: false,
        version: version.into(),
        size: chunks.iter().map(|(_, d)| d.len() as u64).sum(),
        etag: "e".into(),
        last_modified_ms: 0,
        headers: Default::default(),
        checksum: None,
        part_checksums: None,
        parts: None,
        data: ObjectData::Chunks(
            chunks
                .iter()
                .map(|(id, d)| ChunkRef {
                    id: *id,
                    len: d.len() as u64,
                })
                .collect(),
        ),
        encryption: None,
        lock: None,
    }
}

fn object_group() -> u64 {
    partition_group(bucket_partition("b", 0, PARTITIONS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intent_keeps_a_chunk_until_the_commits_reference_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = open(dir.path()).await;
    let (id, data) = chunk(1);
    let intent = Intent::new(reg.clone(), object_group(), "upload-1");
    intent.cover(id).await.unwrap();
    store.put(id, data.clone()).await.unwrap();
    // Uploaded, not committed: only the intent references it.
    assert_eq!(ref_count(&reg, id).await, 1);
    assert_eq!(gc(&reg, &store).await, 0);
    assert!(store.has(&id).await.unwrap());

    // Committed: the outbox holds the object's Add, then the intent's Remove.
    let put = Command::PutObject {
        bucket: "b".into(),
        key: "k".into(),
        record: record("v1", &[(id, data)]),
        condition: Condition::None,
    };
    let cmd = intent.commit_command(put);
    assert!(matches!(cmd, Command::WithIntent { .. }));
    assert_eq!(
        reg.propose(object_group(), cmd).await.unwrap(),
        Response::Done
    );
    let outbox = reg.meta().outbox(object_group(), 10).unwrap();
    assert_eq!(
        outbox.iter().map(|(_, op)| op.clone()).collect::<Vec<_>>(),
        vec![
            RefOp::Add {
                chunk: id,
                owner: object_owner("b", "k", "v1"),
            },
            RefOp::Remove {
                chunk: id,
                owner: intent.owner().to_string(),
            },
        ]
    );
    // Before delivery the intent still holds it; after, the object does.
    assert_eq!(gc(&reg, &store).await, 0);
    deliver_refs(&reg).await.unwrap();
    assert_eq!(ref_count(&reg, id).await, 1);
    assert_eq!(gc(&reg, &store).await, 0);
    assert!(store.has(&id).await.unwrap());

    // Deleted: nothing references it any more.
    reg.propose(
        object_group(),
        Command::DeleteObject {
            bucket: "b".into(),
            key: "k".into(),
            at_ms: 0,
            bypass_governance: false,
        },
    )
    .await
    .unwrap();
    deliver_refs(&reg).await.unwrap();
    assert_eq!(ref_count(&reg, id).await, 0);
    assert_eq!(gc(&reg, &store).await, 1);
    assert!(!store.has(&id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_queues_nothing_and_a_released_intent_frees_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = open(dir.path()).await;
    let (first, first_data) = chunk(2);
    let (id, data) = chunk(3);
    // An existing key makes an `If-None-Match: *` put fail.
    let put = |version: &str, chunks: &[(ChunkId, Bytes)]| Command::PutObject {
        bucket: "b".into(),
        key: "k".into(),
        record: record(version, chunks),
        condition: Condition::Absent,
    };
    store.put(first, first_data.clone()).await.unwrap();
    reg.propose(object_group(), put("v1", &[(first, first_data)]))
        .await
        .unwrap();
    deliver_refs(&reg).await.unwrap();

    let intent = Intent::new(reg.clone(), object_group(), "upload-2");
    intent.cover(id).await.unwrap();
    store.put(id, data.clone()).await.unwrap();
    let r = reg
        .propose(
            object_group(),
            intent.commit_command(put("v2", &[(id, data)])),
        )
        .await
        .unwrap();
    assert_eq!(r, Response::Refused(CommandError::PreconditionFailed));
    assert!(reg.meta().outbox(object_group(), 10).unwrap().is_empty());
    assert_eq!(
        gc(&reg, &store).await,
        0,
        "the intent still holds the chunk"
    );
    intent.release().await;
    assert_eq!(ref_count(&reg, id).await, 0);
    assert_eq!(gc(&reg, &store).await, 1);
    assert!(store.has(&first).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_uploaders_intent_expires_and_a_young_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = open(dir.path()).await;
    let (old, old_data) = chunk(4);
    let (young, young_data) = chunk(5);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stale = now_ms - INTENT_TTL.as_millis() as i64 - 60_000;
    let (old_owner, young_owner) = (
        intent_owner(stale, 9, 1, object_group(), "crashed"),
        intent_owner(now_ms, 9, 1, object_group(), "alive"),
    );
    for (id, owner) in [(old, old_owner.clone()), (young, young_owner.clone())] {
        assert!(intent_created_ms(&owner).is_some());
        reg.propose(
            partition_group(id.partition(PARTITIONS)),
            Command::RefOps {
                ops: vec![RefOp::Add { chunk: id, owner }],
            },
        )
        .await
        .unwrap();
    }
    store.put(old, old_data.clone()).await.unwrap();
    store.put(young, young_data.clone()).await.unwrap();
    assert_eq!(sweep(&reg).await.unwrap(), 1);
    assert_eq!(ref_count(&reg, old).await, 0);
    assert_eq!(ref_count(&reg, young).await, 1);
    // The swept upload is fenced: were it still alive (a stalled process, a clock a day
    // behind), its commit is refused rather than referencing a chunk GC may collect...
    let commit = |owner: &str, key: &str, id: ChunkId, data: Bytes| Command::WithIntent {
        intent: owner.to_string(),
        chunks: vec![id],
        command: Box::new(Command::PutObject {
            bucket: "b".into(),
            key: key.into(),
            record: record(&format!("v-{key}"), &[(id, data)]),
            condition: Condition::None,
        }),
    };
    assert!(matches!(
        reg.propose(object_group(), commit(&old_owner, "old", old, old_data))
            .await
            .unwrap(),
        Response::Refused(CommandError::Invalid(_))
    ));
    // ... while a younger upload of the same node still commits.
    assert_eq!(
        reg.propose(
            object_group(),
            commit(&young_owner, "young", young, young_data)
        )
        .await
        .unwrap(),
        Response::Done
    );
    deliver_refs(&reg).await.unwrap();
    assert_eq!(gc(&reg, &store).await, 1);
    assert!(!store.has(&old).await.unwrap());
    assert!(store.has(&young).await.unwrap());
    // Object and part owners are never taken for intents.
    assert_eq!(intent_created_ms(&object_owner("b", "1", "v")), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_gcs_check_and_delete_and_then_rewrites_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (_reg, store) = open(dir.path()).await;
    let (id, data) = chunk(6);
    store.put(id, data.clone()).await.unwrap();
    let lock = store.lock(id).await;
    let writer = {
        let (store, data) = (store.clone(), data.clone());
        tokio::spawn(async move { store.put(id, data).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !writer.is_finished(),
        "a put ran inside GC's check-and-delete"
    );
    assert!(lock.delete().await.unwrap());
    drop(lock);
    // The dedup write did not adopt the deleted file: it wrote the chunk again.
    assert!(writer.await.unwrap().unwrap());
    assert_eq!(store.get(&id).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedup_write_never_adopts_a_corrupt_copy_of_the_right_size() {
    let dir = tempfile::tempdir().unwrap();
    let (_reg, store) = open(dir.path()).await;
    let (id, data) = chunk(7);
    assert!(store.put(id, data.clone()).await.unwrap());
    let hex = id.to_hex();
    let path = store.root().join(&hex[0..2]).join(&hex[2..4]).join(&hex);
    let mut rotten = data.to_vec();
    rotten[100] ^= 0x01;
    std::fs::write(&path, &rotten).unwrap();
    // Same size, wrong bytes: quarantined and rewritten, not deduplicated.
    assert!(store.put(id, data.clone()).await.unwrap());
    assert_eq!(std::fs::read(&path).unwrap(), data.to_vec());
    assert_eq!(store.scan(Duration::ZERO).await.unwrap().quarantined, 1);
    // A sound copy is still deduplicated.
    assert!(!store.put(id, data).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_process_intents_are_fenced_then_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (reg, store) = open(dir.path()).await;
    let (id, data) = chunk(8);
    // Made by an earlier process of this node (another boot), for an upload in `object_group`.
    let owner = intent_owner(1, reg.node_id(), 1, object_group(), "died");
    reg.propose(
        partition_group(id.partition(PARTITIONS)),
        Command::RefOps {
            ops: vec![RefOp::Add {
                chunk: id,
                owner: owner.clone(),
            }],
        },
    )
    .await
    .unwrap();
    store.put(id, data.clone()).await.unwrap();
    // A fresh intent of this process is not touched.
    let alive = Intent::new(reg.clone(), object_group(), "alive");
    let (kept, kept_data) = chunk(9);
    alive.cover(kept).await.unwrap();
    store.put(kept, kept_data.clone()).await.unwrap();

    assert_eq!(sweep(&reg).await.unwrap(), 1);
    assert_eq!(ref_count(&reg, id).await, 0);
    assert_eq!(ref_count(&reg, kept).await, 1);
    // The dead process's commit, had it still been in flight, is refused now...
    let late = Command::WithIntent {
        intent: owner,
        chunks: vec![id],
        command: Box::new(Command::PutObject {
            bucket: "b".into(),
            key: "late".into(),
            record: record("v-late", &[(id, data)]),
            condition: Condition::None,
        }),
    };
    assert!(matches!(
        reg.propose(object_group(), late).await.unwrap(),
        Response::Refused(CommandError::Invalid(_))
    ));
    // ... while this process's commits still apply.
    let ok = alive.commit_command(Command::PutObject {
        bucket: "b".into(),
        key: "kept".into(),
        record: record("v-kept", &[(kept, kept_data)]),
        condition: Condition::None,
    });
    assert_eq!(
        reg.propose(object_group(), ok).await.unwrap(),
        Response::Done
    );
    deliver_refs(&reg).await.unwrap();
    assert_eq!(gc(&reg, &store).await, 1);
    assert!(!store.has(&id).await.unwrap());
    assert!(store.has(&kept).await.unwrap());
}
