//! The S3 listener: HTTP/1.1 (HTTPS with a certificate) over a TCP listener, one task per
//! connection.
//!
//! Limits before authentication: a connection cap (503 SlowDown on the spot), an in-flight
//! request cap (503 SlowDown), hyper's header read timeout, and a body idle timeout; then the
//! request head's hygiene checks (`guard.rs`) before s3s reads a byte of the body.
//!
//! Per request: a request id (`x-amz-request-id`, the `s3_request` span, and `<RequestId>` in
//! error XML, which s3s leaves out), metrics, and two fix-ups s3s does not make: a 304 carries
//! no body, and a handler may override the status (a ranged HEAD is a 206).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use s3s::service::S3Service;
use s3s::Body;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::guard::{Hygiene, Refusal};
use crate::metrics::{OpSlot, S3Metrics};

/// A handler's request to answer with another status than the one s3s picks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatusOverride(pub StatusCode);

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections refused over the cap that may be answered at the same time; beyond this they
/// are closed without an answer (each answer takes at most [`REFUSE_TIMEOUT`]).
const MAX_REFUSING: usize = 64;
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits and transport of one S3 listener. The caps apply before authentication: a client
/// over a cap gets `503 SlowDown` at once instead of waiting in a queue.
#[derive(Clone)]
pub struct ServeOptions {
    /// Open connections; a connection over the cap is answered 503 SlowDown and closed (over
    /// TLS it is closed: answering would cost a handshake).
    pub max_connections: usize,
    /// Requests being handled (until their response body is sent); over it: 503 SlowDown.
    pub max_in_flight: usize,
    /// Time a client has to send a request's headers (slowloris); also bounds the TLS handshake.
    pub header_timeout: Duration,
    /// Longest pause between two pieces of a request body; then the request fails.
    pub body_idle_timeout: Duration,
    /// Accept AWS Signature Version 2, verified in constant time by this verifier (off by
    /// default).
    pub sigv2: Option<crate::SigV2Verifier>,
    /// Serve HTTPS with this certificate.
    pub tls: Option<cairn_tls::ServerTls>,
    /// Caps to use instead of `max_connections` / `max_in_flight`, resizable while serving.
    pub limits: Option<crate::S3Limits>,
    /// Answer CORS preflights (`OPTIONS`, before authentication) and add CORS headers to
    /// requests with an `Origin`, from the buckets' CORS rules. None: no CORS.
    pub cors: Option<crate::Cors>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_in_flight: 256,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            sigv2: None,
            tls: None,
            limits: None,
            cors: None,
        }
    }
}

/// What every request of a listener shares.
struct Shared {
    service: S3Service,
    metrics: S3Metrics,
    in_flight: Arc<crate::limit::Limit>,
    hygiene: Hygiene,
    sigv2: Option<crate::SigV2Verifier>,
    body_idle_timeout: Duration,
    cors: Option<crate::Cors>,
}

/// Serves HTTP/1.1 (or HTTPS with `options.tls`) on `listener` until `shutdown` resolves: sets
/// TCP_NODELAY on every accepted socket, applies the connection and in-flight caps and the
/// header and body timeouts, refuses requests that fail [`Hygiene`] before s3s sees them, gives
/// each request a request id (x-amz-request-id header on the response, and a `tracing` info
/// span `s3_request{request_id, method, path}`), records metrics.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: S3Service,
    metrics: S3Metrics,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    let limits = options
        .limits
        .clone()
        .unwrap_or_else(|| crate::S3Limits::new(options.max_connections, options.max_in_flight));
    let connections = limits.connections.clone();
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let shared = Arc::new(Shared {
        service,
        metrics: metrics.clone(),
        in_flight: limits.in_flight.clone(),
        hygiene: Hygiene {
            allow_sigv2: options.sigv2.is_some(),
        },
        sigv2: options.sigv2.clone(),
        body_idle_timeout: options.body_idle_timeout,
        cors: options.cors.clone(),
    });
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.try_acquire() else {
            metrics.refused("connections");
            if options.tls.is_none() {
                if let Ok(p) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse_connection(stream).await;
                        drop(p);
                    });
                }
            }
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "could not set TCP_NODELAY");
        }
        let conn_shared = shared.clone();
        let conn = crate::access::ConnInfo {
            peer,
            tls: options.tls.is_some(),
        };
        let svc =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(conn);
                handle(conn_shared.clone(), req)
            });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = options.tls.clone();
        let handshake_timeout = options.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let res = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), svc))
                        .await
                }
                Some(tls) => {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        tls.acceptor().accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), svc))
                        .await
                }
            };
            if let Err(e) = res {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("S3 listener: requests still in flight after {DRAIN_TIMEOUT:?}; closing");
        }
    }
    Ok(())
}

