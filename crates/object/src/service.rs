use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::Stream;

use cairn_chunk::{ChunkPin, ChunkStore, Intent};
use cairn_meta::model::{
    BucketRecord, ChecksumAlgo, ChecksumKind, ChunkId, ChunkRef, ObjectData, ObjectHeaders,
    ObjectRecord, PartRecord, UploadRecord, WriteConsistency,
};
use cairn_meta::placement::{bucket_partition, partition_group, SYSTEM_GROUP};
use cairn_meta::{Command, CommandError, Query, QueryResult, Response};
use cairn_raft::{GroupId, Registry};

use crate::chunk_io::{chunk_error, ChunkIo, LocalChunks};
use crate::conditional::{self, AtStart, Precondition};
use crate::digest::{multipart_etag, BodyDigest};
use crate::mpu_checksum::{self, CompleteChecksums};
use crate::sse::Sealer;
use crate::ObjectError;
pub use encryption::SseRequest;
use encryption::{encryption_etag, sse_error};
pub use kms::kms_key_name;

mod default_checksum;
mod encryption;
mod kms;
mod lifecycle;
mod lock;
mod settings;
mod versions;

pub use default_checksum::{default_checksum_applies, DEFAULT_CHECKSUM};
pub use lock::LockRequest;
pub use versions::DeleteOutcome;

/// S3's limit for a single PUT, a part, and a copy source.
pub const MAX_PUT_SIZE: u64 = 5 << 30;
/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Chunk writes in flight per request: bounds memory to (this + 1) chunks.
const WRITES_IN_FLIGHT: usize = 2;

/// A request body: chunks of bytes or an I/O-ish error message.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, ObjectError>> + Send>>;
/// Bytes of an object being read back; every chunk was hash-verified before being yielded.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ObjectError>> + Send>>;

/// Digests computed in the same pass that cuts the body into chunks.
#[derive(Clone, Debug)]
pub struct Digests {
    pub size: u64,
    pub md5: [u8; 16],
    /// Base64 value of the requested S3 checksum, if one was asked for.
    pub checksum: Option<(ChecksumAlgo, String)>,
}

/// Called once the whole body has been read and before anything is committed: the S3 layer
/// checks Content-MD5 and `x-amz-checksum-*` (header or aws-chunked trailer) here. Returning an
/// error aborts the write; nothing becomes visible.
pub type Verifier = Box<dyn FnOnce(&Digests) -> Result<(), ObjectError> + Send>;

/// Options for a PUT or UploadPart.
pub struct PutOptions {
    pub headers: ObjectHeaders,
    /// Content-Length the client declared, if any: a body of another length is refused.
    pub content_length: Option<u64>,
    /// Which S3 checksum to compute (and store).
    pub checksum_algo: Option<ChecksumAlgo>,
    pub precondition: Precondition,
    pub verify: Option<Verifier>,
    /// Replicas that must have the chunks before the write is acknowledged (None: the
    /// bucket's setting, else the node default).
    pub write_consistency: Option<WriteConsistency>,
    /// Server-side encryption to apply (None: store plaintext).
    pub encryption: Option<SseRequest>,
    /// Object lock headers of a PutObject (UploadPart reads only `integrity_checked`: an
    /// upload's lock is given at its creation).
    pub lock: LockRequest,
}

impl Default for PutOptions {
    fn default() -> Self {
        Self {
            headers: ObjectHeaders::default(),
            content_length: None,
            checksum_algo: None,
            precondition: Precondition::None,
            verify: None,
            write_consistency: None,
            encryption: None,
            lock: LockRequest::default(),
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read began (leader + read index).
    #[default]
    Linearizable,
    /// Served by this node's replica as of what it has applied: no leader round trip, but may
    /// miss the latest writes (the "stale-ok" option).
    Stale,
}

/// A ListObjects query (V1 and V2 both map onto it).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Exclusive lower bound on keys (V1 marker, V2 start-after or continuation token).
    pub after: Option<String>,
    /// 0..=1000; 0 returns an empty, non-truncated page.
    pub max_keys: usize,
}

/// One page of a listing, keys in UTF-8 binary order.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub objects: Vec<(String, ObjectRecord)>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// The last key or common prefix returned: resume after it.
    pub next_marker: Option<String>,
}

/// A part named in CompleteMultipartUpload.
#[derive(Clone, Debug)]
pub struct PartSpec {
    pub part_number: u32,
    /// Unquoted ETag as the client sent it.
    pub etag: String,
}

