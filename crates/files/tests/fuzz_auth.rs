//! Property-based fuzzing of FileService call signing (`cairn_files::auth`, issue 10 item 8):
//! `x-cairn-date` parsing of arbitrary text, and sign → verify round trips that fail as soon
//! as any signed field, the date window or the signature changes.
//!
//! Budget: proptest's default (256 cases per property); longer runs:
//! `PROPTEST_CASES=100000 cargo test -p cairn-files --test fuzz_auth` (docs/TESTING.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_files::auth::{parse_date, Credentials, MAX_CLOCK_SKEW, SIGNATURE_HEADER};
use proptest::prelude::*;
use tonic::metadata::{MetadataMap, MetadataValue};

proptest! {
    #[test]
    fn fuzz_date_parses_or_errors(date in prop_oneof![
        "[0-9]{0,25}",
        "-?[0-9]{1,12}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "\\PC{0,40}",
    ]) {
        match parse_date(&date) {
            Ok(secs) => {
                if !date.is_empty() && date.bytes().all(|b| b.is_ascii_digit()) {
                    prop_assert_eq!(Some(secs), date.parse::<i64>().ok());
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("x-cairn-date")),
        }
    }

    #[test]
    fn fuzz_signatures_round_trip_and_bind_the_call(
        secret in "\\PC{1,40}",
        method in "[A-Za-z]{1,12}",
        bucket in "\\PC{0,20}",
        key in "\\PC{0,40}",
        other in "\\PC{0,20}",
        skew in -2000i64..2000,
        flip in any::<prop::sample::Index>(),
    ) {
        let creds = Credentials::new("AKFUZZ", &secret).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut md = MetadataMap::new();
        creds.authorize(&mut md, &method, &bucket, &key, now).unwrap();
        prop_assert!(creds.verify(&md, &method, &bucket, &key, now).is_ok());

        // The verifier's clock moved: accepted exactly within the window.
        let later = if skew >= 0 { now + Duration::from_secs(skew as u64) } else { now - Duration::from_secs(skew.unsigned_abs()) };
        prop_assert_eq!(
            creds.verify(&md, &method, &bucket, &key, later).is_ok(),
            skew.unsigned_abs() <= MAX_CLOCK_SKEW.as_secs()
        );
        // Another bucket or key is another call.
        if other != bucket {
            prop_assert!(creds.verify(&md, &method, &other, &key, now).is_err());
        }
        if other != key {
            prop_assert!(creds.verify(&md, &method, &bucket, &other, now).is_err());
        }
        // Any change to the signature is refused.
        let sig = md.get(SIGNATURE_HEADER).unwrap().to_str().unwrap().to_string();
        let i = flip.index(sig.len());
        let mut bad = sig.into_bytes();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        md.insert(SIGNATURE_HEADER, MetadataValue::try_from(String::from_utf8(bad).unwrap()).unwrap());
        prop_assert!(creds.verify(&md, &method, &bucket, &key, now).is_err());
        let _ = SystemTime::now();
    }
}
