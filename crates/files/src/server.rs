//! The FileService server: authenticates each call from its metadata (before any message of a
//! stream is read), authorizes it with the key/grant rules the S3 front end uses
//! (`cairn_meta::access`), validates names, and hands the work to the object service,
//! streaming bodies through without buffering a whole file.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use bytes::Bytes;
use cairn_object::{
    BodyStream, Digests, ListQuery, ObjectError, ObjectHeaders, ObjectRecord, ObjectService,
    PutOptions, Verifier, MAX_PUT_SIZE,
};
use cairn_rpc::pb::file_service_server::{FileService, FileServiceServer};
use cairn_rpc::pb::{
    BucketInfo, BucketRef, DeleteBucketReply, DeleteFileReply, DownloadPiece, DownloadRequest,
    FileInfo, FileRef, ListBucketsReply, ListBucketsRequest, ListFilesReply, ListFilesRequest,
    UploadPiece,
};
use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use cairn_meta::access;
use cairn_meta::model::{AccessKeyRecord, KeyStatus, Permission};
use cairn_meta::secrets::Keys;

use crate::auth::{claimed_access_key, AuthError, Credentials};
use crate::error::{to_status, Target};
use crate::metrics::FileMetrics;
use crate::{names, MAX_LIST_KEYS, PIECE_SIZE};

/// S3 reports this Content-Type for objects stored without one; so do we.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";
/// Largest message a client may send: a 1 MiB piece plus header, with room for clients that
/// send bigger pieces (each message is held in memory whole, so this also bounds memory).
const MAX_REQUEST_MESSAGE: usize = 8 << 20;
/// An upload that sends nothing for this long is abandoned (nothing is stored).
const UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// `FileService` over this node's object service. Cheap to clone.
///
/// The RPC server starts before the object service exists (forming a cluster needs RPC), so
/// the object service is attached later; until then every call answers `UNAVAILABLE`.
#[derive(Clone)]
pub struct FileServer {
    inner: Arc<Inner>,
}

struct Inner {
    objects: OnceLock<ObjectService>,
    credentials: Credentials,
    /// The cluster's keys, once the node has them (after formation); see `for_cluster`.
    keys: OnceLock<Keys>,
    /// Whether calls wait for `keys` (a cluster node) or use `credentials` alone.
    uses_keys: bool,
    metrics: FileMetrics,
}

/// Who made a call: a key of the cluster's table, or (without a key directory) the configured
/// root key, which may do everything.
enum Caller {
    Key(Arc<AccessKeyRecord>),
    Root,
}

impl Caller {
    fn access_key(&self) -> Option<&str> {
        match self {
            Caller::Key(k) => Some(&k.access_key),
            Caller::Root => None,
        }
    }
}

fn denied(caller: &Caller, need: Permission, bucket: &str) -> Status {
    let who = caller.access_key().unwrap_or("root");
    tracing::info!(
        access_key = who,
        bucket,
        need = need.as_str(),
        "file call refused: no grant"
    );
    Status::permission_denied(format!(
        "access denied: key {who} may not {} bucket `{bucket}`",
        match need {
            Permission::Read => "read",
            Permission::Write => "write to",
            Permission::Owner => "manage",
        }
    ))
}

fn invalid(msg: String) -> Status {
    Status::invalid_argument(msg)
}

