//! Object and bucket tagging: Put/Get/DeleteObjectTagging, Put/Get/DeleteBucketTagging, the
//! `x-amz-tagging` header of PutObject / CreateMultipartUpload / CopyObject (with
//! `x-amz-tagging-directive`), and `x-amz-tagging-count` on GET/HEAD.
//!
//! The rules are AWS's: at most 10 tags per object and 50 per bucket, keys of 1 to 128 and
//! values of at most 256 Unicode characters made of letters, digits, spaces and `+ - = . _ : /
//! @`, keys unique and not starting with `aws:`. Object tags are stored in the version's record
//! (`ObjectHeaders::tags`), so an overwrite replaces them and a delete drops them; bucket tags
//! in the bucket's settings (`cairn_meta::bucket_config`).

use cairn_meta::model::{ObjectHeaders, ObjectRecord, Tag as StoredTag};
use cairn_object::ReadConsistency;
use http::{HeaderMap, HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Request, S3Response, S3Result};

use crate::error::{custom_error, ObjectResultExt};
use crate::object::check_version_id;
use crate::validate::validate_key;
use crate::CairnS3;
use cairn_meta::versions::VersionEntry;

/// AWS's limit of tags on one object.
pub(crate) const MAX_OBJECT_TAGS: usize = 10;
/// AWS's limit of tags on one bucket.
pub(crate) const MAX_BUCKET_TAGS: usize = 50;
const MAX_KEY_CHARS: usize = 128;
const MAX_VALUE_CHARS: usize = 256;

/// What is being tagged: the limits and the wording of the errors differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Object,
    Bucket,
}

impl Target {
    fn max(self) -> usize {
        match self {
            Target::Object => MAX_OBJECT_TAGS,
            Target::Bucket => MAX_BUCKET_TAGS,
        }
    }
}

/// A character AWS allows in a tag: letters, digits, separators (spaces) and `+ - = . _ : /
/// @` (the pattern `[\p{L}\p{Z}\p{N}_.:/=+\-@]*`). Control characters such as tab or newline
/// are not separators.
fn allowed_char(c: char) -> bool {
    c.is_alphabetic()
        || c.is_numeric()
        || (c.is_whitespace() && !c.is_control())
        || matches!(c, '+' | '-' | '=' | '.' | '_' | ':' | '/' | '@')
}

fn invalid_tag(message: &'static str) -> S3Error {
    s3_error!(InvalidTag, "{message}")
}

/// Checks `tags` against AWS's rules for `target`, in the order AWS reports them: the count,
/// then each tag's key and value, then duplicate keys.
pub(crate) fn validate(tags: &[StoredTag], target: Target) -> S3Result<()> {
    if tags.len() > target.max() {
        let message = match target {
            Target::Object => "Object tags cannot be greater than 10",
            Target::Bucket => "Bucket tag count cannot be greater than 50",
        };
        return Err(custom_error("BadRequest", message, StatusCode::BAD_REQUEST));
    }
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        let key_chars = t.key.chars().count();
        if key_chars == 0 || key_chars > MAX_KEY_CHARS || !t.key.chars().all(allowed_char) {
            return Err(invalid_tag("The TagKey you have provided is invalid"));
        }
        if t.key.starts_with("aws:") {
            return Err(invalid_tag("Your TagKey cannot be prefixed with aws:"));
        }
        if t.value.chars().count() > MAX_VALUE_CHARS || !t.value.chars().all(allowed_char) {
            return Err(invalid_tag("The TagValue you have provided is invalid"));
        }
        if !seen.insert(t.key.as_str()) {
            return Err(invalid_tag(
                "Cannot provide multiple Tags with the same key",
            ));
        }
    }
    Ok(())
}

/// The tags of a `<Tagging>` body, checked. A tag without `<Key>` is malformed; one without
/// `<Value>` has an empty value.
pub(crate) fn from_dto(tagging: Tagging, target: Target) -> S3Result<Vec<StoredTag>> {
    let mut out = Vec::with_capacity(tagging.tag_set.len());
    for t in tagging.tag_set {
        let Some(key) = t.key else {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        };
        out.push(StoredTag {
            key,
            value: t.value.unwrap_or_default(),
        });
    }
    validate(&out, target)?;
    Ok(out)
}

fn to_dto(tags: &[StoredTag]) -> TagSet {
    tags.iter()
        .map(|t| Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}

fn bad_tagging_header() -> S3Error {
    s3_error!(
        InvalidArgument,
        "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."
    )
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(s: &str) -> S3Result<String> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| bad_tagging_header())
}

