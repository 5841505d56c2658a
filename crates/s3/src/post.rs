//! POST Object: browser form uploads (`multipart/form-data` to a bucket URL).
//!
//! s3s does the protocol work before calling us: it reads the form fields (bounded by
//! `form_max_*`), verifies the SigV4 (or SigV2) signature over the base64 policy, checks the
//! policy's expiration before reading the file, buffers the file up to the smaller of
//! `content-length-range`'s max and `post_object_max_file_size`, and then checks every policy
//! condition (`eq`, `starts-with`, `content-length-range`, the bucket) and that every form
//! field is named by a condition. Only then is `post_object` called, so a form that does not
//! satisfy its policy never stores anything.
//!
//! Here we add what s3s leaves to the implementation: a form must be signed and carry a
//! policy (there are no public-write buckets), fields that promise protection Cairn does not
//! implement are refused, `${filename}` in the key is replaced by the file's name (which
//! `serve.rs` reads from the file part's header while the body streams by), and the form's
//! checksum fields are checked like a PUT's headers. `success_action_status` and
//! `success_action_redirect` are answered by s3s.

use std::sync::Arc;

use http::HeaderValue;
use parking_lot::Mutex;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::CairnS3;

/// The largest file a form upload may carry. s3s buffers the whole file in memory before the
/// policy's conditions are checked, so this is far below S3's 5 GiB; larger files go through
/// PUT or multipart uploads.
pub(crate) const MAX_POST_FILE_SIZE: u64 = 64 << 20;

/// What `serve.rs` learns about a form upload as its body streams by.
#[derive(Clone, Debug, Default)]
pub(crate) struct FormFileName(pub Arc<Mutex<FormScan>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FormScan {
    /// The `filename` of the file part.
    pub filename: Option<String>,
    /// The fields before the file carry no policy or no signature: the body is cut off at the
    /// file so an anonymous form cannot make s3s buffer its file before the access check.
    pub unsigned: bool,
    /// The form's `acl` and `tagging` fields (AWS's POST names, which s3s does not read).
    pub acl: Option<String>,
    pub tagging: Option<String>,
}

/// Replaces every `${filename}` in `key` with the file's name (AWS's rule); the name's
/// directory part, as some browsers send it, is dropped.
pub(crate) fn substitute_filename(key: &str, filename: Option<&str>) -> S3Result<String> {
    if !key.contains("${filename}") {
        return Ok(key.to_owned());
    }
    let name = filename
        .map(|f| f.rsplit(['/', '\\']).next().unwrap_or(f))
        .filter(|f| !f.is_empty())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The key uses ${{filename}} but the form's file has no file name."
            )
        })?;
    Ok(key.replace("${filename}", name))
}

fn not_implemented(what: &str) -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "{what} in a form upload is not implemented; nothing was stored"
    )
}

/// Refuses form fields that promise protection Cairn does not implement (the same rule
/// `guard.rs` applies to headers).
fn refuse_unimplemented(input: &PostObjectInput) -> S3Result<()> {
    if let Some(acl) = &input.acl {
        let a = acl.as_str();
        if !(a.eq_ignore_ascii_case("private")
            || a.eq_ignore_ascii_case("bucket-owner-full-control"))
        {
            return Err(not_implemented(
                "canned ACLs other than private (x-amz-acl)",
            ));
        }
    }
    if input.grant_full_control.is_some()
        || input.grant_read.is_some()
        || input.grant_read_acp.is_some()
        || input.grant_write_acp.is_some()
    {
        return Err(not_implemented("ACL grants (x-amz-grant-*)"));
    }
    if input.server_side_encryption.is_some()
        || input.sse_customer_algorithm.is_some()
        || input.sse_customer_key.is_some()
        || input.ssekms_key_id.is_some()
    {
        return Err(not_implemented("server-side encryption"));
    }
    if input.object_lock_mode.is_some()
        || input.object_lock_retain_until_date.is_some()
        || input.object_lock_legal_hold_status.is_some()
    {
        return Err(not_implemented("object lock"));
    }
    if input.website_redirect_location.is_some() {
        return Err(not_implemented("x-amz-website-redirect-location"));
    }
    Ok(())
}

