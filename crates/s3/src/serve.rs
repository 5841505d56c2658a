//! The S3 listener: HTTP/1.1 over a TCP listener, one task per connection.
//!
//! Per request: a request id (`x-amz-request-id`, the `s3_request` span, and `<RequestId>` in
//! error XML, which s3s leaves out), metrics, and two fix-ups s3s does not make: a 304 carries
//! no body, and a handler may override the status (a ranged HEAD is a 206).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use s3s::service::S3Service;
use s3s::Body;
use tracing::Instrument;

use crate::metrics::{OpSlot, S3Metrics};

/// A handler's request to answer with another status than the one s3s picks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StatusOverride(pub StatusCode);

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves: sets TCP_NODELAY on every accepted socket, gives each request a request id (x-amz-request-id header on the response, and a `tracing` info span `s3_request{id, method, path}`), records metrics.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: S3Service,
    metrics: S3Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
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
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, %peer, "could not set TCP_NODELAY");
        }
        let service = service.clone();
        let metrics = metrics.clone();
        let svc =
            hyper::service::service_fn(move |req| handle(service.clone(), metrics.clone(), req));
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
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
    service: S3Service,
    metrics: S3Metrics,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Counting<Body>>, Infallible> {
    let id = next_request_id();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("s3_request", id = %id, method = %method, path = %path);
    async move {
        let start = Instant::now();
        let gauge = metrics.in_flight();
        gauge.inc();
        let _in_flight = InFlight(gauge);

        let slot = OpSlot::default();
        let mut req = req.map(|b| Body::http_body_unsync(Counting::new(b, metrics.bytes_in())));
        req.extensions_mut().insert(slot.clone());

        let resp = match service.call(req).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(error = ?e, "s3s failed to produce a response");
                internal_error_response()
            }
        };
        let resp = finish(resp, &id, &path, &method);
        let status = resp.status();
        let op = slot.get().unwrap_or_else(|| "unknown".to_owned());
        let elapsed = start.elapsed();
        metrics.observe(&op, method.as_str(), status.as_u16(), elapsed);
        if status.is_server_error() {
            tracing::warn!(%op, status = status.as_u16(), ms = elapsed.as_millis(), "request failed");
        } else {
            tracing::debug!(%op, status = status.as_u16(), ms = elapsed.as_millis(), "request");
        }
        Ok(resp.map(|b| Counting::new(b, metrics.bytes_out())))
    }
    .instrument(span)
    .await
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

fn xml_escape(s: &str) -> String {
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

/// A body that counts the bytes passing through it.
pub(crate) struct Counting<B> {
    inner: B,
    counter: Counter,
}

impl<B> Counting<B> {
    fn new(inner: B, counter: Counter) -> Self {
        Self { inner, counter }
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