/// Parses an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded; a name without `=` has an
/// empty value) into checked object tags. Duplicate names are an InvalidArgument, as in AWS.
pub(crate) fn parse_header(header: &str) -> S3Result<Vec<StoredTag>> {
    let mut tags: Vec<StoredTag> = Vec::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form_decode(k)?;
        if tags.iter().any(|t| t.key == key) {
            return Err(bad_tagging_header());
        }
        tags.push(StoredTag {
            key,
            value: form_decode(v)?,
        });
    }
    validate(&tags, Target::Object)?;
    Ok(tags)
}

/// `headers` with the tags of an `x-amz-tagging` header (none when absent).
pub(crate) fn with_header_tags(
    mut headers: ObjectHeaders,
    header: Option<&str>,
) -> S3Result<ObjectHeaders> {
    headers.tags = match header {
        Some(h) => parse_header(h)?,
        None => Vec::new(),
    };
    Ok(headers)
}

/// `headers` of a copy with the tags `x-amz-tagging-directive` asks for: the source's (COPY,
/// the default) or those of `x-amz-tagging` (REPLACE).
pub(crate) fn with_copy_tags(
    mut headers: ObjectHeaders,
    directive: Option<&TaggingDirective>,
    header: Option<&str>,
    src: &ObjectRecord,
) -> S3Result<ObjectHeaders> {
    let replace = match directive.map(TaggingDirective::as_str) {
        None => false,
        Some(d) if d.eq_ignore_ascii_case(TaggingDirective::COPY) => false,
        Some(d) if d.eq_ignore_ascii_case(TaggingDirective::REPLACE) => true,
        Some(_) => return Err(s3_error!(InvalidArgument, "Unknown tagging directive.")),
    };
    headers.tags = if replace {
        match header {
            Some(h) => parse_header(h)?,
            None => Vec::new(),
        }
    } else {
        src.headers.tags.clone()
    };
    Ok(headers)
}

/// Sets `x-amz-tagging-count` when the object has tags (AWS leaves it out otherwise).
pub(crate) fn count_header(h: &ObjectHeaders, out: &mut HeaderMap) {
    if !h.tags.is_empty() {
        out.insert("x-amz-tagging-count", HeaderValue::from(h.tags.len()));
    }
}

// ---------------------------------------------------------------- object tagging

/// Version `v` of a key (for its tags or ACL): NoSuchVersion for an unknown one, 405 for a
/// delete marker.
pub(crate) async fn version_record(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    v: &str,
) -> S3Result<ObjectRecord> {
    match s3
        .objects()
        .get_version(bucket, key, v, cairn_object::ReadConsistency::Linearizable)
        .await
        .s3()?
    {
        VersionEntry::Object(r) => Ok(r),
        VersionEntry::Marker(_) => Err(s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        )),
    }
}

/// Sets the tags of `bucket/key`: of version `v` when given (current or noncurrent:
/// NoSuchVersion for an unknown one, 405 for a delete marker), else of the current version.
async fn set_tags(
    s3: &CairnS3,
    bucket: &str,
    key: &str,
    v: Option<&str>,
    tags: Vec<StoredTag>,
) -> S3Result<()> {
    check_version_id(v)?;
    match v {
        Some(v) => {
            version_record(s3, bucket, key, v).await?;
            s3.objects()
                .set_version_tags(bucket, key, v, tags)
                .await
                .s3()
        }
        None => s3
            .objects()
            .set_object_tags(bucket, key, None, tags)
            .await
            .s3(),
    }
}

pub(crate) async fn put_object_tagging(
    s3: &CairnS3,
    req: S3Request<PutObjectTaggingInput>,
) -> S3Result<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let tags = from_dto(input.tagging, Target::Object)?;
    let v = input.version_id.as_deref();
    set_tags(s3, &input.bucket, &input.key, v, tags).await?;
    Ok(S3Response::new(PutObjectTaggingOutput {
        version_id: input.version_id,
    }))
}

pub(crate) async fn get_object_tagging(
    s3: &CairnS3,
    req: S3Request<GetObjectTaggingInput>,
) -> S3Result<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    let record = match input.version_id.as_deref() {
        Some(v) => version_record(s3, &input.bucket, &input.key, v).await?,
        None => s3
            .objects()
            .head_object(&input.bucket, &input.key)
            .await
            .s3()?,
    };
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: to_dto(&record.headers.tags),
        version_id: input.version_id,
    }))
}

/// Removes an object's tags. AWS answers 204.
pub(crate) async fn delete_object_tagging(
    s3: &CairnS3,
    req: S3Request<DeleteObjectTaggingInput>,
) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    let v = input.version_id.as_deref();
    set_tags(s3, &input.bucket, &input.key, v, Vec::new()).await?;
    Ok(S3Response::new(DeleteObjectTaggingOutput {
        version_id: input.version_id,
    }))
}

