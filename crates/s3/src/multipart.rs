//! Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.
//! (UploadPartCopy lives in `copy.rs`.)

use cairn_object::{CompleteChecksums, PartSpec, PutOptions};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::checksum::{self, from_dto, to_dto, ChecksumFields};
use crate::consistency;
use crate::error::ObjectResultExt;
use crate::list::{page_size, url_encoding, Enc};
use crate::object::{
    body_stream, declared_length, etag, part_number_u32, ts, write_precondition, HeaderFields,
    MAX_PUT_SIZE,
};
use crate::validate::validate_key;
use crate::CairnS3;

pub(crate) async fn create_multipart_upload(
    s3: &CairnS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let algo = input
        .checksum_algorithm
        .as_ref()
        .map(from_dto)
        .transpose()?;
    let kind = input
        .checksum_type
        .as_ref()
        .map(checksum::kind_from_dto)
        .transpose()?;
    let headers = HeaderFields {
        content_type: input.content_type,
        content_encoding: input.content_encoding,
        content_disposition: input.content_disposition,
        content_language: input.content_language,
        cache_control: input.cache_control,
        expires: input.expires,
        metadata: input.metadata,
    }
    .into_stored()?;
    let headers = crate::tagging::with_header_tags(headers, input.tagging.as_deref())?;
    let lock = crate::lock::from_headers(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
        crate::lock::now_ms(),
    )?;
    let headers = crate::acl::with_header_acl(headers, &req.headers, &s3.inner.owner_id)?;
    let customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let sse = crate::sse::put_request(
        input.server_side_encryption.as_ref(),
        input.ssekms_key_id.as_deref(),
        customer,
    )?;
    let upload = s3
        .objects()
        .create_multipart_with(&input.bucket, &input.key, headers, algo, kind, lock, sse)
        .await
        .s3()?;
    let echo = crate::sse::echo_encryption(
        upload.encryption.as_ref(),
        input.sse_customer_key_md5.as_deref(),
    );
    let output = CreateMultipartUploadOutput {
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        bucket_key_enabled: input.bucket_key_enabled,
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.upload_id),
        checksum_algorithm: upload.checksum_algo.map(to_dto),
        checksum_type: upload.checksum_kind.map(checksum::kind_to_dto),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

pub(crate) async fn upload_part(
    s3: &CairnS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let part_number = part_number_u32(input.part_number)?;
    let content_length = declared_length(&req.headers, input.content_length)?;
    if content_length.is_some_and(|n| n > MAX_PUT_SIZE) {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        ));
    }
    let sums = checksum::parse_request(&req.headers)?;
    let lock = cairn_object::LockRequest {
        explicit: None,
        integrity_checked: crate::lock::integrity_checked(&sums),
    };
    let customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let opts = PutOptions {
        lock,
        content_length,
        checksum_algo: sums.algo,
        verify: checksum::verifier(sums, req.trailing_headers),
        write_consistency: consistency::write(&req.headers)?,
        encryption: customer.map(|key| cairn_object::SseRequest::Customer { key }),
        ..Default::default()
    };
    let (part, encryption) = s3
        .objects()
        .upload_part_sse(
            &input.bucket,
            &input.key,
            &input.upload_id,
            part_number,
            body_stream(input.body),
            opts,
        )
        .await
        .s3()?;
    let sums = ChecksumFields::from_stored(part.checksum.as_ref());
    let echo =
        crate::sse::echo_encryption(encryption.as_ref(), input.sse_customer_key_md5.as_deref());
    let output = UploadPartOutput {
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        e_tag: Some(etag(&part.etag)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// Percent-encodes a URL path (keeps `/`), for the Location of a completed upload.
fn path_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn location(headers: &http::HeaderMap, bucket: &str, key: &str) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}/{bucket}/{}", path_encode(key))
}

