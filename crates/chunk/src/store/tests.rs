use super::*;

use proptest::prelude::*;

fn store() -> (tempfile::TempDir, ChunkStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ChunkStore::open(dir.path().join("chunks")).unwrap();
    (dir, s)
}

fn chunk(seed: u8, len: usize) -> (ChunkId, Bytes) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    (ChunkId::of(&data), Bytes::from(data))
}

fn set_mtime(path: &Path, t: SystemTime) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

fn chunk_path(s: &ChunkStore, id: &ChunkId) -> PathBuf {
    let hex = id.to_hex();
    s.root().join(&hex[0..2]).join(&hex[2..4]).join(hex)
}

#[tokio::test]
async fn roundtrip() {
    let (_d, s) = store();
    let (id, data) = chunk(1, 100_000);
    assert!(s.put(id, data.clone()).await.unwrap());
    assert!(s.has(&id).await.unwrap());
    assert_eq!(s.get(&id).await.unwrap(), data);
    assert!(chunk_path(&s, &id).is_file());
    // Nothing left behind in tmp.
    assert_eq!(fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, s) = store();
    let (id, data) = chunk(9, 1000);
    s.put(id, data).await.unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let file = chunk_path(&s, &id);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert_eq!(mode(s.root()), 0o700);
    assert_eq!(mode(&s.root().join(TMP_DIR)), 0o700);
    assert_eq!(mode(&s.root().join(QUARANTINE_DIR)), 0o700);
}

#[tokio::test]
async fn empty_chunk_roundtrip() {
    let (_d, s) = store();
    let (id, data) = chunk(0, 0);
    assert!(s.put(id, data).await.unwrap());
    assert!(s.get(&id).await.unwrap().is_empty());
}

#[tokio::test]
async fn dedup_returns_false_and_refreshes_mtime() {
    let (_d, s) = store();
    let (id, data) = chunk(2, 5000);
    assert!(s.put(id, data.clone()).await.unwrap());
    let path = chunk_path(&s, &id);
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&path, old);
    assert_eq!(
        s.list_older_than(Duration::from_secs(60)).await.unwrap(),
        vec![id]
    );

    assert!(!s.put(id, data.clone()).await.unwrap());
    assert!(mtime(&path) > old + Duration::from_secs(3000));
    assert!(s
        .list_older_than(Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.get(&id).await.unwrap(), data);
}

#[tokio::test]
async fn wrong_size_existing_file_is_rewritten() {
    let (_d, s) = store();
    let (id, data) = chunk(3, 5000);
    s.put(id, data.clone()).await.unwrap();
    fs::write(chunk_path(&s, &id), b"short").unwrap();
    assert!(s.put(id, data.clone()).await.unwrap());
    assert_eq!(s.get(&id).await.unwrap(), data);
}

#[tokio::test]
async fn concurrent_puts_of_same_id_succeed() {
    let (_d, s) = store();
    let (id, data) = chunk(4, 200_000);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, data) = (s.clone(), data.clone());
        tasks.push(tokio::spawn(async move { s.put(id, data).await }));
    }
    let mut new = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            new += 1;
        }
    }
    assert!(new >= 1);
    assert_eq!(s.get(&id).await.unwrap(), data);
    assert_eq!(s.usage().await.unwrap(), (1, 200_000));
}

