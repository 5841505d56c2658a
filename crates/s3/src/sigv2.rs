//! AWS Signature Version 2, verified in constant time before s3s sees the request.
//!
//! s3s 0.14 verifies SigV2 itself but compares the signatures with `!=`, whose run time tells
//! an attacker how many leading characters of a forged signature are right. With SigV2 enabled
//! (`S3_ALLOW_SIGV2`), the listener computes the signature here (the string to sign is built
//! exactly as s3s builds it) and compares the MACs with `hmac`'s constant-time check; a
//! mismatch is refused, so only requests whose signature is right reach s3s's comparison.

use hmac::{KeyInit, Mac};
use http::{HeaderMap, Method, Uri};

use crate::guard::query_pairs;
use crate::host::CairnHost;
use crate::{S3Settings, S3SetupError};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// Finds the secret of an access key.
pub type SecretLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Verifies SigV2 signatures for the listener (given only when SigV2 is enabled).
#[derive(Clone)]
pub struct SigV2Verifier {
    secrets: SecretLookup,
    host: Option<std::sync::Arc<CairnHost>>,
}

impl SigV2Verifier {
    /// `secrets` must know the same keys as the S3 service's authentication: the root key of
    /// `settings` is looked up first, then `secrets`.
    pub fn new(settings: &S3Settings, secrets: SecretLookup) -> Result<Self, S3SetupError> {
        let host = if settings.domains.is_empty() {
            None
        } else {
            Some(std::sync::Arc::new(CairnHost::new(&settings.domains)?))
        };
        let (root_key, root_secret) = (settings.access_key.clone(), settings.secret_key.clone());
        let secrets: SecretLookup = std::sync::Arc::new(move |key: &str| {
            if key == root_key {
                Some(root_secret.clone())
            } else {
                secrets(key)
            }
        });
        Ok(Self { secrets, host })
    }

    /// `false` when the request claims a SigV2 signature made with a known key and the
    /// signature is wrong. Unknown keys and requests without a V2 claim pass: s3s refuses
    /// them without comparing anything secret.
    pub(crate) fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
        let Some(c) = claim(uri, headers) else {
            return true;
        };
        let Some(secret) = (self.secrets)(&c.access_key) else {
            return true;
        };
        let bucket = self.host.as_ref().and_then(|h| {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .and_then(|host| h.bucket_of(host))
        });
        let sts = string_to_sign(method, uri, headers, bucket.as_deref(), c.presigned);
        verify(&secret, &sts, &c.signature)
    }
}

/// Sub-resources and response overrides that are part of the canonical resource, as in s3s.
const INCLUDED_QUERY: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "defaultObjectAcl",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "storageClass",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A SigV2 claim: who signs, the signature, and where it came from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    pub access_key: String,
    pub signature: String,
    pub presigned: bool,
}

/// The SigV2 claim of a request, if it makes one.
pub(crate) fn claim(uri: &Uri, headers: &HeaderMap) -> Option<Claim> {
    let query = query_pairs(uri);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if get("X-Amz-Signature").is_none() {
        if let (Some(signature), Some(access_key)) = (get("Signature"), get("AWSAccessKeyId")) {
            return Some(Claim {
                access_key,
                signature,
                presigned: true,
            });
        }
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("AWS ")?;
    let (access_key, signature) = auth.split_once(':')?;
    Some(Claim {
        access_key: access_key.to_owned(),
        signature: signature.to_owned(),
        presigned: false,
    })
}

fn unique<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The string to sign, built as s3s builds it (`sig_v2::create_string_to_sign`).
pub(crate) fn string_to_sign(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    vhost_bucket: Option<&str>,
    presigned: bool,
) -> String {
    let query = query_pairs(uri);
    let q = |name: &str| {
        let mut it = query.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some((_, v)), None) => Some(v.as_str()),
            _ => None,
        }
    };
    let mut out = String::with_capacity(256);
    out.push_str(method.as_str());
    out.push('\n');
    out.push_str(unique(headers, "content-md5").unwrap_or(""));
    out.push('\n');
    out.push_str(unique(headers, "content-type").unwrap_or(""));
    out.push('\n');
    if presigned {
        out.push_str(q("Expires").unwrap_or(""));
    } else if unique(headers, "x-amz-date").is_none() {
        out.push_str(unique(headers, "date").unwrap_or(""));
    }
    out.push('\n');

    let mut names: Vec<&str> = headers
        .keys()
        .map(|k| k.as_str())
        .filter(|n| n.starts_with("x-amz-"))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }

    if let Some(bucket) = vhost_bucket {
        out.push('/');
        out.push_str(bucket);
    }
    out.push_str(uri.path());
    let mut first = true;
    for name in INCLUDED_QUERY {
        if let Some(v) = q(name) {
            out.push(if first { '?' } else { '&' });
            first = false;
            out.push_str(name);
            if !v.is_empty() {
                out.push('=');
                out.push_str(v);
            }
        }
    }
    out
}

