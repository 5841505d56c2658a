//! Request hygiene, checked on the request head before s3s sees the request (so before any
//! body byte is read and before the signature is verified):
//!
//! - Headers that promise a protection Cairn does not provide (server-side encryption other
//!   than SSE-S3/SSE-C on PutObject, object lock headers outside PutObject, CopyObject,
//!   CreateMultipartUpload and CreateBucket) are `501 NotImplemented`: a client told 200 would
//!   believe its data is encrypted or locked. ACL headers are checked later, in `access.rs`, against the bucket's
//!   ownership controls (AccessControlListNotSupported under `BucketOwnerEnforced`).
//! - (HTML form uploads pass: `post.rs` cuts off an unsigned form's body at its file, so s3s
//!   never buffers an anonymous file.)
//! - Signature V2 is refused unless enabled (`S3_ALLOW_SIGV2`). When enabled, s3s verifies it
//!   without a date check, so the date (`x-amz-date` / `Date`) is checked here against a
//!   15-minute window, and V2 presigned URLs are capped at 7 days like V4 ones.
//! - Presigned V4 URLs may not live longer than 7 days (`X-Amz-Expires` ≤ 604800), as in S3.
//! - Headers that change what Cairn promises about a request (`x-cairn-*` consistency,
//!   `x-amz-checksum-*`, `Content-MD5`) are honoured only when signed: SigV4 lists them in
//!   `SignedHeaders`; SigV2 signs `Content-MD5` and `x-amz-*` but never `x-cairn-*`. An
//!   unsigned one is refused rather than trusted, since a man in the middle could add it.

use http::{HeaderMap, Method, StatusCode, Uri};
use percent_encoding::percent_decode_str;
use time::OffsetDateTime;

/// The longest validity of a presigned URL, as in S3.
pub(crate) const MAX_PRESIGNED_EXPIRY_SECS: i64 = 7 * 24 * 3600;
/// The clock skew SigV2 requests are allowed (SigV4's, enforced by s3s).
const MAX_SKEW_SECS: i64 = 15 * 60;

/// A refused request: the S3 error to answer and the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub reason: &'static str,
}

impl Refusal {
    fn not_implemented(message: String) -> Self {
        Self {
            status: StatusCode::NOT_IMPLEMENTED,
            code: "NotImplemented",
            message,
            reason: "not_implemented",
        }
    }

    /// The S3 error document (request id and resource are added by the listener).
    pub(crate) fn xml(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message></Error>",
            self.code,
            crate::serve::xml_escape(&self.message)
        )
    }
}

/// What the checks need to know about the node's settings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hygiene {
    pub allow_sigv2: bool,
}

/// How a request is authenticated, as far as its head tells.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    None,
    V4 { signed: Vec<String> },
    V2,
}

impl Hygiene {
    /// Every check, in an order that gives the most useful answer first.
    pub(crate) fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<(), Refusal> {
        unimplemented_protection(method, uri, headers)?;
        let query = query_pairs(uri);
        let auth = classify_auth(headers, &query);
        match &auth {
            Auth::V2 if !self.allow_sigv2 => {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    code: "InvalidRequest",
                    message: "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.".into(),
                    reason: "sigv2",
                })
            }
            Auth::V2 => check_v2_dates(headers, &query, now)?,
            Auth::V4 { .. } => check_v4_expiry(&query)?,
            Auth::None => {}
        }
        check_signed_headers(headers, &auth)
    }
}

/// A header Cairn does not implement that promises protection, or `None`.
fn unimplemented_protection(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let sse_ok = |n: &str, v: &str| sse_implemented(method, uri, headers, n, v);
    for (name, value) in headers {
        let n = name.as_str(); // http lower-cases names
        let sse_header = n.starts_with("x-amz-server-side-encryption")
            || n.starts_with("x-amz-copy-source-server-side-encryption");
        let what = if sse_header && sse_ok(n, value.to_str().unwrap_or("")) {
            None
        } else if n.starts_with("x-amz-server-side-encryption")
            || n.starts_with("x-amz-copy-source-server-side-encryption")
        {
            Some("server-side encryption")
        } else if n.starts_with("x-amz-object-lock-") || n == "x-amz-bucket-object-lock-enabled" {
            (!lock_implemented(method, uri)).then_some("object lock")
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Refusal::not_implemented(format!(
                "{what} ({n}) is not implemented; nothing was stored"
            )));
        }
    }
    Ok(())
}

