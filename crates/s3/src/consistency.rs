//! Cairn's consistency headers (not part of S3; SigV4 clients sign them like any header):
//! - `x-cairn-write-consistency: ONE|QUORUM|ALL` on PutObject / UploadPart: replicas that must
//!   hold the chunks before the write is acknowledged; on CreateBucket: the bucket's default.
//! - `x-cairn-read-consistency: linearizable|stale` on GetObject / HeadObject / ListObjects:
//!   `stale` lets the receiving node answer from its own replica without asking the leader.

use cairn_object::{ReadConsistency, WriteConsistency};
use http::HeaderMap;
use s3s::{s3_error, S3Result};

pub(crate) const WRITE_HEADER: &str = "x-cairn-write-consistency";
pub(crate) const READ_HEADER: &str = "x-cairn-read-consistency";

/// The write consistency the request asks for, if any.
pub(crate) fn write(headers: &HeaderMap) -> S3Result<Option<WriteConsistency>> {
    let Some(v) = headers.get(WRITE_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(WriteConsistency::parse)
        .map(Some)
        .ok_or_else(|| s3_error!(InvalidArgument, "{WRITE_HEADER} must be ONE, QUORUM or ALL"))
}

/// The read consistency the request asks for (linearizable unless it says `stale`).
pub(crate) fn read(headers: &HeaderMap) -> S3Result<ReadConsistency> {
    let Some(v) = headers.get(READ_HEADER) else {
        return Ok(ReadConsistency::Linearizable);
    };
    match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Ok("linearizable") => Ok(ReadConsistency::Linearizable),
        Ok("stale") | Ok("stale-ok") => Ok(ReadConsistency::Stale),
        _ => Err(s3_error!(
            InvalidArgument,
            "{READ_HEADER} must be linearizable or stale"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, http::HeaderValue::from_static(value));
        h
    }

    #[test]
    fn parses_the_consistency_headers() {
        assert_eq!(write(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            write(&headers(WRITE_HEADER, "all")).unwrap(),
            Some(WriteConsistency::All)
        );
        assert_eq!(
            write(&headers(WRITE_HEADER, "ONE")).unwrap(),
            Some(WriteConsistency::One)
        );
        assert!(write(&headers(WRITE_HEADER, "most")).is_err());
        assert_eq!(
            read(&HeaderMap::new()).unwrap(),
            ReadConsistency::Linearizable
        );
        assert_eq!(
            read(&headers(READ_HEADER, "stale")).unwrap(),
            ReadConsistency::Stale
        );
        assert!(read(&headers(READ_HEADER, "eventual")).is_err());
    }
}
