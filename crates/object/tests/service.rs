//! The object service on a real one-node registry and chunk store: chunked writes read back
//! verified, multipart assembly, reference sets and GC, and data surviving a restart.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_chunk::gc::collect_garbage;
use cairn_chunk::refs::deliver_refs;
use cairn_object::{
    BodyStream, ListQuery, ObjectData, ObjectError, ObjectService, PartSpec, Precondition,
    PutOptions, ServiceConfig,
};
use futures::StreamExt;

const CHUNK: usize = 64 << 10;

async fn open(dir: &std::path::Path) -> (ObjectService, Arc<cairn_raft::Registry>) {
    let (svc, reg, _) = open_with_store(dir).await;
    (svc, reg)
}

/// Also returns the chunk store (the same handle the service pins through), for GC.
async fn open_with_store(
    dir: &std::path::Path,
) -> (
    ObjectService,
    Arc<cairn_raft::Registry>,
    cairn_chunk::ChunkStore,
) {
    let chunks = cairn_chunk::ChunkStore::open(dir.join("chunks")).unwrap();
    let registry = cairn_raft::Registry::open(cairn_raft::RegistryConfig {
        dir: dir.join("meta"),
        node_id: 1,
        rpc_addr: "127.0.0.1:7000".into(),
        partitions: 4,
        snapshot_every: 1000,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        trust: None,
    })
    .await
    .unwrap();
    let svc = ObjectService::new(
        ServiceConfig {
            chunk_size: CHUNK,
            inline_threshold: 1024,
        },
        registry.clone(),
        chunks.clone(),
    );
    (svc, registry, chunks)
}

fn body(data: &[u8], piece: usize) -> BodyStream {
    let pieces: Vec<Result<Bytes, ObjectError>> = data
        .chunks(piece.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(pieces))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed)
                .wrapping_add((i >> 11) as u8)
        })
        .collect()
}

async fn read_all(
    svc: &ObjectService,
    bucket: &str,
    key: &str,
    range: Option<(u64, u64)>,
) -> Vec<u8> {
    let rec = svc.head_object(bucket, key).await.unwrap();
    let mut s = svc.read_object(&rec, range);
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.unwrap());
    }
    out
}

