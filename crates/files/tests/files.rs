//! FileService on a real one-node registry and chunk store, served over gRPC on a local port
//! and driven with the typed client: multi-chunk round trips, ranges, listings, deletes, and
//! the refusals (credentials, unknown names, bad input) that must change nothing.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use cairn_files::auth::{Credentials, ACCESS_KEY_HEADER, DATE_HEADER, SIGNATURE_HEADER};
use cairn_files::{ClientError, FileClient, FileServer, ListFilesRequest, UploadOptions};
use cairn_object::{ObjectService, ServiceConfig};
use cairn_rpc::pb::file_service_client::FileServiceClient;
use cairn_rpc::pb::{FileRef, ListBucketsRequest, UploadHeader, UploadPiece};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, ReadBuf};
use tonic::Code;

/// Small chunks so a few MiB spans many of them.
const CHUNK: usize = 64 << 10;
const ACCESS: &str = "test-access";
const SECRET: &str = "test-secret-0123456789";

struct Node {
    addr: String,
    client: FileClient,
    registry: Arc<cairn_raft::Registry>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.registry.shutdown().await;
    }

    async fn client_with(&self, access: &str, secret: &str) -> FileClient {
        FileClient::connect(&self.addr, Credentials::new(access, secret).unwrap())
            .await
            .unwrap()
    }

    async fn raw(&self) -> FileServiceClient<tonic::transport::Channel> {
        FileServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }
}

/// Serves `files` on a fresh local port; returns the address and a stop switch.
async fn serve(files: FileServer) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(files.into_service())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            ),
    );
    (addr, tx)
}

async fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let chunks = cairn_chunk::ChunkStore::open(dir.path().join("chunks")).unwrap();
    let registry = cairn_raft::Registry::open(cairn_raft::RegistryConfig {
        dir: dir.path().join("meta"),
        node_id: 1,
        rpc_addr: "127.0.0.1:7000".into(),
        partitions: 4,
        snapshot_every: 1000,
        bootstrap: cairn_raft::Bootstrap::SingleNode,
        trust: None,
    })
    .await
    .unwrap();
    let objects = ObjectService::new(
        ServiceConfig {
            chunk_size: CHUNK,
            inline_threshold: 1024,
        },
        registry.clone(),
        chunks,
    );
    let files = FileServer::new(Credentials::new(ACCESS, SECRET).unwrap());
    assert!(files.attach(objects));
    let (addr, stop) = serve(files).await;
    let client = FileClient::connect(&addr, Credentials::new(ACCESS, SECRET).unwrap())
        .await
        .unwrap();
    Node {
        addr,
        client,
        registry,
        stop: Some(stop),
        _dir: dir,
    }
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

async fn put(c: &FileClient, bucket: &str, key: &str, data: &[u8]) -> cairn_files::FileInfo {
    let opts = UploadOptions {
        size: Some(data.len() as u64),
        ..UploadOptions::default()
    };
    c.upload(
        bucket,
        key,
        std::io::Cursor::new(data.to_vec()),
        opts,
        "test data",
    )
    .await
    .unwrap()
}

async fn get(c: &FileClient, bucket: &str, key: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.download_to(bucket, key, &mut out, "memory").await?;
    Ok(out)
}

async fn get_range(
    c: &FileClient,
    bucket: &str,
    key: &str,
    offset: u64,
    length: Option<u64>,
) -> Result<Vec<u8>, ClientError> {
    let mut d = c.download(bucket, key, offset, length).await?;
    let mut out = Vec::new();
    while let Some(p) = d.next_piece().await? {
        assert!(p.len() <= cairn_files::PIECE_SIZE);
        out.extend_from_slice(&p);
    }
    assert_eq!(out.len() as u64, d.length);
    Ok(out)
}

fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (Code, String) {
    match r {
        Err(e) => (e.code().unwrap_or(Code::Unknown), e.to_string()),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_chunk_files_round_trip_byte_identical() {
    let node = start().await;
    let c = &node.client;
    c.create_bucket("docs").await.unwrap();
    assert_eq!(c.list_buckets().await.unwrap()[0].name, "docs");

    // Several 1 MiB pieces and ~80 chunks, ending mid-chunk.
    let data = pattern(5 * (1 << 20) + 12_345, 7);
    let info = put(c, "docs", "big/file.bin", &data).await;
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.etag, hex::encode(Md5::digest(&data)));
    assert_eq!(get(c, "docs", "big/file.bin").await.unwrap(), data);

    // Small (inline) and empty files too.
    for (key, len) in [("small", 100usize), ("empty", 0)] {
        let d = pattern(len, 1);
        put(c, "docs", key, &d).await;
        assert_eq!(get(c, "docs", key).await.unwrap(), d);
        assert_eq!(c.stat("docs", key).await.unwrap().size, len as u64);
    }

    // download_file: temp file + rename, nothing left beside it.
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("copy.bin");
    let got = c
        .download_file("docs", "big/file.bin", &path)
        .await
        .unwrap();
    assert_eq!(got.size, data.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let names: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("copy.bin")]);

    // upload_file from disk, with content type and metadata.
    let src = out.path().join("src.txt");
    std::fs::write(&src, &data[..300_000]).unwrap();
    let opts = UploadOptions {
        content_type: "text/plain".into(),
        metadata: BTreeMap::from([("Color".to_string(), "blue".to_string())]),
        ..UploadOptions::default()
    };
    c.upload_file(&src, "docs", "from-disk.txt", opts)
        .await
        .unwrap();
    let st = c.stat("docs", "from-disk.txt").await.unwrap();
    assert_eq!(st.content_type, "text/plain");
    assert_eq!(st.metadata.get("color").map(String::as_str), Some("blue"));
    assert_eq!(
        get(c, "docs", "from-disk.txt").await.unwrap(),
        &data[..300_000]
    );
    // A file stored without a type reports S3's default.
    assert_eq!(
        c.stat("docs", "small").await.unwrap().content_type,
        "binary/octet-stream"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges() {
    let node = start().await;
    let c = &node.client;
    c.create_bucket("r-bucket").await.unwrap();
    let data = pattern(3 * CHUNK + 500, 3);
    put(c, "r-bucket", "f", &data).await;
    let n = data.len() as u64;
    let cases: [(u64, Option<u64>); 7] = [
        (0, Some(10)),
        (CHUNK as u64 - 10, Some(20)), // across a chunk boundary
        (100, Some(2 * CHUNK as u64)), // spans three chunks
        (n - 5, None),
        (n - 5, Some(1000)), // clipped to the end
        (n, None),           // empty, at the end
        (0, None),
    ];
    for (off, len) in cases {
        let end = len.map_or(n, |l| (off + l).min(n));
        let got = get_range(c, "r-bucket", "f", off, len).await.unwrap();
        assert_eq!(got, &data[off as usize..end as usize], "{off} {len:?}");
    }
    let (code, msg) = code(get_range(c, "r-bucket", "f", n + 1, None).await);
    assert_eq!(code, Code::OutOfRange, "{msg}");
    assert!(msg.contains("beyond the end"), "{msg}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_with_prefix_delimiter_and_pages() {
    let node = start().await;
    let c = &node.client;
    c.create_bucket("l-bucket").await.unwrap();
    let keys = ["a/1", "a/2", "a/b/3", "b/4", "c"];
    for k in keys {
        put(c, "l-bucket", k, k.as_bytes()).await;
    }
    let req = |prefix: &str, delimiter: &str| ListFilesRequest {
        bucket: "l-bucket".into(),
        prefix: prefix.into(),
        delimiter: delimiter.into(),
        ..ListFilesRequest::default()
    };
    let page = c.list(req("a/", "/")).await.unwrap();
    let files: Vec<_> = page.files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(files, ["a/1", "a/2"]);
    assert_eq!(page.common_prefixes, ["a/b/"]);
    assert!(page.next_continuation_token.is_empty());
    assert_eq!(page.files[0].size, 3);

    let top = c.list(req("", "/")).await.unwrap();
    assert_eq!(top.common_prefixes, ["a/", "b/"]);
    assert_eq!(top.files.len(), 1);

    // Pages of two, following the token.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list(ListFilesRequest {
                max_keys: 2,
                continuation_token: token,
                ..req("", "")
            })
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.files.into_iter().map(|f| f.key));
        if page.next_continuation_token.is_empty() {
            break;
        }
        token = page.next_continuation_token;
    }
    assert_eq!(seen, keys);
    assert_eq!(pages, 3);

    let after = c
        .list(ListFilesRequest {
            start_after: "a/b/3".into(),
            ..req("", "")
        })
        .await
        .unwrap();
    let files: Vec<_> = after.files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(files, ["b/4", "c"]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_files_and_buckets() {
    let node = start().await;
    let c = &node.client;
    c.create_bucket("d-bucket").await.unwrap();
    let (code_, msg) = code(c.create_bucket("d-bucket").await);
    assert_eq!(code_, Code::AlreadyExists, "{msg}");
    put(c, "d-bucket", "x", b"hello").await;
    let (code_, msg) = code(c.delete_bucket("d-bucket").await);
    assert_eq!(code_, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("not empty"), "{msg}");

    c.delete("d-bucket", "x").await.unwrap();
    let (code_, msg) = code(c.stat("d-bucket", "x").await);
    assert_eq!(code_, Code::NotFound);
    assert_eq!(msg, "no such file `d-bucket/x`");
    let (code_, _) = code(c.delete("d-bucket", "x").await);
    assert_eq!(code_, Code::NotFound);
    let (code_, _) = code(get(c, "d-bucket", "x").await);
    assert_eq!(code_, Code::NotFound);

    c.delete_bucket("d-bucket").await.unwrap();
    assert!(c.list_buckets().await.unwrap().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_bucket_is_not_found_everywhere() {
    let node = start().await;
    let c = &node.client;
    let expect = "no such bucket `nope`";
    let opts = UploadOptions::default();
    let r = c
        .upload("nope", "k", std::io::Cursor::new(vec![1u8; 10]), opts, "t")
        .await;
    assert_eq!(code(r), (Code::NotFound, expect.to_string()));
    assert_eq!(
        code(get(c, "nope", "k").await),
        (Code::NotFound, expect.into())
    );
    assert_eq!(
        code(c.stat("nope", "k").await),
        (Code::NotFound, expect.into())
    );
    assert_eq!(
        code(c.delete("nope", "k").await),
        (Code::NotFound, expect.into())
    );
    let r = c
        .list(ListFilesRequest {
            bucket: "nope".into(),
            ..ListFilesRequest::default()
        })
        .await;
    assert_eq!(code(r), (Code::NotFound, expect.into()));
    assert_eq!(
        code(c.delete_bucket("nope").await),
        (Code::NotFound, expect.into())
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_are_refused() {
    let node = start().await;
    node.client.create_bucket("auth-b").await.unwrap();
    put(&node.client, "auth-b", "k", b"secret data").await;

    let wrong_secret = node.client_with(ACCESS, "not-the-secret").await;
    let (c, msg) = code(wrong_secret.list_buckets().await);
    assert_eq!(c, Code::Unauthenticated);
    assert!(msg.contains("signature does not match"), "{msg}");
    let (c, _) = code(get(&wrong_secret, "auth-b", "k").await);
    assert_eq!(c, Code::Unauthenticated);
    let r = wrong_secret
        .upload(
            "auth-b",
            "k",
            std::io::Cursor::new(vec![0u8; 5]),
            UploadOptions::default(),
            "t",
        )
        .await;
    assert_eq!(code(r).0, Code::Unauthenticated);
    let (c, _) = code(wrong_secret.delete("auth-b", "k").await);
    assert_eq!(c, Code::Unauthenticated);

    let wrong_key = node.client_with("someone", SECRET).await;
    let (c, msg) = code(wrong_key.stat("auth-b", "k").await);
    assert_eq!(c, Code::Unauthenticated);
    assert!(msg.contains("unknown access key `someone`"), "{msg}");

    // No metadata at all.
    let mut raw = node.raw().await;
    let s = raw.list_buckets(ListBucketsRequest {}).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert!(
        s.message().contains("missing `x-cairn-access-key`"),
        "{}",
        s.message()
    );

    // A signature for one file does not open another.
    let creds = Credentials::new(ACCESS, SECRET).unwrap();
    let mut req = tonic::Request::new(FileRef {
        bucket: "auth-b".into(),
        key: "k".into(),
    });
    creds
        .authorize(
            req.metadata_mut(),
            "Stat",
            "auth-b",
            "other",
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        raw.stat(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // A correctly signed but stale request (clock skew / replay).
    let date = (SystemTime::now() - Duration::from_secs(20 * 60))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut req = tonic::Request::new(FileRef {
        bucket: "auth-b".into(),
        key: "k".into(),
    });
    let md = req.metadata_mut();
    md.insert(ACCESS_KEY_HEADER, ACCESS.parse().unwrap());
    md.insert(DATE_HEADER, date.parse().unwrap());
    md.insert(
        SIGNATURE_HEADER,
        creds.sign("Stat", "auth-b", "k", &date).parse().unwrap(),
    );
    let s = raw.stat(req).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert!(s.message().contains("clock"), "{}", s.message());

    // Nothing changed.
    assert_eq!(
        get(&node.client, "auth-b", "k").await.unwrap(),
        b"secret data"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_authenticated_before_their_first_message() {
    let node = start().await;
    node.client.create_bucket("pre-b").await.unwrap();
    let mut raw = node.raw().await;
    // A stream that never sends a piece: the server must answer from metadata alone
    // (before this change it waited for the first message, up to 8 MiB, before checking).
    let pending = futures::stream::pending::<UploadPiece>();
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        raw.upload(tonic::Request::new(pending)),
    )
    .await
    .expect("an unsigned upload is refused without waiting for a message");
    assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);

    // A wrong signature is refused the same way.
    let mut req = tonic::Request::new(futures::stream::pending::<UploadPiece>());
    Credentials::new(ACCESS, "not-the-secret")
        .unwrap()
        .authorize(
            req.metadata_mut(),
            "Upload",
            "pre-b",
            "k",
            SystemTime::now(),
        )
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(5), raw.upload(req))
        .await
        .expect("refused from metadata");
    assert_eq!(r.unwrap_err().code(), Code::Unauthenticated);

    // Signed for one file, carrying another in the header: refused, nothing stored.
    let piece = UploadPiece {
        header: Some(UploadHeader {
            bucket: "pre-b".into(),
            key: "other".into(),
            content_type: String::new(),
            metadata: Default::default(),
            size: Some(1),
        }),
        data: vec![1u8].into(),
        content_md5: Vec::new(),
    };
    let mut req = tonic::Request::new(futures::stream::iter(vec![piece]));
    Credentials::new(ACCESS, SECRET)
        .unwrap()
        .authorize(
            req.metadata_mut(),
            "Upload",
            "pre-b",
            "k",
            SystemTime::now(),
        )
        .unwrap();
    assert_eq!(
        raw.upload(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        code(node.client.stat("pre-b", "other").await).0,
        Code::NotFound
    );
    assert_eq!(code(node.client.stat("pre-b", "k").await).0, Code::NotFound);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let node = start().await;
    let c = &node.client;
    c.create_bucket("bad-b").await.unwrap();
    let original = pattern(200_000, 9);
    put(c, "bad-b", "keep", &original).await;
    let up = |key: &'static str, data: Vec<u8>, opts: UploadOptions| {
        let c = c.clone();
        async move {
            c.upload("bad-b", key, std::io::Cursor::new(data), opts, "t")
                .await
        }
    };

    for key in ["../etc/passwd", "a/./b", "nl\nkey", ""] {
        let (code_, msg) = code(up(key, vec![1], UploadOptions::default()).await);
        assert_eq!(code_, Code::InvalidArgument, "{key:?}: {msg}");
    }
    let (code_, msg) = code(c.create_bucket("Bad_Name").await);
    assert_eq!(code_, Code::InvalidArgument);
    assert!(msg.contains("invalid bucket name `Bad_Name`"), "{msg}");
    let bad_meta = UploadOptions {
        metadata: BTreeMap::from([("bad name".to_string(), "v".to_string())]),
        ..UploadOptions::default()
    };
    assert_eq!(
        code(up("keep", vec![1], bad_meta).await).0,
        Code::InvalidArgument
    );

    // Declared size does not match: refused, the existing file is untouched.
    for declared in [10u64, original.len() as u64 + 1] {
        let opts = UploadOptions {
            size: Some(declared),
            ..UploadOptions::default()
        };
        let (code_, msg) = code(up("keep", pattern(50_000, 1), opts).await);
        assert_eq!(code_, Code::InvalidArgument, "{msg}");
        assert!(msg.contains("declared size"), "{msg}");
    }

    // A wrong MD5 with the last piece: refused before commit.
    let mut raw = node.raw().await;
    let creds = Credentials::new(ACCESS, SECRET).unwrap();
    let pieces = vec![
        UploadPiece {
            header: Some(UploadHeader {
                bucket: "bad-b".into(),
                key: "keep".into(),
                ..UploadHeader::default()
            }),
            data: bytes::Bytes::from_static(b"replacement"),
            content_md5: Vec::new(),
        },
        UploadPiece {
            header: None,
            data: bytes::Bytes::new(),
            content_md5: Md5::digest(b"something else").to_vec(),
        },
    ];
    let mut req = tonic::Request::new(futures::stream::iter(pieces));
    creds
        .authorize(
            req.metadata_mut(),
            "Upload",
            "bad-b",
            "keep",
            SystemTime::now(),
        )
        .unwrap();
    let s = raw.upload(req).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    assert!(s.message().contains("MD5"), "{}", s.message());

    // An upload stream without a header.
    let mut req = tonic::Request::new(futures::stream::iter(vec![UploadPiece::default()]));
    creds
        .authorize(req.metadata_mut(), "Upload", "", "", SystemTime::now())
        .unwrap();
    assert_eq!(
        raw.upload(req).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // A local read error cancels the upload; nothing is stored even without a declared size.
    let r = c
        .upload(
            "bad-b",
            "keep",
            FailingReader { left: 3 << 20 },
            UploadOptions::default(),
            "flaky.bin",
        )
        .await;
    match r {
        Err(ClientError::Io { path, .. }) => assert_eq!(path, "flaky.bin"),
        other => panic!("expected an I/O error, got {other:?}"),
    }

    assert_eq!(get(c, "bad-b", "keep").await.unwrap(), original);
    let page = c
        .list(ListFilesRequest {
            bucket: "bad-b".into(),
            ..ListFilesRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(page.files.len(), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_answers_unavailable() {
    let files = FileServer::new(Credentials::new(ACCESS, SECRET).unwrap());
    let (addr, stop) = serve(files).await;
    let c = FileClient::connect(&addr, Credentials::new(ACCESS, SECRET).unwrap())
        .await
        .unwrap();
    let (code_, msg) = code(c.list_buckets().await);
    assert_eq!(code_, Code::Unavailable);
    assert!(msg.contains("node is starting"), "{msg}");
    let _ = stop.send(());
}

/// Yields `left` bytes, then fails.
struct FailingReader {
    left: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::Error::other("disk on fire")));
        }
        let n = self.left.min(buf.remaining()).min(64 << 10);
        buf.put_slice(&vec![0xab; n]);
        self.left -= n;
        Poll::Ready(Ok(()))
    }
}
