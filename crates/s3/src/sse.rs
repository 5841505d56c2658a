//! SSE request headers and the headers S3 echoes: SSE-S3 (`x-amz-server-side-encryption:
//! AES256`) and SSE-C (`x-amz-server-side-encryption-customer-*`). The guard lets these
//! through only where they are implemented (plain PutObject, GET/HEAD); the data path is in
//! `cairn_object::sse`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
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

/// What a PUT asks for: SSE-S3, SSE-C, or neither (both at once is refused, as by S3).
pub(crate) fn put_request(
    sse: Option<&ServerSideEncryption>,
    customer: Option<[u8; 32]>,
) -> S3Result<Option<SseRequest>> {
    match (sse.map(|s| s.as_str()), customer) {
        (None, None) => Ok(None),
        (None, Some(key)) => Ok(Some(SseRequest::Customer { key })),
        (Some("AES256"), None) => Ok(Some(SseRequest::S3)),
        (Some("AES256"), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        )),
        // The guard answers 501 for every other value before this point.
        (Some(other), _) => Err(s3_error!(
            NotImplemented,
            "server-side encryption {other} is not implemented; nothing was stored"
        )),
    }
}

/// The SSE headers S3 returns for `record`: the algorithm for SSE-S3; the customer
/// algorithm and the key MD5 the client sent for SSE-C.
pub(crate) struct Echo {
    pub server_side_encryption: Option<ServerSideEncryption>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key_md5: Option<String>,
}

pub(crate) fn echo(record: &ObjectRecord, key_md5: Option<&str>) -> Echo {
    match record.encryption.as_ref().map(|e| e.algorithm) {
        Some(SseAlgorithm::S3) => Echo {
            server_side_encryption: Some(ServerSideEncryption::from_static(
                ServerSideEncryption::AES256,
            )),
            sse_customer_algorithm: None,
            sse_customer_key_md5: None,
        },
        Some(SseAlgorithm::Customer) => Echo {
            server_side_encryption: None,
            sse_customer_algorithm: Some("AES256".into()),
            sse_customer_key_md5: key_md5.map(str::to_string),
        },
        None => Echo {
            server_side_encryption: None,
            sse_customer_algorithm: None,
            sse_customer_key_md5: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
