//! CopyObject and UploadPartCopy: `x-amz-copy-source` (s3s parses and url-decodes it),
//! the metadata directive, `x-amz-copy-source-if-*`, `x-amz-copy-source-range`, and a
//! CopyObject's own `If-Match` / `If-None-Match: *` (conditions on the destination).

use cairn_object::{ObjectRecord, Precondition};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::checksum::ChecksumFields;
use crate::conditional::{evaluate_copy_source, Conditions, Outcome};
use crate::error::ObjectResultExt;
use crate::object::{
    check_version_id, etag, part_number_u32, ts, write_precondition, HeaderFields, MAX_PUT_SIZE,
};
use crate::validate::validate_key;
use crate::CairnS3;

/// The bucket and key named by `x-amz-copy-source`.
fn source_of(cs: &CopySource) -> S3Result<(&str, &str, Option<&str>)> {
    match cs {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            check_version_id(version_id.as_deref())?;
            validate_key(key)?;
            Ok((bucket, key, version_id.as_deref()))
        }
        _ => Err(s3_error!(
            NotImplemented,
            "Access point and outpost copy sources are not supported"
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Directive {
    Copy,
    Replace,
}

fn directive(d: Option<&MetadataDirective>) -> S3Result<Directive> {
    match d.map(MetadataDirective::as_str) {
        None => Ok(Directive::Copy),
        Some(s) if s.eq_ignore_ascii_case(MetadataDirective::COPY) => Ok(Directive::Copy),
        Some(s) if s.eq_ignore_ascii_case(MetadataDirective::REPLACE) => Ok(Directive::Replace),
        Some(_) => Err(s3_error!(InvalidArgument, "Unknown metadata directive.")),
    }
}

/// Looks the source up and checks the copy-source conditions.
async fn load_source(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    c: &Conditions<'_>,
) -> S3Result<ObjectRecord> {
    let src = match version_id {
        None => s3.objects().head_object(bucket, key).await.s3()?,
        Some(v) => match s3
            .objects()
            .get_version(bucket, key, v, cairn_object::ReadConsistency::Linearizable)
            .await
            .s3()?
        {
            cairn_meta::versions::VersionEntry::Object(r) => r,
            cairn_meta::versions::VersionEntry::Marker(_) => {
                return Err(s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker by version id."
                ))
            }
        },
    };
    // An SSE-C source's key (x-amz-copy-source-server-side-encryption-customer-*) is
    // checked by the object service before any byte is copied.
    match evaluate_copy_source(c, &src.etag, src.last_modified_ms) {
        Outcome::Proceed => Ok(src),
        Outcome::NotModified | Outcome::PreconditionFailed => Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )),
    }
}

/// A CopyObject's conditions on its destination. s3s 0.14 has no fields for them, so they are
/// read from the headers: a client asking for a conditional copy must not get an
/// unconditional overwrite.
fn destination_precondition(headers: &http::HeaderMap) -> S3Result<Precondition> {
    let parse = |name: http::header::HeaderName| {
        headers
            .get(&name)
            .map(|v| {
                ETagCondition::parse_http_header(v.as_bytes())
                    .map_err(|_| s3_error!(InvalidArgument, "Invalid {} header", name.as_str()))
            })
            .transpose()
    };
    let if_match = parse(http::header::IF_MATCH)?;
    let if_none_match = parse(http::header::IF_NONE_MATCH)?;
    write_precondition(if_match.as_ref(), if_none_match.as_ref())
}

