//! SSE request headers and the headers S3 echoes: SSE-S3 (`x-amz-server-side-encryption:
//! AES256`), SSE-KMS (`aws:kms` with `-aws-kms-key-id`), SSE-C
//! (`x-amz-server-side-encryption-customer-*`, and `x-amz-copy-source-…` for a copy's
//! source), and a bucket's default encryption applied to writes that ask for none. The guard
//! lets these through only where they are implemented (`guard::sse_implemented`); the data
//! path is in `cairn_object::sse`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cairn_meta::bucket_config::BucketEncryption;
use cairn_meta::model::SseAlgorithm;
use cairn_object::{ObjectRecord, SseRequest};
use md5::{Digest, Md5};
use s3s::dto::ServerSideEncryption;
use s3s::{s3_error, S3Result};

/// The SSE-C headers of a request, validated: None when absent. All three must come together,
/// the algorithm must be AES256, the key 256 bits and its MD5 the one sent.
pub(crate) fn customer_key(
    algorithm: Option<&str>,
    key: Option<&str>,
    key_md5: Option<&str>,
) -> S3Result<Option<[u8; 32]>> {
    let (algorithm, key, key_md5) = match (algorithm, key, key_md5) {
        (None, None, None) => return Ok(None),
        (Some(a), Some(k), Some(m)) => (a, k, m),
        (None, _, _) => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm."
            ))
        }
        (_, None, _) => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
            ))
        }
        (_, _, None) => {
            return Err(s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
            ))
        }
    };
    if algorithm != "AES256" {
        return Err(s3_error!(
            InvalidEncryptionAlgorithmError,
            "The encryption request you specified is not valid. The valid value is AES256."
        ));
    }
    let bytes = B64.decode(key.trim()).unwrap_or_default();
    let Ok(k) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return Err(s3_error!(
            InvalidArgument,
            "The secret key was invalid for the specified algorithm."
        ));
    };
    let md5 = B64.encode(Md5::digest(k));
    if md5 != key_md5.trim() {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    Ok(Some(k))
}

/// What a write asks for: SSE-S3, SSE-KMS, SSE-C, or none (SSE-C with another method, or
/// a KMS key id without `aws:kms`, is refused as by S3).
pub(crate) fn put_request(
    sse: Option<&ServerSideEncryption>,
    kms_key_id: Option<&str>,
    customer: Option<[u8; 32]>,
) -> S3Result<Option<SseRequest>> {
    let incompatible = || {
        s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        )
    };
    let sse = sse.map(|s| s.as_str());
    if kms_key_id.is_some() && sse != Some("aws:kms") {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
        ));
    }
    match (sse, customer) {
        (None, None) => Ok(None),
        (None, Some(key)) => Ok(Some(SseRequest::Customer { key })),
        (Some("AES256"), None) => Ok(Some(SseRequest::S3)),
        (Some("aws:kms"), None) => Ok(Some(SseRequest::Kms {
            key_id: kms_key_id.map(str::to_string),
        })),
        (Some("AES256" | "aws:kms"), Some(_)) => Err(incompatible()),
        // The guard answers 501 for every other value before this point.
        (Some(other), _) => Err(s3_error!(
            NotImplemented,
            "server-side encryption {other} is not implemented; nothing was stored"
        )),
    }
}

/// A write's encryption: what it asked for, else the bucket's default encryption.
pub(crate) fn or_default(
    asked: Option<SseRequest>,
    default: Option<&BucketEncryption>,
) -> Option<SseRequest> {
    asked.or_else(|| match default {
        Some(d) if d.algorithm == SseAlgorithm::Kms => Some(SseRequest::Kms {
            key_id: d.kms_key_id.clone(),
        }),
        Some(_) => Some(SseRequest::S3),
        None => None,
    })
}

/// `or_default` with bucket `bucket`'s default encryption, read linearizably (a default set
/// anywhere applies to every write that starts after it is acknowledged).
pub(crate) async fn with_bucket_default(
    s3: &crate::CairnS3,
    bucket: &str,
    asked: Option<SseRequest>,
) -> S3Result<Option<SseRequest>> {
    use crate::error::ObjectResultExt;
    if asked.is_some() {
        return Ok(asked);
    }
    match s3
        .objects()
        .bucket_config(bucket, cairn_object::ReadConsistency::Linearizable)
        .await
    {
        Ok(c) => Ok(or_default(None, c.encryption.as_ref())),
        // The write itself answers NoSuchBucket.
        Err(cairn_object::ObjectError::NoSuchBucket) => Ok(None),
        Err(e) => Err(e).s3(),
    }
}

