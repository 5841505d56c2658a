//! `Content-MD5` and `x-amz-checksum-*` (DESIGN §7).
//!
//! s3s decodes aws-chunked bodies and their trailers but verifies neither Content-MD5 nor the
//! S3 checksums. The object service computes MD5 and the requested checksum in the same pass
//! that stores the body and calls our verifier before committing; here we pick the algorithm,
//! parse what the client claims, and compare.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cairn_object::{ChecksumAlgo, ChecksumKind, Digests, ObjectError, Verifier};
use http::HeaderMap;
use s3s::dto::{ChecksumAlgorithm, ChecksumType};
use s3s::{s3_error, S3Error, TrailingHeaders};

pub(crate) const ALL: [ChecksumAlgo; 5] = [
    ChecksumAlgo::Crc32,
    ChecksumAlgo::Crc32c,
    ChecksumAlgo::Crc64Nvme,
    ChecksumAlgo::Sha1,
    ChecksumAlgo::Sha256,
];

/// The algorithm's name as S3 spells it (`CRC32`, `CRC64NVME`, ...).
pub(crate) fn algo_name(algo: ChecksumAlgo) -> &'static str {
    match algo {
        ChecksumAlgo::Crc32 => ChecksumAlgorithm::CRC32,
        ChecksumAlgo::Crc32c => ChecksumAlgorithm::CRC32C,
        ChecksumAlgo::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
        ChecksumAlgo::Sha1 => ChecksumAlgorithm::SHA1,
        ChecksumAlgo::Sha256 => ChecksumAlgorithm::SHA256,
    }
}

/// The header carrying the algorithm's value (`x-amz-checksum-crc32`, ...).
pub(crate) fn header_name(algo: ChecksumAlgo) -> &'static str {
    match algo {
        ChecksumAlgo::Crc32 => "x-amz-checksum-crc32",
        ChecksumAlgo::Crc32c => "x-amz-checksum-crc32c",
        ChecksumAlgo::Crc64Nvme => "x-amz-checksum-crc64nvme",
        ChecksumAlgo::Sha1 => "x-amz-checksum-sha1",
        ChecksumAlgo::Sha256 => "x-amz-checksum-sha256",
    }
}

/// Length of the decoded digest.
fn digest_len(algo: ChecksumAlgo) -> usize {
    match algo {
        ChecksumAlgo::Crc32 | ChecksumAlgo::Crc32c => 4,
        ChecksumAlgo::Crc64Nvme => 8,
        ChecksumAlgo::Sha1 => 20,
        ChecksumAlgo::Sha256 => 32,
    }
}

/// Parses an algorithm name, case-insensitively.
pub(crate) fn parse_algo(s: &str) -> Option<ChecksumAlgo> {
    ALL.into_iter()
        .find(|a| algo_name(*a).eq_ignore_ascii_case(s.trim()))
}

/// An s3s `ChecksumAlgorithm` (from CreateMultipartUpload and friends) → ours.
pub(crate) fn from_dto(a: &ChecksumAlgorithm) -> Result<ChecksumAlgo, S3Error> {
    parse_algo(a.as_str()).ok_or_else(unsupported_algorithm)
}

pub(crate) fn to_dto(a: ChecksumAlgo) -> ChecksumAlgorithm {
    ChecksumAlgorithm::from_static(algo_name(a))
}

/// `x-amz-checksum-type` → ours.
pub(crate) fn kind_from_dto(t: &ChecksumType) -> Result<ChecksumKind, S3Error> {
    match t.as_str() {
        s if s.eq_ignore_ascii_case(ChecksumType::COMPOSITE) => Ok(ChecksumKind::Composite),
        s if s.eq_ignore_ascii_case(ChecksumType::FULL_OBJECT) => Ok(ChecksumKind::FullObject),
        _ => Err(s3_error!(
            InvalidRequest,
            "Value for x-amz-checksum-type header is invalid."
        )),
    }
}

pub(crate) fn kind_to_dto(k: ChecksumKind) -> ChecksumType {
    ChecksumType::from_static(match k {
        ChecksumKind::Composite => ChecksumType::COMPOSITE,
        ChecksumKind::FullObject => ChecksumType::FULL_OBJECT,
    })
}

