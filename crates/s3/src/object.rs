//! PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects, and the conversions they
//! share with the other operations (timestamps, ETags, stored headers, bodies, ranges).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cairn_object::{
    BodyStream, ByteStream, ObjectHeaders, ObjectRecord, Precondition, PutOptions, ReadConsistency,
};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::dto::*;
use s3s::stream::RemainingLength;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, StdError};

use crate::checksum::{self, ChecksumFields};
use crate::conditional::{self, Conditions, Outcome};
use crate::consistency;
use crate::error::{custom_error, ObjectResultExt};
use crate::serve::StatusOverride;
use crate::validate::validate_key;
use crate::CairnS3;
use cairn_meta::versions::{is_version_id, DeleteMarker, VersionEntry, NULL_VERSION};

/// The largest object a single PUT (or a copy) may create: 5 GiB, as in S3.
pub(crate) const MAX_PUT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

// ---------------------------------------------------------------- conversions

/// Unix milliseconds → s3s timestamp.
pub(crate) fn ts(ms: i64) -> Timestamp {
    let dt = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(dt)
}

/// A stored (unquoted) ETag → the quoted form s3s writes.
pub(crate) fn etag(e: &str) -> ETag {
    ETag::Strong(e.to_owned())
}

/// A version id is `null` or one this store hands out; anything else is InvalidArgument.
pub(crate) fn check_version_id(version_id: Option<&str>) -> S3Result<()> {
    match version_id {
        None => Ok(()),
        Some(v) if v == NULL_VERSION || is_version_id(v) => Ok(()),
        Some(_) => Err(s3_error!(InvalidArgument, "Invalid version id specified")),
    }
}

/// `x-amz-version-id` for a record: its id on a versioned record, or `null` when the client
/// addressed a version; omitted for objects of unversioned buckets.
fn shown_version(record: &ObjectRecord, asked: bool) -> Option<String> {
    (record.versioned || asked).then(|| record.version_id().to_owned())
}

/// The error for a read that reached a delete marker: 404 NoSuchKey for the key, 405
/// MethodNotAllowed for the marker's version id, both with `x-amz-delete-marker: true`.
fn marker_error(m: &DeleteMarker, by_version: bool) -> S3Error {
    let mut e = if by_version {
        s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        )
    } else {
        s3_error!(NoSuchKey, "The specified key does not exist.")
    };
    let mut h = HeaderMap::new();
    h.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
    if let Ok(v) = HeaderValue::from_str(m.version_id()) {
        h.insert("x-amz-version-id", v);
    }
    if let Ok(d) = http_date(&ts(m.last_modified_ms)) {
        if let Ok(v) = HeaderValue::from_str(&d) {
            h.insert(http::header::LAST_MODIFIED, v);
        }
    }
    e.set_headers(h);
    e
}

fn http_date(t: &Timestamp) -> S3Result<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf)
        .map_err(|e| s3_error!(InvalidArgument, "invalid date: {e}"))?;
    String::from_utf8(buf).map_err(|e| s3_error!(InvalidArgument, "invalid date: {e}"))
}

/// Request header fields → the headers we store with an object.
pub(crate) struct HeaderFields {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub cache_control: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
}

impl HeaderFields {
    pub(crate) fn into_stored(self) -> S3Result<ObjectHeaders> {
        let user: std::collections::BTreeMap<String, String> = self
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        // S3 caps user metadata (names + values) at 2 KB.
        let meta_bytes: usize = user.iter().map(|(k, v)| k.len() + v.len()).sum();
        if meta_bytes > MAX_USER_METADATA_BYTES {
            return Err(s3_error!(
                MetadataTooLarge,
                "Your metadata headers exceed the maximum allowed metadata size."
            ));
        }
        Ok(ObjectHeaders {
            content_type: self.content_type,
            content_encoding: self.content_encoding.and_then(|e| without_aws_chunked(&e)),
            content_disposition: self.content_disposition,
            content_language: self.content_language,
            cache_control: self.cache_control,
            expires: self.expires.as_ref().map(http_date).transpose()?,
            user,
            tags: Vec::new(),
            acl: Vec::new(),
        })
    }
}