fn slow_down() -> Refusal {
    Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "SlowDown",
        message: "Please reduce your request rate.".into(),
        reason: "in_flight",
    }
}

/// Answers a connection over the cap with 503 SlowDown and closes it. The request is read and
/// discarded after the answer (bounded in bytes and time) so that closing does not reset the
/// connection before the client has read the answer.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let xml = slow_down().xml();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        xml.len()
    );
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(xml.as_bytes()).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut seen = 0usize;
        while seen < 64 << 10 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => seen += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

fn refusal_response(r: &Refusal) -> http::Response<Body> {
    let mut resp = http::Response::new(Body::from(r.xml()));
    *resp.status_mut() = r.status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if r.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// A short, unique, unguessable-enough request id: 16 upper-case hex digits, like S3's.
pub(crate) fn next_request_id() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        use std::hash::BuildHasher;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        std::collections::hash_map::RandomState::new().hash_one(nanos)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64: a bijection, so ids never repeat within a process.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{z:016X}")
}

struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Counting<Body>>, Infallible> {
    let id = next_request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let expects_continue = req
        .headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let span = tracing::info_span!("s3_request", request_id = %id, method = %method, path = %path);
    async move {
        let start = Instant::now();
        let metrics = &shared.metrics;
        let permit = shared.in_flight.try_acquire();
        // CORS preflights carry no signature: answered here, before s3s authenticates.
        if let (Ok(_), Some(cors), &Method::OPTIONS) = (&permit, &shared.cors, &method) {
            // Boxed: keeps `handle`'s future shallow enough for the compiler's layout queries.
            let resp = match Box::pin(cors.preflight(req.uri(), req.headers())).await {
                Ok(resp) => resp,
                Err(r) => {
                    let status = r.status.as_u16();
                    tracing::debug!(status, reason = r.reason, "preflight refused");
                    refusal_response(&r)
                }
            };
            let resp = finish(resp, &id, &path, &method);
            let status = resp.status().as_u16();
            metrics.observe("PreflightRequest", method.as_str(), status, start.elapsed());
            let permit = permit.ok();
            return Ok(resp.map(|b| Counting::new(b, metrics.bytes_out(), permit)));
        }
        let refusal = match &permit {
            Err(_) => Some(slow_down()),
            Ok(_) => shared
                .hygiene
                .check(&method, req.uri(), req.headers(), OffsetDateTime::now_utc())
                .err()
                .or_else(|| {
                    let v2 = shared.sigv2.as_ref()?;
                    (!v2.check(&method, req.uri(), req.headers())).then(|| Refusal {
                        status: StatusCode::FORBIDDEN,
                        code: "SignatureDoesNotMatch",
                        message: "The request signature we calculated does not match the signature you provided.".into(),
                        reason: "sigv2_signature",
                    })
                }),
        };
        if let Some(r) = refusal {
            metrics.refused(r.reason);
            let mut resp = finish(refusal_response(&r), &id, &path, &method);
            close_if_body_unsent(&mut resp, expects_continue);
            metrics.observe("refused", method.as_str(), r.status.as_u16(), start.elapsed());
            tracing::debug!(status = r.status.as_u16(), code = r.code, reason = r.reason, "request refused");
            return Ok(resp.map(|b| Counting::new(b, metrics.bytes_out(), None)));
        }
        let gauge = metrics.in_flight();
        gauge.inc();
        let _in_flight = InFlight(gauge);

        let slot = OpSlot::default();
        let idle = shared.body_idle_timeout;
        let timeouts = metrics.refused_counter("body_idle_timeout");
        // A form upload's file name, for `${filename}` in its key (`post.rs`).
        let form = (method == Method::POST && crate::guard::is_form(req.headers()))
            .then(crate::post::FormFileName::default);
        let scan = form.clone();
        let mut req = req.map(|b| {
            Body::http_body_unsync(crate::post::Scanning::new(
                Counting::new(IdleTimeout::new(b, idle, timeouts), metrics.bytes_in(), None),
                scan,
            ))
        });
        req.extensions_mut().insert(slot.clone());
        if let Some(form) = form.clone() {
            req.extensions_mut().insert(form);
        }
        let cors_request = shared
            .cors
            .as_ref()
            .and_then(|c| c.actual_request(&method, req.uri(), req.headers()));

        let mut resp = match shared.service.call(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = ?e, "s3s failed to produce a response");
                internal_error_response()
            }
        };
        if let Some(form) = &form {
            crate::post::fix_policy_error(&mut resp, form);
        }
        if let (Some(cors), Some(r)) = (&shared.cors, cors_request) {
            Box::pin(cors.decorate(r, &mut resp)).await;
        }
        let op = slot.get().unwrap_or_else(|| "unknown".to_owned());
        if op == "GetObjectAttributes" {
            crate::attributes::unquote_etag(&mut resp);
        }
        let mut resp = finish(resp, &id, &path, &method);
        close_if_body_unsent(&mut resp, expects_continue);
        let status = resp.status();
        let elapsed = start.elapsed();
        metrics.observe(&op, method.as_str(), status.as_u16(), elapsed);
        if status.is_server_error() {
            tracing::warn!(%op, status = status.as_u16(), ms = elapsed.as_millis(), "request failed");
        } else {
            tracing::debug!(%op, status = status.as_u16(), ms = elapsed.as_millis(), "request");
        }
        // The in-flight permit lives until the response body is sent.
        let permit = permit.ok();
        Ok(resp.map(|b| Counting::new(b, metrics.bytes_out(), permit)))
    }
    .instrument(span)
    .await
}

