//! GetObjectAttributes: ETag, Checksum, ObjectParts, StorageClass and ObjectSize of an object
//! from its record alone (no data is read).

use cairn_object::ObjectRecord;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use crate::checksum::ChecksumFields;
use crate::error::ObjectResultExt;
use crate::object::{check_version_id, ts};
use crate::validate::validate_key;
use crate::CairnS3;

/// Which attributes the request asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub etag: bool,
    pub checksum: bool,
    pub parts: bool,
    pub storage_class: bool,
    pub size: bool,
}

/// Parses `x-amz-object-attributes` (s3s splits it on commas); InvalidArgument for a name S3
/// does not know or an empty list.
pub(crate) fn wanted(list: &[ObjectAttributes]) -> S3Result<Wanted> {
    let mut w = Wanted::default();
    for a in list {
        // A header value "ETag, Checksum" may reach us as one element.
        for name in a
            .as_str()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            match name {
                ObjectAttributes::ETAG => w.etag = true,
                ObjectAttributes::CHECKSUM => w.checksum = true,
                ObjectAttributes::OBJECT_PARTS => w.parts = true,
                ObjectAttributes::STORAGE_CLASS => w.storage_class = true,
                ObjectAttributes::OBJECT_SIZE => w.size = true,
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Invalid attribute name specified."
                    ))
                }
            }
        }
    }
    if w == Wanted::default() {
        return Err(s3_error!(
            InvalidArgument,
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty"
        ));
    }
    Ok(w)
}

/// ObjectParts of a multipart object: parts numbered from 1 in object order, after `marker`,
/// at most `max` of them. None for an object that was not uploaded in parts.
pub(crate) fn parts_page(
    record: &ObjectRecord,
    marker: u32,
    max: usize,
) -> Option<GetObjectAttributesParts> {
    let sizes = record.parts.as_ref()?;
    let algo = record.checksum.as_ref().map(|(a, _)| *a);
    let checksums = record.part_checksums.as_deref().unwrap_or_default();
    let total = sizes.len();
    let start = usize::try_from(marker).unwrap_or(usize::MAX).min(total);
    let end = start.saturating_add(max).min(total);
    let parts: Vec<ObjectPart> = (start..end)
        .map(|i| {
            let stored = match (algo, checksums.get(i)) {
                (Some(a), Some(v)) => Some((a, v.clone())),
                _ => None,
            };
            let sums = ChecksumFields::from_stored(stored.as_ref());
            ObjectPart {
                part_number: i32::try_from(i + 1).ok(),
                size: i64::try_from(sizes[i]).ok(),
                checksum_crc32: sums.crc32,
                checksum_crc32c: sums.crc32c,
                checksum_crc64nvme: sums.crc64nvme,
                checksum_sha1: sums.sha1,
                checksum_sha256: sums.sha256,
            }
        })
        .collect();
    let truncated = end < total;
    Some(GetObjectAttributesParts {
        total_parts_count: i32::try_from(total).ok(),
        part_number_marker: i32::try_from(marker).ok(),
        next_part_number_marker: if truncated {
            i32::try_from(end).ok()
        } else {
            None
        },
        max_parts: i32::try_from(max).ok(),
        is_truncated: Some(truncated),
        parts: (!parts.is_empty()).then_some(parts),
    })
}

/// The checksum of part `part_number` (1-based, in object order) of a checksummed multipart
/// object, without a checksum type.
pub(crate) fn part_checksum(
    record: &ObjectRecord,
    part_number: Option<i32>,
) -> Option<ChecksumFields> {
    let i = usize::try_from(part_number?).ok()?.checked_sub(1)?;
    let (algo, _) = record.checksum.as_ref()?;
    let value = record.part_checksums.as_ref()?.get(i)?;
    let mut f = ChecksumFields::from_stored(Some(&(*algo, value.clone())));
    f.checksum_type = None;
    Some(f)
}

pub(crate) async fn get_object_attributes(
    s3: &CairnS3,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    validate_key(&input.key)?;
    check_version_id(input.version_id.as_deref())?;
    let want = wanted(&input.object_attributes)?;
    let max = match input.max_parts {
        None => 1000,
        Some(n) => usize::try_from(n)
            .map_err(|_| s3_error!(InvalidArgument, "max-parts must be a non-negative integer"))?
            .min(1000),
    };
    let marker = match input.part_number_marker {
        None => 0,
        Some(n) => u32::try_from(n).map_err(|_| {
            s3_error!(
                InvalidArgument,
                "part-number-marker must be a non-negative integer"
            )
        })?,
    };
    let record = s3
        .objects()
        .head_object(&input.bucket, &input.key)
        .await
        .s3()?;
    let checksum = if want.checksum {
        record.checksum.as_ref().map(|stored| {
            let f = ChecksumFields::from_stored(Some(stored));
            Checksum {
                checksum_crc32: f.crc32,
                checksum_crc32c: f.crc32c,
                checksum_crc64nvme: f.crc64nvme,
                checksum_sha1: f.sha1,
                checksum_sha256: f.sha256,
                checksum_type: f.checksum_type,
            }
        })
    } else {
        None
    };
    let output = GetObjectAttributesOutput {
        e_tag: want.etag.then(|| ETag::Strong(record.etag.clone())),
        checksum,
        object_parts: if want.parts {
            parts_page(&record, marker, max)
        } else {
            None
        },
        storage_class: want
            .storage_class
            .then(|| StorageClass::from_static(StorageClass::STANDARD)),
        object_size: if want.size {
            i64::try_from(record.size).ok()
        } else {
            None
        },
        last_modified: Some(ts(record.last_modified_ms)),
        // One version per key, named `null` as S3 names versions of unversioned objects: no
        // version id header (AWS sends none for unversioned buckets).
        version_id: None,
        ..Default::default()
    };
    Ok(S3Response::new(output))
}