/// `Content-Encoding` as stored: without `aws-chunked`, which only describes how this request's
/// body was framed (s3s has already decoded it), as S3 drops it. Other codings stay in order;
/// None when nothing is left.
pub(crate) fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

/// Largest total size of `x-amz-meta-*` names and values, as in S3.
const MAX_USER_METADATA_BYTES: usize = 2048;

/// S3 reports this Content-Type for objects stored without one.
pub(crate) const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

fn content_type(h: &ObjectHeaders) -> Option<String> {
    Some(
        h.content_type
            .clone()
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
    )
}

fn user_metadata(h: &ObjectHeaders) -> Option<Metadata> {
    if h.user.is_empty() {
        None
    } else {
        Some(h.user.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

/// `Expires` is stored as the client sent it; returned as a raw header so a date s3s cannot
/// parse still round-trips.
fn expires_header(h: &ObjectHeaders, headers: &mut HeaderMap) {
    if let Some(v) = h
        .expires
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        headers.insert(http::header::EXPIRES, v);
    }
}

/// The request body as the object service's stream. Never buffered whole.
pub(crate) fn body_stream(body: Option<StreamingBlob>) -> BodyStream {
    match body {
        Some(blob) => {
            Box::pin(blob.map(|r| r.map_err(|e| cairn_object::ObjectError::Body(e.to_string()))))
        }
        None => Box::pin(futures::stream::empty()),
    }
}

/// The length the client declared: `x-amz-decoded-content-length` for aws-chunked bodies,
/// else `Content-Length`. A body of any other length is refused by the object service.
pub(crate) fn declared_length(
    headers: &HeaderMap,
    content_length: Option<i64>,
) -> S3Result<Option<u64>> {
    if let Some(v) = headers.get("x-amz-decoded-content-length") {
        let n = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| s3_error!(InvalidArgument, "invalid x-amz-decoded-content-length"))?;
        return Ok(Some(n));
    }
    match content_length {
        None => Ok(None),
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| s3_error!(InvalidArgument, "invalid Content-Length")),
    }
}

/// `If-None-Match: *` / `If-Match` on a write → the precondition checked at commit.
pub(crate) fn write_precondition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(s3_error!(
            NotImplemented,
            "Specifying both If-Match and If-None-Match on a write is not supported"
        )),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::IfNoneMatchStar),
        (None, Some(ETagCondition::ETag(_))) => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented: If-None-Match only accepts *"
        )),
        (Some(ETagCondition::Any), None) => Ok(Precondition::IfMatch("*".to_owned())),
        (Some(ETagCondition::ETag(e)), None) => Ok(Precondition::IfMatch(e.value().to_owned())),
        (None, None) => Ok(Precondition::None),
    }
}

// ---------------------------------------------------------------- ranges

/// Resolves `Range` / `partNumber` against an object: `Ok(None)` = the whole object,
/// `Ok(Some((start, end_exclusive)))` = a part of it.
pub(crate) fn resolve_range(
    range: Option<&Range>,
    part_number: Option<i32>,
    record: &ObjectRecord,
) -> S3Result<Option<(u64, u64)>> {
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        // An empty object has no byte to send: a suffix range (`bytes=-1`) on it is
        // unsatisfiable too, not a 206 claiming `bytes 0-0/0` (found by fuzz_tests).
        (Some(r), None) => match r.check(record.size) {
            Ok(r) if r.start < r.end => Ok(Some((r.start, r.end))),
            _ => Err(invalid_range(record.size)),
        },
        (None, Some(n)) => {
            let n = part_number_u32(n)?;
            match &record.parts {
                Some(sizes) => {
                    let idx = usize::try_from(n - 1).unwrap_or(usize::MAX);
                    let Some(&len) = sizes.get(idx) else {
                        return Err(invalid_part_number());
                    };
                    let start: u64 = sizes[..idx].iter().sum();
                    Ok(Some((start, start + len)))
                }
                // A plain object is one part: S3 answers partNumber=1 as a ranged read of
                // the whole object (206 with Content-Range). An empty one has no byte to
                // range over and is answered whole.
                None if n == 1 && record.size == 0 => Ok(None),
                None if n == 1 => Ok(Some((0, record.size))),
                None => Err(invalid_part_number()),
            }
        }
        (None, None) => Ok(None),
    }
}

