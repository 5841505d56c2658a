//! Object key checks of the S3 front end: the shared rules (`cairn_object::keys`) answered as
//! S3 errors.

use cairn_object::keys::{check_key, KeyError};
use s3s::{s3_error, S3Error};

/// Checks an object key; the error is the S3 error to answer with.
pub(crate) fn validate_key(key: &str) -> Result<(), S3Error> {
    match check_key(key) {
        Ok(()) => Ok(()),
        Err(KeyError::TooLong) => Err(s3_error!(KeyTooLongError, "Your key is too long")),
        Err(e) => Err(s3_error!(InvalidArgument, "object key {e}")),
    }
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
