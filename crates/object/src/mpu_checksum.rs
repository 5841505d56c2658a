//! The checksum of a completed multipart object, derived from its parts' checksums (no data is
//! re-read at completion):
//! - COMPOSITE: the algorithm over the concatenated binary part checksums, written
//!   `<base64>-<parts>` (all algorithms but CRC64NVME).
//! - FULL_OBJECT: the CRC of the whole object (CRC algorithms only), folded from the part CRCs
//!   with CRC combine math (`crc_fast::checksum_combine`, O(log len) per part), so completing a
//!   10 000-part upload costs microseconds instead of a second pass over the data.
//!
//! Also the rules AWS applies when the upload is created and completed.

use base64::Engine as _;

use cairn_meta::model::{ChecksumAlgo, ChecksumKind};

use crate::digest::ChecksumHasher;
use crate::ObjectError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What CompleteMultipartUpload says about checksums, beyond the part ETags.
#[derive(Clone, Debug, Default)]
pub struct CompleteChecksums {
    /// The part checksums the client listed, parallel to the part specs (None: not listed).
    pub parts: Vec<Option<(ChecksumAlgo, String)>>,
    /// `x-amz-checksum-type` of the complete request.
    pub kind: Option<ChecksumKind>,
    /// The object checksum the client claims (`x-amz-checksum-<algo>` on the request).
    pub whole: Option<(ChecksumAlgo, String)>,
    /// `x-amz-mp-object-size`: the object size the client expects.
    pub object_size: Option<u64>,
}

/// Lower-case algorithm name, as AWS writes it in its error messages.
pub fn algo_lower(algo: ChecksumAlgo) -> &'static str {
    match algo {
        ChecksumAlgo::Crc32 => "crc32",
        ChecksumAlgo::Crc32c => "crc32c",
        ChecksumAlgo::Crc64Nvme => "crc64nvme",
        ChecksumAlgo::Sha1 => "sha1",
        ChecksumAlgo::Sha256 => "sha256",
    }
}

fn kind_name(kind: ChecksumKind) -> &'static str {
    match kind {
        ChecksumKind::Composite => "COMPOSITE",
        ChecksumKind::FullObject => "FULL_OBJECT",
    }
}

/// The checksum type of a new upload: AWS's default for the algorithm when none is given,
/// and InvalidRequest for combinations it refuses (CRC64NVME is full-object only, SHA
/// algorithms composite only, a type needs an algorithm).
pub fn upload_kind(
    algo: Option<ChecksumAlgo>,
    kind: Option<ChecksumKind>,
) -> Result<Option<ChecksumKind>, ObjectError> {
    let Some(algo) = algo else {
        return match kind {
            None => Ok(None),
            Some(_) => Err(ObjectError::InvalidRequest(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
                    .into(),
            )),
        };
    };
    let default = match algo {
        ChecksumAlgo::Crc64Nvme => ChecksumKind::FullObject,
        _ => ChecksumKind::Composite,
    };
    let kind = kind.unwrap_or(default);
    let allowed = match algo {
        ChecksumAlgo::Crc64Nvme => kind == ChecksumKind::FullObject,
        ChecksumAlgo::Sha1 | ChecksumAlgo::Sha256 => kind == ChecksumKind::Composite,
        ChecksumAlgo::Crc32 | ChecksumAlgo::Crc32c => true,
    };
    if !allowed {
        return Err(ObjectError::InvalidRequest(format!(
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            kind_name(kind),
            algo_lower(algo)
        )));
    }
    Ok(Some(kind))
}

fn decode(value: &str) -> Result<Vec<u8>, ObjectError> {
    B64.decode(value)
        .map_err(|e| ObjectError::Storage(format!("stored part checksum is not base64: {e}")))
}

/// COMPOSITE: `algo(c_1 || ... || c_n)` in base64, with the `-n` suffix.
pub fn composite(algo: ChecksumAlgo, parts: &[&str]) -> Result<String, ObjectError> {
    let mut h = ChecksumHasher::new(algo);
    for p in parts {
        h.update(&decode(p)?);
    }
    Ok(format!("{}-{}", h.finish().1, parts.len()))
}

/// FULL_OBJECT: the CRC of the concatenated parts, from `(part CRC, part length)` pairs.
pub fn full_object(algo: ChecksumAlgo, parts: &[(&str, u64)]) -> Result<String, ObjectError> {
    use crc_fast::CrcAlgorithm;
    let (crc_algo, width) = match algo {
        ChecksumAlgo::Crc32 => (CrcAlgorithm::Crc32IsoHdlc, 4),
        ChecksumAlgo::Crc32c => (CrcAlgorithm::Crc32Iscsi, 4),
        ChecksumAlgo::Crc64Nvme => (CrcAlgorithm::Crc64Nvme, 8),
        ChecksumAlgo::Sha1 | ChecksumAlgo::Sha256 => {
            return Err(ObjectError::InvalidRequest(format!(
                "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
                algo_lower(algo)
            )))
        }
    };
    let mut acc: Option<u64> = None;
    for (value, len) in parts {
        let bytes = decode(value)?;
        if bytes.len() != width {
            return Err(ObjectError::Storage(format!(
                "stored part {} checksum has {} bytes",
                algo_lower(algo),
                bytes.len()
            )));
        }
        let crc = bytes.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
        acc = Some(match acc {
            None => crc,
            Some(a) => crc_fast::checksum_combine(crc_algo, a, crc, *len),
        });
    }
    // No parts: the CRC of nothing (Complete refuses an empty part list before this).
    let v = match acc {
        Some(v) => v,
        None => {
            let mut h = ChecksumHasher::new(algo);
            h.update(&[]);
            return Ok(h.finish().1);
        }
    };
    Ok(if width == 8 {
        B64.encode(v.to_be_bytes())
    } else {
        B64.encode((v as u32).to_be_bytes())
    })
}

