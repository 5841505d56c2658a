//! The typed FileService client (what `cairn mb|cp|ls|rm` call): signs every call and streams
//! files both ways in pieces of [`PIECE_SIZE`], so memory stays bounded whatever the size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use cairn_rpc::pb::file_service_client::FileServiceClient;
use cairn_rpc::pb::{
    BucketInfo, BucketRef, DownloadPiece, DownloadRequest, FileInfo, FileRef, ListBucketsRequest,
    ListFilesReply, ListFilesRequest, UploadHeader, UploadPiece,
};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use crate::auth::{AuthError, Credentials};
use crate::PIECE_SIZE;

/// Deadline of calls that move no file data.
const UNARY_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A page of 1000 files with long keys and full metadata is a few MiB.
const MAX_REPLY_MESSAGE: usize = 64 << 20;

/// What went wrong on the client side, or what the server answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("credentials: {0}")]
    Credentials(#[from] AuthError),
    #[error("{}", describe(.0))]
    Rpc(Status),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The server's answer does not add up (wrong size, pieces out of order...).
    #[error("{0}")]
    Protocol(String),
}

impl ClientError {
    /// The gRPC code, when the server answered with an error.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Rpc(s)
    }
}

fn describe(s: &Status) -> String {
    let mut msg = if s.message().is_empty() {
        s.code().description().to_string()
    } else {
        s.message().to_string()
    };
    // Transport failures carry their cause as a source ("transport error" alone says little).
    if let Some(cause) = std::error::Error::source(s) {
        let cause = error_chain(cause);
        if cause != msg {
            msg = format!("{msg}: {cause}");
        }
    }
    match s.code() {
        Code::Unauthenticated => format!("authentication failed: {msg}"),
        Code::Unavailable => format!("server unavailable: {msg}"),
        Code::DeadlineExceeded => format!("timed out: {msg}"),
        Code::Unimplemented => {
            format!("the server does not offer FileService (is this a Cairn RPC port?): {msg}")
        }
        _ => msg,
    }
}

/// `e` and its causes, joined: tonic's own messages ("transport error") say little alone.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        // Layers often repeat their cause's message.
        if parts.last() != Some(&s) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

fn io_err(path: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = path.into();
    move |source| ClientError::Io { path, source }
}

/// What to store with an uploaded file.
#[derive(Clone, Debug, Default)]
pub struct UploadOptions {
    /// The exact size, when known: the server refuses a stream of any other length, so a file
    /// that shrinks or grows while being read is not stored half-way.
    pub size: Option<u64>,
    /// Empty: none (reported as `binary/octet-stream`).
    pub content_type: String,
    pub metadata: BTreeMap<String, String>,
}

/// A download in progress: the file's info, then its bytes in order.
pub struct Download {
    pub info: FileInfo,
    /// First byte delivered.
    pub offset: u64,
    /// Bytes that will be delivered.
    pub length: u64,
    next: u64,
    stream: Streaming<DownloadPiece>,
}

impl Download {
    /// The next piece of data; `None` at the end. Checks the pieces are contiguous and add up.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, ClientError> {
        let end = self.offset + self.length;
        let name = format!("{}/{}", self.info.bucket, self.info.key);
        match self.stream.message().await? {
            None if self.next == end => Ok(None),
            None => Err(ClientError::Protocol(format!(
                "download of `{name}` ended after {} of {} bytes",
                self.next - self.offset,
                self.length
            ))),
            Some(p) => {
                if p.offset != self.next || p.info.is_some() {
                    return Err(ClientError::Protocol(format!(
                        "download of `{name}`: piece at offset {} where {} was expected",
                        p.offset, self.next
                    )));
                }
                self.next += p.data.len() as u64;
                if self.next > end {
                    return Err(ClientError::Protocol(format!(
                        "download of `{name}` sent more than the {} bytes expected",
                        self.length
                    )));
                }
                Ok(Some(p.data))
            }
        }
    }
}

/// A FileService client for one endpoint. Cheap to clone.
#[derive(Clone)]
pub struct FileClient {
    rpc: FileServiceClient<Channel>,
    credentials: Credentials,
}