/// The one checksum set among the five fields of a DTO (in `ALL` order), as `(algo, value)`;
/// InvalidRequest when more than one is set. The value is kept as sent (a composite object
/// checksum carries its `-N` suffix).
pub(crate) fn one_of(
    what: &str,
    fields: [Option<String>; 5],
) -> Result<Option<(ChecksumAlgo, String)>, S3Error> {
    let mut out = None;
    for (algo, v) in ALL.into_iter().zip(fields) {
        if let Some(v) = v {
            if out.is_some() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Expecting a single {what}. Multiple checksum Types are not allowed."
                ));
            }
            out = Some((algo, v.trim().to_owned()));
        }
    }
    Ok(out)
}

fn unsupported_algorithm() -> S3Error {
    s3_error!(
        InvalidRequest,
        "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
    )
}

/// What a PUT / UploadPart request asks us to check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChecksumRequest {
    /// Algorithm to compute and store.
    pub algo: Option<ChecksumAlgo>,
    /// Decoded value from the `x-amz-checksum-<algo>` header.
    pub expected: Option<Vec<u8>>,
    /// The value comes in the aws-chunked trailer (`x-amz-trailer`).
    pub in_trailer: bool,
    /// Decoded `Content-MD5`.
    pub content_md5: Option<[u8; 16]>,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, S3Error> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| s3_error!(InvalidArgument, "header {name} is not valid ASCII")),
    }
}

/// Decodes a base64 checksum value and checks its length.
fn decode_value(algo: ChecksumAlgo, value: &str) -> Option<Vec<u8>> {
    let bytes = B64.decode(value.trim()).ok()?;
    (bytes.len() == digest_len(algo)).then_some(bytes)
}

fn invalid_header_value(name: &str) -> S3Error {
    s3_error!(InvalidRequest, "Value for {name} header is invalid.")
}

/// Reads the request headers: which checksum to compute, and what the client claims.
///
/// The algorithm comes from, in order: `x-amz-checksum-algorithm` / `x-amz-sdk-checksum-algorithm`,
/// the presence of an `x-amz-checksum-<algo>` header, or an `x-amz-checksum-<algo>` named in
/// `x-amz-trailer`.
pub(crate) fn parse_request(headers: &HeaderMap) -> Result<ChecksumRequest, S3Error> {
    let mut out = ChecksumRequest::default();

    if let Some(v) = header_str(headers, "content-md5")? {
        let md5 = B64
            .decode(v)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
            })?;
        out.content_md5 = Some(md5);
    }

    let mut declared = None;
    for name in ["x-amz-checksum-algorithm", "x-amz-sdk-checksum-algorithm"] {
        if let Some(v) = header_str(headers, name)? {
            let algo = parse_algo(v).ok_or_else(unsupported_algorithm)?;
            if declared.is_some_and(|d| d != algo) {
                return Err(invalid_header_value("x-amz-checksum-algorithm"));
            }
            declared = Some(algo);
        }
    }

    let mut in_header = None;
    for algo in ALL {
        let name = header_name(algo);
        if let Some(v) = header_str(headers, name)? {
            if in_header.is_some() {
                return Err(s3_error!(
                    InvalidRequest,
                    "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                ));
            }
            let value = decode_value(algo, v).ok_or_else(|| invalid_header_value(name))?;
            in_header = Some((algo, value));
        }
    }

    let mut in_trailer = None;
    if let Some(v) = header_str(headers, "x-amz-trailer")? {
        for name in v.split(',').map(str::trim) {
            if let Some(algo) = ALL
                .into_iter()
                .find(|a| header_name(*a).eq_ignore_ascii_case(name))
            {
                if in_trailer.is_some() {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                    ));
                }
                in_trailer = Some(algo);
            }
        }
    }

    let named = match (in_header.as_ref().map(|(a, _)| *a), in_trailer) {
        (Some(h), Some(t)) if h != t => {
            return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        ))
        }
        (Some(h), _) => Some(h),
        (None, t) => t,
    };
    if let (Some(d), Some(n)) = (declared, named) {
        if d != n {
            return Err(invalid_header_value("x-amz-checksum-algorithm"));
        }
    }

    out.algo = declared.or(named);
    match in_header {
        Some((_, value)) => out.expected = Some(value),
        None => out.in_trailer = in_trailer.is_some(),
    }
    Ok(out)
}