/// Copies the form's Content-MD5 and checksum fields into the request headers, where the PUT
/// path reads them.
fn form_checksums_as_headers(
    input: &PostObjectInput,
    headers: &mut http::HeaderMap,
) -> S3Result<()> {
    let fields = [
        ("content-md5", input.content_md5.as_deref()),
        ("x-amz-checksum-crc32", input.checksum_crc32.as_deref()),
        ("x-amz-checksum-crc32c", input.checksum_crc32c.as_deref()),
        (
            "x-amz-checksum-crc64nvme",
            input.checksum_crc64nvme.as_deref(),
        ),
        ("x-amz-checksum-sha1", input.checksum_sha1.as_deref()),
        ("x-amz-checksum-sha256", input.checksum_sha256.as_deref()),
        (
            "x-amz-checksum-algorithm",
            input
                .checksum_algorithm
                .as_ref()
                .map(ChecksumAlgorithm::as_str),
        ),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            let v = HeaderValue::from_str(v)
                .map_err(|_| s3_error!(InvalidArgument, "form field {name} is not valid"))?;
            headers.insert(name, v);
        }
    }
    Ok(())
}

pub(crate) async fn post_object(
    s3: &CairnS3,
    mut req: S3Request<PostObjectInput>,
) -> S3Result<S3Response<PostObjectOutput>> {
    // An unsigned form reaches us as an anonymous request. (s3s drops the parsed policy on
    // its way here; a signed form always had one: the signature is over it, and its
    // conditions were checked.)
    if req.credentials.is_none() {
        return Err(s3_error!(AccessDenied, "{UNSIGNED}"));
    }
    let scan = req
        .extensions
        .get::<FormFileName>()
        .map(|f| f.0.lock().clone())
        .unwrap_or_default();
    if let Some(acl) = scan.acl {
        req.input.acl = Some(ObjectCannedACL::from(acl));
    }
    refuse_unimplemented(&req.input)?;
    if let Some(xml) = &scan.tagging {
        req.input.tagging = Some(tagging_header(xml)?);
    }
    let filename = scan.filename;
    req.input.key = substitute_filename(&req.input.key, filename.as_deref())?;
    form_checksums_as_headers(&req.input, &mut req.headers)?;
    let resp =
        crate::object::put_object(s3, req.map_input(post_object_input_into_put_object_input))
            .await?;
    Ok(resp.map_output(put_object_output_into_post_object_output))
}

// s3s keeps its POST ↔ PUT conversions private; these are the same field-for-field moves.
fn post_object_input_into_put_object_input(x: PostObjectInput) -> PutObjectInput {
    PutObjectInput {
        acl: x.acl,
        body: x.body,
        bucket: x.bucket,
        bucket_key_enabled: x.bucket_key_enabled,
        cache_control: x.cache_control,
        checksum_algorithm: x.checksum_algorithm,
        checksum_crc32: x.checksum_crc32,
        checksum_crc32c: x.checksum_crc32c,
        checksum_crc64nvme: x.checksum_crc64nvme,
        checksum_sha1: x.checksum_sha1,
        checksum_sha256: x.checksum_sha256,
        content_disposition: x.content_disposition,
        content_encoding: x.content_encoding,
        content_language: x.content_language,
        content_length: x.content_length,
        content_md5: x.content_md5,
        content_type: x.content_type,
        expected_bucket_owner: x.expected_bucket_owner,
        expires: x.expires,
        grant_full_control: x.grant_full_control,
        grant_read: x.grant_read,
        grant_read_acp: x.grant_read_acp,
        grant_write_acp: x.grant_write_acp,
        if_match: x.if_match,
        if_none_match: x.if_none_match,
        key: x.key,
        metadata: x.metadata,
        object_lock_legal_hold_status: x.object_lock_legal_hold_status,
        object_lock_mode: x.object_lock_mode,
        object_lock_retain_until_date: x.object_lock_retain_until_date,
        request_payer: x.request_payer,
        sse_customer_algorithm: x.sse_customer_algorithm,
        sse_customer_key: x.sse_customer_key,
        sse_customer_key_md5: x.sse_customer_key_md5,
        ssekms_encryption_context: x.ssekms_encryption_context,
        ssekms_key_id: x.ssekms_key_id,
        server_side_encryption: x.server_side_encryption,
        storage_class: x.storage_class,
        tagging: x.tagging,
        website_redirect_location: x.website_redirect_location,
        write_offset_bytes: x.write_offset_bytes,
    }
}
fn put_object_output_into_post_object_output(x: PutObjectOutput) -> PostObjectOutput {
    PostObjectOutput {
        bucket_key_enabled: x.bucket_key_enabled,
        checksum_crc32: x.checksum_crc32,
        checksum_crc32c: x.checksum_crc32c,
        checksum_crc64nvme: x.checksum_crc64nvme,
        checksum_sha1: x.checksum_sha1,
        checksum_sha256: x.checksum_sha256,
        checksum_type: x.checksum_type,
        e_tag: x.e_tag,
        expiration: x.expiration,
        request_charged: x.request_charged,
        sse_customer_algorithm: x.sse_customer_algorithm,
        sse_customer_key_md5: x.sse_customer_key_md5,
        ssekms_encryption_context: x.ssekms_encryption_context,
        ssekms_key_id: x.ssekms_key_id,
        server_side_encryption: x.server_side_encryption,
        size: x.size,
        version_id: x.version_id,
    }
}