// ---------------------------------------------------------------- bucket tagging

pub(crate) async fn put_bucket_tagging(
    s3: &CairnS3,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let tags = from_dto(input.tagging, Target::Bucket)?;
    s3.objects()
        .set_bucket_tags(&input.bucket, tags)
        .await
        .s3()?;
    Ok(S3Response::new(PutBucketTaggingOutput::default()))
}

pub(crate) async fn get_bucket_tagging(
    s3: &CairnS3,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let config = s3
        .objects()
        .bucket_config(&req.input.bucket, ReadConsistency::Linearizable)
        .await
        .s3()?;
    if config.tags.is_empty() {
        return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
    }
    Ok(S3Response::new(GetBucketTaggingOutput {
        tag_set: to_dto(&config.tags),
    }))
}

/// Removes a bucket's tags (204, also when it had none).
pub(crate) async fn delete_bucket_tagging(
    s3: &CairnS3,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    s3.objects()
        .set_bucket_tags(&req.input.bucket, Vec::new())
        .await
        .s3()?;
    Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tag(k: &str, v: &str) -> StoredTag {
        StoredTag {
            key: k.into(),
            value: v.into(),
        }
    }

    fn code(r: S3Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().code().as_str().to_owned()
    }

    #[test]
    fn limits_and_characters() {
        let ten: Vec<_> = (0..10).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(validate(&ten, Target::Object).is_ok());
        let eleven: Vec<_> = (0..11).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(code(validate(&eleven, Target::Object)), "BadRequest");
        assert!(validate(&eleven, Target::Bucket).is_ok());
        let fifty_one: Vec<_> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert_eq!(code(validate(&fifty_one, Target::Bucket)), "BadRequest");

        assert!(validate(&[tag(&"é".repeat(128), &"ü".repeat(256))], Target::Object).is_ok());
        for bad in [
            vec![tag(&"k".repeat(129), "v")],
            vec![tag("k", &"v".repeat(257))],
            vec![tag("", "v")],
            vec![tag("a#b", "v")],
            vec![tag("k", "v\nw")],
            vec![tag("aws:x", "v")],
            vec![tag("k", "1"), tag("k", "2")],
        ] {
            assert_eq!(
                code(validate(&bad, Target::Object)),
                "InvalidTag",
                "{bad:?}"
            );
        }
        assert!(validate(&[tag("a b+c-d=e.f_g:h/i@j", "Ünïcode 42")], Target::Object).is_ok());
    }

    #[test]
    fn tagging_header() {
        let t = parse_header("a=1&b%20c=x+y&empty=&bare").unwrap();
        assert_eq!(
            t,
            vec![
                tag("a", "1"),
                tag("b c", "x y"),
                tag("empty", ""),
                tag("bare", "")
            ]
        );
        assert!(parse_header("").unwrap().is_empty());
        assert_eq!(code(parse_header("a=1&a=2")), "InvalidArgument");
        assert_eq!(code(parse_header("a=%ff")), "InvalidArgument");
        assert_eq!(code(parse_header("a%23=1")), "InvalidTag");
        let many: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(code(parse_header(&many.join("&"))), "BadRequest");
    }

    #[test]
    fn count_header_only_when_tagged() {
        let mut h = ObjectHeaders::default();
        let mut out = HeaderMap::new();
        count_header(&h, &mut out);
        assert!(out.get("x-amz-tagging-count").is_none());
        h.tags = vec![tag("a", "1"), tag("b", "2")];
        count_header(&h, &mut out);
        assert_eq!(out.get("x-amz-tagging-count").unwrap(), "2");
    }

    proptest! {
        /// Any valid tag set written as a header (as an SDK encodes it) parses back unchanged.
        #[test]
        fn header_round_trip(tags in proptest::collection::btree_map(
            "[a-zA-Z0-9 +=._:/@-]{1,20}", "[a-zA-Z0-9 +=._:/@-]{0,20}", 0..=10usize)) {
            let tags: Vec<StoredTag> = tags.into_iter().map(|(k, v)| tag(&k, &v)).collect();
            prop_assume!(!tags.iter().any(|t| t.key.starts_with("aws:")));
            let enc = |s: &str| percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
            let header: Vec<String> = tags.iter().map(|t| format!("{}={}", enc(&t.key), enc(&t.value))).collect();
            prop_assert_eq!(parse_header(&header.join("&")).unwrap(), tags);
        }
    }
}