/// Whether `signature_b64` is the HMAC-SHA1 of `string_to_sign` under `secret`, compared in
/// constant time.
pub(crate) fn verify(secret: &str, string_to_sign: &str, signature_b64: &str) -> bool {
    use base64::Engine;
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature_b64) else {
        return false;
    };
    let Ok(mut mac) = HmacSha1::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&given).is_ok()
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

    #[test]
    fn aws_documentation_example() {
        // "Example Object GET" of the AWS SigV2 documentation.
        let h = headers(&[("date", "Tue, 27 Mar 2007 19:36:42 +0000")]);
        let uri: Uri = "/awsexamplebucket1/photos/puppy.jpg".parse().unwrap();
        let sts = string_to_sign(&Method::GET, &uri, &h, None, false);
        assert_eq!(
            sts,
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/awsexamplebucket1/photos/puppy.jpg"
        );
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert!(verify(secret, &sts, "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="));
        assert!(!verify(secret, &sts, "qgk2+6Sv9/oM7G3qLEjTH1a1l1h="));
        assert!(!verify(secret, &sts, "not base64!"));
        assert!(!verify(
            "other-secret",
            &sts,
            "qgk2+6Sv9/oM7G3qLEjTH1a1l1g="
        ));
    }

    #[test]
    fn amz_headers_subresources_and_vhost() {
        let h = headers(&[
            ("x-amz-meta-b", "2"),
            ("x-amz-date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ("date", "ignored when x-amz-date is present"),
            ("x-amz-meta-a", " 1 "),
            ("x-amz-meta-a", "3"),
            ("content-type", "text/plain"),
        ]);
        let uri: Uri = "/k?uploadId=u1&partNumber=2&x-id=PutObject"
            .parse()
            .unwrap();
        let sts = string_to_sign(&Method::PUT, &uri, &h, Some("bkt"), false);
        assert_eq!(
            sts,
            "PUT\n\ntext/plain\n\nx-amz-date:Tue, 27 Mar 2007 19:36:42 +0000\nx-amz-meta-a:1,3\nx-amz-meta-b:2\n/bkt/k?partNumber=2&uploadId=u1"
        );
        let uri: Uri = "/b/k?AWSAccessKeyId=AK&Expires=1700000000&Signature=abc%2B"
            .parse()
            .unwrap();
        assert_eq!(
            string_to_sign(&Method::GET, &uri, &HeaderMap::new(), None, true),
            "GET\n\n\n1700000000\n/b/k"
        );
    }

    #[test]
    fn claims() {
        let uri: Uri = "/b/k?AWSAccessKeyId=AK&Expires=1&Signature=a%2Bb"
            .parse()
            .unwrap();
        assert_eq!(
            claim(&uri, &HeaderMap::new()),
            Some(Claim {
                access_key: "AK".into(),
                signature: "a+b".into(),
                presigned: true
            })
        );
        let h = headers(&[("authorization", "AWS AK:c2ln")]);
        let c = claim(&"/b".parse().unwrap(), &h).unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.signature.as_str(), c.presigned),
            ("AK", "c2ln", false)
        );
        let h = headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=x")]);
        assert_eq!(claim(&"/b".parse().unwrap(), &h), None);
    }
}