pub(crate) async fn copy_object(
    s3: &CairnS3,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let precondition = destination_precondition(&req.headers)?;
    let input = req.input;
    validate_key(&input.key)?;
    let (src_bucket, src_key, src_version) = source_of(&input.copy_source)?;
    let directive = directive(input.metadata_directive.as_ref())?;
    if src_bucket == input.bucket
        && src_key == input.key
        && src_version.is_none()
        && directive == Directive::Copy
        && input.server_side_encryption.is_none()
        && input.sse_customer_algorithm.is_none()
    {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let conditions = Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    let src = load_source(s3, src_bucket, src_key, src_version, &conditions).await?;
    let copy_source_version_id =
        (src.versioned || src_version.is_some()).then(|| src.version_id().to_owned());
    if src.size > MAX_PUT_SIZE {
        return Err(s3_error!(
            InvalidRequest,
            "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_PUT_SIZE}"
        ));
    }
    // The copy gets a full-object checksum, as every new object in S3.
    let src = s3.objects().with_default_checksum(src).await.s3()?;
    let headers = match directive {
        Directive::Copy => src.headers.clone(),
        Directive::Replace => HeaderFields {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            cache_control: input.cache_control,
            expires: input.expires,
            metadata: input.metadata,
        }
        .into_stored()?,
    };
    let lock = crate::lock::from_headers(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
        crate::lock::now_ms(),
    )?;
    let headers = crate::tagging::with_copy_tags(
        headers,
        input.tagging_directive.as_ref(),
        input.tagging.as_deref(),
        &src,
    )?;
    let headers = crate::acl::with_header_acl(headers, &req.headers, &s3.inner.owner_id)?;
    let src_customer = crate::sse::customer_key(
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    let dst_customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    // The destination's encryption is what this request asks for, else the bucket default,
    // else the source's protection kept (`sse::inherited`): a copy never decrypts silently.
    let dst_sse = crate::sse::put_request(
        input.server_side_encryption.as_ref(),
        input.ssekms_key_id.as_deref(),
        dst_customer,
    )?;
    let dst_sse = crate::sse::with_bucket_default(s3, &input.bucket, dst_sse).await?;
    let dst_sse = dst_sse.or_else(|| crate::sse::inherited(&src));
    let record = s3
        .objects()
        .copy_object_encrypted(
            src_bucket,
            src_key,
            &src,
            &input.bucket,
            &input.key,
            headers,
            precondition,
            lock,
            src_customer,
            dst_sse,
        )
        .await
        .s3()?;
    let sums = ChecksumFields::from_stored(record.checksum.as_ref());
    let echo = crate::sse::echo(&record, input.sse_customer_key_md5.as_deref());
    let output = CopyObjectOutput {
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        bucket_key_enabled: input.bucket_key_enabled,
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&record.etag)),
            last_modified: Some(ts(record.last_modified_ms)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_type: sums.checksum_type,
        }),
        copy_source_version_id,
        version_id: record.versioned.then(|| record.version.clone()),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// `x-amz-copy-source-range: bytes=first-last` (inclusive, both required) → `[first, last+1)`.
pub(crate) fn parse_copy_range(s: &str, size: u64) -> S3Result<(u64, u64)> {
    let malformed = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = s.trim().strip_prefix("bytes=").ok_or_else(malformed)?;
    let (a, b) = spec.split_once('-').ok_or_else(malformed)?;
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Err(malformed());
    }
    let first: u64 = a.parse().map_err(|_| malformed())?;
    let last: u64 = b.parse().map_err(|_| malformed())?;
    if first > last {
        return Err(malformed());
    }
    if last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        ));
    }
    Ok((first, last + 1))
}