/// The encryption a copy of `src` keeps when neither the request nor the destination
/// bucket asks for one: SSE-S3 and SSE-KMS (same key) carry over, under a new data key; an
/// SSE-C source becomes SSE-S3 (its key cannot be reused without the headers — AWS likewise
/// gives such a copy its bucket's default, SSE-S3); a plaintext source stays plaintext.
pub(crate) fn inherited(src: &ObjectRecord) -> Option<SseRequest> {
    let enc = src.encryption.as_ref()?;
    Some(match enc.algorithm {
        SseAlgorithm::Kms => SseRequest::Kms {
            key_id: enc.kms_key_id.clone(),
        },
        SseAlgorithm::S3 | SseAlgorithm::Customer => SseRequest::S3,
    })
}

/// The SSE headers S3 returns for `record`: the algorithm for SSE-S3; `aws:kms` and the key
/// id for SSE-KMS; the customer algorithm and the key MD5 the client sent for SSE-C.
#[derive(Default)]
pub(crate) struct Echo {
    pub server_side_encryption: Option<ServerSideEncryption>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key_md5: Option<String>,
    pub ssekms_key_id: Option<String>,
}

pub(crate) fn echo(record: &ObjectRecord, key_md5: Option<&str>) -> Echo {
    echo_encryption(record.encryption.as_ref(), key_md5)
}

/// `echo` for an object's (or an upload's) encryption.
pub(crate) fn echo_encryption(
    enc: Option<&cairn_meta::model::ObjectEncryption>,
    key_md5: Option<&str>,
) -> Echo {
    match enc.map(|e| (e.algorithm, e)) {
        Some((SseAlgorithm::S3, _)) => Echo {
            server_side_encryption: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AES256,
            )),
            ..Echo::default()
        },
        Some((SseAlgorithm::Kms, e)) => Echo {
            server_side_encryption: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AWS_KMS,
            )),
            ssekms_key_id: e.kms_key_id.clone(),
            ..Echo::default()
        },
        Some((SseAlgorithm::Customer, _)) => Echo {
            sse_customer_algorithm: Some("AES256".into()),
            sse_customer_key_md5: key_md5.map(str::to_string),
            ..Echo::default()
        },
        None => Echo::default(),
    }
}

/// An SSE-KMS error as AWS words it (`KMS.NotFoundException`, `KMS.DisabledException`): 400.
pub(crate) fn kms_error(code: &'static str, message: String) -> s3s::S3Error {
    let mut e = s3s::S3Error::with_message(s3s::S3ErrorCode::Custom(code.into()), message);
    e.set_status_code(http::StatusCode::BAD_REQUEST);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_requests_and_defaults() {
        let kms = ServerSideEncryption::from_static(ServerSideEncryption::AWS_KMS);
        let aes = ServerSideEncryption::from_static(ServerSideEncryption::AES256);
        assert!(matches!(
            put_request(Some(&kms), Some("k"), None).unwrap(),
            Some(SseRequest::Kms { key_id: Some(k) }) if k == "k"
        ));
        assert!(put_request(Some(&aes), Some("k"), None).is_err());
        assert!(put_request(None, Some("k"), None).is_err());
        assert!(put_request(Some(&kms), None, Some([1; 32])).is_err());
        let d = BucketEncryption {
            algorithm: SseAlgorithm::Kms,
            kms_key_id: Some("app".into()),
            bucket_key_enabled: false,
        };
        assert!(matches!(
            or_default(None, Some(&d)),
            Some(SseRequest::Kms { key_id: Some(k) }) if k == "app"
        ));
        assert!(matches!(
            or_default(Some(SseRequest::S3), Some(&d)),
            Some(SseRequest::S3)
        ));
        assert!(or_default(None, None).is_none());
    }

    #[test]
    fn customer_key_checks() {
        let k = [9u8; 32];
        let kb = B64.encode(k);
        let md5 = B64.encode(Md5::digest(k));
        assert_eq!(customer_key(None, None, None).unwrap(), None);
        assert_eq!(
            customer_key(Some("AES256"), Some(&kb), Some(&md5)).unwrap(),
            Some(k)
        );
        assert!(customer_key(Some("AES256"), Some(&kb), Some("AAAA")).is_err());
        assert!(customer_key(Some("AES128"), Some(&kb), Some(&md5)).is_err());
        assert!(customer_key(Some("AES256"), Some("c2hvcnQ="), Some(&md5)).is_err());
        assert!(customer_key(Some("AES256"), None, Some(&md5)).is_err());
    }
}
