//! Property-based fuzzing of the S3 front end's own parsers (issue 10 item 8): `Range` and
//! `partNumber` resolution, `x-amz-copy-source-range`, and the checksum / `Content-MD5` /
//! `x-amz-trailer` headers. Properties: arbitrary input never panics, and answers agree with
//! a naive reference model.
//!
//! Budget: proptest's default (256 cases per property, well under a second each); longer
//! runs: `PROPTEST_CASES=100000 cargo test -p cairn-s3 fuzz_` (see docs/TESTING.md).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cairn_object::{ChecksumAlgo, ObjectData, ObjectHeaders, ObjectRecord};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use s3s::dto::Range;

use crate::checksum::{header_name, parse_request, ALL};
use crate::copy::parse_copy_range;
use crate::object::resolve_range;

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

/// RFC 7233 single byte range, written out the obvious way: `[start, end)` or unsatisfiable.
fn naive_range(spec: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let spec = spec.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    if a.is_empty() {
        // s3s reads an empty suffix length (`bytes=-`) as 0, so it is unsatisfiable (416)
        // rather than ignored; harmless, and the model follows it.
        let n = if b.is_empty() { 0 } else { num(b)? };
        return Some((n > 0 && size > 0).then(|| (size - n.min(size), size)));
    }
    let first = num(a)?;
    let last = if b.is_empty() { None } else { Some(num(b)?) };
    if first > i64::MAX as u64 || last.is_some_and(|l| l > i64::MAX as u64 || l < first) {
        return None;
    }
    if first >= size {
        return Some(None);
    }
    let end = last.map_or(size, |l| l.min(size - 1) + 1);
    Some(Some((first, end)))
}

/// Range header values: mostly well-formed, with digits of every size and random junk mixed in.
fn range_header() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        (0u64..300).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{0,25}",
    ];
    prop_oneof![
        (num.clone(), num.clone()).prop_map(|(a, b)| format!("bytes={a}-{b}")),
        num.clone().prop_map(|a| format!("bytes={a}-")),
        num.clone().prop_map(|b| format!("bytes=-{b}")),
        "bytes=[0-9, ;=-]{0,20}",
        ".{0,40}",
    ]
}

/// A header value (visible ASCII and spaces), anything from empty to odd base64.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,60}",
        "[A-Za-z0-9+/=]{0,64}",
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| B64.encode(b)),
    ]
}

fn algo() -> impl Strategy<Value = ChecksumAlgo> {
    (0..ALL.len()).prop_map(|i| ALL[i])
}

fn digest_len(algo: ChecksumAlgo) -> usize {
    match algo {
        ChecksumAlgo::Crc32 | ChecksumAlgo::Crc32c => 4,
        ChecksumAlgo::Crc64Nvme => 8,
        ChecksumAlgo::Sha1 => 20,
        ChecksumAlgo::Sha256 => 32,
    }
}

const CHECKSUM_HEADERS: &[&str] = &[
    "content-md5",
    "x-amz-checksum-algorithm",
    "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-trailer",
];

