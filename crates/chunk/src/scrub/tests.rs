use super::*;

use std::fs;

use bytes::Bytes;
use cairn_meta::model::{NodeHealth, WriteConsistency};
use cairn_raft::Peers;
use cairn_rpc::pb::chunk_service_server::ChunkServiceServer;
use cairn_worker::Workers;
use tokio::sync::watch;

use crate::{ChunkServer, ChunkStore, Placement, Replica};

/// Every partition on the same fixed replicas.
struct Fixed(Vec<Replica>);

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

fn replica(node: &str, addr: &str) -> Replica {
    Replica {
        node_id: node.into(),
        rpc_addr: addr.into(),
        health: NodeHealth::Up,
    }
}

fn store(dir: &tempfile::TempDir, name: &str) -> ChunkStore {
    ChunkStore::open(dir.path().join(name)).unwrap()
}

fn chunk(seed: u64, len: usize) -> (ChunkId, Bytes) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    (ChunkId::of(&data), Bytes::from(data))
}

fn path(s: &ChunkStore, id: &ChunkId) -> PathBuf {
    let hex = id.to_hex();
    s.root().join(&hex[0..2]).join(&hex[2..4]).join(hex)
}

/// Flips one bit of the stored copy in place (same size, same file).
fn flip_bit(s: &ChunkStore, id: &ChunkId, at: usize) {
    let p = path(s, id);
    let mut bytes = fs::read(&p).unwrap();
    bytes[at] ^= 0x10;
    fs::write(&p, bytes).unwrap();
}

fn quarantined(s: &ChunkStore) -> usize {
    fs::read_dir(s.root().join("quarantine")).unwrap().count()
}

fn replicated(local: ChunkStore, placement: Vec<Replica>) -> Arc<ReplicatedChunks> {
    Arc::new(ReplicatedChunks::new(
        local,
        "a".into(),
        Peers::plaintext(),
        Arc::new(Fixed(placement)),
        4,
        WriteConsistency::Quorum,
    ))
}

/// Serves `store`'s `ChunkService` on a fresh local port; returns its address.
async fn serve(store: ChunkStore) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ChunkServiceServer::new(ChunkServer::new(store)))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            ),
    );
    (addr, tx)
}

/// A runner and the sender that keeps it running (dropping it stops the workers).
struct Running {
    workers: Workers,
    _shutdown: watch::Sender<bool>,
}

impl std::ops::Deref for Running {
    type Target = Workers;
    fn deref(&self) -> &Workers {
        &self.workers
    }
}

/// Runs `scrub` on a runner until `done` holds for its metrics (or fails after 20 s).
async fn run_until(scrub: Scrub, done: impl Fn(&ScrubMetrics) -> bool) -> Running {
    let metrics = scrub.metrics();
    let (tx, rx) = watch::channel(false);
    let workers = Workers::new(rx);
    workers.spawn(scrub).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&metrics) {
        assert!(
            Instant::now() < deadline,
            "scrub did not get there: {:?}",
            workers.status("scrub")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Running {
        workers,
        _shutdown: tx,
    }
}

#[tokio::test]
async fn verify_finds_a_flipped_bit_and_quarantines_only_that_copy() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "chunks");
    let (good, good_data) = chunk(1, 70_000);
    let (bad, bad_data) = chunk(2, 70_000);
    s.put(good, good_data).await.unwrap();
    s.put(bad, bad_data.clone()).await.unwrap();
    flip_bit(&s, &bad, 12_345);

    assert_eq!(s.verify(&good).await.unwrap(), Verified::Good(70_000));
    match s.verify(&bad).await {
        Err(ChunkError::Corrupt { id, actual }) => {
            assert_eq!(id, bad);
            assert_ne!(actual, bad);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        !s.has(&bad).await.unwrap(),
        "the bad copy must leave its place"
    );
    assert!(s.has(&good).await.unwrap());
    assert_eq!(quarantined(&s), 1);
    assert!(matches!(s.verify(&bad).await, Err(ChunkError::NotFound(_))));
    // A verify is not a read, and the quarantine is counted with the others.
    let text = {
        let mut reg = prometheus_client::registry::Registry::default();
        s.metrics().register(&mut reg);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        out
    };
    assert!(text.contains("chunk_reads_total 0"), "{text}");
    assert!(text.contains("chunk_corrupt_total 1"), "{text}");
    // A re-put writes it again.
    assert!(s.put(bad, bad_data).await.unwrap());
    assert_eq!(s.verify(&bad).await.unwrap(), Verified::Good(70_000));
}

