//! ListObjects (V1), ListObjectsV2 and ListObjectVersions.
//!
//! All three map onto one [`ListQuery`]: prefix, delimiter, an exclusive "after" key and a
//! page size. ListObjectVersions lists every version and delete marker, newest first per key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cairn_object::{ListQuery, ObjectRecord};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::checksum::{to_dto, ChecksumFields};
use crate::consistency;
use crate::error::ObjectResultExt;
use crate::object::{etag, ts};
use crate::CairnS3;
use cairn_meta::versions::VersionEntry;

/// S3's default and largest page.
pub(crate) const MAX_KEYS: usize = 1000;

/// Percent-encodes a listing value for `encoding-type=url` the way S3 does: unreserved
/// characters and `/` stay, a space becomes `+`, every other byte of the UTF-8 is `%XX`.
/// (Clients decode with `unquote_plus` / `QueryUnescape`.)
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out
}

/// The opaque V2 continuation token: the key to resume after, base64url.
pub(crate) fn encode_token(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(after.as_bytes())
}

pub(crate) fn decode_token(token: &str) -> S3Result<String> {
    URL_SAFE_NO_PAD
        .decode(token.trim().as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

/// `max-keys` (or max-uploads / max-parts): default and cap 1000, negative refused.
pub(crate) fn page_size(v: Option<i32>, what: &str) -> S3Result<usize> {
    match v {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(
            InvalidArgument,
            "{what} must be a non-negative integer"
        )),
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_KEYS).min(MAX_KEYS)),
    }
}