/// Watches a form body stream for the file part's `filename`, without holding it up: the
/// field parts come first and are small (`form_max_fields_size`), so only that much is kept.
pub(crate) struct FileNameScanner {
    seen: Vec<u8>,
    done: bool,
    slot: FormFileName,
}

/// How much of the body is searched for the file part's header.
const SCAN_LIMIT: usize = 320 << 10;

impl FileNameScanner {
    pub(crate) fn new(slot: FormFileName) -> Self {
        Self {
            seen: Vec::new(),
            done: false,
            slot,
        }
    }

    /// Looks at the next piece of the body.
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.done {
            return;
        }
        let room = SCAN_LIMIT.saturating_sub(self.seen.len());
        self.seen.extend_from_slice(&data[..data.len().min(room)]);
        if let Some(name) = file_part_filename(&self.seen) {
            let lower = String::from_utf8_lossy(&self.seen).to_ascii_lowercase();
            let signed = lower.contains("name=\"policy\"")
                && (lower.contains("name=\"x-amz-signature\"")
                    || lower.contains("name=\"signature\""));
            let mut scan = self.slot.0.lock();
            scan.filename = name;
            scan.unsigned = !signed;
            scan.acl = form_field(&self.seen, "acl");
            scan.tagging = form_field(&self.seen, "tagging");
            self.done = true;
            self.seen = Vec::new();
        } else if self.seen.len() >= SCAN_LIMIT {
            self.done = true;
            self.seen = Vec::new();
        }
    }
}

/// Once the header line of the part named `file` is complete: `Some(its filename)`.
pub(crate) fn file_part_filename(buf: &[u8]) -> Option<Option<String>> {
    let mut rest = buf;
    loop {
        let at = find(rest, b"Content-Disposition:")
            .or_else(|| find_ci(rest, b"content-disposition:"))?;
        let line_start = &rest[at..];
        let end = find(line_start, b"\r\n")?;
        let line = String::from_utf8_lossy(&line_start[..end]).into_owned();
        rest = &line_start[end..];
        let lower = line.to_ascii_lowercase();
        if lower.contains(" name=\"file\"") || lower.contains(";name=\"file\"") {
            let name = lower.find("filename=\"").and_then(|i| {
                let tail = &line[i + "filename=\"".len()..];
                tail.find('"').map(|j| tail[..j].to_owned())
            });
            return Some(name);
        }
    }
}

