//! `ReplicatedChunks` against real `ChunkService` servers (plain gRPC on loopback, no TLS):
//! writes meet their consistency level (changeable at run time), an unreachable replica is
//! reported as a typed error, reads repair a missing local copy from a peer, and the hand-back
//! worker drops a copy of a partition placed elsewhere only once every holder has it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunk::{
    ChunkError, ChunkId, ChunkIo, ChunkServer, ChunkStore, Placement, Replica, ReplicaError,
    ReplicatedChunks, WriteConsistency,
};
use cairn_meta::model::NodeHealth;
use cairn_rpc::pb::chunk_service_server::ChunkServiceServer;

/// Every partition on the same fixed replicas.
struct Fixed(Vec<Replica>);

/// Like [`Fixed`], with the nodes that published a full disk.
struct PublishedFull(Vec<Replica>, parking_lot::Mutex<Vec<String>>);

impl Placement for PublishedFull {
    fn chunk_replicas(&self, _partition: u32) -> Vec<Replica> {
        self.0.clone()
    }
    fn partitions_on(&self, _node_id: &str) -> Option<Vec<u32>> {
        Some((0..4).collect())
    }
    fn is_full(&self, node_id: &str) -> bool {
        self.1.lock().iter().any(|n| n == node_id)
    }
}

impl Placement for Fixed {
    fn chunk_replicas(&self, _partition: u32) -> Vec<Replica> {
        self.0.clone()
    }
    fn partitions_on(&self, node_id: &str) -> Option<Vec<u32>> {
        Some(if self.0.iter().any(|r| r.node_id == node_id) {
            (0..4).collect()
        } else {
            Vec::new()
        })
    }
}

fn replica(id: &str, addr: &str) -> Replica {
    Replica {
        node_id: id.into(),
        rpc_addr: addr.into(),
        health: NodeHealth::Up,
    }
}