/// `encoding-type`: only `url` exists.
pub(crate) fn url_encoding(e: Option<&EncodingType>) -> S3Result<bool> {
    match e {
        None => Ok(false),
        Some(e) if e.as_str().eq_ignore_ascii_case(EncodingType::URL) => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

/// Applies `encoding-type=url` when asked.
#[derive(Clone, Copy)]
pub(crate) struct Enc(pub bool);

impl Enc {
    pub(crate) fn s(self, v: String) -> String {
        if self.0 {
            url_encode(&v)
        } else {
            v
        }
    }

    pub(crate) fn opt(self, v: Option<String>) -> Option<String> {
        v.map(|v| self.s(v))
    }

    pub(crate) fn prefixes(self, v: Vec<String>) -> Option<CommonPrefixList> {
        if v.is_empty() {
            return None;
        }
        Some(
            v.into_iter()
                .map(|p| CommonPrefix {
                    prefix: Some(self.s(p)),
                })
                .collect(),
        )
    }

    pub(crate) fn echo(self) -> Option<EncodingType> {
        self.0.then(|| EncodingType::from_static(EncodingType::URL))
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

fn object_entry(key: String, r: &ObjectRecord, enc: Enc, owner: Option<Owner>) -> Object {
    let sums = ChecksumFields::from_stored(r.checksum.as_ref());
    Object {
        key: Some(enc.s(key)),
        e_tag: Some(etag(&r.etag)),
        size: i64::try_from(r.size).ok(),
        last_modified: Some(ts(r.last_modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        checksum_algorithm: r.checksum.as_ref().map(|(a, _)| vec![to_dto(*a)]),
        checksum_type: sums.checksum_type,
        owner,
        ..Default::default()
    }
}

fn count_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) async fn list_objects_v2(
    s3: &CairnS3,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let read = consistency::read(&req.headers)?;
    let input = req.input;
    let enc = Enc(url_encoding(input.encoding_type.as_ref())?);
    let max_keys = page_size(input.max_keys, "max-keys")?;
    let prefix = input.prefix.unwrap_or_default();
    let delimiter = non_empty(input.delimiter);
    let start_after = non_empty(input.start_after);
    // The token wins over start-after; it is always past it. An empty token is no token: S3
    // lists from the start (and echoes the empty token back).
    let after = match input.continuation_token.as_deref() {
        Some(t) if !t.is_empty() => Some(decode_token(t)?),
        _ => start_after.clone(),
    };
    let query = ListQuery {
        prefix: prefix.clone(),
        delimiter: delimiter.clone(),
        after,
        max_keys,
    };
    let page = s3
        .objects()
        .list_objects_with(&input.bucket, &query, read)
        .await
        .s3()?;

    let owner = input.fetch_owner.unwrap_or(false).then(|| s3.owner());
    let key_count = page.objects.len() + page.common_prefixes.len();
    let next = if page.is_truncated {
        next_marker(&page).map(|m| encode_token(&m))
    } else {
        None
    };
    let contents: Vec<Object> = page
        .objects
        .into_iter()
        .map(|(k, r)| object_entry(k, &r, enc, owner.clone()))
        .collect();
    let output = ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(enc.s(prefix)),
        delimiter: enc.opt(delimiter),
        max_keys: Some(count_i32(max_keys)),
        key_count: Some(count_i32(key_count)),
        continuation_token: input.continuation_token,
        next_continuation_token: next,
        start_after: enc.opt(start_after),
        is_truncated: Some(page.is_truncated),
        contents: (!contents.is_empty()).then_some(contents),
        common_prefixes: enc.prefixes(page.common_prefixes),
        encoding_type: enc.echo(),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// Where the next page starts: the service's marker, or else the last entry returned.
fn next_marker(page: &cairn_object::ListPage) -> Option<String> {
    page.next_marker.clone().or_else(|| {
        let last_key = page.objects.last().map(|(k, _)| k.clone());
        let last_prefix = page.common_prefixes.last().cloned();
        last_key.max(last_prefix)
    })
}

pub(crate) async fn list_objects(
    s3: &CairnS3,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let read = consistency::read(&req.headers)?;
    let input = req.input;
    let enc = Enc(url_encoding(input.encoding_type.as_ref())?);
    let max_keys = page_size(input.max_keys, "max-keys")?;
    let prefix = input.prefix.unwrap_or_default();
    let delimiter = non_empty(input.delimiter);
    let marker = non_empty(input.marker);
    let query = ListQuery {
        prefix: prefix.clone(),
        delimiter: delimiter.clone(),
        after: marker.clone(),
        max_keys,
    };
    let page = s3
        .objects()
        .list_objects_with(&input.bucket, &query, read)
        .await
        .s3()?;

    // AWS returns NextMarker only when a delimiter was given; without one clients resume
    // from the last key.
    let next = if page.is_truncated && delimiter.is_some() {
        next_marker(&page)
    } else {
        None
    };
    let owner = Some(s3.owner());
    let contents: Vec<Object> = page
        .objects
        .into_iter()
        .map(|(k, r)| object_entry(k, &r, enc, owner.clone()))
        .collect();
    let output = ListObjectsOutput {
        name: Some(input.bucket),
        prefix: Some(enc.s(prefix)),
        delimiter: enc.opt(delimiter),
        marker: Some(enc.s(marker.unwrap_or_default())),
        next_marker: enc.opt(next),
        max_keys: Some(count_i32(max_keys)),
        is_truncated: Some(page.is_truncated),
        contents: (!contents.is_empty()).then_some(contents),
        common_prefixes: enc.prefixes(page.common_prefixes),
        encoding_type: enc.echo(),
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

pub(crate) async fn list_object_versions(
    s3: &CairnS3,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let read = consistency::read(&req.headers)?;
    let input = req.input;
    let enc = Enc(url_encoding(input.encoding_type.as_ref())?);
    let max_keys = page_size(input.max_keys, "max-keys")?;
    let prefix = input.prefix.unwrap_or_default();
    let delimiter = non_empty(input.delimiter);
    let key_marker = non_empty(input.key_marker);
    let version_id_marker = non_empty(input.version_id_marker);
    if version_id_marker.is_some() && key_marker.is_none() {
        return Err(s3_error!(
            InvalidArgument,
            "A version-id marker cannot be specified without a key marker."
        ));
    }
    let page = s3
        .objects()
        .list_versions(
            &input.bucket,
            &prefix,
            delimiter.as_deref(),
            key_marker.as_deref(),
            version_id_marker.as_deref(),
            max_keys,
            read,
        )
        .await
        .s3()?;
    let owner = s3.owner();
    let mut versions: Vec<ObjectVersion> = Vec::new();
    let mut markers: Vec<DeleteMarkerEntry> = Vec::new();
    for v in page.entries {
        match v.entry {
            VersionEntry::Object(r) => {
                let sums = ChecksumFields::from_stored(r.checksum.as_ref());
                versions.push(ObjectVersion {
                    key: Some(enc.s(v.key)),
                    version_id: Some(r.version_id().to_owned()),
                    is_latest: Some(v.is_latest),
                    e_tag: Some(etag(&r.etag)),
                    size: i64::try_from(r.size).ok(),
                    last_modified: Some(ts(r.last_modified_ms)),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        ObjectVersionStorageClass::STANDARD,
                    )),
                    checksum_algorithm: r.checksum.as_ref().map(|(a, _)| vec![to_dto(*a)]),
                    checksum_type: sums.checksum_type,
                    owner: Some(owner.clone()),
                    ..Default::default()
                });
            }
            VersionEntry::Marker(m) => markers.push(DeleteMarkerEntry {
                key: Some(enc.s(v.key)),
                version_id: Some(m.version_id().to_owned()),
                is_latest: Some(v.is_latest),
                last_modified: Some(ts(m.last_modified_ms)),
                owner: Some(owner.clone()),
            }),
        }
    }
    let output = ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(enc.s(prefix)),
        delimiter: enc.opt(delimiter),
        key_marker: Some(enc.s(key_marker.unwrap_or_default())),
        version_id_marker: Some(version_id_marker.unwrap_or_default()),
        next_version_id_marker: page.next_version_id_marker,
        next_key_marker: enc.opt(page.next_key_marker),
        max_keys: Some(count_i32(max_keys)),
        is_truncated: Some(page.truncated),
        versions: (!versions.is_empty()).then_some(versions),
        delete_markers: (!markers.is_empty()).then_some(markers),
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
    fn url_encoding_like_s3() {
        assert_eq!(url_encode("plain/key-1_2.txt"), "plain/key-1_2.txt");
        assert_eq!(url_encode("a b"), "a+b");
        assert_eq!(url_encode("a+b"), "a%2Bb");
        assert_eq!(url_encode("a//b"), "a//b");
        assert_eq!(url_encode("é"), "%C3%A9");
        assert_eq!(url_encode("日本"), "%E6%97%A5%E6%9C%AC");
        assert_eq!(url_encode("100%"), "100%25");
        assert_eq!(url_encode("q?x=1&y"), "q%3Fx%3D1%26y");
        assert_eq!(url_encode("\u{1}"), "%01");
        assert_eq!(url_encode(""), "");
    }

    #[test]
    fn enc_applies_only_when_asked() {
        assert_eq!(Enc(false).s("a b".into()), "a b");
        assert_eq!(Enc(true).s("a b".into()), "a+b");
        assert_eq!(Enc(true).opt(None), None);
        let p = Enc(true).prefixes(vec!["x y/".into()]).unwrap();
        assert_eq!(p[0].prefix.as_deref(), Some("x+y/"));
        assert!(Enc(true).prefixes(vec![]).is_none());
        assert_eq!(
            Enc(true).echo().as_ref().map(EncodingType::as_str),
            Some("url")
        );
        assert!(Enc(false).echo().is_none());
    }

    #[test]
    fn tokens_roundtrip() {
        for k in [
            "a",
            "dir/sub dir//file",
            "日本語/ファイル 1",
            "a+b=c&d",
            "\u{10FFFF}",
        ] {
            let t = encode_token(k);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{t}"
            );
            assert_eq!(decode_token(&t).unwrap(), k);
        }
        assert!(decode_token("!!!").is_err());
        assert!(decode_token("").is_err());
        // valid base64 of invalid UTF-8
        assert!(decode_token(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])).is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None, "max-keys").unwrap(), 1000);
        assert_eq!(page_size(Some(0), "max-keys").unwrap(), 0);
        assert_eq!(page_size(Some(5), "max-keys").unwrap(), 5);
        assert_eq!(page_size(Some(5000), "max-keys").unwrap(), 1000);
        assert!(page_size(Some(-1), "max-keys").is_err());
    }

    #[test]
    fn encoding_type_values() {
        assert!(!url_encoding(None).unwrap());
        assert!(url_encoding(Some(&EncodingType::from_static("url"))).unwrap());
        assert!(url_encoding(Some(&EncodingType::from_static("base64"))).is_err());
    }
}