/// Whether an SSE header is one Cairn implements on this request: SSE-S3 (`AES256`),
/// SSE-KMS (`aws:kms`, key id, bucket-key flag) and SSE-C on PutObject, CopyObject and
/// CreateMultipartUpload; SSE-C on UploadPart, CompleteMultipartUpload and GET/HEAD; the
/// copy-source SSE-C headers on CopyObject and UploadPartCopy. Everything else (the KMS
/// encryption context, DSSE, SSE headers on other operations) stays 501.
fn sse_implemented(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    name: &str,
    value: &str,
) -> bool {
    let query = query_pairs(uri);
    let has = |k: &str| query.iter().any(|(n, _)| n == k);
    let other_query = query.iter().any(|(k, _)| {
        !(k == "x-id"
            || k.starts_with("X-Amz-")
            || k.starts_with("x-amz-")
            || k == "uploads"
            || k == "uploadId"
            || k == "partNumber")
    });
    if other_query {
        return false;
    }
    let customer = matches!(
        name,
        "x-amz-server-side-encryption-customer-algorithm"
            | "x-amz-server-side-encryption-customer-key"
            | "x-amz-server-side-encryption-customer-key-md5"
    );
    let copy_customer = headers.contains_key("x-amz-copy-source")
        && matches!(
            name,
            "x-amz-copy-source-server-side-encryption-customer-algorithm"
                | "x-amz-copy-source-server-side-encryption-customer-key"
                | "x-amz-copy-source-server-side-encryption-customer-key-md5"
        );
    let object_level = (name == "x-amz-server-side-encryption"
        && matches!(value.trim(), "AES256" | "aws:kms"))
        || name == "x-amz-server-side-encryption-aws-kms-key-id"
        || name == "x-amz-server-side-encryption-bucket-key-enabled";
    match *method {
        // UploadPart / UploadPartCopy.
        Method::PUT if has("uploadId") => customer || copy_customer,
        // PutObject / CopyObject.
        Method::PUT => customer || object_level || copy_customer,
        // CreateMultipartUpload.
        Method::POST if has("uploads") => customer || object_level,
        // CompleteMultipartUpload.
        Method::POST if has("uploadId") => customer,
        Method::GET | Method::HEAD => customer,
        _ => false,
    }
}

/// Whether object lock headers are ones Cairn implements on this request: a plain PUT
/// (PutObject, CopyObject, CreateBucket) or CreateMultipartUpload (`POST ?uploads`). Every
/// other use (UploadPart, ...) stays 501.
fn lock_implemented(method: &Method, uri: &Uri) -> bool {
    let query = query_pairs(uri);
    let signing = |k: &str| k == "x-id" || k.starts_with("X-Amz-") || k.starts_with("x-amz-");
    match *method {
        Method::PUT => query.iter().all(|(k, _)| signing(k)),
        Method::POST => {
            query.iter().any(|(k, _)| k == "uploads")
                && query.iter().all(|(k, _)| k == "uploads" || signing(k))
        }
        _ => false,
    }
}

pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// The query string's pairs, percent-decoded (`+` is not a space in S3 query strings signed
/// by SigV4, and the parameters read here never contain one).
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let Some(q) = uri.query() else {
        return Vec::new();
    };
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn split_signed(list: &str) -> Vec<String> {
    list.split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

fn classify_auth(headers: &HeaderMap, query: &[(String, String)]) -> Auth {
    if param(query, "X-Amz-Signature").is_some() {
        return Auth::V4 {
            signed: split_signed(param(query, "X-Amz-SignedHeaders").unwrap_or("")),
        };
    }
    if param(query, "Signature").is_some() {
        return Auth::V2;
    }
    let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::None;
    };
    if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256") {
        let signed = rest
            .split(',')
            .filter_map(|p| p.trim().strip_prefix("SignedHeaders="))
            .map(split_signed)
            .next()
            .unwrap_or_default();
        return Auth::V4 { signed };
    }
    if auth.starts_with("AWS ") {
        return Auth::V2;
    }
    // Anything else is s3s's to refuse.
    Auth::None
}