/// The verifier the object service calls once the body is read, or `None` if there is nothing
/// to check.
pub(crate) fn verifier(
    req: ChecksumRequest,
    trailers: Option<TrailingHeaders>,
) -> Option<Verifier> {
    if req.content_md5.is_none() && req.expected.is_none() && !req.in_trailer {
        return None;
    }
    Some(Box::new(move |d: &Digests| {
        verify(&req, trailers.as_ref(), d)
    }))
}

fn verify(
    req: &ChecksumRequest,
    trailers: Option<&TrailingHeaders>,
    d: &Digests,
) -> Result<(), ObjectError> {
    if let Some(md5) = req.content_md5 {
        if d.md5 != md5 {
            return Err(ObjectError::BadDigest);
        }
    }
    let Some(algo) = req.algo else { return Ok(()) };
    let expected = match &req.expected {
        Some(v) => Some(v.clone()),
        None if req.in_trailer => {
            let name = header_name(algo);
            let raw = trailers
                .and_then(|t| {
                    t.read(|h| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned))
                })
                .flatten();
            match raw {
                Some(v) => Some(decode_value(algo, &v).ok_or_else(|| {
                    ObjectError::InvalidArgument(format!("Value for {name} trailing header is invalid."))
                })?),
                None => {
                    return Err(ObjectError::InvalidArgument(format!(
                        "The request declared {name} in x-amz-trailer but the trailer was not received."
                    )))
                }
            }
        }
        None => None,
    };
    let Some(expected) = expected else {
        return Ok(());
    };
    match &d.checksum {
        Some((a, value)) if *a == algo => {
            let computed = B64
                .decode(value)
                .map_err(|e| ObjectError::Storage(format!("bad computed checksum: {e}")))?;
            if computed == expected {
                Ok(())
            } else {
                Err(ObjectError::ChecksumMismatch { algo })
            }
        }
        _ => Err(ObjectError::Storage(format!(
            "object service did not compute the requested {} checksum",
            algo_name(algo)
        ))),
    }
}

/// The five checksum fields of an S3 response, at most one set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub checksum_type: Option<ChecksumType>,
}