#[derive(Clone, Debug, Default)]
pub struct ListPartsPage {
    pub upload: Option<UploadRecord>,
    pub parts: Vec<PartRecord>,
    pub is_truncated: bool,
    pub next_part_number_marker: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct ListMultipartPage {
    pub uploads: Vec<UploadRecord>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

/// Tunables of the object service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub chunk_size: usize,
    pub inline_threshold: usize,
}

/// The object service. Cheap to clone.
#[derive(Clone)]
pub struct ObjectService {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServiceConfig,
    registry: Arc<Registry>,
    /// This node's chunk files: pins that keep in-flight chunks from GC.
    chunks: ChunkStore,
    /// Where chunk bytes are written and read (local, or replicated across nodes).
    io: Arc<dyn ChunkIo>,
    /// The SSE-S3 key-encryption key, set once the master key is known (see `sse`).
    sse_key: std::sync::OnceLock<[u8; 32]>,
    /// Milliseconds in one lifecycle day (`LIFECYCLE_DAY_SECS`; see `lifecycle`).
    lifecycle_day_ms: std::sync::atomic::AtomicI64,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A new version id (also upload ids): newest-first sortable, unique per process by a
/// strictly increasing microsecond clock and across nodes by a random salt
/// (`cairn_meta::versions::encode_version_id`).
fn new_version() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    let micros = now.max(prev + 1);
    let r = *uuid::Uuid::new_v4().as_bytes();
    let salt = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
    cairn_meta::versions::encode_version_id(micros, salt)
}

/// Whether writes to `bucket` make versions S3 names by id (versioning Enabled).
fn versioned(bucket: &BucketRecord) -> bool {
    bucket.versioning == Some(cairn_meta::model::Versioning::Enabled)
}

impl From<cairn_raft::RaftError> for ObjectError {
    fn from(e: cairn_raft::RaftError) -> Self {
        match e {
            cairn_raft::RaftError::Meta(m) => ObjectError::Storage(m.to_string()),
            other => ObjectError::Unavailable(other.to_string()),
        }
    }
}

impl From<cairn_meta::MetaError> for ObjectError {
    fn from(e: cairn_meta::MetaError) -> Self {
        ObjectError::Storage(e.to_string())
    }
}

fn refused(e: CommandError) -> ObjectError {
    match e {
        CommandError::BucketExists => ObjectError::BucketAlreadyExists,
        CommandError::NoSuchBucket => ObjectError::NoSuchBucket,
        CommandError::NoSuchUpload => ObjectError::NoSuchUpload,
        CommandError::PreconditionFailed => ObjectError::PreconditionFailed,
        CommandError::NoSuchKey => ObjectError::NoSuchKey,
        CommandError::InvalidPart(m) => ObjectError::InvalidPart(m),
        CommandError::InvalidBucketState(m) => ObjectError::InvalidBucketState(m),
        CommandError::ObjectLocked(m) => ObjectError::ObjectLocked(m),
        CommandError::NoSuchVersion => ObjectError::NoSuchVersion,
        CommandError::MethodNotAllowed => ObjectError::MethodNotAllowed,
        other => ObjectError::Storage(format!("unexpected refusal: {other}")),
    }
}

fn unexpected(r: QueryResult) -> ObjectError {
    ObjectError::Storage(format!("unexpected metadata query result: {r:?}"))
}

/// What `ingest` produced: the data layout, digests, and what keeps the chunks safe from GC
/// until the metadata referencing them is committed and its references delivered: the upload
/// intent in every chunk's reference set (cluster-wide) and local pins (this node).
struct Ingested {
    data: ObjectData,
    digests: Digests,
    intent: Arc<Intent>,
    _pins: Vec<ChunkPin>,
}

/// Most body bytes read and discarded after an early refusal.
const DRAIN_LIMIT: usize = 1 << 20;

/// Reads (a bounded amount of) a body nobody will store, then returns `err`: answering before
/// the client has finished sending leaves the connection in a state some clients retry
/// badly; a small body is simply consumed, a large one is cut off by closing the connection.
async fn drain_then(mut body: BodyStream, err: ObjectError) -> ObjectError {
    let mut seen = 0usize;
    while let Some(Ok(piece)) = body.next().await {
        seen += piece.len();
        if seen > DRAIN_LIMIT {
            break;
        }
    }
    err
}

/// Writes one chunk of an upload: first the upload's intent enters the chunk's reference set
/// (committed), only then are bytes sent, so no replica's GC can delete the chunk between
/// this write and the delivery of the commit's reference.
async fn write_chunk(
    io: Arc<dyn ChunkIo>,
    intent: Arc<Intent>,
    id: ChunkId,
    data: Bytes,
    consistency: Option<WriteConsistency>,
) -> Result<(), ObjectError> {
    intent.cover(id).await.map_err(chunk_error)?;
    io.put(id, data, consistency).await.map_err(chunk_error)
}

impl ObjectService {
    /// Builds the service over this node's Raft registry and chunk store.
    pub fn new(config: ServiceConfig, registry: Arc<Registry>, chunks: ChunkStore) -> Self {
        let io = Arc::new(LocalChunks(chunks.clone()));
        Self::with_chunk_io(config, registry, chunks, io)
    }