fn check_v4_expiry(query: &[(String, String)]) -> Result<(), Refusal> {
    let Some(expires) = param(query, "X-Amz-Expires") else {
        return Ok(());
    };
    match expires.parse::<i64>() {
        Ok(secs) if (0..=MAX_PRESIGNED_EXPIRY_SECS).contains(&secs) => Ok(()),
        _ => Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            code: "AuthorizationQueryParametersError",
            message: format!(
                "X-Amz-Expires must be less than a week (in seconds) that is; {MAX_PRESIGNED_EXPIRY_SECS}"
            ),
            reason: "presigned_expiry",
        }),
    }
}

fn check_v2_dates(
    headers: &HeaderMap,
    query: &[(String, String)],
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    if let Some(expires) = param(query, "Expires") {
        let ok = expires
            .parse::<i64>()
            .is_ok_and(|t| t - now.unix_timestamp() <= MAX_PRESIGNED_EXPIRY_SECS);
        if !ok {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "AuthorizationQueryParametersError",
                message: format!(
                    "Expires must be a Unix time at most {MAX_PRESIGNED_EXPIRY_SECS} seconds (7 days) from now"
                ),
                reason: "presigned_expiry",
            });
        }
        return Ok(());
    }
    let date = headers
        .get("x-amz-date")
        .or_else(|| headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok());
    match date {
        Some(t) if (t - now.unix_timestamp()).abs() <= MAX_SKEW_SECS => Ok(()),
        Some(_) => Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: "RequestTimeTooSkewed",
            message: "The difference between the request time and the current time is too large."
                .into(),
            reason: "sigv2_date",
        }),
        None => Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: "AccessDenied",
            message: "AWS authentication requires a valid Date or x-amz-date header".into(),
            reason: "sigv2_date",
        }),
    }
}

/// Headers whose meaning must come from the key holder, not from whoever relays the request.
fn must_be_signed(name: &str) -> bool {
    name.starts_with("x-cairn-") || name.starts_with("x-amz-checksum-") || name == "content-md5"
}