/// The wire form of a stored record.
fn file_info(bucket: &str, key: &str, r: &ObjectRecord) -> FileInfo {
    FileInfo {
        bucket: bucket.to_string(),
        key: key.to_string(),
        size: r.size,
        etag: r.etag.clone(),
        content_type: r
            .headers
            .content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
        last_modified_ms: r.last_modified_ms,
        metadata: r
            .headers
            .user
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

impl FileServer {
    /// A server that accepts calls signed with `credentials`; attach the object service with
    /// [`FileServer::attach`] once it exists.
    pub fn new(credentials: Credentials) -> Self {
        Self::build(credentials, false)
    }

    /// A server that accepts the cluster's access keys with their grants (attached with
    /// [`FileServer::attach_keys`] once the node has its master key; until then every call
    /// answers `UNAVAILABLE`). `credentials` are unused for verification.
    pub fn for_cluster(credentials: Credentials) -> Self {
        Self::build(credentials, true)
    }

    fn build(credentials: Credentials, uses_keys: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                objects: OnceLock::new(),
                credentials,
                keys: OnceLock::new(),
                uses_keys,
                metrics: FileMetrics::default(),
            }),
        }
    }

    /// Starts checking calls against the cluster's keys. False if keys were already attached.
    pub fn attach_keys(&self, keys: Keys) -> bool {
        self.inner.keys.set(keys).is_ok()
    }

    /// Starts serving files from `objects`. Returns false (and changes nothing) if an object
    /// service was already attached.
    pub fn attach(&self, objects: ObjectService) -> bool {
        self.inner.objects.set(objects).is_ok()
    }

    pub fn metrics(&self) -> &FileMetrics {
        &self.inner.metrics
    }

    /// The tonic service to add to a gRPC server.
    pub fn into_service(self) -> FileServiceServer<Self> {
        FileServiceServer::new(self).max_decoding_message_size(MAX_REQUEST_MESSAGE)
    }

    fn objects(&self) -> Result<&ObjectService, Status> {
        self.inner
            .objects
            .get()
            .ok_or_else(|| Status::unavailable("node is starting; try again shortly"))
    }

    /// Verifies a call's signature from its metadata alone.
    fn authenticate(
        &self,
        md: &MetadataMap,
        method: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Caller, Status> {
        let refuse = |e: AuthError| {
            tracing::warn!(error = %e, "refused an unauthenticated file call");
            Status::from(e)
        };
        if self.inner.uses_keys && self.inner.keys.get().is_none() {
            return Err(Status::unavailable("node is starting; try again shortly"));
        }
        let Some(keys) = self.inner.keys.get() else {
            self.inner
                .credentials
                .verify(md, method, bucket, key, SystemTime::now())
                .map_err(refuse)?;
            return Ok(Caller::Root);
        };
        let claimed = claimed_access_key(md)
            .ok_or(AuthError::Missing(crate::auth::ACCESS_KEY_HEADER))
            .map_err(refuse)?;
        let resolved = keys
            .resolve(claimed)
            .filter(|k| k.secret.is_some())
            .ok_or_else(|| AuthError::UnknownAccessKey(claimed.to_string()))
            .map_err(refuse)?;
        let secret = resolved.secret.as_deref().unwrap_or_default();
        Credentials::new(claimed, secret)
            .and_then(|c| c.verify(md, method, bucket, key, SystemTime::now()))
            .map_err(refuse)?;
        match resolved.record.status {
            KeyStatus::Active => Ok(Caller::Key(Arc::new(resolved.record))),
            _ => Err(Status::permission_denied(format!(
                "access key {claimed} is disabled"
            ))),
        }
    }

    /// Whether `caller` may act with `need` on `bucket` (its grants, else as the bucket's owner).
    async fn authorize(
        &self,
        caller: &Caller,
        bucket: &str,
        need: Permission,
    ) -> Result<(), Status> {
        let Caller::Key(key) = caller else {
            return Ok(());
        };
        if !access::needs_owner_lookup(key, bucket, need) {
            return Ok(());
        }
        let owner = match self.objects()?.head_bucket(bucket).await {
            Ok(b) => b.owner,
            Err(_) => None,
        };
        if access::allows(key, bucket, need, owner.as_deref()) {
            Ok(())
        } else {
            Err(denied(caller, need, bucket))
        }
    }

    /// Runs one call inside its span and counts it.
    async fn call<T>(
        &self,
        method: &'static str,
        bucket: &str,
        key: &str,
        f: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let span = tracing::info_span!("file_call", method, bucket, key);
        let r = f.instrument(span.clone()).await;
        let code = match &r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => {
                span.in_scope(
                    || tracing::debug!(code = ?s.code(), message = s.message(), "file call failed"),
                );
                s.code()
            }
        };
        self.inner.metrics.call(method, code);
        r
    }
}