    /// Builds the service with a custom chunk transport (replication across nodes).
    pub fn with_chunk_io(
        config: ServiceConfig,
        registry: Arc<Registry>,
        chunks: ChunkStore,
        io: Arc<dyn ChunkIo>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                registry,
                chunks,
                io,
                sse_key: std::sync::OnceLock::new(),
                lifecycle_day_ms: std::sync::atomic::AtomicI64::new(86_400_000),
            }),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.inner.registry
    }

    pub(crate) fn partitions(&self) -> u32 {
        self.inner.registry.meta().partitions()
    }

    /// The Raft group holding `bucket`'s object index (one shard per bucket for now).
    fn group_of(&self, bucket: &str) -> GroupId {
        partition_group(bucket_partition(bucket, 0, self.partitions()))
    }

    async fn propose(&self, group: GroupId, cmd: Command) -> Result<Response, ObjectError> {
        Ok(self.inner.registry.propose(group, cmd).await?)
    }

    /// A linearizable read of `group`.
    async fn query(&self, group: GroupId, q: Query) -> Result<QueryResult, ObjectError> {
        Ok(self.inner.registry.query(group, &q).await?)
    }

    async fn query_with(
        &self,
        group: GroupId,
        q: Query,
        rc: ReadConsistency,
    ) -> Result<QueryResult, ObjectError> {
        match rc {
            ReadConsistency::Linearizable => self.query(group, q).await,
            ReadConsistency::Stale => Ok(self.inner.registry.query_stale(group, &q).await?),
        }
    }

    /// Proposes and turns a refusal into its error.
    async fn propose_ok(&self, group: GroupId, cmd: Command) -> Result<Response, ObjectError> {
        match self.propose(group, cmd).await? {
            Response::Refused(e) => Err(refused(e)),
            r => Ok(r),
        }
    }

    /// A new intent of an upload to be committed in `group` (see `cairn_chunk::intents`).
    fn new_intent(&self, group: GroupId) -> Arc<Intent> {
        Arc::new(Intent::new(
            self.inner.registry.clone(),
            group,
            &new_version(),
        ))
    }

    /// Proposes `cmd`, the commit of an upload covered by `intent`. A refused commit releases
    /// the intent (it will never apply); an error of unknown outcome keeps it (the commit may
    /// still apply and then hands the intent over to its references; otherwise GC removes it
    /// after `INTENT_TTL`).
    async fn commit_with_intent(
        &self,
        group: GroupId,
        cmd: Command,
        intent: &Intent,
    ) -> Result<Response, ObjectError> {
        if intent.expired() {
            intent.release().await;
            return Err(ObjectError::Unavailable(
                "the upload took longer than its intent may live; retry it".into(),
            ));
        }
        match self.propose(group, intent.commit_command(cmd)).await? {
            Response::Refused(e) => {
                intent.release().await;
                Err(refused(e))
            }
            r => Ok(r),
        }
    }

    // ---- buckets ----

    /// Creates a bucket. `BucketAlreadyExists` if it exists.
    pub async fn create_bucket(&self, name: &str) -> Result<BucketRecord, ObjectError> {
        self.create_bucket_with(name, None).await
    }

    /// Creates a bucket whose chunk writes wait for `write_consistency` (None: node default).
    pub async fn create_bucket_with(
        &self,
        name: &str,
        write_consistency: Option<WriteConsistency>,
    ) -> Result<BucketRecord, ObjectError> {
        self.create_bucket_owned(name, write_consistency, None)
            .await
    }

    /// Creates a bucket owned by the access key `owner` (which may then do everything in it).
    pub async fn create_bucket_owned(
        &self,
        name: &str,
        write_consistency: Option<WriteConsistency>,
        owner: Option<&str>,
    ) -> Result<BucketRecord, ObjectError> {
        let record = BucketRecord {
            versioning: None,
            name: name.to_string(),
            created_ms: now_ms(),
            write_consistency,
            owner: owner.map(str::to_string),
            object_lock: None,
        };
        self.propose_ok(
            SYSTEM_GROUP,
            Command::CreateBucket {
                record: record.clone(),
            },
        )
        .await?;
        Ok(record)
    }

    /// Deletes an empty bucket: `BucketNotEmpty` if it holds objects or open uploads.
    pub async fn delete_bucket(&self, name: &str) -> Result<(), ObjectError> {
        self.head_bucket(name).await?;
        let group = self.group_of(name);
        // S3 refuses to delete a bucket that holds objects, but not one that only holds
        // uploads in progress: those are aborted with it (their parts' references released).
        let probe = ListQuery {
            prefix: String::new(),
            delimiter: None,
            after: None,
            max_keys: 1,
        };
        if !self.list_objects(name, &probe).await?.objects.is_empty() {
            return Err(ObjectError::BucketNotEmpty);
        }
        self.abort_all_uploads(name).await?;
        // An object or upload created meanwhile still refuses the delete.
        match self
            .query(
                group,
                Query::BucketHasData {
                    bucket: name.to_string(),
                },
            )
            .await?
        {
            QueryResult::Flag(false) => {}
            QueryResult::Flag(true) => return Err(ObjectError::BucketNotEmpty),
            other => return Err(unexpected(other)),
        }
        self.propose_ok(
            SYSTEM_GROUP,
            Command::DeleteBucket {
                name: name.to_string(),
            },
        )
        .await?;
        Ok(())
    }

    /// Aborts every open upload of `bucket`, a page at a time (aborted uploads leave the
    /// listing, so each page starts from the beginning). Gives up with `BucketNotEmpty` if
    /// uploads keep appearing as fast as they are aborted.
    async fn abort_all_uploads(&self, bucket: &str) -> Result<(), ObjectError> {
        const MAX_PAGES: usize = 100;
        let group = self.group_of(bucket);
        for _ in 0..MAX_PAGES {
            let page = self
                .list_multipart_uploads(bucket, "", None, None, None, 1000)
                .await?;
            if page.uploads.is_empty() {
                return Ok(());
            }
            for u in page.uploads {
                let cmd = Command::AbortUpload {
                    bucket: u.bucket,
                    key: u.key,
                    upload_id: u.upload_id,
                };
                match self.propose_ok(group, cmd).await {
                    // Completed or aborted by someone else meanwhile: gone either way.
                    Ok(_) | Err(ObjectError::NoSuchUpload) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(ObjectError::BucketNotEmpty)
    }

    /// The bucket's record, or `NoSuchBucket`.
    pub async fn head_bucket(&self, name: &str) -> Result<BucketRecord, ObjectError> {
        self.head_bucket_with(name, ReadConsistency::Linearizable)
            .await
    }

    /// `head_bucket` with a choice of read consistency.
    pub async fn head_bucket_with(
        &self,
        name: &str,
        rc: ReadConsistency,
    ) -> Result<BucketRecord, ObjectError> {
        match self
            .query_with(
                SYSTEM_GROUP,
                Query::GetBucket {
                    name: name.to_string(),
                },
                rc,
            )
            .await?
        {
            QueryResult::Bucket(b) => b.ok_or(ObjectError::NoSuchBucket),
            other => Err(unexpected(other)),
        }
    }

    /// All buckets, sorted by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>, ObjectError> {
        match self.query(SYSTEM_GROUP, Query::ListBuckets).await? {
            QueryResult::Buckets(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    // ---- ingest ----

    /// Reads `body` to the end, cutting it into chunks (written durably, at most
    /// `WRITES_IN_FLIGHT` at a time, each covered by the upload's intent first) or keeping it
    /// inline if it fits `inline_limit`. The upload will be committed in `group`. On error the
    /// intent is released.
    #[allow(clippy::too_many_arguments)]
    async fn ingest(
        &self,
        group: GroupId,
        body: BodyStream,
        content_length: Option<u64>,
        checksum_algo: Option<ChecksumAlgo>,
        inline_limit: usize,
        consistency: Option<WriteConsistency>,
        sealer: Option<Sealer>,
    ) -> Result<Ingested, ObjectError> {
        let intent = self.new_intent(group);
        let res = self
            .ingest_with(
                body,
                content_length,
                checksum_algo,
                inline_limit,
                consistency,
                intent.clone(),
                sealer,
            )
            .await;
        if res.is_err() {
            intent.release().await;
        }
        res
    }

    /// Releases the intent of an upload that will not be committed (a failed verification).
    async fn abandon(&self, ingested: Ingested, err: ObjectError) -> ObjectError {
        ingested.intent.release().await;
        err
    }

    #[allow(clippy::too_many_arguments)]
    async fn ingest_with(
        &self,
        mut body: BodyStream,
        content_length: Option<u64>,
        checksum_algo: Option<ChecksumAlgo>,
        inline_limit: usize,
        consistency: Option<WriteConsistency>,
        intent: Arc<Intent>,
        mut sealer: Option<Sealer>,
    ) -> Result<Ingested, ObjectError> {
        let chunk_size = self.inner.config.chunk_size.max(1);
        let mut digest = BodyDigest::new(checksum_algo);
        let mut buf = BytesMut::with_capacity(chunk_size.min(1 << 20));
        let mut chunk_hasher = blake3::Hasher::new();
        let mut refs: Vec<ChunkRef> = Vec::new();
        let mut pins: Vec<ChunkPin> = Vec::new();
        let mut writes = FuturesOrdered::new();
        let limit = content_length.unwrap_or(MAX_PUT_SIZE);

        let mut body_done = false;
        loop {
            let mut piece = match body.next().await {
                Some(piece) => {
                    let piece = piece?;
                    if digest.size + piece.len() as u64 > limit {
                        return Err(if content_length.is_some() {
                            ObjectError::BodyTooLong
                        } else {
                            ObjectError::EntityTooLarge
                        });
                    }
                    // Digests describe the plaintext; the chunks hold what the sealer makes.
                    digest.update(&piece);
                    match sealer.as_mut() {
                        Some(s) => s.push(&piece).map_err(sse_error)?,
                        None => piece,
                    }
                }
                None => match sealer.as_mut() {
                    Some(s) if !body_done => {
                        body_done = true;
                        s.finish().map_err(sse_error)?
                    }
                    _ => break,
                },
            };
            while !piece.is_empty() {
                let take = (chunk_size - buf.len()).min(piece.len());
                let part = piece.split_to(take);
                chunk_hasher.update(&part);
                buf.extend_from_slice(&part);
                if buf.len() == chunk_size {
                    let data = buf.split().freeze();
                    let id = ChunkId(
                        *std::mem::replace(&mut chunk_hasher, blake3::Hasher::new())
                            .finalize()
                            .as_bytes(),
                    );
                    pins.push(self.inner.chunks.pin(id));
                    refs.push(ChunkRef {
                        id,
                        len: data.len() as u64,
                    });
                    writes.push_back(write_chunk(
                        self.inner.io.clone(),
                        intent.clone(),
                        id,
                        data,
                        consistency,
                    ));
                    if writes.len() >= WRITES_IN_FLIGHT {
                        if let Some(r) = writes.next().await {
                            r?;
                        }
                    }
                }
            }
        }
        if let Some(n) = content_length {
            if digest.size != n {
                return Err(ObjectError::IncompleteBody);
            }
        }
        let data = if refs.is_empty() && buf.len() <= inline_limit {
            ObjectData::Inline(buf.to_vec())
        } else {
            if !buf.is_empty() {
                let data = buf.split().freeze();
                let id = ChunkId(*chunk_hasher.finalize().as_bytes());
                pins.push(self.inner.chunks.pin(id));
                refs.push(ChunkRef {
                    id,
                    len: data.len() as u64,
                });
                writes.push_back(write_chunk(
                    self.inner.io.clone(),
                    intent.clone(),
                    id,
                    data,
                    consistency,
                ));
            }
            while let Some(r) = writes.next().await {
                r?;
            }
            ObjectData::Chunks(refs)
        };
        Ok(Ingested {
            data,
            digests: digest.finish(),
            intent,
            _pins: pins,
        })
    }

    // ---- objects ----

    /// Streams `body` into storage and commits it as the current version of `key`.
    /// Returns the committed record. Nothing is visible unless this returns Ok.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<ObjectRecord, ObjectError> {
        let bucket_record = match self.head_bucket(bucket).await {
            Ok(b) => b,
            Err(e) => return Err(drain_then(body, e).await),
        };
        let start = match self
            .condition_at_start(bucket, key, &opts.precondition)
            .await
        {
            Ok(s) => s,
            Err(e) => return Err(drain_then(body, e).await),
        };
        // Object lock: the version's lock is settled (and refused) before any byte is stored.
        let lock_at = now_ms();
        let lock = match lock::version_lock(&bucket_record, opts.lock.explicit.as_ref(), lock_at) {
            Ok(Some(_)) if !opts.lock.integrity_checked => Err(ObjectError::InvalidRequest(
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters".into(),
            )),
            other => other,
        };
        let lock = match lock {
            Ok(l) => l,
            Err(e) => return Err(drain_then(body, e).await),
        };
        let inline = self.inner.config.inline_threshold;
        let consistency = opts.write_consistency.or(bucket_record.write_consistency);
        let requested = match self
            .or_bucket_default(bucket, opts.encryption.clone())
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(drain_then(body, e).await),
        };
        let (sealer, encryption) = match self.start_encryption(requested.as_ref()).await {
            Ok(v) => v,
            Err(e) => return Err(drain_then(body, e).await),
        };
        let ingested = self
            .ingest(
                self.group_of(bucket),
                body,
                opts.content_length,
                opts.checksum_algo,
                inline,
                consistency,
                sealer,
            )
            .await?;
        if let Some(verify) = opts.verify {
            if let Err(e) = verify(&ingested.digests) {
                return Err(self.abandon(ingested, e).await);
            }
        }
        let record = ObjectRecord {
            versioned: versioned(&bucket_record),
            version: new_version(),
            size: ingested.digests.size,
            etag: encryption_etag(&encryption, &ingested.digests.md5),
            last_modified_ms: now_ms(),
            headers: opts.headers,
            checksum: ingested.digests.checksum.clone(),
            part_checksums: None,
            parts: None,
            data: ingested.data.clone(),
            encryption: encryption.map(|(e, _)| e),
            lock,
        };
        let cmd = Command::PutObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            record: record.clone(),
            condition: opts.precondition.condition(),
        };
        self.commit_with_intent(self.group_of(bucket), cmd, &ingested.intent)
            .await
            .map_err(|e| conditional::classify(e, start))?;
        drop(ingested);
        Ok(record)
    }

    /// The current record of `key` (linearizable read), or `NoSuchKey` / `NoSuchBucket`.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectRecord, ObjectError> {
        self.head_object_with(bucket, key, ReadConsistency::Linearizable)
            .await
    }

    /// `head_object` with a choice of read consistency.
    pub async fn head_object_with(
        &self,
        bucket: &str,
        key: &str,
        rc: ReadConsistency,
    ) -> Result<ObjectRecord, ObjectError> {
        self.head_bucket_with(bucket, rc).await?;
        let q = Query::GetObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        match self.query_with(self.group_of(bucket), q, rc).await? {
            QueryResult::Object(o) => o.ok_or(ObjectError::NoSuchKey),
            other => Err(unexpected(other)),
        }
    }

    /// Streams bytes `[start, end)` of `record` (the whole object when `range` is None).
    /// The caller has already validated the range against `record.size`.
    pub fn read_object(&self, record: &ObjectRecord, range: Option<(u64, u64)>) -> ByteStream {
        self.read_object_with_key(record, range, None)
    }

    /// Streams the stored (for an encrypted object, sealed) bytes `[start, end)` of `data`,
    /// whose stored size is `size`.
    fn read_stored(&self, data: &ObjectData, size: u64, range: Option<(u64, u64)>) -> ByteStream {
        let (start, end) = range.unwrap_or((0, size));
        let end = end.min(size);
        match data {
            ObjectData::Inline(bytes) => {
                let slice = if start < end {
                    Bytes::copy_from_slice(&bytes[start as usize..end as usize])
                } else {
                    Bytes::new()
                };
                Box::pin(futures::stream::iter([Ok(slice)]))
            }
            ObjectData::Chunks(chunks) => {
                // (chunk, offset within chunk, length) for every chunk overlapping the range.
                let mut pieces = Vec::new();
                let mut pos = 0u64;
                for c in chunks {
                    let (cs, ce) = (pos, pos + c.len);
                    pos = ce;
                    if ce <= start || cs >= end {
                        continue;
                    }
                    let from = start.max(cs) - cs;
                    let to = end.min(ce) - cs;
                    pieces.push((c.id, from as usize, to as usize));
                }
                let io = self.inner.io.clone();
                let stream = futures::stream::iter(pieces)
                    .map(move |(id, from, to)| {
                        let io = io.clone();
                        async move {
                            let data = io.get(id).await.map_err(chunk_error)?;
                            if to > data.len() {
                                return Err(ObjectError::DataLoss(format!(
                                    "chunk {id} is shorter than recorded"
                                )));
                            }
                            Ok(data.slice(from..to))
                        }
                    })
                    // Prefetch the next chunk while the current one is being sent.
                    .buffered(2);
                Box::pin(stream)
            }
        }
    }

    /// Deletes `key`; deleting a missing key succeeds (S3 semantics). `NoSuchBucket` if the
    /// bucket is missing.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.head_bucket(bucket).await?;
        let cmd = Command::DeleteObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
            at_ms: now_ms(),
            bypass_governance: false,
        };
        self.propose_ok(self.group_of(bucket), cmd).await?;
        Ok(())
    }

    /// Copies `src` (the current record of `src_bucket/src_key`) to `dst_bucket/dst_key` with
    /// new headers. Chunks are shared, not copied: an intent covers them first, and the source
    /// is then checked to be still current — while it is, its own references keep every
    /// chunk's reference set non-empty, so no chunk can have been collected before our intent
    /// arrived. `Unavailable` (retry) if the source changed meanwhile.
    #[allow(clippy::too_many_arguments)]
    pub async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        src: &ObjectRecord,
        dst_bucket: &str,
        dst_key: &str,
        headers: ObjectHeaders,
        precondition: Precondition,
        lock: Option<cairn_meta::lock::VersionLock>,
    ) -> Result<ObjectRecord, ObjectError> {
        let dst_record = self.head_bucket(dst_bucket).await?;
        // The copy is a new version: its lock comes from this request and the destination
        // bucket, never from the source.
        let lock = lock::version_lock(&dst_record, lock.as_ref(), now_ms())?;
        let start = self
            .condition_at_start(dst_bucket, dst_key, &precondition)
            .await?;
        if src.size > MAX_PUT_SIZE {
            return Err(ObjectError::InvalidArgument(
                "copy source is larger than 5 GiB; use UploadPartCopy".into(),
            ));
        }
        // Pins keep the shared chunks alive should the source be deleted before our refs land.
        let _pins: Vec<ChunkPin> = src
            .data
            .chunks()
            .iter()
            .map(|c| self.inner.chunks.pin(c.id))
            .collect();
        let intent = self.new_intent(self.group_of(dst_bucket));
        if let Err(e) = self.cover_source(src_bucket, src_key, src, &intent).await {
            intent.release().await;
            return Err(e);
        }
        let record = ObjectRecord {
            versioned: versioned(&dst_record),
            version: new_version(),
            last_modified_ms: now_ms(),
            headers,
            lock,
            ..src.clone()
        };
        let cmd = Command::PutObject {
            bucket: dst_bucket.to_string(),
            key: dst_key.to_string(),
            record: record.clone(),
            condition: precondition.condition(),
        };
        self.commit_with_intent(self.group_of(dst_bucket), cmd, &intent)
            .await
            .map_err(|e| conditional::classify(e, start))?;
        Ok(record)
    }

    /// Covers the chunks `src` shares with a copy by `intent`, then checks `src` is still the
    /// current version of `src_bucket/src_key`.
    async fn cover_source(
        &self,
        src_bucket: &str,
        src_key: &str,
        src: &ObjectRecord,
        intent: &Intent,
    ) -> Result<(), ObjectError> {
        if src.data.chunks().is_empty() {
            return Ok(());
        }
        for c in src.data.chunks() {
            intent.cover(c.id).await.map_err(chunk_error)?;
        }
        // The source version (current or not) must still exist.
        match self
            .get_version(
                src_bucket,
                src_key,
                src.version_id(),
                ReadConsistency::Linearizable,
            )
            .await
        {
            Ok(cairn_meta::versions::VersionEntry::Object(now)) if now.version == src.version => {
                Ok(())
            }
            Ok(_) | Err(ObjectError::NoSuchVersion) => Err(ObjectError::Unavailable(
                "the copy source changed during the copy; retry".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Lists keys in `bucket` per `query`.
    pub async fn list_objects(
        &self,
        bucket: &str,
        query: &ListQuery,
    ) -> Result<ListPage, ObjectError> {
        self.list_objects_with(bucket, query, ReadConsistency::Linearizable)
            .await
    }

    /// `list_objects` with a choice of read consistency.
    pub async fn list_objects_with(
        &self,
        bucket: &str,
        query: &ListQuery,
        rc: ReadConsistency,
    ) -> Result<ListPage, ObjectError> {
        self.head_bucket_with(bucket, rc).await?;
        let q = Query::ListObjects {
            bucket: bucket.to_string(),
            prefix: query.prefix.clone(),
            delimiter: query.delimiter.clone(),
            after: query.after.clone(),
            max: query.max_keys,
        };
        let l = match self.query_with(self.group_of(bucket), q, rc).await? {
            QueryResult::Objects(l) => l,
            other => return Err(unexpected(other)),
        };
        Ok(ListPage {
            objects: l.entries,
            common_prefixes: l.common_prefixes,
            is_truncated: l.truncated,
            next_marker: l.last,
        })
    }

    // ---- multipart ----

    /// Starts a multipart upload; returns its record (with the new upload id).
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        checksum_algo: Option<ChecksumAlgo>,
    ) -> Result<UploadRecord, ObjectError> {
        self.create_multipart_typed(bucket, key, headers, checksum_algo, None)
            .await
    }

    /// Starts a multipart upload with a checksum type (`x-amz-checksum-type`; None: AWS's
    /// default for the algorithm).
    pub async fn create_multipart_typed(
        &self,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        checksum_algo: Option<ChecksumAlgo>,
        checksum_kind: Option<ChecksumKind>,
    ) -> Result<UploadRecord, ObjectError> {
        self.create_multipart_with(
            bucket,
            key,
            headers,
            checksum_algo,
            checksum_kind,
            None,
            None,
        )
        .await
    }

    /// Starts a multipart upload whose object gets the object lock `lock` (the request's lock
    /// headers; the bucket's default retention fills in at completion; `InvalidRequest` when
    /// `lock` names a bucket without object lock) and the server-side encryption `sse` (else
    /// the bucket's default): the upload gets one data key, wrapped on its record, that every
    /// part's key derives from.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_multipart_with(
        &self,
        bucket: &str,
        key: &str,
        headers: ObjectHeaders,
        checksum_algo: Option<ChecksumAlgo>,
        checksum_kind: Option<ChecksumKind>,
        lock: Option<cairn_meta::lock::VersionLock>,
        sse: Option<SseRequest>,
    ) -> Result<UploadRecord, ObjectError> {
        let checksum_kind = mpu_checksum::upload_kind(checksum_algo, checksum_kind)?;
        let b = self.head_bucket(bucket).await?;
        if lock.is_some() && b.object_lock.is_none() {
            return Err(lock::missing_lock_configuration());
        }
        let sse = self.or_bucket_default(bucket, sse).await?;
        let encryption = self.start_upload_encryption(sse.as_ref()).await?;
        let record = UploadRecord {
            upload_id: new_version(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            initiated_ms: now_ms(),
            headers,
            checksum_algo,
            checksum_kind,
            lock,
            encryption,
        };
        self.propose_ok(
            self.group_of(bucket),
            Command::CreateUpload {
                record: record.clone(),
            },
        )
        .await?;
        Ok(record)
    }

    async fn get_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<UploadRecord, ObjectError> {
        Ok(self.get_upload_in(bucket, key, upload_id).await?.1)
    }

    /// The bucket and the open upload `upload_id` of `key` in it.
    async fn get_upload_in(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(BucketRecord, UploadRecord), ObjectError> {
        let b = self.head_bucket(bucket).await?;
        let q = Query::GetUpload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        };
        match self.query(self.group_of(bucket), q).await? {
            QueryResult::Upload(u) => Ok((b, u.ok_or(ObjectError::NoSuchUpload)?)),
            other => Err(unexpected(other)),
        }
    }

    /// Stores one part (1..=10000), replacing any earlier part with that number.
    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<PartRecord, ObjectError> {
        self.upload_part_sse(bucket, key, upload_id, part_number, body, opts)
            .await
            .map(|(part, _)| part)
    }

    /// `upload_part`, also returning the upload's encryption (for the response headers).
    /// `opts.encryption` carries the SSE-C key a part of an SSE-C upload must repeat.
    pub async fn upload_part_sse(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: BodyStream,
        opts: PutOptions,
    ) -> Result<(PartRecord, Option<cairn_meta::model::ObjectEncryption>), ObjectError> {
        if !(1..=10_000).contains(&part_number) {
            return Err(ObjectError::InvalidArgument(
                "part number must be between 1 and 10000".into(),
            ));
        }
        let (bucket_record, upload) = match self.get_upload_in(bucket, key, upload_id).await {
            Ok(found) => found,
            Err(e) => return Err(drain_then(body, e).await),
        };
        // As AWS: a part of an object that will be locked needs an integrity header.
        if lock::upload_locked(&bucket_record, &upload) && !opts.lock.integrity_checked {
            let e = ObjectError::InvalidRequest(
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Part requests with Object Lock parameters".into(),
            );
            return Err(drain_then(body, e).await);
        }
        // A checksummed upload checksums every part with its algorithm, whether or not the
        // client sent one; a part checksummed with another algorithm is refused (as AWS).
        let checksum_algo = match (upload.checksum_algo, opts.checksum_algo) {
            (Some(want), Some(got)) if want != got => {
                let e = ObjectError::InvalidRequest(format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    mpu_checksum::algo_lower(want),
                    mpu_checksum::algo_lower(got)
                ));
                return Err(drain_then(body, e).await);
            }
            (want, got) => want.or(got),
        };
        let consistency = opts.write_consistency.or(bucket_record.write_consistency);
        let sealing = match self
            .start_part_encryption(&upload, opts.encryption.as_ref())
            .await
        {
            Ok(s) => s,
            Err(e) => return Err(drain_then(body, e).await),
        };
        let (sealer, sealed) = split_sealing(sealing);
        // Parts are always chunked so a completed object is a plain chunk list.
        let ingested = self
            .ingest(
                self.group_of(bucket),
                body,
                opts.content_length,
                checksum_algo,
                0,
                consistency,
                sealer,
            )
            .await?;
        if let Some(verify) = opts.verify {
            if let Err(e) = verify(&ingested.digests) {
                return Err(self.abandon(ingested, e).await);
            }
        }
        let part = self
            .commit_part(
                bucket,
                key,
                upload_id,
                part_number,
                ingested,
                &upload,
                sealed,
            )
            .await?;
        Ok((part, upload.encryption))
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        ingested: Ingested,
        upload: &UploadRecord,
        sealed: Option<(Vec<u8>, crate::sse::DataKey)>,
    ) -> Result<PartRecord, ObjectError> {
        let (sse_salt, dk) = match sealed {
            Some((salt, dk)) => (salt, Some(dk)),
            None => (Vec::new(), None),
        };
        let enc = upload.encryption.clone().zip(dk);
        let part = PartRecord {
            part_number,
            version: new_version(),
            size: ingested.digests.size,
            etag: encryption_etag(&enc, &ingested.digests.md5),
            last_modified_ms: now_ms(),
            checksum: ingested.digests.checksum.clone(),
            data: ingested.data.clone(),
            sse_salt,
        };
        let cmd = Command::PutPart {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            part: part.clone(),
        };
        self.commit_with_intent(self.group_of(bucket), cmd, &ingested.intent)
            .await?;
        drop(ingested);
        Ok(part)
    }

    /// Stores bytes `[start, end)` of `src` as a part (UploadPartCopy).
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRecord,
        range: Option<(u64, u64)>,
    ) -> Result<PartRecord, ObjectError> {
        self.upload_part_copy_with(bucket, key, upload_id, part_number, src, range, None, None)
            .await
            .map(|(part, _)| part)
    }

    /// `upload_part_copy` from a source that may be encrypted (`src_key`: its SSE-C key)
    /// into an upload that may be (`part_sse`: the upload's SSE-C key, for an SSE-C upload).
    /// The bytes are decrypted and sealed again under the part's key.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_part_copy_with(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRecord,
        range: Option<(u64, u64)>,
        src_key: Option<[u8; 32]>,
        part_sse: Option<SseRequest>,
    ) -> Result<(PartRecord, Option<cairn_meta::model::ObjectEncryption>), ObjectError> {
        if !(1..=10_000).contains(&part_number) {
            return Err(ObjectError::InvalidArgument(
                "part number must be between 1 and 10000".into(),
            ));
        }
        let (start, end) = range.unwrap_or((0, src.size));
        if start > end || end > src.size {
            return Err(ObjectError::InvalidRange);
        }
        if end - start > MAX_PUT_SIZE {
            return Err(ObjectError::InvalidArgument(
                "copy range is larger than 5 GiB".into(),
            ));
        }
        let (bucket_record, upload) = self.get_upload_in(bucket, key, upload_id).await?;
        // Key checks first, so a wrong key answers before any byte is copied.
        self.data_key(src, src_key.as_ref()).await?;
        let sealing = self
            .start_part_encryption(&upload, part_sse.as_ref())
            .await?;
        let (sealer, sealed) = split_sealing(sealing);
        let body = self.read_object_with_key(src, Some((start, end)), src_key.as_ref());
        let ingested = self
            .ingest(
                self.group_of(bucket),
                body,
                Some(end - start),
                upload.checksum_algo,
                0,
                bucket_record.write_consistency,
                sealer,
            )
            .await?;
        let part = self
            .commit_part(
                bucket,
                key,
                upload_id,
                part_number,
                ingested,
                &upload,
                sealed,
            )
            .await?;
        Ok((part, upload.encryption))
    }

    /// Completes an upload from the listed parts (ascending, each but the last ≥ 5 MiB).
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<PartSpec>,
        precondition: Precondition,
    ) -> Result<ObjectRecord, ObjectError> {
        self.complete_multipart_checked(
            bucket,
            key,
            upload_id,
            parts,
            precondition,
            CompleteChecksums::default(),
        )
        .await
    }

    /// Completes an upload, also checking the part checksums, checksum type, object checksum
    /// and object size the client listed, and storing the object's checksum (COMPOSITE or
    /// FULL_OBJECT, see `mpu_checksum`).
    pub async fn complete_multipart_checked(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<PartSpec>,
        precondition: Precondition,
        sums: CompleteChecksums,
    ) -> Result<ObjectRecord, ObjectError> {
        let upload = match self.get_upload(bucket, key, upload_id).await {
            Ok(u) => u,
            Err(ObjectError::NoSuchUpload) => {
                return self.completed_by(bucket, key, upload_id).await
            }
            Err(e) => return Err(e),
        };
        let start = self.condition_at_start(bucket, key, &precondition).await?;
        if parts.is_empty() {
            return Err(ObjectError::InvalidArgument(
                "you must specify at least one part".into(),
            ));
        }
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(ObjectError::InvalidPartOrder);
        }
        let group = self.group_of(bucket);
        let (stored, _) = self.parts(group, upload_id, 0, 10_000).await?;
        let mut chosen = Vec::with_capacity(parts.len());
        for (i, spec) in parts.iter().enumerate() {
            let etag = spec.etag.trim_matches('"');
            match stored.iter().find(|p| p.part_number == spec.part_number) {
                Some(p) if p.etag == etag => chosen.push(p),
                _ => {
                    return Err(ObjectError::InvalidPart(format!(
                        "part {} was not uploaded or its ETag does not match",
                        spec.part_number
                    )))
                }
            }
            // A listed part checksum must be the one stored for that part.
            if let Some(Some(claimed)) = sums.parts.get(i) {
                if chosen.last().and_then(|p| p.checksum.as_ref()) != Some(claimed) {
                    return Err(ObjectError::InvalidPart(format!(
                        "the checksum of part {} does not match",
                        spec.part_number
                    )));
                }
            }
        }
        let last = chosen.len() - 1;
        for (i, p) in chosen.iter().enumerate() {
            if i < last && p.size < MIN_PART_SIZE {
                return Err(ObjectError::EntityTooSmall {
                    part_number: p.part_number,
                });
            }
        }
        let etags: Vec<String> = chosen.iter().map(|p| p.etag.clone()).collect();
        let etag = multipart_etag(&etags)
            .ok_or_else(|| ObjectError::Storage("stored part ETag is not hex".into()))?;
        let size: u64 = chosen.iter().map(|p| p.size).sum();
        if let Some(expected) = sums.object_size {
            if expected != size {
                return Err(ObjectError::InvalidRequest(format!(
                    "The provided 'x-amz-mp-object-size' header value {expected} does not match what was computed: {size}"
                )));
            }
        }
        let (checksum, part_checksums) = object_checksum(&upload, &parts, &chosen, &sums)?;
        let mut chunks = Vec::new();
        for p in &chosen {
            chunks.extend_from_slice(p.data.chunks());
        }
        let bucket_record = self.head_bucket(bucket).await?;
        let versioned = versioned(&bucket_record);
        let lock = lock::version_lock(&bucket_record, upload.lock.as_ref(), now_ms())?;
        let encryption = match upload.encryption.clone() {
            None => None,
            Some(mut enc) => {
                // Every part of an encrypted upload was sealed under its own salt.
                if chosen.iter().any(|p| p.sse_salt.is_empty()) {
                    return Err(ObjectError::Storage(
                        "a part of an encrypted upload has no key salt".into(),
                    ));
                }
                enc.part_salts = chosen.iter().map(|p| p.sse_salt.clone()).collect();
                Some(enc)
            }
        };
        let record = ObjectRecord {
            versioned,
            // The upload id names the version (an upload completes at most once, and ids are
            // drawn like versions): a repeated completion recognises the object it produced.
            version: upload_id.to_string(),
            size,
            etag,
            last_modified_ms: now_ms(),
            headers: upload.headers,
            checksum,
            part_checksums,
            parts: Some(chosen.iter().map(|p| p.size).collect()),
            data: ObjectData::Chunks(chunks),
            encryption,
            lock,
        };
        let cmd = Command::CompleteUpload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            parts: chosen
                .iter()
                .map(|p| (p.part_number, p.etag.clone()))
                .collect(),
            record: record.clone(),
            condition: precondition.condition(),
        };
        match self.propose_ok(group, cmd).await {
            Ok(_) => Ok(record),
            // Another completion of this upload committed first (a client retry racing its
            // first attempt): answer as for a repeated completion.
            Err(ObjectError::NoSuchUpload) => self.completed_by(bucket, key, upload_id).await,
            Err(e) => Err(conditional::classify(e, start)),
        }
    }

    /// The object upload `upload_id` produced, while it is still the current version of `key`:
    /// S3 answers a repeated CompleteMultipartUpload with it (same ETag). `NoSuchUpload` when
    /// the upload never completed, or its object was replaced or deleted since.
    async fn completed_by(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<ObjectRecord, ObjectError> {
        match self.head_object(bucket, key).await {
            Ok(current) if current.version == upload_id => Ok(current),
            Ok(_) | Err(ObjectError::NoSuchKey) => Err(ObjectError::NoSuchUpload),
            Err(e) => Err(e),
        }
    }

    /// Whether a conditional write's condition holds against `key` as it is now, before the
    /// write reads its body: only decides between the two errors of a refused commit (see
    /// `crate::conditional`). No read for an unconditional write.
    async fn condition_at_start(
        &self,
        bucket: &str,
        key: &str,
        precondition: &Precondition,
    ) -> Result<AtStart, ObjectError> {
        if *precondition == Precondition::None {
            return Ok(AtStart::Held);
        }
        let q = Query::GetObject {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        match self.query(self.group_of(bucket), q).await? {
            QueryResult::Object(current) => {
                Ok(conditional::at_start(precondition, current.as_ref()))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn parts(
        &self,
        group: GroupId,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartRecord>, bool), ObjectError> {
        match self
            .query(
                group,
                Query::ListParts {
                    upload_id: upload_id.to_string(),
                    after,
                    max,
                },
            )
            .await?
        {
            QueryResult::Parts { parts, truncated } => Ok((parts, truncated)),
            other => Err(unexpected(other)),
        }
    }

    /// Aborts an upload and releases its parts.
    pub async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        self.head_bucket(bucket).await?;
        let cmd = Command::AbortUpload {
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        };
        self.propose_ok(self.group_of(bucket), cmd).await?;
        Ok(())
    }

    /// Parts of an upload with number > `after`, up to `max` of them.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<ListPartsPage, ObjectError> {
        let upload = self.get_upload(bucket, key, upload_id).await?;
        let (parts, is_truncated) = self
            .parts(self.group_of(bucket), upload_id, after, max)
            .await?;
        let next_part_number_marker = parts.last().map(|p| p.part_number);
        Ok(ListPartsPage {
            upload: Some(upload),
            parts,
            is_truncated,
            next_part_number_marker,
        })
    }

    /// Open uploads in `bucket` under `prefix`, after (key, upload id) markers.
    pub async fn list_multipart_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        key_marker: Option<&str>,
        upload_id_marker: Option<&str>,
        max: usize,
    ) -> Result<ListMultipartPage, ObjectError> {
        self.head_bucket(bucket).await?;
        let q = Query::ListUploads {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            delimiter: delimiter.map(str::to_string),
            after: key_marker.map(|k| (k.to_string(), upload_id_marker.map(str::to_string))),
            max,
        };
        let l = match self.query(self.group_of(bucket), q).await? {
            QueryResult::Uploads(l) => l,
            other => return Err(unexpected(other)),
        };
        let last = l
            .entries
            .last()
            .map(|(_, u)| (u.key.clone(), u.upload_id.clone()));
        let (next_key_marker, next_upload_id_marker) = match (l.truncated, last) {
            (true, Some((k, id))) => (Some(k), Some(id)),
            (true, None) => (l.last.clone(), None),
            _ => (None, None),
        };
        Ok(ListMultipartPage {
            uploads: l.entries.into_iter().map(|(_, u)| u).collect(),
            common_prefixes: l.common_prefixes,
            is_truncated: l.truncated,
            next_key_marker,
            next_upload_id_marker,
        })
    }
}

/// Splits a part's sealing state into the sealer `ingest` takes and what `commit_part`
/// records (salt, and the upload's data key for the ETag).
#[allow(clippy::type_complexity)]
fn split_sealing(
    sealing: Option<(Sealer, Vec<u8>, crate::sse::DataKey)>,
) -> (Option<Sealer>, Option<(Vec<u8>, crate::sse::DataKey)>) {
    match sealing {
        Some((sealer, salt, dk)) => (Some(sealer), Some((salt, dk))),
        None => (None, None),
    }
}

/// The checksum of a completed upload and its parts' checksums, checked against what the
/// complete request claims. `(None, None)` for an upload created without a checksum.
#[allow(clippy::type_complexity)]
fn object_checksum(
    upload: &UploadRecord,
    specs: &[PartSpec],
    chosen: &[&PartRecord],
    sums: &CompleteChecksums,
) -> Result<(Option<(ChecksumAlgo, String)>, Option<Vec<String>>), ObjectError> {
    let Some(algo) = upload.checksum_algo else {
        return Ok((None, None));
    };
    let kind = upload.checksum_kind.unwrap_or(ChecksumKind::Composite);
    if sums.kind.is_some_and(|k| k != kind) {
        return Err(mpu_checksum::kind_mismatch(kind));
    }
    let mut values = Vec::with_capacity(chosen.len());
    for (i, p) in chosen.iter().enumerate() {
        let listed = sums.parts.get(i).and_then(Option::as_ref);
        if kind == ChecksumKind::Composite && listed.is_none() {
            return Err(mpu_checksum::missing_part_checksum(
                algo,
                specs[i].part_number,
            ));
        }
        match &p.checksum {
            Some((a, v)) if *a == algo => values.push(v.clone()),
            // Parts stored before the upload's algorithm was enforced on every part.
            _ => {
                return Err(ObjectError::InvalidPart(format!(
                    "part {} has no {} checksum",
                    p.part_number,
                    mpu_checksum::algo_lower(algo)
                )))
            }
        }
    }
    let value = match kind {
        ChecksumKind::Composite => {
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            mpu_checksum::composite(algo, &refs)?
        }
        ChecksumKind::FullObject => {
            let refs: Vec<(&str, u64)> = values
                .iter()
                .zip(chosen)
                .map(|(v, p)| (v.as_str(), p.size))
                .collect();
            mpu_checksum::full_object(algo, &refs)?
        }
    };
    if let Some((claimed_algo, claimed)) = &sums.whole {
        if *claimed_algo != algo {
            return Err(ObjectError::InvalidRequest(format!(
                "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                mpu_checksum::algo_lower(algo),
                mpu_checksum::algo_lower(*claimed_algo)
            )));
        }
        if !mpu_checksum::claim_matches(claimed, &value) {
            return Err(ObjectError::ChecksumMismatch { algo });
        }
    }
    Ok((Some((algo, value)), Some(values)))
}