/// The value of the form field `name` among the parts in `buf` (field names are
/// case-insensitive, as s3s reads them).
pub(crate) fn form_field(buf: &[u8], name: &str) -> Option<String> {
    let want = format!("name=\"{}\"", name.to_ascii_lowercase());
    let mut rest = buf;
    loop {
        let at = find_ci(rest, b"content-disposition:")?;
        let part = &rest[at..];
        let end = find(part, b"\r\n")?;
        let line = String::from_utf8_lossy(&part[..end]).to_ascii_lowercase();
        rest = &part[end..];
        let named = line.split(';').map(str::trim).any(|attr| attr == want);
        if named {
            let start = find(rest, b"\r\n\r\n")? + 4;
            let len = find(&rest[start..], b"\r\n--")?;
            return Some(String::from_utf8_lossy(&rest[start..start + len]).into_owned());
        }
    }
}

/// The `tagging` form field (a `<Tagging>` document) as an `x-amz-tagging` header value.
fn tagging_header(xml: &str) -> S3Result<String> {
    use s3s::xml::Deserialize as _;
    let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
    let tagging = Tagging::deserialize(&mut d).map_err(|_| {
        s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema"
        )
    })?;
    let tags = crate::tagging::from_dto(tagging, crate::tagging::Target::Object)?;
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Ok(tags
        .iter()
        .map(|t| format!("{}={}", enc(&t.key), enc(&t.value)))
        .collect::<Vec<_>>()
        .join("&"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// A request body that shows its bytes to a [`FileNameScanner`] on their way to s3s (a plain
/// pass-through for requests that are not form uploads).
pub(crate) struct Scanning<B> {
    inner: B,
    scanner: Option<FileNameScanner>,
}

impl<B> Scanning<B> {
    pub(crate) fn new(inner: B, slot: Option<FormFileName>) -> Self {
        Self {
            inner,
            scanner: slot.map(FileNameScanner::new),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> http_body::Body for Scanning<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let this = &mut *self;
        let res = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        if let (Some(scanner), std::task::Poll::Ready(Some(Ok(frame)))) = (&mut this.scanner, &res)
        {
            if let Some(data) = frame.data_ref() {
                scanner.feed(data);
                if scanner.slot.0.lock().unsigned {
                    return std::task::Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        "unsigned form upload",
                    )))));
                }
            }
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The text between `<tag>` and `</tag>`.
fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(&xml[start..start + len])
}

/// AWS answers a form that breaks its policy with 403 AccessDenied "Invalid according to
/// Policy: ..."; s3s answers some of these as InvalidPolicyDocument or with other wording.
/// Returns the rewritten (code, message), or None to keep the error as it is.
pub(crate) fn aws_policy_error(code: &str, message: &str) -> Option<String> {
    let condition_failed =
        message.starts_with("Policy condition") || message.starts_with("Bucket in form field");
    let message = if code == "InvalidPolicyDocument" && condition_failed {
        format!("Invalid according to Policy: Policy Condition failed: {message}")
    } else if code == "AccessDenied" && message == "Request has expired" {
        "Invalid according to Policy: Policy expired.".to_owned()
    } else if code == "AccessDenied" && message.starts_with("Each form field") {
        format!("Invalid according to Policy: Extra input fields: {message}")
    } else {
        return None;
    };
    Some(message)
}

/// Rewrites a form upload's error response as AWS words it (see [`aws_policy_error`]); an
/// unsigned form cut off by [`Scanning`] is AccessDenied.
pub(crate) fn fix_policy_error(resp: &mut http::Response<s3s::Body>, form: &FormFileName) {
    if form.0.lock().unsigned {
        set_access_denied(resp, UNSIGNED);
        return;
    }
    if !resp.status().is_client_error() {
        return;
    }
    let Some(body) = resp.body().bytes() else {
        return;
    };
    let Ok(xml) = std::str::from_utf8(&body) else {
        return;
    };
    let (Some(code), Some(message)) = (xml_field(xml, "Code"), xml_field(xml, "Message")) else {
        return;
    };
    let Some(message) = aws_policy_error(code, &unescape(message)) else {
        return;
    };
    set_access_denied(resp, &message);
}

const UNSIGNED: &str = "Form uploads must be signed and carry a policy document.";