#[tokio::test]
async fn bitrot_is_detected_and_quarantined() {
    let (_d, s) = store();
    let (id, data) = chunk(5, 10_000);
    s.put(id, data).await.unwrap();
    let path = chunk_path(&s, &id);
    let mut bytes = fs::read(&path).unwrap();
    bytes[1234] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    match s.get(&id).await {
        Err(ChunkError::Corrupt { id: got, actual }) => {
            assert_eq!(got, id);
            assert_eq!(actual, ChunkId::of(&bytes));
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!path.exists());
    assert!(!s.has(&id).await.unwrap());
    let q: Vec<_> = fs::read_dir(s.root().join("quarantine"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(q.len(), 1);
    assert!(q[0].starts_with(&id.to_hex()));
    // Quarantined files are not counted or listed.
    assert_eq!(s.usage().await.unwrap(), (0, 0));
    assert!(matches!(s.get(&id).await, Err(ChunkError::NotFound(_))));
}

#[tokio::test]
async fn not_found() {
    let (_d, s) = store();
    let (id, _) = chunk(6, 10);
    match s.get(&id).await {
        Err(ChunkError::NotFound(got)) => assert_eq!(got, id),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!s.has(&id).await.unwrap());
    assert!(!s.delete(&id).await.unwrap());
}

#[tokio::test]
async fn open_cleans_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let s = ChunkStore::open(&root).unwrap();
    let (id, data) = chunk(7, 1000);
    s.put(id, data.clone()).await.unwrap();
    drop(s);

    fs::write(root.join("tmp").join("leftover.123.4.tmp"), b"partial").unwrap();
    fs::create_dir(root.join("tmp").join("weird-dir")).unwrap();
    let s = ChunkStore::open(&root).unwrap();
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    // Real chunks are untouched.
    assert_eq!(s.get(&id).await.unwrap(), data);
}

#[test]
fn pins_are_counted_and_released_on_drop() {
    let (_d, s) = store();
    let (a, _) = chunk(8, 10);
    let (b, _) = chunk(9, 10);
    assert!(!s.is_pinned(&a));
    let p1 = s.pin(a);
    let p2 = s.pin(a);
    assert_eq!(p1.id(), a);
    assert!(s.is_pinned(&a));
    assert!(!s.is_pinned(&b));
    drop(p1);
    assert!(s.is_pinned(&a));
    // A clone of the store shares the pin table.
    assert!(s.clone().is_pinned(&a));
    drop(p2);
    assert!(!s.is_pinned(&a));
}

#[tokio::test]
async fn list_older_than_respects_age_and_ignores_junk() {
    let (_d, s) = store();
    let (old_id, old_data) = chunk(10, 100);
    let (new_id, new_data) = chunk(11, 100);
    s.put(old_id, old_data.clone()).await.unwrap();
    s.put(new_id, new_data).await.unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    set_mtime(&chunk_path(&s, &old_id), two_hours_ago);

    // Junk, all old: must all be ignored.
    let root = s.root().to_path_buf();
    let (shard_a, shard_b) = {
        let h = old_id.to_hex();
        (h[0..2].to_string(), h[2..4].to_string())
    };
    let junk = [
        root.join(&shard_a).join(&shard_b).join("not-a-chunk"),
        root.join(&shard_a)
            .join(&shard_b)
            .join(old_id.to_hex().to_uppercase()),
        root.join("tmp").join(old_id.to_hex()),
        root.join("quarantine").join(old_id.to_hex()),
        root.join("stray-file"),
    ];
    // A valid id in the wrong shard directory is also junk.
    let misplaced = {
        let (other, _) = chunk(12, 100);
        let h = other.to_hex();
        let d = root
            .join(if &h[0..2] == "00" { "01" } else { "00" })
            .join("00");
        fs::create_dir_all(&d).unwrap();
        d.join(h)
    };
    for p in junk.iter().chain(std::iter::once(&misplaced)) {
        fs::write(p, &old_data).unwrap();
        set_mtime(p, two_hours_ago);
    }

    let hour = Duration::from_secs(3600);
    assert_eq!(s.list_older_than(hour).await.unwrap(), vec![old_id]);
    let mut all = s.list_older_than(Duration::ZERO).await.unwrap();
    all.sort();
    let mut want = vec![old_id, new_id];
    want.sort();
    assert_eq!(all, want);
    assert!(s
        .list_older_than(Duration::from_secs(3 * 3600))
        .await
        .unwrap()
        .is_empty());
    // Junk is not counted in usage either.
    assert_eq!(s.usage().await.unwrap(), (2, 200));
}

#[tokio::test]
async fn delete_removes_chunk() {
    let (_d, s) = store();
    let (id, data) = chunk(13, 4096);
    s.put(id, data.clone()).await.unwrap();
    assert!(s.delete(&id).await.unwrap());
    assert!(!s.has(&id).await.unwrap());
    assert!(!s.delete(&id).await.unwrap());
    assert!(matches!(s.get(&id).await, Err(ChunkError::NotFound(_))));
    // Re-putting after delete writes it anew.
    assert!(s.put(id, data).await.unwrap());
}

#[tokio::test]
async fn usage_counts_files_and_bytes() {
    let (_d, s) = store();
    assert_eq!(s.usage().await.unwrap(), (0, 0));
    let mut total = 0;
    for i in 0..5u8 {
        let (id, data) = chunk(20 + i, 1000 * (usize::from(i) + 1));
        total += data.len() as u64;
        s.put(id, data).await.unwrap();
    }
    assert_eq!(s.usage().await.unwrap(), (5, total));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn prop_roundtrip(data in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (_d, s) = store();
        let id = ChunkId::of(&data);
        let data = Bytes::from(data);
        let got = rt.block_on(async {
            assert!(s.put(id, data.clone()).await.unwrap());
            assert!(!s.put(id, data.clone()).await.unwrap());
            s.get(&id).await.unwrap()
        });
        prop_assert_eq!(got, data);
    }
}