impl FileClient {
    /// Connects to `endpoint` (`host:port` of a node's RPC port) over TLS, verifying the node's
    /// certificate with `tls` (e.g. `cairn_trust::tls::ca_client_config` for the cluster CA).
    pub async fn connect_tls(
        endpoint: &str,
        credentials: Credentials,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::Endpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let addr = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .unwrap_or(endpoint)
            .trim_end_matches('/');
        // The scheme stays `http`: TLS is the connector's, not tonic's.
        let ep = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| bad(error_chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20));
        let channel = ep
            .connect_with_connector(cairn_trust::Connector::new(tls))
            .await
            .map_err(|e| ClientError::Connect {
                endpoint: endpoint.to_string(),
                reason: error_chain(&e),
            })?;
        Ok(Self::with_channel(channel, credentials))
    }

    /// Connects to `endpoint` (`host:port` or an `http://` URL) in plain text: only for servers
    /// without TLS (in-process tests); nodes serve the RPC port over TLS (`connect_tls`).
    pub async fn connect(endpoint: &str, credentials: Credentials) -> Result<Self, ClientError> {
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else {
            format!("http://{endpoint}")
        };
        let bad = |reason: String| ClientError::Endpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let ep = Endpoint::from_shared(url)
            .map_err(|e| bad(error_chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(20));
        let channel = ep.connect().await.map_err(|e| ClientError::Connect {
            endpoint: endpoint.to_string(),
            reason: error_chain(&e),
        })?;
        Ok(Self::with_channel(channel, credentials))
    }

    /// A client over an existing channel.
    pub fn with_channel(channel: Channel, credentials: Credentials) -> Self {
        Self {
            rpc: FileServiceClient::new(channel).max_decoding_message_size(MAX_REPLY_MESSAGE),
            credentials,
        }
    }

    fn signed<T>(
        &self,
        msg: T,
        method: &str,
        bucket: &str,
        key: &str,
        timeout: Option<Duration>,
    ) -> Result<Request<T>, ClientError> {
        let mut req = Request::new(msg);
        self.credentials
            .authorize(req.metadata_mut(), method, bucket, key, SystemTime::now())?;
        if let Some(t) = timeout {
            req.set_timeout(t);
        }
        Ok(req)
    }

    /// Creates a bucket (`ALREADY_EXISTS` if it exists).
    pub async fn create_bucket(&self, bucket: &str) -> Result<BucketInfo, ClientError> {
        let msg = BucketRef {
            bucket: bucket.to_string(),
        };
        let req = self.signed(msg, "CreateBucket", bucket, "", Some(UNARY_TIMEOUT))?;
        Ok(self.rpc.clone().create_bucket(req).await?.into_inner())
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), ClientError> {
        let msg = BucketRef {
            bucket: bucket.to_string(),
        };
        let req = self.signed(msg, "DeleteBucket", bucket, "", Some(UNARY_TIMEOUT))?;
        self.rpc.clone().delete_bucket(req).await?;
        Ok(())
    }

    /// All buckets, sorted by name.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>, ClientError> {
        let req = self.signed(
            ListBucketsRequest {},
            "ListBuckets",
            "",
            "",
            Some(UNARY_TIMEOUT),
        )?;
        Ok(self
            .rpc
            .clone()
            .list_buckets(req)
            .await?
            .into_inner()
            .buckets)
    }

    /// A file's info (`NOT_FOUND` if it does not exist).
    pub async fn stat(&self, bucket: &str, key: &str) -> Result<FileInfo, ClientError> {
        let msg = FileRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let req = self.signed(msg, "Stat", bucket, key, Some(UNARY_TIMEOUT))?;
        Ok(self.rpc.clone().stat(req).await?.into_inner())
    }

    /// One page of a listing; pass `next_continuation_token` back for the next.
    pub async fn list(&self, request: ListFilesRequest) -> Result<ListFilesReply, ClientError> {
        let (bucket, prefix) = (request.bucket.clone(), request.prefix.clone());
        let req = self.signed(request, "List", &bucket, &prefix, Some(UNARY_TIMEOUT))?;
        Ok(self.rpc.clone().list(req).await?.into_inner())
    }

    /// Deletes a file (`NOT_FOUND` if it does not exist).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), ClientError> {
        let msg = FileRef {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        let req = self.signed(msg, "Delete", bucket, key, Some(UNARY_TIMEOUT))?;
        self.rpc.clone().delete(req).await?;
        Ok(())
    }

    /// Streams `reader` to the end into `bucket/key`. `source` names the reader in errors.
    /// The MD5 of what was read travels with the last piece, so the server stores the file only
    /// if it received exactly those bytes; a read error cancels the call (nothing is stored).
    pub async fn upload<R>(
        &self,
        bucket: &str,
        key: &str,
        reader: R,
        opts: UploadOptions,
        source: &str,
    ) -> Result<FileInfo, ClientError>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        struct State<R> {
            reader: R,
            header: Option<UploadHeader>,
            md5: Md5,
            read: u64,
            failed: Option<tokio::sync::oneshot::Sender<std::io::Error>>,
            digest: Arc<OnceLock<(u64, [u8; 16])>>,
            done: bool,
        }
        let (fail_tx, fail_rx) = tokio::sync::oneshot::channel();
        let digest = Arc::new(OnceLock::new());
        let state = State {
            reader,
            header: Some(UploadHeader {
                bucket: bucket.to_string(),
                key: key.to_string(),
                content_type: opts.content_type,
                metadata: opts.metadata.into_iter().collect(),
                size: opts.size,
            }),
            md5: Md5::new(),
            read: 0,
            failed: Some(fail_tx),
            digest: digest.clone(),
            done: false,
        };
        let pieces = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let mut buf = BytesMut::with_capacity(PIECE_SIZE);
            let mut eof = false;
            while buf.len() < PIECE_SIZE {
                match st.reader.read_buf(&mut buf).await {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Ending the stream here would look like a complete (short) file to the
                        // server; instead report the error and stall, and the caller cancels.
                        if let Some(tx) = st.failed.take() {
                            let _ = tx.send(e);
                        }
                        futures::future::pending::<()>().await;
                    }
                }
            }
            st.md5.update(&buf);
            st.read += buf.len() as u64;
            let mut piece = UploadPiece {
                header: st.header.take(),
                data: buf.freeze(),
                content_md5: Vec::new(),
            };
            if eof {
                let md5: [u8; 16] = std::mem::take(&mut st.md5).finalize().into();
                piece.content_md5 = md5.to_vec();
                let _ = st.digest.set((st.read, md5));
                st.done = true;
            }
            Some((piece, st))
        });
        let req = self.signed(pieces, "Upload", bucket, key, None)?;
        let mut rpc = self.rpc.clone();
        let info = tokio::select! {
            r = rpc.upload(req) => r?.into_inner(),
            // Dropping the call resets the stream; the server stores nothing.
            Ok(e) = fail_rx => return Err(io_err(source)(e)),
        };
        if let Some((read, md5)) = digest.get() {
            if info.size != *read {
                return Err(ClientError::Protocol(format!(
                    "server stored {} bytes of `{bucket}/{key}` but {read} were sent",
                    info.size
                )));
            }
            if info.etag != hex::encode(md5) {
                return Err(ClientError::Protocol(format!(
                    "server's ETag {} for `{bucket}/{key}` is not the MD5 of what was sent",
                    info.etag
                )));
            }
        }
        Ok(info)
    }

    /// Uploads a local file; its size is declared so a file changing underneath is refused.
    pub async fn upload_file(
        &self,
        path: &Path,
        bucket: &str,
        key: &str,
        mut opts: UploadOptions,
    ) -> Result<FileInfo, ClientError> {
        let name = path.display().to_string();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(io_err(name.clone()))?;
        let meta = file.metadata().await.map_err(io_err(name.clone()))?;
        if !meta.is_file() {
            return Err(ClientError::Io {
                path: name,
                source: std::io::Error::other("not a regular file"),
            });
        }
        opts.size = Some(meta.len());
        self.upload(bucket, key, file, opts, &name).await
    }

    /// Starts downloading `length` bytes (None: to the end) of `bucket/key` from `offset`.
    pub async fn download(
        &self,
        bucket: &str,
        key: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Download, ClientError> {
        let msg = DownloadRequest {
            bucket: bucket.to_string(),
            key: key.to_string(),
            offset,
            length,
        };
        let req = self.signed(msg, "Download", bucket, key, None)?;
        let mut stream = self.rpc.clone().download(req).await?.into_inner();
        let first = stream.message().await?.ok_or_else(|| {
            ClientError::Protocol(format!("download of `{bucket}/{key}` sent nothing"))
        })?;
        let info = first.info.ok_or_else(|| {
            ClientError::Protocol(format!(
                "download of `{bucket}/{key}` did not start with the file's info"
            ))
        })?;
        if first.offset != offset || !first.data.is_empty() || offset > info.size {
            return Err(ClientError::Protocol(format!(
                "download of `{bucket}/{key}` started at an unexpected place"
            )));
        }
        let available = info.size - offset;
        let length = length.map_or(available, |n| n.min(available));
        Ok(Download {
            info,
            offset,
            length,
            next: offset,
            stream,
        })
    }

    /// Writes the whole of `bucket/key` to `out` (named `sink` in errors). Checks the size, and
    /// the MD5 when the ETag is one (single uploads; multipart ETags are not).
    pub async fn download_to<W>(
        &self,
        bucket: &str,
        key: &str,
        out: &mut W,
        sink: &str,
    ) -> Result<FileInfo, ClientError>
    where
        W: AsyncWrite + Unpin,
    {
        let mut d = self.download(bucket, key, 0, None).await?;
        let mut md5 = Md5::new();
        while let Some(piece) = d.next_piece().await? {
            md5.update(&piece);
            out.write_all(&piece).await.map_err(io_err(sink))?;
        }
        out.flush().await.map_err(io_err(sink))?;
        let plain_md5 =
            d.info.etag.len() == 32 && d.info.etag.bytes().all(|b| b.is_ascii_hexdigit());
        if plain_md5 && hex::encode(md5.finalize()) != d.info.etag.to_ascii_lowercase() {
            return Err(ClientError::Protocol(format!(
                "downloaded bytes of `{bucket}/{key}` do not match its ETag (MD5)"
            )));
        }
        Ok(d.info)
    }

    /// Downloads `bucket/key` into `path`: written to a temporary file beside it, checked,
    /// synced, then renamed over `path`, so `path` is never left half-written.
    pub async fn download_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
    ) -> Result<FileInfo, ClientError> {
        self.download_file_with_progress(bucket, key, path, &|_| {})
            .await
    }

    /// [`Self::download_file`], calling `progress` with the byte count of every piece written.
    pub async fn download_file_with_progress(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<FileInfo, ClientError> {
        let tmp = temp_path(path);
        let tmp_name = tmp.display().to_string();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await
            .map_err(io_err(tmp_name.clone()))?;
        let result = async {
            let mut sink = Counted {
                inner: &mut file,
                progress,
            };
            let info = self.download_to(bucket, key, &mut sink, &tmp_name).await?;
            file.sync_all().await.map_err(io_err(tmp_name.clone()))?;
            let written = file
                .metadata()
                .await
                .map_err(io_err(tmp_name.clone()))?
                .len();
            if written != info.size {
                return Err(ClientError::Protocol(format!(
                    "wrote {written} bytes of `{bucket}/{key}` but it has {}",
                    info.size
                )));
            }
            drop(file);
            tokio::fs::rename(&tmp, path)
                .await
                .map_err(io_err(path.display().to_string()))?;
            Ok(info)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }
}

/// A writer that reports how many bytes went through it.
struct Counted<'a, W> {
    inner: &'a mut W,
    progress: &'a (dyn Fn(u64) + Send + Sync),
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counted<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            (self.progress)(*n as u64);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// `dir/.name.cairn-<random>.part` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    path.with_file_name(format!(".{name}.cairn-{tag}.part"))
}
