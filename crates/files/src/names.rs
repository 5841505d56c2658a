//! Bucket names, keys and metadata, checked before anything touches storage.
//!
//! The rules are the S3 front end's, so a name valid here is valid over S3 and the reverse:
//! bucket names as s3s checks them (plus the names S3 reserves, at creation), keys by the
//! shared `cairn_object::keys` rules.

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use cairn_object::keys::MAX_KEY_BYTES;
/// Largest total size of user metadata names and values, as in S3.
pub const MAX_USER_METADATA_BYTES: usize = 2048;
/// Longest Content-Type accepted.
const MAX_CONTENT_TYPE_BYTES: usize = 1024;

/// Checks the name of an existing bucket (S3's naming rules).
pub fn check_bucket(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid bucket name `{name}`: {why}"));
    if !(3..=63).contains(&name.len()) {
        return bad("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("only lower-case letters, digits, '.' and '-' are allowed");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return bad("must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return bad("must not contain '..'");
    }
    if name.parse::<IpAddr>().is_ok() {
        return bad("must not look like an IP address");
    }
    if name.starts_with("xn--") {
        return bad("the prefix 'xn--' is reserved");
    }
    Ok(())
}

/// Checks the name of a bucket about to be created: also refuses the names S3 reserves.
pub fn check_new_bucket(name: &str) -> Result<(), String> {
    check_bucket(name)?;
    let reserved = name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
        || name.ends_with(".mrap")
        || name.ends_with("--x-s3");
    if reserved {
        return Err(format!(
            "invalid bucket name `{name}`: this prefix or suffix is reserved"
        ));
    }
    Ok(())
}

/// Checks a file key: the object key rules every front end shares (`cairn_object::keys`).
pub fn check_key(key: &str) -> Result<(), String> {
    cairn_object::keys::check_key(key).map_err(|e| match e {
        cairn_object::keys::KeyError::Empty | cairn_object::keys::KeyError::TooLong => {
            format!("the file key {e}")
        }
        _ => format!("the file key {key:?} {e}"),
    })
}

/// Checks a listing prefix, start key or continuation token (any string a key could start with).
pub fn check_list_bound(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_KEY_BYTES {
        return Err(format!("{what} is longer than {MAX_KEY_BYTES} bytes"));
    }
    Ok(())
}

/// A value S3 can return as an HTTP header: visible ASCII, spaces and tabs.
fn header_safe(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// A metadata name S3 can return as `x-amz-meta-<name>`: an HTTP token.
fn token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a Content-Type and user metadata; returns the metadata with lower-cased names
/// (as S3 stores `x-amz-meta-*`).
pub fn check_headers<'a>(
    content_type: &str,
    metadata: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<BTreeMap<String, String>, String> {
    if content_type.len() > MAX_CONTENT_TYPE_BYTES || !header_safe(content_type) {
        return Err(format!(
            "content type {content_type:?} is not a valid header value (visible ASCII, at most {MAX_CONTENT_TYPE_BYTES} bytes)"
        ));
    }
    let mut out = BTreeMap::new();
    let mut total = 0usize;
    for (k, v) in metadata {
        if !token(k) {
            return Err(format!(
                "metadata name {k:?} is not valid: use letters, digits and -_."
            ));
        }
        if !header_safe(v) {
            return Err(format!(
                "metadata value of `{k}` must be visible ASCII (S3 returns it as a header)"
            ));
        }
        total += k.len() + v.len();
        if out.insert(k.to_ascii_lowercase(), v.clone()).is_some() {
            return Err(format!(
                "metadata name `{k}` is given twice (names are case-insensitive)"
            ));
        }
    }
    if total > MAX_USER_METADATA_BYTES {
        return Err(format!(
            "user metadata is {total} bytes; at most {MAX_USER_METADATA_BYTES} are allowed"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in ["abc", "my-bucket.1", "0aa", &"a".repeat(63)] {
            assert!(check_new_bucket(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Upper",
            "-ab",
            "ab-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "a_b",
            "a b",
            "a\nb",
        ] {
            assert!(check_bucket(bad).is_err(), "{bad:?}");
        }
        assert!(check_bucket("sthree-x").is_ok());
        assert!(check_new_bucket("sthree-x").is_err());
        assert!(check_new_bucket("x--x-s3").is_err());
    }

    #[test]
    fn keys_follow_the_s3_front_end() {
        for ok in [
            "a",
            "dir/f.txt",
            "a//b",
            "...",
            "héllo/日本",
            ".hidden",
            "trailing/",
        ] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        assert!(check_key(&"é".repeat(512)).is_ok());
        for bad in ["", "a\nb", "x\0", "../etc", "a/./b", "a/..", "del\x7f"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn metadata_is_lower_cased_and_bounded() {
        let m: BTreeMap<String, String> = [("Color".to_string(), "blue".to_string())].into();
        let out = check_headers("text/plain", &m).unwrap();
        assert_eq!(out.get("color").map(String::as_str), Some("blue"));
        let twice: BTreeMap<String, String> = [
            ("A".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ]
        .into();
        assert!(check_headers("", &twice).is_err());
        let big: BTreeMap<String, String> = [("k".to_string(), "v".repeat(2048))].into();
        assert!(check_headers("", &big).is_err());
        let bad: BTreeMap<String, String> = [("a b".to_string(), "v".to_string())].into();
        assert!(check_headers("", &bad).is_err());
        let nl: BTreeMap<String, String> = [("k".to_string(), "v\r\nx: y".to_string())].into();
        assert!(check_headers("", &nl).is_err());
        assert!(check_headers("text/plain\r\n", &BTreeMap::new()).is_err());
    }
}