/// Part numbers are 1..=10000.
pub(crate) fn part_number_u32(n: i32) -> S3Result<u32> {
    match u32::try_from(n) {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        )),
    }
}

fn invalid_part_number() -> S3Error {
    custom_error(
        "InvalidPartNumber",
        "The requested partnumber is not satisfiable",
        StatusCode::RANGE_NOT_SATISFIABLE,
    )
}

/// 416 with `Content-Range: bytes */<size>`, as S3 answers.
fn invalid_range(size: u64) -> S3Error {
    let mut e = s3_error!(InvalidRange, "The requested range is not satisfiable");
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        h.insert(http::header::CONTENT_RANGE, v);
    }
    e.set_headers(h);
    e
}

fn content_range(range: (u64, u64), size: u64) -> String {
    format!("bytes {}-{}/{}", range.0, range.1.saturating_sub(1), size)
}

// ---------------------------------------------------------------- read body

/// An object being read back, as an s3s body of known length. s3s needs `Sync`; the object
/// stream is only `Send`, so it sits behind a mutex we only ever reach through `&mut`.
struct ReadBody {
    inner: std::sync::Mutex<ByteStream>,
    remaining: u64,
}

impl ReadBody {
    fn new(inner: ByteStream, len: u64) -> Self {
        Self {
            inner: std::sync::Mutex::new(inner),
            remaining: len,
        }
    }
}

impl Stream for ReadBody {
    type Item = Result<Bytes, StdError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let inner = match this.inner.get_mut() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        match inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(b))) => {
                this.remaining = this.remaining.saturating_sub(b.len() as u64);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::error!(error = %e, "object read failed mid-response");
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, None)
    }
}

impl s3s::stream::ByteStream for ReadBody {
    fn remaining_length(&self) -> RemainingLength {
        match usize::try_from(self.remaining) {
            Ok(n) => RemainingLength::new_exact(n),
            Err(_) => RemainingLength::unknown(),
        }
    }
}

// ---------------------------------------------------------------- PutObject