/// Closes the connection after an error answered to an `Expect: 100-continue` request. The
/// client may not have sent its body (botocore does not, once a final answer arrives first);
/// keeping the connection would make the server read the start of the client's next request
/// as the rest of this body.
fn close_if_body_unsent(resp: &mut http::Response<Body>, expects_continue: bool) {
    let status = resp.status();
    if expects_continue && (status.is_client_error() || status.is_server_error()) {
        resp.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn internal_error_response() -> http::Response<Body> {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>";
    let mut resp = http::Response::new(Body::from(xml.to_owned()));
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// Response fix-ups: request id header, status override, empty 304s, and RequestId/Resource
/// in error XML.
fn finish(
    mut resp: http::Response<Body>,
    id: &str,
    path: &str,
    method: &Method,
) -> http::Response<Body> {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    if let Some(StatusOverride(status)) = resp.extensions_mut().remove::<StatusOverride>() {
        *resp.status_mut() = status;
    }
    let status = resp.status();
    if status == StatusCode::NOT_MODIFIED {
        *resp.body_mut() = Body::empty();
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        resp.headers_mut().remove(http::header::CONTENT_TYPE);
        return resp;
    }
    if (status.is_client_error() || status.is_server_error()) && method != Method::HEAD {
        if let Some(xml) = resp.body().bytes() {
            if let Some(new) = inject_error_fields(&xml, id, path) {
                let len = new.len();
                *resp.body_mut() = Body::from(new);
                if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
                    resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
                }
            }
        }
    }
    resp
}

pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Adds `<Resource>` and `<RequestId>` to an S3 error document that lacks them.
pub(crate) fn inject_error_fields(xml: &[u8], request_id: &str, resource: &str) -> Option<Vec<u8>> {
    const END: &[u8] = b"</Error>";
    let at = xml.windows(END.len()).rposition(|w| w == END)?;
    let has = |tag: &[u8]| xml.windows(tag.len()).any(|w| w == tag);
    let mut insert = String::new();
    if !has(b"<Resource>") {
        insert.push_str("<Resource>");
        insert.push_str(&xml_escape(resource));
        insert.push_str("</Resource>");
    }
    if !has(b"<RequestId>") {
        insert.push_str("<RequestId>");
        insert.push_str(&xml_escape(request_id));
        insert.push_str("</RequestId>");
    }
    if insert.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(xml.len() + insert.len());
    out.extend_from_slice(&xml[..at]);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(&xml[at..]);
    Some(out)
}

/// A body that counts the bytes passing through it, and holds what must live as long as it
/// (the request's in-flight permit).
pub(crate) struct Counting<B> {
    inner: B,
    counter: Counter,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<B> Counting<B> {
    fn new(inner: B, counter: Counter, permit: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            inner,
            counter,
            _permit: permit,
        }
    }
}

/// A request body that fails when the client pauses longer than `limit` between two pieces
/// (slow-body attacks hold a request slot and a connection for ever otherwise). The clock
/// runs only while the server waits for the client, not while it is busy with a piece.
pub(crate) struct IdleTimeout<B> {
    inner: B,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    waiting: bool,
    timeouts: Counter,
}

impl<B> IdleTimeout<B> {
    fn new(inner: B, limit: Duration, timeouts: Counter) -> Self {
        Self {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            waiting: false,
            timeouts,
        }
    }
}

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            let deadline = tokio::time::Instant::now() + this.limit;
            this.sleep.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(res) => {
                this.waiting = false;
                Poll::Ready(res.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_ready() {
                    this.timeouts.inc();
                    let limit = this.limit;
                    Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("request body: no data for {limit:?}"),
                    )))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> HttpBody for Counting<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &res {
            if let Some(data) = frame.data_ref() {
                this.counter.inc_by(data.len() as u64);
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let a = next_request_id();
        let b = next_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    }

    #[test]
    fn error_xml_gets_request_id_and_resource() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>"#;
        let out = inject_error_fields(xml, "ABC", "/b/a&b").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.ends_with(
            "<Message>m</Message><Resource>/b/a&amp;b</Resource><RequestId>ABC</RequestId></Error>"
        ));
        // already complete: untouched
        assert!(inject_error_fields(out.as_bytes(), "X", "/").is_none());
        // not an error document
        assert!(inject_error_fields(b"<ListBucketResult/>", "X", "/").is_none());
    }

    #[test]
    fn not_modified_has_no_body() {
        let mut resp = http::Response::new(Body::from(
            "<Error><Code>NotModified</Code></Error>".to_owned(),
        ));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("40"));
        resp.headers_mut()
            .insert(http::header::ETAG, HeaderValue::from_static("\"e\""));
        let resp = finish(resp, "ID", "/b/k", &Method::GET);
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert!(resp.body().bytes().is_some_and(|b| b.is_empty()));
        assert!(resp.headers().get(http::header::CONTENT_LENGTH).is_none());
        assert_eq!(
            resp.headers()
                .get("x-amz-request-id")
                .map(HeaderValue::as_bytes),
            Some(&b"ID"[..])
        );
        assert!(resp.headers().get(http::header::ETAG).is_some());
    }

    #[test]
    fn errors_to_expect_continue_requests_close_the_connection() {
        let with = |status: StatusCode, expects: bool| {
            let mut resp = http::Response::new(Body::empty());
            *resp.status_mut() = status;
            close_if_body_unsent(&mut resp, expects);
            resp.headers()
                .get(http::header::CONNECTION)
                .map(|v| v.as_bytes().to_vec())
        };
        assert_eq!(with(StatusCode::BAD_REQUEST, true), Some(b"close".to_vec()));
        assert_eq!(
            with(StatusCode::SERVICE_UNAVAILABLE, true),
            Some(b"close".to_vec())
        );
        assert_eq!(with(StatusCode::OK, true), None);
        assert_eq!(with(StatusCode::BAD_REQUEST, false), None);
    }

    #[test]
    fn status_override_and_error_body() {
        let mut resp = http::Response::new(Body::empty());
        resp.extensions_mut()
            .insert(StatusOverride(StatusCode::PARTIAL_CONTENT));
        let resp = finish(resp, "ID", "/b/k", &Method::HEAD);
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);

        let mut resp = http::Response::new(Body::from(
            "<Error><Code>NoSuchKey</Code></Error>".to_owned(),
        ));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        let resp = finish(resp, "ID1", "/b/k", &Method::GET);
        let body = resp.body().bytes().unwrap();
        assert!(std::str::from_utf8(&body)
            .unwrap()
            .contains("<RequestId>ID1</RequestId>"));
        assert_eq!(
            resp.headers()
                .get(http::header::CONTENT_LENGTH)
                .map(HeaderValue::as_bytes),
            Some(body.len().to_string().as_bytes())
        );
    }
}