pub(crate) async fn upload_part_copy(
    s3: &CairnS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let part_number = part_number_u32(input.part_number)?;
    let (src_bucket, src_key, src_version) = source_of(&input.copy_source)?;
    let conditions = Conditions {
        if_match: input.copy_source_if_match.as_ref(),
        if_none_match: input.copy_source_if_none_match.as_ref(),
        if_modified_since: input.copy_source_if_modified_since.as_ref(),
        if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
    };
    let src = load_source(s3, src_bucket, src_key, src_version, &conditions).await?;
    let copy_source_version_id =
        (src.versioned || src_version.is_some()).then(|| src.version_id().to_owned());
    let range = input
        .copy_source_range
        .as_deref()
        .map(|r| parse_copy_range(r, src.size))
        .transpose()?;
    let len = range.map_or(src.size, |(a, b)| b - a);
    if len > MAX_PUT_SIZE {
        return Err(s3_error!(
            InvalidRequest,
            "The specified copy range is larger than the maximum allowable size for a part: {MAX_PUT_SIZE}"
        ));
    }
    let src_customer = crate::sse::customer_key(
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    let part_customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let (part, encryption) = s3
        .objects()
        .upload_part_copy_with(
            &input.bucket,
            &input.key,
            &input.upload_id,
            part_number,
            &src,
            range,
            src_customer,
            part_customer.map(|key| cairn_object::SseRequest::Customer { key }),
        )
        .await
        .s3()?;
    let sums = ChecksumFields::from_stored(part.checksum.as_ref());
    let echo =
        crate::sse::echo_encryption(encryption.as_ref(), input.sse_customer_key_md5.as_deref());
    let output = UploadPartCopyOutput {
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&part.etag)),
            last_modified: Some(ts(part.last_modified_ms)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
        }),
        copy_source_version_id,
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: S3Result<(u64, u64)>) -> String {
        r.unwrap_err().code().as_str().to_owned()
    }

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range("bytes=0-9", 100).unwrap(), (0, 10));
        assert_eq!(parse_copy_range("bytes=99-99", 100).unwrap(), (99, 100));
        assert_eq!(
            code(parse_copy_range("bytes=0-100", 100)),
            "InvalidArgument"
        );
        assert_eq!(code(parse_copy_range("bytes=10-5", 100)), "InvalidArgument");
        assert_eq!(code(parse_copy_range("bytes=-5", 100)), "InvalidArgument");
        assert_eq!(code(parse_copy_range("bytes=5-", 100)), "InvalidArgument");
        assert_eq!(code(parse_copy_range("0-5", 100)), "InvalidArgument");
        assert_eq!(code(parse_copy_range("bytes=a-b", 100)), "InvalidArgument");
        assert_eq!(code(parse_copy_range("bytes=0-0", 0)), "InvalidArgument");
    }

    #[test]
    fn copy_sources() {
        let cs = CopySource::parse("src-bucket/dir%2Fa%20b.txt").unwrap();
        assert_eq!(source_of(&cs).unwrap(), ("src-bucket", "dir/a b.txt", None));
        let cs = CopySource::parse("/src-bucket/k?versionId=null").unwrap();
        assert_eq!(source_of(&cs).unwrap(), ("src-bucket", "k", Some("null")));
        let cs = CopySource::parse("src-bucket/k?versionId=abc").unwrap();
        assert!(source_of(&cs).is_err());
        let cs = CopySource::parse("src-bucket/a/../b").unwrap();
        assert!(source_of(&cs).is_err());
    }

    #[test]
    fn destination_conditions_come_from_the_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(destination_precondition(&h).unwrap(), Precondition::None);
        h.insert(
            http::header::IF_NONE_MATCH,
            http::HeaderValue::from_static("*"),
        );
        assert_eq!(
            destination_precondition(&h).unwrap(),
            Precondition::IfNoneMatchStar
        );
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::IF_MATCH,
            http::HeaderValue::from_static("\"abc\""),
        );
        assert_eq!(
            destination_precondition(&h).unwrap(),
            Precondition::IfMatch("abc".into())
        );
        h.insert(
            http::header::IF_MATCH,
            http::HeaderValue::from_static("\"unclosed"),
        );
        assert!(destination_precondition(&h).is_err());
    }

    #[test]
    fn directives() {
        assert_eq!(directive(None).unwrap(), Directive::Copy);
        assert_eq!(
            directive(Some(&MetadataDirective::from_static("REPLACE"))).unwrap(),
            Directive::Replace
        );
        assert_eq!(
            directive(Some(&MetadataDirective::from_static("COPY"))).unwrap(),
            Directive::Copy
        );
        assert!(directive(Some(&MetadataDirective::from_static("MOVE"))).is_err());
    }
}