pub(crate) async fn put_object(
    s3: &CairnS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    if input.write_offset_bytes.is_some() {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-write-offset-bytes is not supported"
        ));
    }
    let content_length = declared_length(&req.headers, input.content_length)?;
    if content_length.is_some_and(|n| n > MAX_PUT_SIZE) {
        return Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed object size."
        ));
    }
    let sums = checksum::parse_request(&req.headers)?;
    let checksum_algo = sums.algo;
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
    let headers = crate::acl::with_header_acl(headers, &req.headers, &s3.inner.owner_id)?;
    let customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let encryption = crate::sse::put_request(
        input.server_side_encryption.as_ref(),
        input.ssekms_key_id.as_deref(),
        customer,
    )?;
    let lock = crate::lock::put_request(
        input.object_lock_mode.as_ref(),
        input.object_lock_retain_until_date.as_ref(),
        input.object_lock_legal_hold_status.as_ref(),
        &sums,
    )?;
    // Without a checksum from the client, S3 stores its default one (not for SSE-C).
    let sse = match &encryption {
        Some(cairn_object::SseRequest::Customer { .. }) => {
            Some(cairn_meta::model::SseAlgorithm::Customer)
        }
        Some(cairn_object::SseRequest::S3) => Some(cairn_meta::model::SseAlgorithm::S3),
        Some(cairn_object::SseRequest::Kms { .. }) => Some(cairn_meta::model::SseAlgorithm::Kms),
        None => None,
    };
    let checksum_algo = checksum_algo
        .or(cairn_object::default_checksum_applies(sse).then_some(cairn_object::DEFAULT_CHECKSUM));
    let opts = PutOptions {
        headers,
        content_length,
        checksum_algo,
        precondition: write_precondition(input.if_match.as_ref(), input.if_none_match.as_ref())?,
        verify: checksum::verifier(sums, req.trailing_headers),
        write_consistency: consistency::write(&req.headers)?,
        encryption,
        lock,
    };
    let record = s3
        .objects()
        .put_object(&input.bucket, &input.key, body_stream(input.body), opts)
        .await
        .s3()?;

    let sums = ChecksumFields::from_stored(record.checksum.as_ref());
    let echo = crate::sse::echo(&record, input.sse_customer_key_md5.as_deref());
    let expiration =
        crate::lifecycle::expiration_header(s3, &input.bucket, &input.key, &record).await;
    let output = PutObjectOutput {
        expiration,
        e_tag: Some(etag(&record.etag)),
        version_id: shown_version(&record, false),
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_type: sums.checksum_type,
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

// ---------------------------------------------------------------- GetObject / HeadObject

/// 304 with the validators S3 sends (no body; `serve` drops it).
fn not_modified(record: &ObjectRecord) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", record.etag)) {
        h.insert(http::header::ETAG, v);
    }
    let mut buf = Vec::new();
    if ts(record.last_modified_ms)
        .format(TimestampFormat::HttpDate, &mut buf)
        .is_ok()
    {
        if let Ok(v) = HeaderValue::from_bytes(&buf) {
            h.insert(http::header::LAST_MODIFIED, v);
        }
    }
    e.set_headers(h);
    e
}

fn check_conditions(c: &Conditions<'_>, record: &ObjectRecord) -> S3Result<()> {
    match conditional::evaluate(c, &record.etag, record.last_modified_ms) {
        Outcome::Proceed => Ok(()),
        Outcome::NotModified => Err(not_modified(record)),
        Outcome::PreconditionFailed => Err(s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )),
    }
}

/// What GET and HEAD have in common once the record is known.
struct ReadPlan {
    record: ObjectRecord,
    range: Option<(u64, u64)>,
    parts_count: Option<i32>,
    checksums: ChecksumFields,
}

#[allow(clippy::too_many_arguments)]
async fn plan_read(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    conditions: Conditions<'_>,
    range: Option<&Range>,
    part_number: Option<i32>,
    checksum_mode: Option<&ChecksumMode>,
    read: ReadConsistency,
) -> S3Result<ReadPlan> {
    validate_key(key)?;
    check_version_id(version_id)?;
    let objects = s3.objects();
    let record = match version_id {
        Some(v) => match objects.get_version(bucket, key, v, read).await {
            Ok(VersionEntry::Object(r)) => r,
            Ok(VersionEntry::Marker(m)) => return Err(marker_error(&m, true)),
            Err(cairn_object::ObjectError::NoSuchVersion) => {
                // A missing bucket says so first.
                objects.head_bucket_with(bucket, read).await.s3()?;
                return Err(cairn_object::ObjectError::NoSuchVersion).s3();
            }
            Err(e) => return Err(e).s3(),
        },
        None => match objects.head_object_with(bucket, key, read).await {
            Ok(r) => r,
            Err(cairn_object::ObjectError::NoSuchKey) => {
                // Only a versioned key can hide behind a delete marker: one more read, on
                // misses only.
                if let Ok(Some(VersionEntry::Marker(m))) =
                    objects.latest_version(bucket, key, read).await
                {
                    return Err(marker_error(&m, false));
                }
                return Err(cairn_object::ObjectError::NoSuchKey).s3();
            }
            Err(e) => return Err(e).s3(),
        },
    };
    check_conditions(&conditions, &record)?;
    let range = resolve_range(range, part_number, &record)?;
    let parts_count = match (part_number, &record.parts) {
        (Some(_), Some(p)) => i32::try_from(p.len()).ok(),
        _ => None,
    };
    // The stored checksum covers the whole object: return it only for whole-object reads.
    let want_checksum =
        checksum_mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    let whole = range.is_none() || range == Some((0, record.size));
    let checksums = match (
        want_checksum,
        part_number,
        crate::attributes::part_checksum(&record, part_number),
    ) {
        // A part of a checksummed multipart object: that part's checksum (as AWS).
        (true, Some(_), Some(part)) => part,
        (true, _, _) if whole => ChecksumFields::from_stored(record.checksum.as_ref()),
        _ => ChecksumFields::default(),
    };
    Ok(ReadPlan {
        record,
        range,
        parts_count,
        checksums,
    })
}

