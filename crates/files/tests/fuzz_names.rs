//! Property-based fuzzing of FileService's name and metadata rules (`cairn_files::names`,
//! issue 10 item 8): any text is accepted or refused with a message, never a panic, and the
//! answers agree with a direct reading of S3's rules.
//!
//! Budget: proptest's default (256 cases per property); longer runs:
//! `PROPTEST_CASES=100000 cargo test -p cairn-files --test fuzz_names` (docs/TESTING.md).

use std::collections::BTreeMap;

use cairn_files::names::{
    check_bucket, check_headers, check_key, check_list_bound, check_new_bucket, MAX_KEY_BYTES,
    MAX_USER_METADATA_BYTES,
};
use proptest::prelude::*;

fn bucket_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]",
        "[a-z0-9.-]{0,70}",
        "([0-9]{1,3}\\.){3}[0-9]{1,3}",
        "(xn--|sthree-)?[a-z0-9-]{1,10}(-s3alias|--ol-s3|\\.mrap|--x-s3)?",
        "\\PC{0,70}",
    ]
}

/// S3's bucket naming rules, as written in the AWS documentation.
fn naive_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !name.starts_with("xn--")
}

fn header_safe(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

proptest! {
    #[test]
    fn fuzz_bucket_names_follow_s3_rules(name in bucket_text()) {
        let ok = check_bucket(&name).is_ok();
        prop_assert_eq!(ok, naive_bucket(&name), "{:?}: {:?}", name, check_bucket(&name));
        if let Err(e) = check_bucket(&name) {
            prop_assert!(!e.is_empty());
        }
        // Creation is stricter, never looser.
        if check_new_bucket(&name).is_ok() {
            prop_assert!(ok);
        }
    }

    #[test]
    fn fuzz_keys_and_list_bounds_never_panic(key in prop_oneof![
        "\\PC{0,40}",
        ".{0,40}",
        proptest::collection::vec(any::<char>(), 0..40).prop_map(|c| c.into_iter().collect::<String>()),
        (1usize..2000).prop_map(|n| "k".repeat(n)),
    ]) {
        let r = check_key(&key);
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            prop_assert!(r.is_err());
        }
        if let Err(e) = r {
            prop_assert!(!e.is_empty());
        }
        prop_assert_eq!(check_list_bound("prefix", &key).is_ok(), key.len() <= MAX_KEY_BYTES);
    }

    #[test]
    fn fuzz_headers_and_metadata(
        content_type in prop_oneof!["[ -~]{0,40}", "\\PC{0,20}", Just("a".repeat(1100))],
        meta in proptest::collection::vec((prop_oneof!["[A-Za-z0-9_.-]{1,12}", "\\PC{0,8}"], prop_oneof!["[ -~]{0,200}", "\\PC{0,8}"]), 0..12),
    ) {
        let map: BTreeMap<String, String> = meta.into_iter().collect();
        match check_headers(&content_type, &map) {
            Ok(out) => {
                prop_assert!(content_type.len() <= 1024 && header_safe(&content_type));
                // Names come back lower-cased, one entry each, values untouched.
                prop_assert_eq!(out.len(), map.len());
                for (k, v) in &map {
                    prop_assert_eq!(out.get(&k.to_ascii_lowercase()), Some(v));
                    prop_assert!(header_safe(v));
                }
                let total: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
                prop_assert!(total <= MAX_USER_METADATA_BYTES);
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }
}