#[tokio::test]
async fn list_after_walks_the_store_in_id_order_from_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "chunks");
    let mut ids = Vec::new();
    for i in 0..40 {
        let (id, data) = chunk(100 + i, 100 + i as usize);
        s.put(id, data).await.unwrap();
        ids.push((id, 100 + i));
    }
    // Junk the walk must skip.
    fs::write(s.root().join("scrub-state.json"), b"{}").unwrap();
    fs::write(s.root().join("quarantine").join("x"), b"x").unwrap();
    ids.sort_by_key(|(id, _)| id.0);

    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let batch = s.list_after(cursor, 7).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 7);
        cursor = batch.last().map(|(id, _)| *id);
        seen.extend(batch);
    }
    assert_eq!(seen, ids);
    // From a cursor that is not a stored id.
    let mid = ChunkId([0x80; 32]);
    let after: Vec<_> = ids.iter().filter(|(id, _)| id.0 > mid.0).cloned().collect();
    assert_eq!(s.list_after(Some(mid), 1000).await.unwrap(), after);
}

#[tokio::test]
async fn a_pass_on_a_lone_node_quarantines_the_bad_copy_and_counts_it_unrepaired() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "chunks");
    for i in 0..10 {
        let (id, data) = chunk(i, 5_000);
        s.put(id, data).await.unwrap();
    }
    let (bad, data) = chunk(99, 5_000);
    s.put(bad, data).await.unwrap();
    flip_bit(&s, &bad, 0);

    // No layout: this node is the only replica, nothing to restore from.
    let scrub = Scrub::new(
        replicated(s.clone(), Vec::new()),
        RateLimit::default(),
        Duration::from_secs(3600),
    );
    let metrics = scrub.metrics();
    let workers = run_until(scrub, |m| m.last_full_pass_secs() > 0).await;
    assert_eq!(metrics.checked_total(), 10);
    assert_eq!(metrics.corrupt_total(), 1);
    assert_eq!(metrics.repaired_total(), 0);
    assert_eq!(metrics.unrepaired_total(), 1);
    assert!(!s.has(&bad).await.unwrap());
    assert_eq!(quarantined(&s), 1);
    let status = workers.status("scrub").unwrap();
    assert_eq!(status.items, 10);
    let note = status.note.unwrap();
    assert!(note.contains("1 full passes"), "{note}");
    assert!(note.contains("1 corrupt, 0 repaired"), "{note}");

    // The state survives a restart: the pass is complete, the next one not due for an hour.
    let saved: ScrubState =
        serde_json::from_slice(&fs::read(s.root().join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(saved.passes, 1);
    assert_eq!(saved.pass_started_ms, None);
    assert_eq!(saved.last_pass.corrupt, 1);
    let again = Scrub::new(
        replicated(s.clone(), Vec::new()),
        RateLimit::default(),
        Duration::from_secs(3600),
    );
    assert_eq!(again.state(), &saved);
    assert!(again.until_next_pass(now_ms()).is_some());
    assert!(again.interval() > Duration::from_secs(3000));
    assert!(again.metrics().last_full_pass_secs() > 0);
}

#[tokio::test]
async fn a_corrupt_copy_is_restored_from_a_good_replica_with_no_read() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir, "a");
    let b = store(&dir, "b");
    let (addr, _stop) = serve(b.clone()).await;
    let mut chunks = Vec::new();
    for i in 0..6 {
        let (id, data) = chunk(1000 + i, 300_000);
        a.put(id, data.clone()).await.unwrap();
        b.put(id, data.clone()).await.unwrap();
        chunks.push((id, data));
    }
    let (bad, good_bytes) = chunks[3].clone();
    flip_bit(&a, &bad, 299_999);

    let io = replicated(
        a.clone(),
        vec![replica("a", "127.0.0.1:1"), replica("b", &addr)],
    );
    let scrub = Scrub::new(io, RateLimit::default(), Duration::from_secs(3600));
    let metrics = scrub.metrics();
    let _workers = run_until(scrub, |m| m.last_full_pass_secs() > 0).await;
    assert_eq!(metrics.corrupt_total(), 1);
    assert_eq!(metrics.repaired_total(), 1);
    assert_eq!(metrics.unrepaired_total(), 0);
    assert_eq!(metrics.checked_total(), 5);
    // The restored copy is the good bytes, in place, and nothing was read through `get`.
    assert_eq!(fs::read(path(&a, &bad)).unwrap(), good_bytes.to_vec());
    assert_eq!(a.verify(&bad).await.unwrap(), Verified::Good(300_000));
    assert_eq!(quarantined(&a), 1);
    for (id, data) in &chunks {
        assert_eq!(&a.get(id).await.unwrap(), data);
    }
}