fn chunk_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for a in std::fs::read_dir(dir.join("chunks")).unwrap().flatten() {
        let name = a.file_name();
        if name == "tmp" || name == "quarantine" {
            continue;
        }
        for b in std::fs::read_dir(a.path()).unwrap().flatten() {
            n += std::fs::read_dir(b.path()).unwrap().count();
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_put_get_range_and_inline() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, reg) = open(dir.path()).await;
    svc.create_bucket("b").await.unwrap();
    assert!(matches!(
        svc.create_bucket("b").await,
        Err(ObjectError::BucketAlreadyExists)
    ));

    let big = pattern(CHUNK * 3 + 123, 1);
    let rec = svc
        .put_object("b", "big", body(&big, 7000), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(rec.size, big.len() as u64);
    assert!(matches!(&rec.data, ObjectData::Chunks(c) if c.len() == 4));
    assert_eq!(rec.etag, format!("{:x}", md5_of(&big)));
    assert_eq!(read_all(&svc, "b", "big", None).await, big);
    let (s, e) = (CHUNK as u64 - 10, 2 * CHUNK as u64 + 10);
    assert_eq!(
        read_all(&svc, "b", "big", Some((s, e))).await,
        big[s as usize..e as usize]
    );

    let small = b"hello".to_vec();
    let rec = svc
        .put_object("b", "small", body(&small, 2), PutOptions::default())
        .await
        .unwrap();
    assert!(matches!(rec.data, ObjectData::Inline(_)));
    assert_eq!(read_all(&svc, "b", "small", Some((1, 4))).await, b"ell");

    // Content-Length mismatch and conditional PUT leave the store unchanged.
    let opts = PutOptions {
        content_length: Some(10),
        ..Default::default()
    };
    assert!(matches!(
        svc.put_object("b", "x", body(b"short", 5), opts).await,
        Err(ObjectError::IncompleteBody)
    ));
    let opts = PutOptions {
        precondition: Precondition::IfNoneMatchStar,
        ..Default::default()
    };
    assert!(matches!(
        svc.put_object("b", "small", body(b"new", 3), opts).await,
        Err(ObjectError::PreconditionFailed)
    ));
    assert!(matches!(
        svc.head_object("b", "x").await,
        Err(ObjectError::NoSuchKey)
    ));
    assert_eq!(read_all(&svc, "b", "small", None).await, small);

    let page = svc
        .list_objects(
            "b",
            &ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keys: Vec<_> = page.objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["big", "small"]);
    assert!(matches!(
        svc.delete_bucket("b").await,
        Err(ObjectError::BucketNotEmpty)
    ));
    reg.shutdown().await;
}

fn md5_of(data: &[u8]) -> u128 {
    use md5::Digest;
    u128::from_be_bytes(md5::Md5::digest(data).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_and_gc_keep_exactly_the_live_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, reg, chunks) = open_with_store(dir.path()).await;
    svc.create_bucket("b").await.unwrap();
    let up = svc
        .create_multipart("b", "mp", Default::default(), None)
        .await
        .unwrap();
    let p1 = pattern(5 << 20, 2);
    let p2 = pattern(1000, 3);
    let r1 = svc
        .upload_part(
            "b",
            "mp",
            &up.upload_id,
            1,
            body(&p1, 65536),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let r2 = svc
        .upload_part(
            "b",
            "mp",
            &up.upload_id,
            2,
            body(&p2, 65536),
            PutOptions::default(),
        )
        .await
        .unwrap();
    // Out of order and unknown ETags are refused.
    let bad = vec![
        PartSpec {
            part_number: 2,
            etag: r2.etag.clone(),
        },
        PartSpec {
            part_number: 1,
            etag: r1.etag.clone(),
        },
    ];
    assert!(matches!(
        svc.complete_multipart("b", "mp", &up.upload_id, bad, Precondition::None)
            .await,
        Err(ObjectError::InvalidPartOrder)
    ));
    let specs = vec![
        PartSpec {
            part_number: 1,
            etag: r1.etag.clone(),
        },
        PartSpec {
            part_number: 2,
            etag: r2.etag,
        },
    ];
    let rec = svc
        .complete_multipart("b", "mp", &up.upload_id, specs, Precondition::None)
        .await
        .unwrap();
    assert!(rec.etag.ends_with("-2"));
    let mut all = p1.clone();
    all.extend_from_slice(&p2);
    assert_eq!(read_all(&svc, "b", "mp", None).await, all);
    assert!(matches!(
        svc.list_parts("b", "mp", &up.upload_id, 0, 100).await,
        Err(ObjectError::NoSuchUpload)
    ));

    // Deliver reference updates, then GC with zero grace: live chunks stay.
    deliver_refs(&reg).await.unwrap();
    let live = chunk_files(dir.path());
    // Identical chunks are stored once (the test pattern repeats every 8 chunks).
    let unique: std::collections::HashSet<_> = rec.data.chunks().iter().map(|c| c.id).collect();
    assert_eq!(live, unique.len());
    assert!(unique.len() < rec.data.chunks().len());
    collect_garbage(&reg, &chunks, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(chunk_files(dir.path()), live);
    assert_eq!(read_all(&svc, "b", "mp", None).await, all);

    // A copy shares chunks; deleting the original keeps them for the copy.
    let src = svc.head_object("b", "mp").await.unwrap();
    svc.copy_object(
        "b",
        "mp",
        &src,
        "b",
        "copy",
        Default::default(),
        Precondition::None,
        None,
    )
    .await
    .unwrap();
    svc.delete_object("b", "mp").await.unwrap();
    deliver_refs(&reg).await.unwrap();
    collect_garbage(&reg, &chunks, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(chunk_files(dir.path()), live);
    assert_eq!(read_all(&svc, "b", "copy", None).await, all);

    // Deleting the last reference frees every chunk.
    svc.delete_object("b", "copy").await.unwrap();
    deliver_refs(&reg).await.unwrap();
    collect_garbage(&reg, &chunks, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(chunk_files(dir.path()), 0);
    svc.delete_bucket("b").await.unwrap();
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(CHUNK * 2 + 5, 9);
    {
        let (svc, reg) = open(dir.path()).await;
        svc.create_bucket("b").await.unwrap();
        svc.put_object("b", "k", body(&data, 4096), PutOptions::default())
            .await
            .unwrap();
        reg.shutdown().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (svc, reg) = open(dir.path()).await;
    assert_eq!(read_all(&svc, "b", "k", None).await, data);
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_chunk_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, reg) = open(dir.path()).await;
    svc.create_bucket("b").await.unwrap();
    let data = pattern(CHUNK + 10, 4);
    let rec = svc
        .put_object("b", "k", body(&data, 8192), PutOptions::default())
        .await
        .unwrap();
    let first = rec.data.chunks()[0].id.to_hex();
    let path = dir
        .path()
        .join("chunks")
        .join(&first[0..2])
        .join(&first[2..4])
        .join(&first);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let mut s = svc.read_object(&rec, None);
    let first = s.next().await.unwrap();
    assert!(
        matches!(first, Err(ObjectError::DataLoss(_))),
        "bitrot must surface as an error"
    );
    reg.shutdown().await;
}

/// Uploads a one-part multipart upload of `data` to `b/key`; returns its id and part list.
async fn one_part_upload(svc: &ObjectService, key: &str, data: &[u8]) -> (String, Vec<PartSpec>) {
    let up = svc
        .create_multipart("b", key, Default::default(), None)
        .await
        .unwrap();
    let part = svc
        .upload_part(
            "b",
            key,
            &up.upload_id,
            1,
            body(data, 65536),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let specs = vec![PartSpec {
        part_number: 1,
        etag: part.etag,
    }];
    (up.upload_id, specs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_and_a_repeated_completion() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, reg) = open(dir.path()).await;
    svc.create_bucket("b").await.unwrap();
    let put = |key: &'static str, data: &'static [u8], p: Precondition| {
        let svc = svc.clone();
        async move {
            let opts = PutOptions {
                precondition: p,
                ..Default::default()
            };
            svc.put_object("b", key, body(data, 1024), opts).await
        }
    };
    let first = put("k", b"one", Precondition::IfNoneMatchStar)
        .await
        .unwrap();
    assert!(matches!(
        put("k", b"two", Precondition::IfNoneMatchStar).await,
        Err(ObjectError::PreconditionFailed)
    ));
    assert!(matches!(
        put("k", b"two", Precondition::IfMatch("nope".into())).await,
        Err(ObjectError::PreconditionFailed)
    ));
    // If-Match on a key that does not exist: NoSuchKey (S3's 404).
    assert!(matches!(
        put("absent", b"x", Precondition::IfMatch(first.etag.clone())).await,
        Err(ObjectError::NoSuchKey)
    ));
    put("k", b"two", Precondition::IfMatch(first.etag.clone()))
        .await
        .unwrap();

    // A completion answered twice gives the same object; once replaced, NoSuchUpload.
    let data = pattern(3 * CHUNK, 7);
    let (id, specs) = one_part_upload(&svc, "mp", &data).await;
    let done = svc
        .complete_multipart("b", "mp", &id, specs.clone(), Precondition::IfNoneMatchStar)
        .await
        .unwrap();
    let again = svc
        .complete_multipart("b", "mp", &id, specs.clone(), Precondition::IfNoneMatchStar)
        .await
        .unwrap();
    assert_eq!((again.etag, again.version), (done.etag, done.version));
    put("mp", b"other", Precondition::None).await.unwrap();
    assert!(matches!(
        svc.complete_multipart("b", "mp", &id, specs, Precondition::None)
            .await,
        Err(ObjectError::NoSuchUpload)
    ));
    reg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bucket_aborts_its_uploads_and_frees_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, reg, chunks) = open_with_store(dir.path()).await;
    svc.create_bucket("b").await.unwrap();
    for i in 0..3u8 {
        one_part_upload(&svc, &format!("up/{i}"), &pattern(2 * CHUNK, 10 + i)).await;
    }
    // An object still refuses the delete, and nothing is aborted then.
    svc.put_object("b", "obj", body(b"x", 1), PutOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        svc.delete_bucket("b").await,
        Err(ObjectError::BucketNotEmpty)
    ));
    let open_uploads = svc
        .list_multipart_uploads("b", "", None, None, None, 100)
        .await
        .unwrap();
    assert_eq!(open_uploads.uploads.len(), 3);
    svc.delete_object("b", "obj").await.unwrap();

    deliver_refs(&reg).await.unwrap();
    assert!(chunk_files(dir.path()) > 0);
    svc.delete_bucket("b").await.unwrap();
    assert!(matches!(
        svc.head_bucket("b").await,
        Err(ObjectError::NoSuchBucket)
    ));
    // The parts' references were released with the uploads: GC takes every chunk.
    deliver_refs(&reg).await.unwrap();
    collect_garbage(&reg, &chunks, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(chunk_files(dir.path()), 0);
    // A bucket of the same name starts without them.
    svc.create_bucket("b").await.unwrap();
    let open_uploads = svc
        .list_multipart_uploads("b", "", None, None, None, 100)
        .await
        .unwrap();
    assert!(open_uploads.uploads.is_empty());
    reg.shutdown().await;
}