fn check_signed_headers(headers: &HeaderMap, auth: &Auth) -> Result<(), Refusal> {
    for name in headers.keys() {
        let n = name.as_str();
        if !must_be_signed(n) {
            continue;
        }
        let signed = match auth {
            // Refused later by the access check; nothing to trust.
            Auth::None => true,
            Auth::V4 { signed } => signed.iter().any(|s| s == n),
            // SigV2 signs Content-MD5 and every x-amz-* header, never x-cairn-*.
            Auth::V2 => !n.starts_with("x-cairn-"),
        };
        if !signed {
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                code: "InvalidRequest",
                message: format!(
                    "header {n} is honoured only when it is signed (listed in SignedHeaders)"
                ),
                reason: "unsigned_header",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const V4: &str = "AWS4-HMAC-SHA256 Credential=AK/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;content-md5;x-cairn-read-consistency, Signature=00";

    fn check(method: Method, uri: &str, pairs: &[(&str, &str)]) -> Result<(), Refusal> {
        Hygiene::default().check(
            &method,
            &uri.parse().unwrap(),
            &headers(pairs),
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn protection_headers_are_not_implemented() {
        for (k, v) in [
            ("x-amz-server-side-encryption-context", "e30="),
            ("x-amz-copy-source-server-side-encryption-customer-key", "k"),
        ] {
            let r = check(Method::PUT, "/b/k", &[("authorization", V4), (k, v)]).unwrap_err();
            assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{k}: {v}");
            assert_eq!(r.code, "NotImplemented");
            assert!(r.message.contains(k), "{}", r.message);
        }
        for (k, v) in [
            ("x-amz-acl", "private"),
            ("x-amz-acl", "bucket-owner-full-control"),
            // Decided against the bucket's ownership controls in `access.rs`.
            ("x-amz-acl", "public-read"),
            ("x-amz-grant-read", "uri=x"),
            ("x-amz-bucket-object-lock-enabled", "false"),
            ("x-amz-storage-class", "STANDARD"),
        ] {
            assert!(check(Method::PUT, "/b", &[("authorization", V4), (k, v)]).is_ok());
        }
        // SSE on PUT, copies, multipart and reads where implemented; the KMS context and
        // SSE on other operations stay 501.
        let sse = ("x-amz-server-side-encryption", "AES256");
        let kms = ("x-amz-server-side-encryption", "aws:kms");
        let ssec = ("x-amz-server-side-encryption-customer-algorithm", "AES256");
        let copy = ("x-amz-copy-source", "/b/src");
        let copy_c = (
            "x-amz-copy-source-server-side-encryption-customer-algorithm",
            "AES256",
        );
        let ok = |m: Method, uri: &str, h: &[(&str, &str)]| {
            let mut all = vec![("authorization", V4)];
            all.extend_from_slice(h);
            check(m, uri, &all).is_ok()
        };
        assert!(ok(Method::PUT, "/b/k", &[sse]));
        assert!(ok(Method::PUT, "/b/k", &[kms]));
        assert!(ok(Method::PUT, "/b/k", &[ssec]));
        assert!(ok(Method::PUT, "/b/k", &[sse, copy, copy_c]));
        assert!(ok(Method::POST, "/b/k?uploads", &[kms]));
        assert!(ok(Method::PUT, "/b/k?uploadId=1&partNumber=1", &[ssec]));
        assert!(ok(
            Method::PUT,
            "/b/k?uploadId=1&partNumber=1",
            &[ssec, copy, copy_c]
        ));
        assert!(ok(Method::GET, "/b/k", &[ssec]));
        assert!(!ok(Method::GET, "/b/k", &[sse]));
        assert!(!ok(Method::PUT, "/b/k?uploadId=1&partNumber=1", &[sse]));
        assert!(!ok(Method::PUT, "/b/k", &[copy_c]));
        assert!(!ok(Method::PUT, "/b/k?tagging", &[sse]));
        assert!(!ok(
            Method::PUT,
            "/b/k",
            &[kms, ("x-amz-server-side-encryption-context", "e30=")]
        ));
        assert!(!ok(
            Method::PUT,
            "/b/k",
            &[("x-amz-server-side-encryption", "aws:kms:dsse")]
        ));
    }

    #[test]
    fn lock_headers_pass_only_where_implemented() {
        let mode = ("x-amz-object-lock-mode", "GOVERNANCE");
        let hold = ("x-amz-object-lock-legal-hold", "ON");
        let enabled = ("x-amz-bucket-object-lock-enabled", "true");
        // PutObject / CopyObject / CreateBucket, CreateMultipartUpload.
        assert!(check(Method::PUT, "/b/k", &[("authorization", V4), mode]).is_ok());
        assert!(check(Method::PUT, "/b", &[("authorization", V4), enabled]).is_ok());
        assert!(check(Method::POST, "/b/k?uploads", &[("authorization", V4), hold]).is_ok());
        // UploadPart and anything else: 501.
        for (method, uri) in [
            (Method::PUT, "/b/k?uploadId=1&partNumber=1"),
            (Method::POST, "/b/k?uploadId=1"),
            (Method::GET, "/b/k"),
        ] {
            let r = check(method, uri, &[("authorization", V4), hold]).unwrap_err();
            assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{uri}");
        }
    }

    #[test]
    fn form_uploads_pass() {
        assert!(check(
            Method::POST,
            "/b",
            &[("content-type", "multipart/form-data; boundary=x")],
        )
        .is_ok());
        // DeleteObjects is a POST too, with XML.
        assert!(check(
            Method::POST,
            "/b?delete",
            &[("authorization", V4), ("content-type", "application/xml")]
        )
        .is_ok());
    }

    #[test]
    fn sigv2_is_off_by_default_and_date_checked_when_on() {
        let v2 = [("authorization", "AWS AK:c2ln")];
        let r = check(Method::GET, "/b/k", &v2).unwrap_err();
        assert_eq!(
            (r.status, r.code),
            (StatusCode::BAD_REQUEST, "InvalidRequest")
        );
        let r = check(
            Method::GET,
            "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=x",
            &[],
        )
        .unwrap_err();
        assert_eq!(r.reason, "sigv2");

        let on = Hygiene { allow_sigv2: true };
        let now = OffsetDateTime::now_utc();
        let fresh = httpdate::fmt_http_date(std::time::SystemTime::now());
        let stale = httpdate::fmt_http_date(
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        );
        let uri: Uri = "/b/k".parse().unwrap();
        let h = |d: &str| headers(&[("authorization", "AWS AK:c2ln"), ("date", d)]);
        assert!(on.check(&Method::GET, &uri, &h(&fresh), now).is_ok());
        let r = on.check(&Method::GET, &uri, &h(&stale), now).unwrap_err();
        assert_eq!(r.code, "RequestTimeTooSkewed");
        let r = on
            .check(
                &Method::GET,
                &uri,
                &headers(&[("authorization", "AWS AK:c2ln")]),
                now,
            )
            .unwrap_err();
        assert_eq!(r.code, "AccessDenied");
        // x-cairn-* is never covered by a V2 signature.
        let r = on
            .check(
                &Method::GET,
                &uri,
                &headers(&[
                    ("authorization", "AWS AK:c2ln"),
                    ("date", &fresh),
                    ("x-cairn-read-consistency", "stale"),
                ]),
                now,
            )
            .unwrap_err();
        assert_eq!(r.reason, "unsigned_header");
        // V2 presigned: Expires at most 7 days ahead.
        let t = now.unix_timestamp();
        let ok: Uri = format!("/b/k?AWSAccessKeyId=AK&Expires={}&Signature=x", t + 3600)
            .parse()
            .unwrap();
        assert!(on.check(&Method::GET, &ok, &HeaderMap::new(), now).is_ok());
        let far: Uri = format!(
            "/b/k?AWSAccessKeyId=AK&Expires={}&Signature=x",
            t + 8 * 86400
        )
        .parse()
        .unwrap();
        let r = on
            .check(&Method::GET, &far, &HeaderMap::new(), now)
            .unwrap_err();
        assert_eq!(r.code, "AuthorizationQueryParametersError");
    }

    #[test]
    fn presigned_expiry_is_capped_at_seven_days() {
        let q = |e: &str| {
            format!("/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={e}&X-Amz-SignedHeaders=host&X-Amz-Signature=00")
        };
        assert!(check(Method::GET, &q("604800"), &[]).is_ok());
        for bad in ["604801", "99999999", "-1", "x"] {
            let r = check(Method::GET, &q(bad), &[]).unwrap_err();
            assert_eq!(r.code, "AuthorizationQueryParametersError", "{bad}");
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn sensitive_headers_must_be_signed() {
        // Signed: fine.
        assert!(check(
            Method::GET,
            "/b/k",
            &[("authorization", V4), ("x-cairn-read-consistency", "stale")]
        )
        .is_ok());
        assert!(check(
            Method::PUT,
            "/b/k",
            &[("authorization", V4), ("content-md5", "AAAA")]
        )
        .is_ok());
        for h in [
            "x-cairn-write-consistency",
            "x-amz-checksum-crc32",
            "x-amz-checksum-sha256",
        ] {
            let r = check(Method::PUT, "/b/k", &[("authorization", V4), (h, "x")]).unwrap_err();
            assert_eq!(r.reason, "unsigned_header", "{h}");
            assert!(r.message.contains(h));
        }
        // Presigned: the list is in the query string (%3B = ';').
        let uri = "/b/k?X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-cairn-read-consistency&X-Amz-Signature=00";
        assert!(check(Method::GET, uri, &[("x-cairn-read-consistency", "stale")]).is_ok());
        let uri = "/b/k?X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00";
        assert!(check(Method::GET, uri, &[("x-cairn-read-consistency", "stale")]).is_err());
    }

    #[test]
    fn error_xml_is_escaped() {
        let r = Refusal::not_implemented("a<b".into());
        assert!(r
            .xml()
            .contains("<Code>NotImplemented</Code><Message>a&lt;b</Message>"));
    }
}