pub(crate) async fn get_object(
    s3: &CairnS3,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let asked_version = input.version_id.is_some();
    let conditions = Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    let plan = plan_read(
        s3,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        conditions,
        input.range.as_ref(),
        input.part_number,
        input.checksum_mode.as_ref(),
        consistency::read(&req.headers)?,
    )
    .await?;
    let ReadPlan {
        record,
        range,
        parts_count,
        checksums,
    } = plan;

    let len = match range {
        Some((a, b)) => b - a,
        None => record.size,
    };
    let customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    // Checked before the answer starts, so a missing or wrong key is a clean 400/403.
    s3.objects()
        .data_key(&record, customer.as_ref())
        .await
        .s3()?;
    let echo = crate::sse::echo(&record, input.sse_customer_key_md5.as_deref());
    let stream = s3
        .objects()
        .read_object_with_key(&record, range, customer.as_ref());
    let body = StreamingBlob::new(ReadBody::new(stream, len));
    let expiration = match asked_version {
        true => None,
        false => crate::lifecycle::expiration_header(s3, &input.bucket, &input.key, &record).await,
    };
    let h = &record.headers;
    let (lock_mode, lock_until, legal_hold) = crate::lock::read_headers(&record);
    let output = GetObjectOutput {
        object_lock_mode: lock_mode,
        object_lock_retain_until_date: lock_until,
        object_lock_legal_hold_status: legal_hold,
        expiration,
        body: Some(body),
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        accept_ranges: Some("bytes".to_owned()),
        content_length: i64::try_from(len).ok(),
        content_range: range.map(|r| content_range(r, record.size)),
        content_type: content_type(h),
        content_encoding: h.content_encoding.clone(),
        content_disposition: h.content_disposition.clone(),
        content_language: h.content_language.clone(),
        cache_control: h.cache_control.clone(),
        e_tag: Some(etag(&record.etag)),
        last_modified: Some(ts(record.last_modified_ms)),
        metadata: user_metadata(h),
        version_id: shown_version(&record, asked_version),
        parts_count,
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        ..Default::default()
    };
    let mut resp = S3Response::new(output);
    expires_header(h, &mut resp.headers);
    crate::tagging::count_header(h, &mut resp.headers);
    Ok(resp)
}