/// AWS writes GetObjectAttributes' ETag without quotes (unlike every other response); s3s
/// quotes every ETag, so the listener unquotes this one in the finished XML.
pub(crate) fn unquote_etag(resp: &mut http::Response<s3s::Body>) {
    if !resp.status().is_success() {
        return;
    }
    let Some(body) = resp.body().bytes() else {
        return;
    };
    let Ok(xml) = std::str::from_utf8(&body) else {
        return;
    };
    let new = unquoted(xml);
    if new.len() == xml.len() {
        return;
    }
    let len = new.len();
    *resp.body_mut() = s3s::Body::from(new);
    if let Ok(v) = http::HeaderValue::from_str(&len.to_string()) {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
}

fn unquoted(xml: &str) -> String {
    xml.replacen("<ETag>&quot;", "<ETag>", 1)
        .replacen("&quot;</ETag>", "</ETag>", 1)
        .replacen("<ETag>\"", "<ETag>", 1)
        .replacen("\"</ETag>", "</ETag>", 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_object::{ChecksumAlgo, ObjectData, ObjectHeaders};

    fn record(parts: Option<Vec<u64>>, sums: Option<Vec<String>>) -> ObjectRecord {
        ObjectRecord {
            encryption: None,
            lock: None,
            versioned: false,
            version: "v".into(),
            size: parts.as_ref().map_or(3, |p| p.iter().sum()),
            etag: "e".into(),
            last_modified_ms: 0,
            headers: ObjectHeaders::default(),
            checksum: sums
                .as_ref()
                .map(|_| (ChecksumAlgo::Crc32, "AAAAAA==-3".into())),
            parts,
            data: ObjectData::Inline(Vec::new()),
            part_checksums: sums,
        }
    }

    #[test]
    fn attribute_names() {
        let l = |v: &[&'static str]| -> Vec<ObjectAttributes> {
            v.iter().map(|s| ObjectAttributes::from_static(s)).collect()
        };
        let w = wanted(&l(&["ETag", "ObjectSize"])).unwrap();
        assert!(w.etag && w.size && !w.checksum && !w.parts && !w.storage_class);
        let w = wanted(&l(&["Checksum,ObjectParts, StorageClass"])).unwrap();
        assert!(w.checksum && w.parts && w.storage_class);
        assert!(wanted(&l(&["ETag", "Bogus"])).is_err());
        assert!(wanted(&l(&[])).is_err());
        assert!(
            wanted(&l(&["etag"])).is_err(),
            "names are case-sensitive in S3"
        );
    }

    #[test]
    fn parts_paging() {
        assert!(parts_page(&record(None, None), 0, 10).is_none());
        let sums: Vec<String> = ["AAAAAQ==", "AAAAAg==", "AAAAAw=="]
            .map(String::from)
            .into();
        let r = record(Some(vec![5, 6, 7]), Some(sums));
        let p = parts_page(&r, 0, 2).unwrap();
        assert_eq!(p.total_parts_count, Some(3));
        assert_eq!(p.is_truncated, Some(true));
        assert_eq!(p.next_part_number_marker, Some(2));
        let parts = p.parts.unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].part_number, Some(2));
        assert_eq!(parts[1].size, Some(6));
        assert_eq!(parts[1].checksum_crc32.as_deref(), Some("AAAAAg=="));
        let p = parts_page(&r, 2, 2).unwrap();
        assert_eq!(p.is_truncated, Some(false));
        assert_eq!(p.next_part_number_marker, None);
        assert_eq!(p.parts.unwrap()[0].part_number, Some(3));
        let p = parts_page(&r, 9, 2).unwrap();
        assert!(p.parts.is_none());
    }

    #[test]
    fn etag_unquoted() {
        assert_eq!(
            unquoted("<A><ETag>\"ab\"</ETag></A>"),
            "<A><ETag>ab</ETag></A>"
        );
        assert_eq!(
            unquoted("<A><ETag>&quot;ab&quot;</ETag></A>"),
            "<A><ETag>ab</ETag></A>"
        );
        assert_eq!(
            unquoted("<A><ObjectSize>3</ObjectSize></A>"),
            "<A><ObjectSize>3</ObjectSize></A>"
        );
    }
}