/// Serves a fresh store on a loopback port; returns its address and the store.
async fn serve(dir: &std::path::Path, name: &str) -> (String, ChunkStore) {
    let store = ChunkStore::open(dir.join(name)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let svc = ChunkServiceServer::new(ChunkServer::new(store.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, store)
}

fn chunk(seed: u8) -> (ChunkId, Bytes) {
    let data = Bytes::from(vec![seed; 4096 + seed as usize]);
    (ChunkId::of(&data), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_meet_their_consistency_and_reads_repair() {
    let dir = tempfile::tempdir().unwrap();
    let local = ChunkStore::open(dir.path().join("a")).unwrap();
    let (b_addr, b) = serve(dir.path(), "b").await;
    let (c_addr, c) = serve(dir.path(), "c").await;
    let placement = Arc::new(Fixed(vec![
        replica("a", "unused:1"),
        replica("b", &b_addr),
        replica("c", &c_addr),
    ]));
    let io = ReplicatedChunks::new(
        local.clone(),
        "a".into(),
        cairn_raft::Peers::plaintext(),
        placement,
        4,
        WriteConsistency::All,
    );

    // ALL: every replica holds it when put returns.
    let (id, data) = chunk(1);
    io.put(id, data.clone(), None).await.unwrap();
    for s in [&local, &b, &c] {
        assert!(s.has(&id).await.unwrap());
    }

    // This node's copy lost: a read fetches it from a peer and restores it locally.
    local.delete(&id).await.unwrap();
    assert_eq!(io.get(id).await.unwrap(), data);
    assert!(local.has(&id).await.unwrap());
    assert_eq!(local.metrics().read_repairs(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_replica_is_a_typed_error_until_consistency_is_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let local = ChunkStore::open(dir.path().join("a")).unwrap();
    let (b_addr, _b) = serve(dir.path(), "b").await;
    // Port 1 on loopback: connection refused.
    let placement = Arc::new(Fixed(vec![
        replica("a", "unused:1"),
        replica("b", &b_addr),
        replica("dead", "127.0.0.1:1"),
    ]));
    let io = ReplicatedChunks::new(
        local.clone(),
        "a".into(),
        cairn_raft::Peers::plaintext(),
        placement,
        4,
        WriteConsistency::All,
    );
    let (id, data) = chunk(2);
    match io.put(id, data.clone(), None).await {
        Err(ChunkError::Unavailable {
            id: got,
            acked,
            required,
            errors,
        }) => {
            // The write gives up as soon as ALL is out of reach (the others finish anyway).
            assert_eq!((got, required), (id, 3));
            assert!(acked < 3, "{acked}");
            assert_eq!(errors.len(), 1);
            assert!(
                matches!(&errors[0], ReplicaError::Status { node, .. } | ReplicaError::Unreachable { node, .. } if node == "dead"),
                "{errors:?}"
            );
            assert!(!errors[0].repairable());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // The request's own level wins over the default.
    io.put(id, data.clone(), Some(WriteConsistency::Quorum))
        .await
        .unwrap();
    // Lowering the node default makes writes without a level succeed.
    io.set_write_consistency(WriteConsistency::Quorum);
    assert_eq!(io.write_consistency(), WriteConsistency::Quorum);
    let (id2, data2) = chunk(3);
    io.put(id2, data2, None).await.unwrap();

    // A chunk no reachable replica holds is `Lost`, with every replica's reason.
    let (id3, _) = chunk(4);
    match io.get(id3).await {
        Err(ChunkError::Lost { id: got, errors }) => {
            assert_eq!(got, id3);
            assert_eq!(errors.len(), 3, "{errors:?}");
            assert!(
                errors.iter().any(|e| e.repairable()),
                "b answered NotFound: {errors:?}"
            );
        }
        other => panic!("expected Lost, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_refuses_is_steered_around_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let local = ChunkStore::open(dir.path().join("a")).unwrap();
    let (b_addr, b) = serve(dir.path(), "b").await;
    let (c_addr, c) = serve(dir.path(), "c").await;
    // c's disk is "full": no file system has u64::MAX bytes free.
    c.disk().set_reserve(u64::MAX);
    assert!(c.is_full());
    let placement = Arc::new(Fixed(vec![
        replica("a", "unused:1"),
        replica("b", &b_addr),
        replica("c", &c_addr),
    ]));
    let io = ReplicatedChunks::new(
        local.clone(),
        "a".into(),
        cairn_raft::Peers::plaintext(),
        placement,
        4,
        WriteConsistency::Quorum,
    );

    // QUORUM is met by a and b; c refused and holds nothing.
    let (id, data) = chunk(10);
    io.put(id, data.clone(), None).await.unwrap();
    assert!(local.has(&id).await.unwrap() && b.has(&id).await.unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while local.metrics().replica_full_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "refusal not counted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!c.has(&id).await.unwrap(), "a full replica takes no copy");

    // ALL cannot be met: a typed, disk-full failure (answered 503 SlowDown), not a storage
    // error; c is skipped without being sent the bytes.
    let (id2, data2) = chunk(11);
    match io
        .put(id2, data2.clone(), Some(WriteConsistency::All))
        .await
    {
        Err(e @ ChunkError::Unavailable { .. }) => {
            assert!(e.is_disk_full(), "{e}");
            if let ChunkError::Unavailable { errors, .. } = &e {
                assert!(errors.iter().any(|r| r.is_disk_full() && !r.repairable()));
            }
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(!c.has(&id2).await.unwrap());

    // Reads are unaffected: the full node still serves what it holds.
    assert_eq!(io.get(id).await.unwrap(), data);

    // A full local disk refuses too, with the store's own typed error.
    local.disk().set_reserve(u64::MAX);
    let (id3, data3) = chunk(12);
    assert!(matches!(
        local.put(id3, data3.clone()).await,
        Err(ChunkError::DiskFull { .. })
    ));
    // ... but a dedup hit takes no space and is accepted.
    assert!(!local.put(id, data.clone()).await.unwrap());

    // Space returns: after the back-off, c takes copies again.
    local.disk().set_reserve(0);
    c.disk().set_reserve(0);
    tokio::time::sleep(cairn_chunk::FULL_BACKOFF).await;
    io.put(id3, data3, Some(WriteConsistency::All))
        .await
        .unwrap();
    assert!(c.has(&id3).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handback_drops_only_copies_every_holder_has() {
    use cairn_chunk::handback::Handback;
    use cairn_worker::Workers;

    let dir = tempfile::tempdir().unwrap();
    // "x" is a node whose partitions were placed elsewhere (re-homed, drained): b and c hold
    // everything now.
    let x = ChunkStore::open(dir.path().join("x")).unwrap();
    let (b_addr, b) = serve(dir.path(), "b").await;
    let (c_addr, c) = serve(dir.path(), "c").await;
    let placement = Arc::new(Fixed(vec![replica("b", &b_addr), replica("c", &c_addr)]));
    let io = Arc::new(ReplicatedChunks::new(
        x.clone(),
        "x".into(),
        cairn_raft::Peers::plaintext(),
        placement,
        4,
        WriteConsistency::All,
    ));
    let (everywhere, e_data) = chunk(10);
    let (only_b, b_data) = chunk(11);
    let (pinned, p_data) = chunk(12);
    for (id, data) in [(everywhere, &e_data), (only_b, &b_data), (pinned, &p_data)] {
        x.put(id, data.clone()).await.unwrap();
        b.put(id, data.clone()).await.unwrap();
    }
    c.put(everywhere, e_data.clone()).await.unwrap();
    c.put(pinned, p_data.clone()).await.unwrap();
    let pin = x.pin(pinned);

    let (_tx, rx) = tokio::sync::watch::channel(false);
    let workers = Workers::new(rx);
    workers
        .spawn(Handback::new(io.clone(), Duration::from_millis(50)).with_min_age(Duration::ZERO))
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while x.has(&everywhere).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "never handed back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A few more passes: what c lacks stays, as does a chunk a write is using.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        x.has(&only_b).await.unwrap(),
        "dropped a copy a holder lacks"
    );
    assert!(x.has(&pinned).await.unwrap(), "dropped a pinned copy");
    let status = workers.status("chunk-handback").unwrap();
    assert_eq!(
        (status.items, status.bytes),
        (1, e_data.len() as u64),
        "{status:?}"
    );

    // Once c has it too (chunk sync there), the copy leaves; the pin released, so does the other.
    c.put(only_b, b_data).await.unwrap();
    drop(pin);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while x.has(&only_b).await.unwrap() || x.has(&pinned).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never handed back the rest"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The holders' copies are untouched.
    for id in [everywhere, only_b, pinned] {
        assert!(b.has(&id).await.unwrap() && c.has(&id).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handback_keeps_copies_while_a_holder_is_unreachable() {
    use cairn_chunk::handback::Handback;
    use cairn_worker::Workers;

    let dir = tempfile::tempdir().unwrap();
    let x = ChunkStore::open(dir.path().join("x")).unwrap();
    let (b_addr, b) = serve(dir.path(), "b").await;
    let placement = Arc::new(Fixed(vec![
        replica("b", &b_addr),
        replica("dead", "127.0.0.1:1"),
    ]));
    let io = Arc::new(ReplicatedChunks::new(
        x.clone(),
        "x".into(),
        cairn_raft::Peers::plaintext(),
        placement,
        4,
        WriteConsistency::All,
    ));
    let (id, data) = chunk(13);
    x.put(id, data.clone()).await.unwrap();
    b.put(id, data).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let workers = Workers::new(rx);
    workers
        .spawn(Handback::new(io, Duration::from_millis(50)).with_min_age(Duration::ZERO))
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !workers
        .status("chunk-handback")
        .and_then(|s| s.note)
        .is_some_and(|n| n.contains("1 copies"))
    {
        assert!(tokio::time::Instant::now() < deadline, "no pass finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(x.has(&id).await.unwrap(), "dropped while a holder was down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_published_a_full_disk_is_skipped_before_any_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let local = ChunkStore::open(dir.path().join("a")).unwrap();
    let (b_addr, b) = serve(dir.path(), "b").await;
    let (c_addr, c) = serve(dir.path(), "c").await;
    let placement = Arc::new(PublishedFull(
        vec![
            replica("a", "unused:1"),
            replica("b", &b_addr),
            replica("c", &c_addr),
        ],
        parking_lot::Mutex::new(vec!["c".to_string()]),
    ));
    let io = ReplicatedChunks::new(
        local.clone(),
        "a".into(),
        cairn_raft::Peers::plaintext(),
        placement.clone(),
        4,
        WriteConsistency::Quorum,
    );
    // c says it is full: the write is met by a and b and c is never sent the bytes (its disk
    // has room, so a copy sent would have been taken).
    let (id, data) = chunk(20);
    io.put(id, data, None).await.unwrap();
    assert!(local.has(&id).await.unwrap() && b.has(&id).await.unwrap());
    assert_eq!(local.metrics().replica_full_count(), 1, "skipped up front");
    assert!(!c.has(&id).await.unwrap());
    // ALL fails as a disk-full shortfall.
    let (id2, data2) = chunk(21);
    let e = io
        .put(id2, data2.clone(), Some(WriteConsistency::All))
        .await
        .unwrap_err();
    assert!(e.is_disk_full(), "{e}");
    // Once c says it has room again, it takes copies at once (no back-off to wait out).
    placement.1.lock().clear();
    io.put(id2, data2, Some(WriteConsistency::All))
        .await
        .unwrap();
    assert!(c.has(&id2).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answers_its_held_range_digests() {
    use cairn_chunk::ranges::RangeDigests;

    let dir = tempfile::tempdir().unwrap();
    let local = ChunkStore::open(dir.path().join("a")).unwrap();
    let (b_addr, b) = serve(dir.path(), "b").await;
    let peer = replica("b", &b_addr);
    let io = ReplicatedChunks::new(
        local,
        "a".into(),
        cairn_raft::Peers::plaintext(),
        Arc::new(Fixed(vec![replica("a", "unused:1"), peer.clone()])),
        4,
        WriteConsistency::One,
    );
    // Before b's index runs, it knows no range.
    let before = io.peer_range_digests(&peer, 2).await.unwrap();
    assert!(before.iter().all(Option::is_none));

    let ids: Vec<ChunkId> = (30..60).map(|s| chunk(s).0).collect();
    for s in 30..60 {
        let (id, data) = chunk(s);
        b.put(id, data).await.unwrap();
    }
    b.refresh_held(4).await.unwrap();
    let got = io.peer_range_digests(&peer, 2).await.unwrap();
    let want = RangeDigests::of(ids.iter().filter(|id| id.partition(4) == 2));
    assert_eq!(got, want.0.into_iter().map(Some).collect::<Vec<_>>());
}