proptest! {
    #[test]
    fn fuzz_range_matches_the_naive_model(spec in range_header(), size in prop_oneof![0u64..400, any::<u64>()]) {
        let parsed = Range::parse(&spec);
        let naive = naive_range(&spec, size);
        match parsed {
            Err(_) => prop_assert!(naive.is_none(), "{spec:?} refused, model: {naive:?}"),
            Ok(r) => {
                let got = resolve_range(Some(&r), None, &record(size, None));
                let want = naive.unwrap_or_else(|| panic!("{spec:?} parsed but the model refuses it"));
                match (got, want) {
                    (Ok(Some(g)), Some(w)) => prop_assert_eq!(g, w),
                    (Err(e), None) => prop_assert_eq!(e.code().as_str(), "InvalidRange"),
                    (g, w) => prop_assert!(false, "{spec:?} size {size}: got {g:?}, model {w:?}"),
                }
            }
        }
    }

    #[test]
    fn fuzz_part_number_selects_the_part(
        sizes in proptest::collection::vec(0u64..(5 << 30), 0..40),
        n in any::<i32>(),
        multipart in any::<bool>(),
    ) {
        let total: u64 = sizes.iter().sum();
        let parts = multipart.then(|| sizes.clone());
        let got = resolve_range(None, Some(n), &record(total, parts));
        let want = if !(1..=10_000).contains(&n) {
            None
        } else if multipart {
            let i = (n - 1) as usize;
            sizes.get(i).map(|len| {
                let start: u64 = sizes[..i].iter().sum();
                Some((start, start + len))
            })
        } else if n == 1 {
            Some((total > 0).then_some((0, total)))
        } else {
            None
        };
        match (got, want) {
            (Ok(g), Some(w)) => prop_assert_eq!(g, w),
            (Err(_), None) => {}
            (g, w) => prop_assert!(false, "part {n} of {sizes:?}: got {g:?}, model {w:?}"),
        }
    }

    #[test]
    fn fuzz_copy_range_matches_the_naive_model(spec in range_header(), size in prop_oneof![0u64..400, any::<u64>()]) {
        let got = parse_copy_range(&spec, size).ok();
        // Inclusive, both ends required, surrounding whitespace ignored.
        let want = spec.trim().strip_prefix("bytes=").and_then(|s| s.split_once('-')).and_then(|(a, b)| {
            let digits = |v: &str| !v.is_empty() && v.bytes().all(|c| c.is_ascii_digit());
            if !digits(a) || !digits(b) {
                return None;
            }
            let (first, last) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
            (first <= last && last < size).then(|| (first, last + 1))
        });
        prop_assert_eq!(got, want);
    }

    #[test]
    fn fuzz_checksum_headers_never_panic(
        pairs in proptest::collection::vec((0..CHECKSUM_HEADERS.len(), header_text()), 0..5),
    ) {
        let mut h = HeaderMap::new();
        for (i, v) in &pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(HeaderName::from_static(CHECKSUM_HEADERS[*i]), v);
            }
        }
        if let Ok(r) = parse_request(&h) {
            // Whatever is accepted is self-consistent.
            if let Some(expected) = &r.expected {
                let algo = r.algo.expect("a checksum value always names its algorithm");
                prop_assert_eq!(expected.len(), digest_len(algo));
                prop_assert!(!r.in_trailer);
            }
            if r.in_trailer {
                prop_assert!(r.algo.is_some());
            }
        }
    }

    #[test]
    fn fuzz_checksum_value_round_trips(algo in algo(), bytes in proptest::collection::vec(any::<u8>(), 0..40), spaces in 0usize..3) {
        let mut h = HeaderMap::new();
        let value = format!("{}{}", " ".repeat(spaces), B64.encode(&bytes));
        h.insert(header_name(algo), HeaderValue::from_str(&value).unwrap());
        let r = parse_request(&h);
        if bytes.len() == digest_len(algo) {
            let r = r.unwrap();
            prop_assert_eq!(r.algo, Some(algo));
            prop_assert_eq!(r.expected, Some(bytes));
        } else {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn fuzz_trailer_names_pick_one_algorithm(names in proptest::collection::vec(prop_oneof![
        algo().prop_map(|a| header_name(a).to_ascii_uppercase()),
        algo().prop_map(|a| header_name(a).to_string()),
        "[a-z-]{0,20}",
    ], 0..4)) {
        let mut h = HeaderMap::new();
        let value = names.join(", ");
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert("x-amz-trailer", v);
        }
        let named: Vec<ChecksumAlgo> = names
            .iter()
            .filter_map(|n| ALL.into_iter().find(|a| header_name(*a).eq_ignore_ascii_case(n.trim())))
            .collect();
        match parse_request(&h) {
            Ok(r) => {
                prop_assert!(named.len() <= 1, "{value:?} accepted with {named:?}");
                prop_assert_eq!(r.algo, named.first().copied());
                prop_assert_eq!(r.in_trailer, !named.is_empty());
            }
            Err(_) => prop_assert!(named.len() > 1, "{value:?} refused"),
        }
    }
}