/// Turns the pieces after an upload's header into the object service's body stream. The MD5
/// a client sends with its last piece lands in `md5` for the verifier.
fn upload_body(
    first: UploadPiece,
    rest: Streaming<UploadPiece>,
    md5: Arc<OnceLock<Vec<u8>>>,
    received: Counter,
) -> BodyStream {
    struct State {
        pending: Option<UploadPiece>,
        rest: Streaming<UploadPiece>,
        md5_seen: bool,
        done: bool,
    }
    let state = State {
        pending: Some(first),
        rest,
        md5_seen: false,
        done: false,
    };
    let stream = futures::stream::unfold(state, move |mut st| {
        let md5 = md5.clone();
        let received = received.clone();
        async move {
            if st.done {
                return None;
            }
            loop {
                let piece = match st.pending.take() {
                    Some(p) => p,
                    None => {
                        let next = tokio::time::timeout(UPLOAD_IDLE, st.rest.message()).await;
                        match next {
                            Ok(Ok(Some(p))) if p.header.is_some() => {
                                st.done = true;
                                let e = ObjectError::InvalidArgument(
                                    "only the first upload piece may carry a header".into(),
                                );
                                return Some((Err(e), st));
                            }
                            Ok(Ok(Some(p))) => p,
                            Ok(Ok(None)) => return None,
                            // The client went away or the stream broke: nothing is committed.
                            Ok(Err(s)) => {
                                st.done = true;
                                let e = ObjectError::Body(s.message().to_string());
                                return Some((Err(e), st));
                            }
                            // A stalled client would otherwise hold memory and GC pins for as
                            // long as its connection lives.
                            Err(_) => {
                                st.done = true;
                                let e = ObjectError::Body(format!(
                                    "no data for {} s",
                                    UPLOAD_IDLE.as_secs()
                                ));
                                return Some((Err(e), st));
                            }
                        }
                    }
                };
                if st.md5_seen && !piece.data.is_empty() {
                    st.done = true;
                    let e = ObjectError::InvalidArgument(
                        "data after the piece carrying content_md5 (it must come last)".into(),
                    );
                    return Some((Err(e), st));
                }
                if !piece.content_md5.is_empty() {
                    st.md5_seen = true;
                    if piece.content_md5.len() != 16 || md5.set(piece.content_md5).is_err() {
                        st.done = true;
                        let e = ObjectError::InvalidArgument(
                            "content_md5 must be 16 bytes, sent once".into(),
                        );
                        return Some((Err(e), st));
                    }
                }
                if !piece.data.is_empty() {
                    received.inc_by(piece.data.len() as u64);
                    return Some((Ok(piece.data), st));
                }
            }
        }
    });
    Box::pin(stream)
}

/// Cuts the object service's (chunk-sized) buffers into pieces of at most `PIECE_SIZE`,
/// each with its position in the file.
fn download_pieces(
    body: cairn_object::ByteStream,
    start: u64,
    bucket: String,
    key: String,
    sent: Counter,
) -> impl Stream<Item = Result<DownloadPiece, Status>> {
    let mut pos = start;
    body.map(move |r| {
        let mut out = Vec::new();
        match r {
            Ok(mut b) => {
                while !b.is_empty() {
                    let data: Bytes = b.split_to(b.len().min(PIECE_SIZE));
                    sent.inc_by(data.len() as u64);
                    let offset = pos;
                    pos += data.len() as u64;
                    out.push(Ok(DownloadPiece {
                        info: None,
                        offset,
                        data,
                    }));
                }
            }
            Err(e) => {
                let t = Target {
                    bucket: &bucket,
                    key: Some(&key),
                };
                out.push(Err(to_status(e, t)));
            }
        }
        futures::stream::iter(out)
    })
    .flatten()
}

type DownloadStream = std::pin::Pin<Box<dyn Stream<Item = Result<DownloadPiece, Status>> + Send>>;

#[tonic::async_trait]
impl FileService for FileServer {
    async fn create_bucket(
        &self,
        request: Request<BucketRef>,
    ) -> Result<Response<BucketInfo>, Status> {
        const M: &str = "CreateBucket";
        let (md, _, r) = request.into_parts();
        self.call(M, &r.bucket, "", async {
            let caller = self.authenticate(&md, M, &r.bucket, "")?;
            if let Caller::Key(k) = &caller {
                if !access::may_create_bucket(k, &r.bucket) {
                    return Err(denied(&caller, Permission::Owner, &r.bucket));
                }
            }
            names::check_new_bucket(&r.bucket).map_err(invalid)?;
            let t = Target {
                bucket: &r.bucket,
                key: None,
            };
            let b = self
                .objects()?
                .create_bucket_owned(&r.bucket, None, caller.access_key())
                .await
                .map_err(|e| to_status(e, t))?;
            tracing::info!(bucket = %b.name, "bucket created over FileService");
            Ok(Response::new(BucketInfo {
                name: b.name,
                created_ms: b.created_ms,
            }))
        })
        .await
    }

    async fn delete_bucket(
        &self,
        request: Request<BucketRef>,
    ) -> Result<Response<DeleteBucketReply>, Status> {
        const M: &str = "DeleteBucket";
        let (md, _, r) = request.into_parts();
        self.call(M, &r.bucket, "", async {
            let caller = self.authenticate(&md, M, &r.bucket, "")?;
            names::check_bucket(&r.bucket).map_err(invalid)?;
            self.authorize(&caller, &r.bucket, Permission::Owner)
                .await?;
            let t = Target {
                bucket: &r.bucket,
                key: None,
            };
            self.objects()?
                .delete_bucket(&r.bucket)
                .await
                .map_err(|e| to_status(e, t))?;
            Ok(Response::new(DeleteBucketReply {}))
        })
        .await
    }