#[tokio::test]
async fn a_leftover_copy_not_placed_here_is_quarantined_but_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "chunks");
    let (bad, data) = chunk(7, 10_000);
    s.put(bad, data).await.unwrap();
    flip_bit(&s, &bad, 5);
    // The layout places every partition on "b" and "c" only.
    let io = replicated(
        s.clone(),
        vec![replica("b", "127.0.0.1:1"), replica("c", "127.0.0.1:2")],
    );
    let scrub = Scrub::new(io, RateLimit::default(), Duration::from_secs(3600));
    let metrics = scrub.metrics();
    let _workers = run_until(scrub, |m| m.last_full_pass_secs() > 0).await;
    assert_eq!(metrics.corrupt_total(), 1);
    assert_eq!(metrics.repaired_total(), 0);
    assert_eq!(metrics.unrepaired_total(), 0);
    assert!(!s.has(&bad).await.unwrap());
}

#[tokio::test]
async fn a_pass_is_throttled_to_its_rate_and_resumes_from_its_saved_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir, "chunks");
    let mut ids = Vec::new();
    for i in 0..8 {
        let (id, data) = chunk(500 + i, 100_000);
        s.put(id, data).await.unwrap();
        ids.push(id);
    }
    ids.sort_by_key(|id| id.0);
    // 100 kB/s: about one chunk a second.
    let scrub = Scrub::new(
        replicated(s.clone(), Vec::new()),
        RateLimit::new(100_000),
        Duration::from_secs(3600),
    );
    let metrics = scrub.metrics();
    let t0 = Instant::now();
    let workers = run_until(scrub, |m| m.checked_total() >= 3).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1800),
        "3 chunks of 100 kB at 100 kB/s took only {:?}",
        t0.elapsed()
    );
    let status = workers.status("scrub").unwrap();
    assert!(status.note.unwrap().starts_with("pass 1 at"));
    workers.pause("scrub").unwrap();

    // A restart resumes after the saved cursor, keeping the pass's counts.
    let mut state = ScrubState::load(&s.root().join(STATE_FILE));
    assert!(state.pass_started_ms.is_some());
    state.cursor = Some(ids[5].to_hex());
    state.pass.checked = 6;
    state.save(&s.root().join(STATE_FILE)).unwrap();
    let resumed = Scrub::new(
        replicated(s.clone(), Vec::new()),
        RateLimit::default(),
        Duration::from_secs(3600),
    );
    let m2 = resumed.metrics();
    let _w2 = run_until(resumed, |m| m.last_full_pass_secs() > 0).await;
    assert_eq!(
        m2.checked_total(),
        2,
        "only the two chunks after the cursor"
    );
    let saved = ScrubState::load(&s.root().join(STATE_FILE));
    assert_eq!(saved.last_pass.checked, 8);
    assert!(metrics.checked_total() >= 3);
}

#[test]
fn an_unreadable_or_foreign_state_file_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(STATE_FILE);
    assert_eq!(ScrubState::load(&p).version, STATE_VERSION);
    fs::write(&p, b"not json").unwrap();
    assert_eq!(ScrubState::load(&p).passes, 0);
    fs::write(&p, br#"{"version": 99, "passes": 5}"#).unwrap();
    assert_eq!(ScrubState::load(&p).passes, 0);
    fs::write(&p, br#"{"version": 1, "passes": 5, "future_field": true}"#).unwrap();
    assert_eq!(ScrubState::load(&p).passes, 5);
}

#[test]
fn position_spans_the_id_space() {
    assert_eq!(position(&ChunkId([0; 32])), 0.0);
    assert_eq!(position(&ChunkId([0xff; 32])), 1.0);
    assert!((position(&ChunkId([0x80; 32])) - 0.5).abs() < 0.01);
}