fn malformed_xml() -> s3s::S3Error {
    s3_error!(
        MalformedXML,
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
}

pub(crate) async fn complete_multipart_upload(
    s3: &CairnS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let parts = input
        .multipart_upload
        .and_then(|m| m.parts)
        .filter(|p| !p.is_empty())
        .ok_or_else(malformed_xml)?;
    let mut specs = Vec::with_capacity(parts.len());
    let mut sums = CompleteChecksums::default();
    for p in parts {
        let listed = checksum::one_of(
            "part checksum",
            [
                p.checksum_crc32,
                p.checksum_crc32c,
                p.checksum_crc64nvme,
                p.checksum_sha1,
                p.checksum_sha256,
            ],
        )?;
        let (Some(n), Some(e)) = (p.part_number, p.e_tag) else {
            return Err(malformed_xml());
        };
        specs.push(PartSpec {
            part_number: part_number_u32(n)?,
            etag: e.into_value(),
        });
        sums.parts.push(listed);
    }
    sums.kind = input
        .checksum_type
        .as_ref()
        .map(checksum::kind_from_dto)
        .transpose()?;
    sums.whole = checksum::one_of(
        "checksum",
        [
            input.checksum_crc32,
            input.checksum_crc32c,
            input.checksum_crc64nvme,
            input.checksum_sha1,
            input.checksum_sha256,
        ],
    )?;
    sums.object_size = input
        .mpu_object_size
        .map(|n| {
            u64::try_from(n).map_err(|_| {
                s3_error!(
                    InvalidRequest,
                    "The x-amz-mp-object-size header value is invalid."
                )
            })
        })
        .transpose()?;
    let precondition = write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let record = s3
        .objects()
        .complete_multipart_checked(
            &input.bucket,
            &input.key,
            &input.upload_id,
            specs,
            precondition,
            sums,
        )
        .await
        .s3()?;
    let sums = ChecksumFields::from_stored(record.checksum.as_ref());
    let echo = crate::sse::echo(&record, None);
    let output = CompleteMultipartUploadOutput {
        server_side_encryption: echo.server_side_encryption,
        ssekms_key_id: echo.ssekms_key_id,
        location: Some(location(&req.headers, &input.bucket, &input.key)),
        bucket: Some(input.bucket),
        key: Some(input.key),
        e_tag: Some(etag(&record.etag)),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        version_id: record.versioned.then(|| record.version.clone()),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

pub(crate) async fn abort_multipart_upload(
    s3: &CairnS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    s3.objects()
        .abort_multipart(&input.bucket, &input.key, &input.upload_id)
        .await
        .s3()?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(crate) async fn list_parts(
    s3: &CairnS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let max_parts = page_size(input.max_parts, "max-parts")?;
    let after = match input.part_number_marker {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "part-number-marker must be a non-negative integer"
            )
        })?,
    };
    let page = s3
        .objects()
        .list_parts(
            &input.bucket,
            &input.key,
            &input.upload_id,
            after,
            max_parts,
        )
        .await
        .s3()?;
    let parts: Vec<Part> = page
        .parts
        .iter()
        .map(|p| {
            let sums = ChecksumFields::from_stored(p.checksum.as_ref());
            Part {
                part_number: i32::try_from(p.part_number).ok(),
                e_tag: Some(etag(&p.etag)),
                size: i64::try_from(p.size).ok(),
                last_modified: Some(ts(p.last_modified_ms)),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
            }
        })
        .collect();
    let owner = s3.owner();
    let output = ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: page
            .next_part_number_marker
            .and_then(|n| i32::try_from(n).ok()),
        max_parts: i32::try_from(max_parts).ok(),
        is_truncated: Some(page.is_truncated),
        parts: (!parts.is_empty()).then_some(parts),
        checksum_algorithm: page
            .upload
            .as_ref()
            .and_then(|u| u.checksum_algo)
            .map(to_dto),
        checksum_type: page
            .upload
            .as_ref()
            .and_then(|u| u.checksum_kind)
            .map(checksum::kind_to_dto),
        initiator: Some(Initiator {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
        }),
        owner: Some(owner),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

pub(crate) async fn list_multipart_uploads(
    s3: &CairnS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let enc = Enc(url_encoding(input.encoding_type.as_ref())?);
    let max_uploads = page_size(input.max_uploads, "max-uploads")?;
    let prefix = input.prefix.unwrap_or_default();
    let delimiter = input.delimiter.filter(|d| !d.is_empty());
    let key_marker = input.key_marker.filter(|k| !k.is_empty());
    // S3 ignores upload-id-marker without key-marker.
    let upload_id_marker = input
        .upload_id_marker
        .filter(|u| !u.is_empty() && key_marker.is_some());
    let page = s3
        .objects()
        .list_multipart_uploads(
            &input.bucket,
            &prefix,
            delimiter.as_deref(),
            key_marker.as_deref(),
            upload_id_marker.as_deref(),
            max_uploads,
        )
        .await
        .s3()?;
    let owner = s3.owner();
    let uploads: Vec<MultipartUpload> = page
        .uploads
        .into_iter()
        .map(|u| MultipartUpload {
            key: Some(enc.s(u.key)),
            upload_id: Some(u.upload_id),
            initiated: Some(ts(u.initiated_ms)),
            checksum_algorithm: u.checksum_algo.map(to_dto),
            initiator: Some(Initiator {
                display_name: owner.display_name.clone(),
                id: owner.id.clone(),
            }),
            owner: Some(owner.clone()),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    let output = ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(enc.s(prefix)),
        delimiter: enc.opt(delimiter),
        key_marker: Some(enc.s(key_marker.unwrap_or_default())),
        upload_id_marker: Some(upload_id_marker.unwrap_or_default()),
        next_key_marker: enc.opt(page.next_key_marker),
        next_upload_id_marker: page.next_upload_id_marker,
        max_uploads: i32::try_from(max_uploads).ok(),
        is_truncated: Some(page.is_truncated),
        uploads: (!uploads.is_empty()).then_some(uploads),
        common_prefixes: enc.prefixes(page.common_prefixes),
        encoding_type: enc.echo(),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_static("localhost:9000"),
        );
        assert_eq!(
            location(&h, "b", "dir/a b+c/é"),
            "http://localhost:9000/b/dir/a%20b%2Bc/%C3%A9"
        );
        h.insert("x-forwarded-proto", http::HeaderValue::from_static("https"));
        assert_eq!(location(&h, "b", "k"), "https://localhost:9000/b/k");
    }
}