/// Whether the object checksum a client claims at completion matches ours. A composite claim
/// may come with or without its `-n` suffix.
pub fn claim_matches(claimed: &str, computed: &str) -> bool {
    let strip = |s: &str| s.split_once('-').map_or(s, |(v, _)| v).to_owned();
    match (claimed.contains('-'), computed.contains('-')) {
        (true, true) | (false, false) => claimed == computed,
        (false, true) => claimed == strip(computed),
        (true, false) => false,
    }
}

/// The AWS refusal of a complete request that omits a part checksum of a composite upload.
pub fn missing_part_checksum(algo: ChecksumAlgo, part_number: u32) -> ObjectError {
    ObjectError::InvalidRequest(format!(
        "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {part_number} in the request.",
        algo_lower(algo)
    ))
}

/// The AWS refusal of a complete request whose checksum type differs from the upload's.
pub fn kind_mismatch(kind: ChecksumKind) -> ObjectError {
    ObjectError::InvalidRequest(format!(
        "The upload was created using the {} checksum mode. The complete request must use the same checksum mode.",
        kind_name(kind)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn whole(algo: ChecksumAlgo, data: &[u8]) -> String {
        let mut h = ChecksumHasher::new(algo);
        h.update(data);
        h.finish().1
    }

    const CRCS: [ChecksumAlgo; 3] = [
        ChecksumAlgo::Crc32,
        ChecksumAlgo::Crc32c,
        ChecksumAlgo::Crc64Nvme,
    ];

    #[test]
    fn full_object_equals_whole_buffer_crc() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for algo in CRCS {
            let cuts = [0usize, 1, 4096, 4097, 50_000, 99_999, 100_000];
            let parts: Vec<(String, u64)> = cuts
                .windows(2)
                .map(|w| (whole(algo, &data[w[0]..w[1]]), (w[1] - w[0]) as u64))
                .collect();
            let refs: Vec<(&str, u64)> = parts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            assert_eq!(
                full_object(algo, &refs).unwrap(),
                whole(algo, &data),
                "{algo:?}"
            );
        }
    }

    #[test]
    fn composite_is_checksum_of_binary_part_checksums() {
        for algo in [
            ChecksumAlgo::Sha256,
            ChecksumAlgo::Sha1,
            ChecksumAlgo::Crc32,
        ] {
            let a = whole(algo, b"part one");
            let b = whole(algo, b"part two");
            let mut cat = B64.decode(&a).unwrap();
            cat.extend(B64.decode(&b).unwrap());
            let expected = format!("{}-2", whole(algo, &cat));
            assert_eq!(composite(algo, &[&a, &b]).unwrap(), expected);
        }
    }

    #[test]
    fn known_composite_vector() {
        // crc32("hello world") = DUoRhQ== (0x0d4a1185); the composite of one such part is the
        // crc32 of those four bytes.
        let v = composite(ChecksumAlgo::Crc32, &["DUoRhQ=="]).unwrap();
        assert_eq!(
            v,
            format!(
                "{}-1",
                whole(ChecksumAlgo::Crc32, &[0x0d, 0x4a, 0x11, 0x85])
            )
        );
    }

    #[test]
    fn kinds_as_aws() {
        use ChecksumAlgo::*;
        use ChecksumKind::*;
        assert_eq!(upload_kind(None, None).unwrap(), None);
        assert!(upload_kind(None, Some(Composite)).is_err());
        assert_eq!(
            upload_kind(Some(Crc64Nvme), None).unwrap(),
            Some(FullObject)
        );
        assert!(upload_kind(Some(Crc64Nvme), Some(Composite)).is_err());
        assert_eq!(upload_kind(Some(Crc32), None).unwrap(), Some(Composite));
        assert_eq!(
            upload_kind(Some(Crc32c), Some(FullObject)).unwrap(),
            Some(FullObject)
        );
        assert!(upload_kind(Some(Sha256), Some(FullObject)).is_err());
        assert!(full_object(Sha1, &[("AAAA", 1)]).is_err());
    }

    #[test]
    fn claims() {
        assert!(claim_matches("abc=-3", "abc=-3"));
        assert!(claim_matches("abc=", "abc=-3"));
        assert!(!claim_matches("abd=", "abc=-3"));
        assert!(!claim_matches("abc=-3", "abc="));
        assert!(claim_matches("abc=", "abc="));
    }

    proptest! {
        #[test]
        fn combine_matches_whole_for_any_split(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            mut cuts in proptest::collection::vec(0usize..3000, 0..6),
        ) {
            cuts.retain(|c| *c <= data.len());
            cuts.push(0);
            cuts.push(data.len());
            cuts.sort_unstable();
            for algo in CRCS {
                let parts: Vec<(String, u64)> = cuts
                    .windows(2)
                    .map(|w| (whole(algo, &data[w[0]..w[1]]), (w[1] - w[0]) as u64))
                    .collect();
                let refs: Vec<(&str, u64)> = parts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                prop_assert_eq!(full_object(algo, &refs).unwrap(), whole(algo, &data));
            }
        }
    }
}
