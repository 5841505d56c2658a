//! Object key rules, shared by every front end (S3, FileService), checked before anything
//! touches storage.
//!
//! S3 itself accepts almost any UTF-8 key up to 1024 bytes. We refuse a few more, on purpose:
//! control characters (they break XML listings and log lines) and `.` / `..` path segments,
//! which path-normalising clients and proxies silently rewrite (`a/../b` becomes `b`), so the
//! object a client wrote is not the one it later reads.

/// The longest key S3 allows, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why a key is refused; each front end words it in its own error form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    #[error("contains a control character")]
    ControlCharacter,
    #[error("contains a '.' or '..' path segment")]
    DotSegment,
}

/// Checks an object key against the rules above.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong);
    }
    if key.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(KeyError::ControlCharacter);
    }
    if key.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(KeyError::DotSegment);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        assert_eq!(check_key("a/b.c/..d/.e"), Ok(()));
        assert_eq!(check_key(""), Err(KeyError::Empty));
        assert_eq!(check_key(&"k".repeat(1025)), Err(KeyError::TooLong));
        assert_eq!(check_key(&"k".repeat(1024)), Ok(()));
        assert_eq!(check_key("a\nb"), Err(KeyError::ControlCharacter));
        assert_eq!(check_key("a\u{7f}"), Err(KeyError::ControlCharacter));
        for k in ["..", "a/../b", "./a", "a/."] {
            assert_eq!(check_key(k), Err(KeyError::DotSegment), "{k}");
        }
    }
}