    async fn list_buckets(
        &self,
        request: Request<ListBucketsRequest>,
    ) -> Result<Response<ListBucketsReply>, Status> {
        const M: &str = "ListBuckets";
        let md = request.metadata().clone();
        self.call(M, "", "", async {
            let caller = self.authenticate(&md, M, "", "")?;
            let t = Target {
                bucket: "",
                key: None,
            };
            let buckets = self
                .objects()?
                .list_buckets()
                .await
                .map_err(|e| to_status(e, t))?;
            Ok(Response::new(ListBucketsReply {
                buckets: buckets
                    .into_iter()
                    .filter(|b| match &caller {
                        Caller::Key(k) => access::sees(k, b),
                        Caller::Root => true,
                    })
                    .map(|b| BucketInfo {
                        name: b.name,
                        created_ms: b.created_ms,
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadPiece>>,
    ) -> Result<Response<FileInfo>, Status> {
        const M: &str = "Upload";
        let (md, _, mut stream) = request.into_parts();
        // Authenticated and authorized from metadata before any message is read, so a stranger
        // cannot make the server buffer a piece.
        let (bucket, key) = crate::auth::target(&md).map_err(|e| {
            tracing::warn!(error = %e, "refused an unauthenticated file call");
            Status::from(e)
        })?;
        self.call(M, &bucket, &key, async {
            let caller = self.authenticate(&md, M, &bucket, &key)?;
            self.authorize(&caller, &bucket, Permission::Write).await?;
            let mut first = stream.message().await?.ok_or_else(|| {
                Status::invalid_argument("empty upload: the first piece must carry the header")
            })?;
            let header = first.header.take().ok_or_else(|| {
                Status::invalid_argument("the first upload piece must carry the header")
            })?;
            if header.bucket != bucket || header.key != key {
                return Err(Status::invalid_argument(
                    "the upload header names another file than the signed metadata",
                ));
            }
            names::check_bucket(&bucket).map_err(invalid)?;
            names::check_key(&key).map_err(invalid)?;
            let user =
                names::check_headers(&header.content_type, &header.metadata).map_err(invalid)?;
            let t = Target {
                bucket: &bucket,
                key: Some(&key),
            };
            if header.size.is_some_and(|n| n > MAX_PUT_SIZE) {
                return Err(to_status(ObjectError::EntityTooLarge, t));
            }
            let objects = self.objects()?;
            let md5 = Arc::new(OnceLock::new());
            let body = upload_body(first, stream, md5.clone(), self.inner.metrics.received());
            let verify: Verifier = Box::new(move |d: &Digests| match md5.get() {
                Some(sent) if sent[..] != d.md5[..] => Err(ObjectError::BadDigest),
                _ => Ok(()),
            });
            let opts = PutOptions {
                headers: ObjectHeaders {
                    content_type: Some(header.content_type.clone()).filter(|c| !c.is_empty()),
                    user,
                    ..ObjectHeaders::default()
                },
                content_length: header.size,
                verify: Some(verify),
                // S3 asks locked writes for Content-MD5/x-amz-checksum; that is an S3 API
                // rule, not one of FileService (the bucket's default retention still applies).
                lock: cairn_object::LockRequest {
                    explicit: None,
                    integrity_checked: true,
                },
                ..PutOptions::default()
            };
            let record = objects
                .put_object(&bucket, &key, body, opts)
                .await
                .map_err(|e| to_status(e, t))?;
            tracing::debug!(size = record.size, etag = %record.etag, "file stored");
            Ok(Response::new(file_info(&bucket, &key, &record)))
        })
        .await
    }

    type DownloadStream = DownloadStream;

    async fn download(
        &self,
        request: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        const M: &str = "Download";
        let (md, _, r) = request.into_parts();
        self.call(M, &r.bucket, &r.key, async {
            let caller = self.authenticate(&md, M, &r.bucket, &r.key)?;
            names::check_bucket(&r.bucket).map_err(invalid)?;
            self.authorize(&caller, &r.bucket, Permission::Read).await?;
            names::check_key(&r.key).map_err(invalid)?;
            let t = Target {
                bucket: &r.bucket,
                key: Some(&r.key),
            };
            let objects = self.objects()?;
            let record = objects
                .head_object(&r.bucket, &r.key)
                .await
                .map_err(|e| to_status(e, t))?;
            if r.offset > record.size {
                return Err(Status::out_of_range(format!(
                    "offset {} is beyond the end of {t} ({} bytes)",
                    r.offset, record.size
                )));
            }
            let end = match r.length {
                Some(n) => r.offset.saturating_add(n).min(record.size),
                None => record.size,
            };
            let head = DownloadPiece {
                info: Some(file_info(&r.bucket, &r.key, &record)),
                offset: r.offset,
                data: Bytes::new(),
            };
            let body = objects.read_object(&record, Some((r.offset, end)));
            let pieces = download_pieces(
                body,
                r.offset,
                r.bucket.clone(),
                r.key.clone(),
                self.inner.metrics.sent(),
            );
            let stream = futures::stream::once(async move { Ok(head) }).chain(pieces);
            Ok(Response::new(Box::pin(stream) as DownloadStream))
        })
        .await
    }

    async fn stat(&self, request: Request<FileRef>) -> Result<Response<FileInfo>, Status> {
        const M: &str = "Stat";
        let (md, _, r) = request.into_parts();
        self.call(M, &r.bucket, &r.key, async {
            let caller = self.authenticate(&md, M, &r.bucket, &r.key)?;
            names::check_bucket(&r.bucket).map_err(invalid)?;
            self.authorize(&caller, &r.bucket, Permission::Read).await?;
            names::check_key(&r.key).map_err(invalid)?;
            let t = Target {
                bucket: &r.bucket,
                key: Some(&r.key),
            };
            let record = self
                .objects()?
                .head_object(&r.bucket, &r.key)
                .await
                .map_err(|e| to_status(e, t))?;
            Ok(Response::new(file_info(&r.bucket, &r.key, &record)))
        })
        .await
    }

    async fn list(
        &self,
        request: Request<ListFilesRequest>,
    ) -> Result<Response<ListFilesReply>, Status> {
        const M: &str = "List";
        let (md, _, r) = request.into_parts();
        self.call(M, &r.bucket, &r.prefix, async {
            let caller = self.authenticate(&md, M, &r.bucket, &r.prefix)?;
            names::check_bucket(&r.bucket).map_err(invalid)?;
            self.authorize(&caller, &r.bucket, Permission::Read).await?;
            names::check_list_bound("prefix", &r.prefix).map_err(invalid)?;
            names::check_list_bound("start_after", &r.start_after).map_err(invalid)?;
            names::check_list_bound("continuation_token", &r.continuation_token)
                .map_err(invalid)?;
            if r.delimiter.len() > 64 {
                return Err(invalid("delimiter is longer than 64 bytes".into()));
            }
            let non_empty = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
            let query = ListQuery {
                prefix: r.prefix.clone(),
                delimiter: non_empty(&r.delimiter),
                // The token is the last key or prefix returned; resuming after it is exact.
                after: non_empty(&r.continuation_token).or_else(|| non_empty(&r.start_after)),
                max_keys: match r.max_keys {
                    0 => MAX_LIST_KEYS,
                    n => n.min(MAX_LIST_KEYS),
                } as usize,
            };
            let t = Target {
                bucket: &r.bucket,
                key: None,
            };
            let page = self
                .objects()?
                .list_objects(&r.bucket, &query)
                .await
                .map_err(|e| to_status(e, t))?;
            Ok(Response::new(ListFilesReply {
                files: page
                    .objects
                    .iter()
                    .map(|(k, rec)| file_info(&r.bucket, k, rec))
                    .collect(),
                common_prefixes: page.common_prefixes,
                next_continuation_token: match (page.is_truncated, page.next_marker) {
                    (true, Some(m)) => m,
                    _ => String::new(),
                },
            }))
        })
        .await
    }

    async fn delete(&self, request: Request<FileRef>) -> Result<Response<DeleteFileReply>, Status> {
        const M: &str = "Delete";
        let (md, _, r) = request.into_parts();
        self.call(M, &r.bucket, &r.key, async {
            let caller = self.authenticate(&md, M, &r.bucket, &r.key)?;
            names::check_bucket(&r.bucket).map_err(invalid)?;
            self.authorize(&caller, &r.bucket, Permission::Write)
                .await?;
            names::check_key(&r.key).map_err(invalid)?;
            let t = Target {
                bucket: &r.bucket,
                key: Some(&r.key),
            };
            let objects = self.objects()?;
            // S3 deletes of a missing key succeed; a file client wants to hear about typos.
            objects
                .head_object(&r.bucket, &r.key)
                .await
                .map_err(|e| to_status(e, t))?;
            objects
                .delete_object(&r.bucket, &r.key)
                .await
                .map_err(|e| to_status(e, t))?;
            Ok(Response::new(DeleteFileReply {}))
        })
        .await
    }
}
