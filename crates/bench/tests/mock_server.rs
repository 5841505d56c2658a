//! End-to-end run against a tiny in-memory S3 mock (no signature checks):
//! exercises bucket creation, PUT, verified GET, paginated LIST and DELETE.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cairn_bench::{BenchArgs, Op};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
struct State {
    bucket: Option<String>,
    objects: BTreeMap<String, Bytes>,
    corrupt_gets: bool,
}

type Shared = Arc<Mutex<State>>;

fn query(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap();
            out.push(h);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn resp(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    state: Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let q = query(&parts.uri);
    assert!(q.contains_key("X-Amz-Signature"), "request not presigned");
    let path = percent_decode(parts.uri.path().trim_start_matches('/'));
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_string(), k.to_string()),
        None => (path.clone(), String::new()),
    };
    let mut st = state.lock().unwrap();
    if key.is_empty() {
        return Ok(match parts.method {
            Method::HEAD if st.bucket.as_deref() == Some(&bucket) => resp(StatusCode::OK, ""),
            Method::HEAD => resp(StatusCode::NOT_FOUND, ""),
            Method::PUT => {
                st.bucket = Some(bucket);
                resp(StatusCode::OK, "")
            }
            Method::GET if q.get("list-type").map(String::as_str) == Some("2") => {
                let prefix = q.get("prefix").cloned().unwrap_or_default();
                let max: usize = q
                    .get("max-keys")
                    .map(|m| m.parse().unwrap())
                    .unwrap_or(1000);
                let start = q.get("continuation-token").cloned().unwrap_or_default();
                let keys: Vec<(&String, &Bytes)> = st
                    .objects
                    .range(start.clone()..)
                    .filter(|(k, _)| k.starts_with(&prefix) && **k != start)
                    .take(max + 1)
                    .collect();
                let truncated = keys.len() > max;
                let page = &keys[..keys.len().min(max)];
                let mut xml = String::from(
                    r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#,
                );
                xml.push_str(&format!("<Name>{bucket}</Name><KeyCount>{}</KeyCount><MaxKeys>{max}</MaxKeys><IsTruncated>{truncated}</IsTruncated>", page.len()));
                if truncated {
                    xml.push_str(&format!(
                        "<NextContinuationToken>{}</NextContinuationToken>",
                        page.last().unwrap().0
                    ));
                }
                for (k, v) in page {
                    xml.push_str(&format!(
                        "<Contents><Key>{k}</Key><Size>{}</Size></Contents>",
                        v.len()
                    ));
                }
                xml.push_str("</ListBucketResult>");
                resp(StatusCode::OK, xml)
            }
            _ => resp(StatusCode::BAD_REQUEST, ""),
        });
    }
    if st.bucket.as_deref() != Some(&bucket) {
        return Ok(resp(
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchBucket</Code><Message>nope</Message></Error>",
        ));
    }
    Ok(match parts.method {
        Method::PUT => {
            assert_eq!(
                parts
                    .headers
                    .get("content-length")
                    .map(|v| v.to_str().unwrap().to_string()),
                Some(body.len().to_string())
            );
            st.objects.insert(key, body);
            resp(StatusCode::OK, "")
        }
        Method::GET => match st.objects.get(&key) {
            Some(v) if st.corrupt_gets && key.ends_with("00000003") => {
                let mut v = v.to_vec();
                v[0] ^= 0xff;
                resp(StatusCode::OK, v)
            }
            Some(v) => resp(StatusCode::OK, v.clone()),
            None => resp(
                StatusCode::NOT_FOUND,
                "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>",
            ),
        },
        Method::DELETE => {
            st.objects.remove(&key);
            resp(StatusCode::NO_CONTENT, "")
        }
        _ => resp(StatusCode::BAD_REQUEST, ""),
    })
}

async fn start(state: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok((sock, _)) = listener.accept().await else {
                break;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn args(endpoint: String) -> BenchArgs {
    BenchArgs {
        endpoint,
        ca_file: None,
        access_key: "ak".into(),
        secret_key: "sk".into(),
        region: "us-east-1".into(),
        bucket: "cairn-bench".into(),
        concurrency: 4,
        sizes: vec![0, 4096, 300 * 1024],
        objects: vec![2100, 30, 5],
        ops: vec![Op::Put, Op::Get, Op::List, Op::Delete],
        keep: false,
        prefix: None,
        timeout: 30,
        sse: None,
        sse_kms_key_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_run_against_mock() {
    let state = Shared::default();
    let endpoint = start(state.clone()).await;
    cairn_bench::run(args(endpoint)).await.unwrap();
    let st = state.lock().unwrap();
    assert_eq!(st.bucket.as_deref(), Some("cairn-bench"));
    assert!(st.objects.is_empty(), "delete phase left objects behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_and_corruption_is_an_error() {
    let state = Shared::default();
    state.lock().unwrap().corrupt_gets = true;
    let endpoint = start(state.clone()).await;
    let mut a = args(endpoint);
    a.sizes = vec![4096];
    a.objects = vec![10];
    a.keep = true;
    a.prefix = Some("fixed/".into());
    let err = cairn_bench::run(a).await.unwrap_err();
    assert_eq!(err.to_string(), "1 operation(s) failed");
    let st = state.lock().unwrap();
    assert_eq!(st.objects.len(), 10);
    assert!(st.objects.contains_key("fixed/4KiB/00000009"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_fails_fast() {
    // bind then drop, so nothing listens on the port
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let err = cairn_bench::run(args(endpoint)).await.unwrap_err();
    assert!(format!("{err:#}").contains("HEAD bucket"), "{err:#}");
}