pub(crate) async fn head_object(
    s3: &CairnS3,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let asked_version = input.version_id.is_some();
    let conditions = Conditions {
        if_match: input.if_match.as_ref(),
        if_none_match: input.if_none_match.as_ref(),
        if_modified_since: input.if_modified_since.as_ref(),
        if_unmodified_since: input.if_unmodified_since.as_ref(),
    };
    let plan = plan_read(
        s3,
        &input.bucket,
        &input.key,
        input.version_id.as_deref(),
        conditions,
        input.range.as_ref(),
        input.part_number,
        input.checksum_mode.as_ref(),
        consistency::read(&req.headers)?,
    )
    .await?;
    let ReadPlan {
        record,
        range,
        parts_count,
        checksums,
    } = plan;
    let len = match range {
        Some((a, b)) => b - a,
        None => record.size,
    };
    let customer = crate::sse::customer_key(
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    s3.objects()
        .data_key(&record, customer.as_ref())
        .await
        .s3()?;
    let echo = crate::sse::echo(&record, input.sse_customer_key_md5.as_deref());
    let expiration = match asked_version {
        true => None,
        false => crate::lifecycle::expiration_header(s3, &input.bucket, &input.key, &record).await,
    };
    let h = &record.headers;
    let (lock_mode, lock_until, legal_hold) = crate::lock::read_headers(&record);
    let output = HeadObjectOutput {
        object_lock_mode: lock_mode,
        object_lock_retain_until_date: lock_until,
        object_lock_legal_hold_status: legal_hold,
        expiration,
        server_side_encryption: echo.server_side_encryption,
        sse_customer_algorithm: echo.sse_customer_algorithm,
        sse_customer_key_md5: echo.sse_customer_key_md5,
        ssekms_key_id: echo.ssekms_key_id,
        accept_ranges: Some("bytes".to_owned()),
        content_length: i64::try_from(len).ok(),
        content_range: range.map(|r| content_range(r, record.size)),
        content_type: content_type(h),
        content_encoding: h.content_encoding.clone(),
        content_disposition: h.content_disposition.clone(),
        content_language: h.content_language.clone(),
        cache_control: h.cache_control.clone(),
        e_tag: Some(etag(&record.etag)),
        last_modified: Some(ts(record.last_modified_ms)),
        metadata: user_metadata(h),
        version_id: shown_version(&record, asked_version),
        parts_count,
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        ..Default::default()
    };
    let mut resp = S3Response::new(output);
    expires_header(h, &mut resp.headers);
    crate::tagging::count_header(h, &mut resp.headers);
    if range.is_some() {
        // s3s always answers HEAD with 200; a ranged HEAD is a 206 in S3.
        resp.extensions
            .insert(StatusOverride(StatusCode::PARTIAL_CONTENT));
    }
    Ok(resp)
}

// ---------------------------------------------------------------- DeleteObject(s)

pub(crate) async fn delete_object(
    s3: &CairnS3,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let bypass = crate::lock::bypass(req.input.bypass_governance_retention, &req.extensions);
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    if let Some(cond) = &input.if_match {
        // Conditional delete: checked against the current version (not atomic with the delete).
        let record = s3
            .objects()
            .head_object(&input.bucket, &input.key)
            .await
            .s3()?;
        if !conditional::etag_matches(cond, &record.etag) {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    let done = s3
        .objects()
        .delete_object_version(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            bypass,
        )
        .await
        .s3()?;
    let output = DeleteObjectOutput {
        version_id: done.version_id,
        delete_marker: done.delete_marker.then_some(true),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// How many keys of a DeleteObjects batch are deleted concurrently.
const DELETE_CONCURRENCY: usize = 16;

pub(crate) async fn delete_objects(
    s3: &CairnS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let bypass = crate::lock::bypass(req.input.bypass_governance_retention, &req.extensions);
    let input = req.input;
    let objects = input.delete.objects;
    if objects.len() > 1000 {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        ));
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    // The whole request fails on a missing bucket, not each key.
    s3.objects().head_bucket(&input.bucket).await.s3()?;

    let bucket = input.bucket.as_str();
    let results: Vec<(ObjectIdentifier, S3Result<cairn_object::DeleteOutcome>)> =
        futures::stream::iter(objects)
            .map(|obj| async move {
                let res = async {
                    validate_key(&obj.key)?;
                    check_version_id(obj.version_id.as_deref())?;
                    s3.objects()
                        .delete_object_version(bucket, &obj.key, obj.version_id.as_deref(), bypass)
                        .await
                        .s3()
                }
                .await;
                (obj, res)
            })
            .buffered(DELETE_CONCURRENCY)
            .collect()
            .await;

    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for (obj, res) in results {
        match res {
            Ok(done) => {
                if !quiet {
                    // DeleteMarkerVersionId names the marker created, or removed by id.
                    deleted.push(DeletedObject {
                        key: Some(obj.key),
                        version_id: obj.version_id,
                        delete_marker: done.delete_marker.then_some(true),
                        delete_marker_version_id: done.version_id.filter(|_| done.delete_marker),
                    });
                }
            }
            Err(e) => errors.push(Error {
                code: Some(e.code().as_str().to_owned()),
                message: e.message().map(str::to_owned),
                key: Some(obj.key),
                version_id: obj.version_id,
            }),
        }
    }
    let output = DeleteObjectsOutput {
        deleted: (!deleted.is_empty()).then_some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_object::ObjectData;

    fn record(size: u64, parts: Option<Vec<u64>>) -> ObjectRecord {
        ObjectRecord {
            versioned: false,
            version: "v".into(),
            size,
            etag: "e".into(),
            last_modified_ms: 0,
            headers: ObjectHeaders::default(),
            checksum: None,
            part_checksums: None,
            parts,
            data: ObjectData::Inline(Vec::new()),
            encryption: None,
            lock: None,
        }
    }

    fn range(s: &str) -> Range {
        Range::parse(s).unwrap()
    }

    fn code(r: S3Result<Option<(u64, u64)>>) -> String {
        r.unwrap_err().code().as_str().to_owned()
    }

    #[test]
    fn ranges() {
        let r = record(100, None);
        assert_eq!(resolve_range(None, None, &r).unwrap(), None);
        assert_eq!(
            resolve_range(Some(&range("bytes=0-9")), None, &r).unwrap(),
            Some((0, 10))
        );
        assert_eq!(
            resolve_range(Some(&range("bytes=90-200")), None, &r).unwrap(),
            Some((90, 100))
        );
        assert_eq!(
            resolve_range(Some(&range("bytes=10-")), None, &r).unwrap(),
            Some((10, 100))
        );
        assert_eq!(
            resolve_range(Some(&range("bytes=-10")), None, &r).unwrap(),
            Some((90, 100))
        );
        assert_eq!(
            resolve_range(Some(&range("bytes=-1000")), None, &r).unwrap(),
            Some((0, 100))
        );
        assert_eq!(
            resolve_range(Some(&range("bytes=99-99")), None, &r).unwrap(),
            Some((99, 100))
        );
        assert_eq!(
            code(resolve_range(Some(&range("bytes=100-")), None, &r)),
            "InvalidRange"
        );
        assert_eq!(
            code(resolve_range(Some(&range("bytes=-0")), None, &r)),
            "InvalidRange"
        );
        let e = resolve_range(Some(&range("bytes=100-200")), None, &r).unwrap_err();
        assert_eq!(e.status_code(), Some(StatusCode::RANGE_NOT_SATISFIABLE));
        assert_eq!(
            e.headers()
                .and_then(|h| h.get("content-range"))
                .map(HeaderValue::as_bytes),
            Some(&b"bytes */100"[..])
        );
        // empty object: any range is unsatisfiable
        assert_eq!(
            code(resolve_range(
                Some(&range("bytes=0-")),
                None,
                &record(0, None)
            )),
            "InvalidRange"
        );
        assert_eq!(content_range((0, 10), 100), "bytes 0-9/100");
    }

    #[test]
    fn part_numbers() {
        let r = record(25, Some(vec![10, 10, 5]));
        assert_eq!(resolve_range(None, Some(1), &r).unwrap(), Some((0, 10)));
        assert_eq!(resolve_range(None, Some(3), &r).unwrap(), Some((20, 25)));
        assert_eq!(code(resolve_range(None, Some(4), &r)), "InvalidPartNumber");
        assert_eq!(code(resolve_range(None, Some(0), &r)), "InvalidArgument");
        assert_eq!(
            code(resolve_range(None, Some(10_001), &r)),
            "InvalidArgument"
        );
        assert_eq!(
            code(resolve_range(Some(&range("bytes=0-1")), Some(1), &r)),
            "InvalidRequest"
        );
        // A plain object: part 1 is a ranged read of all of it; an empty one is read whole.
        let single = record(7, None);
        assert_eq!(resolve_range(None, Some(1), &single).unwrap(), Some((0, 7)));
        assert_eq!(
            resolve_range(None, Some(1), &record(0, None)).unwrap(),
            None
        );
        assert_eq!(
            code(resolve_range(None, Some(2), &single)),
            "InvalidPartNumber"
        );
    }

    #[test]
    fn preconditions_for_writes() {
        let any = ETagCondition::Any;
        let tag = ETagCondition::ETag(ETag::Strong("abc".into()));
        assert_eq!(write_precondition(None, None).unwrap(), Precondition::None);
        assert_eq!(
            write_precondition(None, Some(&any)).unwrap(),
            Precondition::IfNoneMatchStar
        );
        assert_eq!(
            write_precondition(Some(&tag), None).unwrap(),
            Precondition::IfMatch("abc".into())
        );
        assert_eq!(
            write_precondition(Some(&any), None).unwrap(),
            Precondition::IfMatch("*".into())
        );
        assert!(write_precondition(None, Some(&tag)).is_err());
        assert!(write_precondition(Some(&tag), Some(&any)).is_err());
    }

    #[test]
    fn aws_chunked_is_not_a_stored_content_encoding() {
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(
            without_aws_chunked("gzip,aws-chunked").as_deref(),
            Some("gzip")
        );
        assert_eq!(
            without_aws_chunked("aws-chunked,gzip").as_deref(),
            Some("gzip")
        );
        assert_eq!(
            without_aws_chunked("gzip, AWS-Chunked, br").as_deref(),
            Some("gzip,br")
        );
        assert_eq!(without_aws_chunked("gzip").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked(" , ,"), None);
        let h = HeaderFields {
            content_type: None,
            content_encoding: Some("aws-chunked".into()),
            content_disposition: None,
            content_language: None,
            cache_control: None,
            expires: None,
            metadata: None,
        }
        .into_stored()
        .unwrap();
        assert_eq!(h.content_encoding, None);
    }

    #[test]
    fn declared_lengths() {
        let mut h = HeaderMap::new();
        assert_eq!(declared_length(&h, None).unwrap(), None);
        assert_eq!(declared_length(&h, Some(5)).unwrap(), Some(5));
        assert!(declared_length(&h, Some(-1)).is_err());
        h.insert(
            "x-amz-decoded-content-length",
            HeaderValue::from_static("42"),
        );
        assert_eq!(declared_length(&h, Some(5)).unwrap(), Some(42));
        h.insert(
            "x-amz-decoded-content-length",
            HeaderValue::from_static("x"),
        );
        assert!(declared_length(&h, Some(5)).is_err());
    }

    #[test]
    fn timestamps_and_versions() {
        let t: time::OffsetDateTime = ts(1_704_067_200_500).into();
        assert_eq!(t.unix_timestamp(), 1_704_067_200);
        assert_eq!(t.millisecond(), 500);
        assert!(check_version_id(None).is_ok());
        assert!(check_version_id(Some("null")).is_ok());
        assert!(check_version_id(Some("3HL4kqtJlcpXroDTDmJ")).is_err());
    }

    #[test]
    fn stored_headers() {
        let mut meta = Metadata::default();
        meta.insert("Color".into(), "blue".into());
        let h = HeaderFields {
            content_type: Some("text/plain".into()),
            content_encoding: None,
            content_disposition: None,
            content_language: None,
            cache_control: Some("no-cache".into()),
            expires: Some(
                Timestamp::parse(TimestampFormat::HttpDate, "Wed, 21 Oct 2015 07:28:00 GMT")
                    .unwrap(),
            ),
            metadata: Some(meta),
        }
        .into_stored()
        .unwrap();
        assert_eq!(h.expires.as_deref(), Some("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(h.user.get("color").map(String::as_str), Some("blue"));
        let mut out = HeaderMap::new();
        expires_header(&h, &mut out);
        assert_eq!(
            out.get("expires").map(HeaderValue::as_bytes),
            Some(&b"Wed, 21 Oct 2015 07:28:00 GMT"[..])
        );
    }
}
