//! Minimal S3 client: rusty-s3 presigned (SigV4 query-string) URLs sent with
//! a hyper HTTP/1.1 client (keep-alive pool, TCP_NODELAY; https:// verified with the public
//! roots and an optional CA file).

use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rusty_s3::actions::{ListObjectsV2, ListObjectsV2Response};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use url::Url;

/// Validity of each presigned URL. URLs are signed right before use.
const SIGN_TTL: Duration = Duration::from_secs(3600);

pub struct S3 {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    bucket: Bucket,
    creds: Credentials,
    timeout: Duration,
    /// Headers every PUT carries (signed): server-side encryption (`--sse`).
    put_headers: Vec<(&'static str, String)>,
}

pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Outcome of an existence check of the bucket.
pub enum BucketState {
    Existed,
    Created,
}

impl S3 {
    #[allow(clippy::too_many_arguments)] // one call site, every argument a distinct setting
    pub fn new(
        endpoint: &str,
        region: &str,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
        pool_size: usize,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        let url: Url = endpoint
            .parse()
            .with_context(|| format!("invalid endpoint URL {endpoint:?}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            bail!("endpoint {endpoint:?}: must be an http:// or https:// URL");
        }
        let bucket = Bucket::new(url, UrlStyle::Path, bucket.to_string(), region.to_string())
            .map_err(|e| anyhow!("invalid endpoint/bucket: {e}"))?;
        let creds = Credentials::new(access_key, secret_key);

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(cairn_tls::client_config(ca_file)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool_size)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Ok(Self {
            http,
            bucket,
            creds,
            timeout,
            put_headers: Vec::new(),
        })
    }

    /// PUTs ask for server-side encryption: `x-amz-server-side-encryption: <algorithm>`, and
    /// the KMS key id when given.
    pub fn with_sse(mut self, algorithm: &str, kms_key_id: Option<&str>) -> Self {
        self.put_headers
            .push(("x-amz-server-side-encryption", algorithm.to_string()));
        if let Some(k) = kms_key_id {
            self.put_headers
                .push(("x-amz-server-side-encryption-aws-kms-key-id", k.to_string()));
        }
        self
    }

    /// Send one request and read the whole response body (so the connection
    /// goes back to the pool). Bounded by the per-request timeout.
    async fn send(&self, method: Method, url: Url, body: Bytes) -> anyhow::Result<Response> {
        self.send_with(method, url, body, &[]).await
    }

    /// `send` with extra headers (those the presigned URL signed).
    async fn send_with(
        &self,
        method: Method,
        url: Url,
        body: Bytes,
        headers: &[(&'static str, String)],
    ) -> anyhow::Result<Response> {
        let uri: Uri = url
            .as_str()
            .parse()
            .with_context(|| format!("invalid request URI {url}"))?;
        let mut builder = Request::builder().method(method.clone()).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, v.as_str());
        }
        if method == Method::PUT || method == Method::POST {
            // hyper omits `Content-Length: 0` for empty bodies, but S3 answers
            // 411 MissingContentLength to a PUT without it
            builder = builder.header(http::header::CONTENT_LENGTH, body.len());
        }
        let req = builder.body(Full::new(body)).context("building request")?;
        let fut = async {
            let resp = self.http.request(req).await.map_err(|e| {
                // the Display of the legacy client error is terse; include causes
                anyhow!("request failed: {}", error_chain(&e))
            })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| anyhow!("reading response body: {}", error_chain(&e)))?
                .to_bytes();
            Ok::<_, anyhow::Error>(Response {
                status: parts.status,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => bail!("timed out after {:?}", self.timeout),
        }
    }

    pub async fn put_object(&self, key: &str, body: Bytes) -> anyhow::Result<()> {
        let mut action = self.bucket.put_object(Some(&self.creds), key);
        for (k, v) in &self.put_headers {
            action.headers_mut().insert(*k, v.as_str());
        }
        let url = action.sign(SIGN_TTL);
        let r = self
            .send_with(Method::PUT, url, body, &self.put_headers)
            .await?;
        expect_status(&r, &[StatusCode::OK], "PUT")
    }

    pub async fn get_object(&self, key: &str) -> anyhow::Result<Bytes> {
        let url = self
            .bucket
            .get_object(Some(&self.creds), key)
            .sign(SIGN_TTL);
        let r = self.send(Method::GET, url, Bytes::new()).await?;
        expect_status(&r, &[StatusCode::OK], "GET")?;
        Ok(r.body)
    }

    pub async fn delete_object(&self, key: &str) -> anyhow::Result<()> {
        let url = self
            .bucket
            .delete_object(Some(&self.creds), key)
            .sign(SIGN_TTL);
        let r = self.send(Method::DELETE, url, Bytes::new()).await?;
        expect_status(&r, &[StatusCode::NO_CONTENT, StatusCode::OK], "DELETE")
    }

    /// One ListObjectsV2 page under `prefix`.
    pub async fn list_page(
        &self,
        prefix: &str,
        max_keys: usize,
        continuation: Option<&str>,
    ) -> anyhow::Result<ListObjectsV2Response> {
        let mut action = self.bucket.list_objects_v2(Some(&self.creds));
        action.with_prefix(prefix);
        action.with_max_keys(max_keys);
        if let Some(token) = continuation {
            action.with_continuation_token(token);
        }
        let url = action.sign(SIGN_TTL);
        let r = self.send(Method::GET, url, Bytes::new()).await?;
        expect_status(&r, &[StatusCode::OK], "LIST")?;
        let text = std::str::from_utf8(&r.body).context("LIST response is not UTF-8")?;
        ListObjectsV2::parse_response(text).map_err(|e| anyhow!("LIST: bad XML response: {e}"))
    }

    /// HEAD the bucket; create it if it does not exist.
    pub async fn ensure_bucket(&self) -> anyhow::Result<BucketState> {
        let url = self.bucket.head_bucket(Some(&self.creds)).sign(SIGN_TTL);
        let r = self
            .send(Method::HEAD, url, Bytes::new())
            .await
            .context("HEAD bucket")?;
        match r.status {
            s if s.is_success() => return Ok(BucketState::Existed),
            StatusCode::NOT_FOUND => {}
            s => bail!(
                "HEAD bucket {:?}: HTTP {s} (check credentials, region and endpoint)",
                self.bucket.name()
            ),
        }
        let action = self.bucket.create_bucket(&self.creds);
        let body = Bytes::from(action.body());
        let url = action.sign(SIGN_TTL);
        let r = self
            .send(Method::PUT, url, body)
            .await
            .context("CreateBucket")?;
        if r.status.is_success() {
            return Ok(BucketState::Created);
        }
        // raced with another creator that is us: fine
        if r.status == StatusCode::CONFLICT
            && error_code(&r.body) == Some("BucketAlreadyOwnedByYou")
        {
            return Ok(BucketState::Existed);
        }
        Err(anyhow!(
            "CreateBucket {:?}: {}",
            self.bucket.name(),
            describe_error(&r)
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn expect_status(r: &Response, ok: &[StatusCode], what: &str) -> anyhow::Result<()> {
    if ok.contains(&r.status) {
        Ok(())
    } else {
        Err(anyhow!("{what}: {}", describe_error(r)))
    }
}

/// `HTTP 403 Forbidden (AccessDenied: Access Denied)` from an S3 error body.
pub fn describe_error(r: &Response) -> String {
    let mut s = format!("HTTP {}", r.status);
    if let Some(code) = error_code(&r.body) {
        s.push_str(" (");
        s.push_str(code);
        if let Some(msg) = xml_tag(&r.body, "Message") {
            s.push_str(": ");
            s.push_str(msg);
        }
        s.push(')');
    }
    s
}

fn error_code(body: &[u8]) -> Option<&str> {
    xml_tag(body, "Code")
}

/// Text of the first `<tag>...</tag>` in `body` (good enough for S3 errors).
fn xml_tag<'a>(body: &'a [u8], tag: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&close)?;
    Some(text[start..start + len].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_s3_errors() {
        let r = Response {
            status: StatusCode::FORBIDDEN,
            body: Bytes::from_static(
                b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
            ),
        };
        assert_eq!(
            describe_error(&r),
            "HTTP 403 Forbidden (AccessDenied: Access Denied)"
        );
        let r = Response {
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::from_static(b"oops"),
        };
        assert_eq!(describe_error(&r), "HTTP 502 Bad Gateway");
    }

    #[test]
    fn accepts_https_and_rejects_garbage_endpoints() {
        let t = Duration::from_secs(1);
        assert!(S3::new(
            "https://s3.amazonaws.com",
            "us-east-1",
            "b",
            "k",
            "s",
            1,
            t,
            None
        )
        .is_ok());
        assert!(S3::new("ftp://example.com", "us-east-1", "b", "k", "s", 1, t, None).is_err());
        assert!(S3::new("not a url", "us-east-1", "b", "k", "s", 1, t, None).is_err());
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        assert!(S3::new(
            "https://x.test",
            "us-east-1",
            "b",
            "k",
            "s",
            1,
            t,
            Some(missing)
        )
        .is_err());
    }

    #[test]
    fn presigned_urls_are_path_style() {
        let url: Url = "http://127.0.0.1:9000".parse().unwrap();
        let bucket = Bucket::new(url, UrlStyle::Path, "cairn-bench", "us-east-1").unwrap();
        let creds = Credentials::new("AK", "SK");
        let u = bucket
            .put_object(Some(&creds), "bench-1/4KiB/00000001")
            .sign(SIGN_TTL);
        assert_eq!(u.path(), "/cairn-bench/bench-1/4KiB/00000001");
        assert!(u.as_str().contains("X-Amz-Signature="));
        // must be parseable by hyper
        assert!(u.as_str().parse::<Uri>().is_ok());
    }

    #[test]
    fn parses_list_response() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>cairn-bench</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken><Contents><Key>p/a</Key><Size>4096</Size></Contents><Contents><Key>p/b</Key><Size>4096</Size></Contents></ListBucketResult>"#;
        let r = ListObjectsV2::parse_response(xml).unwrap();
        assert_eq!(r.contents.len(), 2);
        assert_eq!(r.contents[0].key, "p/a");
        assert_eq!(r.contents[1].size, Some(4096));
        assert_eq!(r.next_continuation_token.as_deref(), Some("tok"));
    }
}
