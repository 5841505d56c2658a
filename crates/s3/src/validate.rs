//! Object key rules, checked before anything touches storage.
//!
//! S3 itself accepts almost any UTF-8 key up to 1024 bytes. We refuse a few more, on purpose:
//! control characters (they break XML listings and log lines) and `.` / `..` path segments,
//! which path-normalising clients and proxies silently rewrite (`a/../b` becomes `b`), so the
//! object a client wrote is not the one it later reads.

use s3s::{s3_error, S3Error};

/// The longest key S3 allows, in bytes of UTF-8.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// Checks an object key; the error is the S3 error to answer with.
pub(crate) fn validate_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "object key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(KeyTooLongError, "Your key is too long"));
    }
    if key.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(s3_error!(
            InvalidArgument,
            "object key contains a control character"
        ));
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(s3_error!(
            InvalidArgument,
            "object key contains a '.' or '..' path segment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    fn code(key: &str) -> Option<S3ErrorCode> {
        validate_key(key).err().map(|e| e.code().clone())
    }

    #[test]
    fn accepts_ordinary_keys() {
        for k in [
            "a",
            "dir/file.txt",
            "a//b///c",
            "/leading",
            "trailing/",
            "héllo wörld/日本語 ファイル",
            "...",
            "a/.../b",
            ".hidden",
            "a/.b/c..",
            "with space",
            "emoji 🎉",
        ] {
            assert_eq!(code(k), None, "{k:?}");
        }
        assert_eq!(code(&"x".repeat(1024)), None);
        // 1024 bytes of multi-byte characters is fine, 1025 is not
        assert_eq!(code(&"é".repeat(512)), None);
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(code(""), Some(S3ErrorCode::InvalidArgument));
        assert_eq!(code(&"x".repeat(1025)), Some(S3ErrorCode::KeyTooLongError));
        assert_eq!(
            code(&format!("{}x", "é".repeat(512))),
            Some(S3ErrorCode::KeyTooLongError)
        );
        for k in ["a\0b", "a\nb", "tab\there", "del\x7f", "\r"] {
            assert_eq!(code(k), Some(S3ErrorCode::InvalidArgument), "{k:?}");
        }
        for k in [
            "../../etc/passwd",
            ".",
            "..",
            "a/./b",
            "a/../b",
            "a/..",
            "./a",
            "a/.",
        ] {
            assert_eq!(code(k), Some(S3ErrorCode::InvalidArgument), "{k:?}");
        }
        let e = validate_key("a/../b").unwrap_err();
        assert_eq!(
            e.message(),
            Some("object key contains a '.' or '..' path segment")
        );
    }
}