fn set_access_denied(resp: &mut http::Response<s3s::Body>, message: &str) {
    let new = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>{}</Message></Error>",
        crate::serve::xml_escape(message)
    );
    let len = new.len();
    *resp.body_mut() = s3s::Body::from(new);
    *resp.status_mut() = http::StatusCode::FORBIDDEN;
    if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filename_substitution() {
        assert_eq!(substitute_filename("a/b", None).unwrap(), "a/b");
        assert_eq!(
            substitute_filename("up/${filename}", Some("cat.png")).unwrap(),
            "up/cat.png"
        );
        assert_eq!(
            substitute_filename("up/${filename}", Some("C:\\x\\cat.png")).unwrap(),
            "up/cat.png"
        );
        assert!(substitute_filename("up/${filename}", None).is_err());
        assert!(substitute_filename("up/${filename}", Some("")).is_err());
    }

    #[test]
    fn scanner_finds_file_part_across_pieces() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nup/${filename}\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hello.txt\"\r\nContent-Type: text/plain\r\n\r\nDATA\r\n--b--\r\n";
        for split in [1usize, 7, 40, 80, body.len()] {
            let slot = FormFileName::default();
            let mut s = FileNameScanner::new(slot.clone());
            for piece in body.chunks(split) {
                s.feed(piece);
            }
            let scan = slot.0.lock().clone();
            assert_eq!(scan.filename.as_deref(), Some("hello.txt"), "split {split}");
            assert!(scan.unsigned, "no policy field");
        }
        let slot = FormFileName::default();
        let mut s = FileNameScanner::new(slot.clone());
        s.feed(b"--b\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\neyJ9\r\n--b\r\nContent-Disposition: form-data; name=\"x-amz-signature\"\r\n\r\nab\r\n--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx");
        let scan = slot.0.lock().clone();
        assert_eq!(scan.filename, None);
        assert!(!scan.unsigned);
    }

    #[test]
    fn form_fields() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"ACL\"\r\n\r\npublic-read\r\n--b\r\nContent-Disposition: form-data; name=\"tagging\"\r\n\r\n<Tagging><TagSet><Tag><Key>a b</Key><Value>1+2=3</Value></Tag></TagSet></Tagging>\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nx";
        assert_eq!(form_field(body, "acl").as_deref(), Some("public-read"));
        assert_eq!(form_field(body, "policy"), None);
        let xml = form_field(body, "tagging").unwrap();
        let header = tagging_header(&xml).unwrap();
        let tags = crate::tagging::parse_header(&header).unwrap();
        assert_eq!(
            (tags[0].key.as_str(), tags[0].value.as_str()),
            ("a b", "1+2=3")
        );
        assert!(tagging_header("<Tagging>").is_err());
    }

    #[test]
    fn policy_errors_as_aws() {
        assert_eq!(
            aws_policy_error("AccessDenied", "Request has expired").as_deref(),
            Some("Invalid according to Policy: Policy expired.")
        );
        assert!(aws_policy_error(
            "InvalidPolicyDocument",
            "Policy condition 'eq' for field 'key' failed: expected 'a', got 'b'"
        )
        .unwrap()
        .starts_with("Invalid according to Policy: Policy Condition failed"));
        assert_eq!(aws_policy_error("NoSuchBucket", "x"), None);
        assert_eq!(
            aws_policy_error("InvalidPolicyDocument", "failed to parse POST policy"),
            None
        );

        let xml = "<?xml version=\"1.0\"?><Error><Code>InvalidPolicyDocument</Code><Message>Policy condition &apos;eq&apos; failed</Message></Error>";
        let mut resp = http::Response::new(s3s::Body::from(xml.to_owned()));
        *resp.status_mut() = http::StatusCode::BAD_REQUEST;
        fix_policy_error(&mut resp, &FormFileName::default());
        assert_eq!(resp.status(), http::StatusCode::FORBIDDEN);
        let body = resp.body().bytes().unwrap();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
        assert!(
            text.contains("Policy Condition failed: Policy condition &apos;eq&apos;")
                || text.contains("Policy Condition failed: Policy condition 'eq'"),
            "{text}"
        );
    }
}