impl ChecksumFields {
    pub(crate) fn from_stored(stored: Option<&(ChecksumAlgo, String)>) -> Self {
        let mut out = Self::default();
        let Some((algo, value)) = stored else {
            return out;
        };
        let value = value.clone();
        // Multipart checksums are checksums of the part checksums, written `<b64>-<parts>`.
        out.checksum_type = Some(ChecksumType::from_static(if value.contains('-') {
            ChecksumType::COMPOSITE
        } else {
            ChecksumType::FULL_OBJECT
        }));
        match algo {
            ChecksumAlgo::Crc32 => out.crc32 = Some(value),
            ChecksumAlgo::Crc32c => out.crc32c = Some(value),
            ChecksumAlgo::Crc64Nvme => out.crc64nvme = Some(value),
            ChecksumAlgo::Sha1 => out.sha1 = Some(value),
            ChecksumAlgo::Sha256 => out.sha256 = Some(value),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use s3s::S3ErrorCode;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const CRC32_B64: &str = "AAAAAA=="; // 4 bytes
    const SHA256_B64: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; // sha256("")

    #[test]
    fn nothing_requested() {
        let r = parse_request(&headers(&[])).unwrap();
        assert_eq!(r, ChecksumRequest::default());
        assert!(verifier(r, None).is_none());
    }

    #[test]
    fn algorithm_header_only() {
        let r = parse_request(&headers(&[("x-amz-sdk-checksum-algorithm", "crc32c")])).unwrap();
        assert_eq!(r.algo, Some(ChecksumAlgo::Crc32c));
        assert!(r.expected.is_none() && !r.in_trailer);
        let r = parse_request(&headers(&[("x-amz-checksum-algorithm", "CRC64NVME")])).unwrap();
        assert_eq!(r.algo, Some(ChecksumAlgo::Crc64Nvme));
    }

    #[test]
    fn value_header_selects_algorithm() {
        let r = parse_request(&headers(&[("x-amz-checksum-sha256", SHA256_B64)])).unwrap();
        assert_eq!(r.algo, Some(ChecksumAlgo::Sha256));
        assert_eq!(r.expected.as_ref().map(Vec::len), Some(32));
    }

    #[test]
    fn trailer_selects_algorithm() {
        let r = parse_request(&headers(&[
            ("x-amz-trailer", "x-amz-checksum-crc32"),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ]))
        .unwrap();
        assert_eq!(r.algo, Some(ChecksumAlgo::Crc32));
        assert!(r.in_trailer);
        assert!(r.expected.is_none());
    }

    #[test]
    fn conflicts_and_garbage() {
        let err =
            |h: &[(&'static str, &str)]| parse_request(&headers(h)).unwrap_err().code().clone();
        assert_eq!(
            err(&[("x-amz-checksum-algorithm", "MD4")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(&[
                ("x-amz-checksum-crc32", CRC32_B64),
                ("x-amz-checksum-sha256", SHA256_B64)
            ]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(&[
                ("x-amz-checksum-algorithm", "SHA1"),
                ("x-amz-checksum-crc32", CRC32_B64)
            ]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(&[("x-amz-checksum-crc32", "not base64!")]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            err(&[("x-amz-checksum-crc32", SHA256_B64)]),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(err(&[("content-md5", "nope")]), S3ErrorCode::InvalidDigest);
        assert_eq!(
            err(&[("content-md5", CRC32_B64)]),
            S3ErrorCode::InvalidDigest
        );
    }

    fn digests(md5: [u8; 16], checksum: Option<(ChecksumAlgo, &str)>) -> Digests {
        Digests {
            size: 0,
            md5,
            checksum: checksum.map(|(a, v)| (a, v.to_owned())),
        }
    }

    #[test]
    fn verifies_md5_and_header_checksum() {
        let md5 = [7u8; 16];
        let md5_b64 = B64.encode(md5);
        let r = parse_request(&headers(&[
            ("content-md5", &md5_b64),
            ("x-amz-checksum-crc32", CRC32_B64),
        ]))
        .unwrap();
        let v = verifier(r.clone(), None).unwrap();
        assert!(v(&digests(md5, Some((ChecksumAlgo::Crc32, CRC32_B64)))).is_ok());

        let v = verifier(r.clone(), None).unwrap();
        assert!(matches!(
            v(&digests([0; 16], Some((ChecksumAlgo::Crc32, CRC32_B64)))),
            Err(ObjectError::BadDigest)
        ));

        let v = verifier(r, None).unwrap();
        assert!(matches!(
            v(&digests(md5, Some((ChecksumAlgo::Crc32, "AAAAAQ==")))),
            Err(ObjectError::ChecksumMismatch {
                algo: ChecksumAlgo::Crc32
            })
        ));
    }

    #[test]
    fn missing_trailer_is_an_error() {
        let r = parse_request(&headers(&[("x-amz-trailer", "x-amz-checksum-crc32")])).unwrap();
        let v = verifier(r, None).unwrap();
        assert!(matches!(
            v(&digests([0; 16], Some((ChecksumAlgo::Crc32, CRC32_B64)))),
            Err(ObjectError::InvalidArgument(_))
        ));
    }

    #[test]
    fn response_fields() {
        let f = ChecksumFields::from_stored(Some(&(ChecksumAlgo::Crc32c, "abc=".to_owned())));
        assert_eq!(f.crc32c.as_deref(), Some("abc="));
        assert_eq!(
            f.checksum_type.as_ref().map(ChecksumType::as_str),
            Some("FULL_OBJECT")
        );
        let f = ChecksumFields::from_stored(Some(&(ChecksumAlgo::Sha1, "abc=-3".to_owned())));
        assert_eq!(
            f.checksum_type.as_ref().map(ChecksumType::as_str),
            Some("COMPOSITE")
        );
        assert_eq!(ChecksumFields::from_stored(None), ChecksumFields::default());
    }
}
