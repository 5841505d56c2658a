//! Signing FileService calls with S3 credentials, without sending the secret. Both ends use
//! this module, so the canonical string exists in one place.
//!
//! A call carries three metadata entries: the access key, the date (unix seconds or RFC 3339)
//! and a hex HMAC-SHA256, keyed with the secret key, of
//! `"cairn-files-v1\n" + method + "\n" + bucket + "\n" + key + "\n" + date`. The server accepts
//! dates within [`MAX_CLOCK_SKEW`] of its clock, which bounds replay of a captured signature to
//! the same operation on the same name. The payload is not signed (a body may be gigabytes and
//! is streamed before anything could be checked): the RPC port belongs on a private network.
//!
//! The call's target also travels in metadata (`x-cairn-bucket`, `x-cairn-key-bin`), so a
//! streaming call (Upload) is authenticated and authorized before its first message is read;
//! the server then requires the first message to name the same target.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Status;

pub const ACCESS_KEY_HEADER: &str = "x-cairn-access-key";
pub const DATE_HEADER: &str = "x-cairn-date";
pub const SIGNATURE_HEADER: &str = "x-cairn-signature";
pub const BUCKET_HEADER: &str = "x-cairn-bucket";
/// Binary metadata (keys are any UTF-8).
pub const KEY_HEADER: &str = "x-cairn-key-bin";
/// How far a request's date may be from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);
const SCHEME: &str = "cairn-files-v1";

type HmacSha256 = Hmac<Sha256>;

/// Why a call was not authenticated (every variant is `UNAUTHENTICATED` on the wire).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing `{0}` metadata: FileService calls must be signed with the node's S3 credentials"
    )]
    Missing(&'static str),
    #[error("`{header}` is not valid: {reason}")]
    Malformed {
        header: &'static str,
        reason: String,
    },
    #[error("unknown access key `{0}`")]
    UnknownAccessKey(String),
    #[error(
        "request date is {skew_secs} s away from the server's clock (at most {} s allowed): check the clock",
        MAX_CLOCK_SKEW.as_secs()
    )]
    ClockSkew { skew_secs: i64 },
    #[error("signature does not match: check the secret key")]
    SignatureMismatch,
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        Status::unauthenticated(e.to_string())
    }
}

/// An access key and the HMAC keyed with its secret. The secret itself is not kept.
#[derive(Clone)]
pub struct Credentials {
    access_key: String,
    mac: HmacSha256,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The string a signature covers. Fields are newline-separated; names containing control
/// characters are refused after authentication, so an ambiguous split authorises nothing.
pub fn canonical_string(method: &str, bucket: &str, key: &str, date: &str) -> String {
    format!("{SCHEME}\n{method}\n{bucket}\n{key}\n{date}")
}

/// The (bucket, key) a call names in its metadata (see the module comment).
pub fn target(metadata: &MetadataMap) -> Result<(String, String), AuthError> {
    let bucket = metadata
        .get(BUCKET_HEADER)
        .ok_or(AuthError::Missing(BUCKET_HEADER))?
        .to_str()
        .map_err(|e| AuthError::Malformed {
            header: BUCKET_HEADER,
            reason: e.to_string(),
        })?
        .to_string();
    let key = match metadata.get_bin(KEY_HEADER) {
        None => return Err(AuthError::Missing(KEY_HEADER)),
        Some(v) => {
            let bytes = v.to_bytes().map_err(|e| AuthError::Malformed {
                header: KEY_HEADER,
                reason: e.to_string(),
            })?;
            String::from_utf8(bytes.to_vec()).map_err(|_| AuthError::Malformed {
                header: KEY_HEADER,
                reason: "not UTF-8".into(),
            })?
        }
    };
    Ok((bucket, key))
}

/// The access key a call claims (not yet verified).
pub fn claimed_access_key(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get(ACCESS_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// Parses `x-cairn-date`: unix seconds or RFC 3339. Returns unix seconds.
pub fn parse_date(date: &str) -> Result<i64, AuthError> {
    let malformed = |reason: String| AuthError::Malformed {
        header: DATE_HEADER,
        reason,
    };
    if !date.is_empty() && date.bytes().all(|b| b.is_ascii_digit()) {
        return date
            .parse::<i64>()
            .map_err(|e| malformed(format!("{date:?}: {e}")));
    }
    time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            malformed(format!(
                "{date:?} is neither unix seconds nor RFC 3339 ({e})"
            ))
        })
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl Credentials {
    /// Credentials for `access_key` / `secret_key`. Fails only if the key is not valid gRPC
    /// metadata (it must be visible ASCII).
    pub fn new(access_key: &str, secret_key: &str) -> Result<Self, AuthError> {
        if access_key.is_empty() || !access_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Malformed {
                header: ACCESS_KEY_HEADER,
                reason: "the access key must be non-empty visible ASCII".into(),
            });
        }
        // HMAC takes keys of any length; the error case cannot happen but is not unwrapped.
        let mac = HmacSha256::new_from_slice(secret_key.as_bytes()).map_err(|e| {
            AuthError::Malformed {
                header: SIGNATURE_HEADER,
                reason: format!("unusable secret key: {e}"),
            }
        })?;
        Ok(Self {
            access_key: access_key.to_string(),
            mac,
        })
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    fn mac_of(&self, method: &str, bucket: &str, key: &str, date: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(canonical_string(method, bucket, key, date).as_bytes());
        mac
    }

    /// The hex signature of a call.
    pub fn sign(&self, method: &str, bucket: &str, key: &str, date: &str) -> String {
        hex::encode(
            self.mac_of(method, bucket, key, date)
                .finalize()
                .into_bytes(),
        )
    }

    /// Adds the three auth entries to `metadata`, dated `now`.
    pub fn authorize(
        &self,
        metadata: &mut MetadataMap,
        method: &str,
        bucket: &str,
        key: &str,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let date = unix_secs(now).to_string();
        let signature = self.sign(method, bucket, key, &date);
        let value = |header: &'static str, v: &str| {
            MetadataValue::try_from(v).map_err(|e| AuthError::Malformed {
                header,
                reason: e.to_string(),
            })
        };
        metadata.insert(
            ACCESS_KEY_HEADER,
            value(ACCESS_KEY_HEADER, &self.access_key)?,
        );
        metadata.insert(DATE_HEADER, value(DATE_HEADER, &date)?);
        metadata.insert(SIGNATURE_HEADER, value(SIGNATURE_HEADER, &signature)?);
        metadata.insert(BUCKET_HEADER, value(BUCKET_HEADER, bucket)?);
        metadata.insert_bin(KEY_HEADER, MetadataValue::from_bytes(key.as_bytes()));
        Ok(())
    }

    /// Checks a call's auth entries against these credentials at time `now`.
    pub fn verify(
        &self,
        metadata: &MetadataMap,
        method: &str,
        bucket: &str,
        key: &str,
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let get = |header: &'static str| -> Result<&str, AuthError> {
            let v = metadata.get(header).ok_or(AuthError::Missing(header))?;
            v.to_str().map_err(|e| AuthError::Malformed {
                header,
                reason: e.to_string(),
            })
        };
        let access_key = get(ACCESS_KEY_HEADER)?;
        let date = get(DATE_HEADER)?;
        let signature = get(SIGNATURE_HEADER)?;
        if access_key != self.access_key {
            return Err(AuthError::UnknownAccessKey(access_key.to_string()));
        }
        let skew = parse_date(date)?.saturating_sub(unix_secs(now));
        if skew.unsigned_abs() > MAX_CLOCK_SKEW.as_secs() {
            return Err(AuthError::ClockSkew { skew_secs: skew });
        }
        let given = hex::decode(signature).map_err(|_| AuthError::SignatureMismatch)?;
        // `verify_slice` compares in constant time.
        self.mac_of(method, bucket, key, date)
            .verify_slice(&given)
            .map_err(|_| AuthError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new("AK", "secret").unwrap()
    }

    #[test]
    fn signed_metadata_verifies_only_for_the_same_call() {
        let c = creds();
        let now = SystemTime::now();
        let mut md = MetadataMap::new();
        c.authorize(&mut md, "Upload", "b", "k", now).unwrap();
        c.verify(&md, "Upload", "b", "k", now).unwrap();
        for (m, b, k) in [
            ("Delete", "b", "k"),
            ("Upload", "c", "k"),
            ("Upload", "b", "j"),
        ] {
            assert!(matches!(
                c.verify(&md, m, b, k, now),
                Err(AuthError::SignatureMismatch)
            ));
        }
        let other = Credentials::new("AK", "other").unwrap();
        assert!(matches!(
            other.verify(&md, "Upload", "b", "k", now),
            Err(AuthError::SignatureMismatch)
        ));
        let stranger = Credentials::new("ZZ", "secret").unwrap();
        assert!(matches!(
            stranger.verify(&md, "Upload", "b", "k", now),
            Err(AuthError::UnknownAccessKey(_))
        ));
    }

    #[test]
    fn the_target_travels_in_metadata() {
        let c = creds();
        let mut md = MetadataMap::new();
        c.authorize(
            &mut md,
            "Upload",
            "photos",
            "dir/ünï.jpg",
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            target(&md).unwrap(),
            ("photos".to_string(), "dir/ünï.jpg".to_string())
        );
        assert!(matches!(
            target(&MetadataMap::new()),
            Err(AuthError::Missing(BUCKET_HEADER))
        ));
    }

    #[test]
    fn missing_and_stale_requests_are_refused() {
        let c = creds();
        let now = SystemTime::now();
        assert!(matches!(
            c.verify(&MetadataMap::new(), "List", "b", "", now),
            Err(AuthError::Missing(ACCESS_KEY_HEADER))
        ));
        let mut md = MetadataMap::new();
        let old = now - Duration::from_secs(16 * 60);
        c.authorize(&mut md, "List", "b", "", old).unwrap();
        assert!(matches!(
            c.verify(&md, "List", "b", "", now),
            Err(AuthError::ClockSkew { .. })
        ));
        // 14 minutes either way is fine.
        for t in [
            now - Duration::from_secs(14 * 60),
            now + Duration::from_secs(14 * 60),
        ] {
            let mut md = MetadataMap::new();
            c.authorize(&mut md, "List", "b", "", t).unwrap();
            c.verify(&md, "List", "b", "", now).unwrap();
        }
    }

    #[test]
    fn rfc3339_dates_are_accepted() {
        let c = creds();
        let date = "2030-01-02T03:04:05Z";
        let at = UNIX_EPOCH + Duration::from_secs(parse_date(date).unwrap() as u64);
        let mut md = MetadataMap::new();
        md.insert(ACCESS_KEY_HEADER, "AK".parse().unwrap());
        md.insert(DATE_HEADER, date.parse().unwrap());
        md.insert(
            SIGNATURE_HEADER,
            c.sign("Stat", "b", "k", date).parse().unwrap(),
        );
        c.verify(&md, "Stat", "b", "k", at).unwrap();
        assert!(parse_date("yesterday").is_err());
        assert_eq!(parse_date("1700000000").unwrap(), 1_700_000_000);
    }

    #[test]
    fn signature_is_hmac_sha256_of_the_canonical_string() {
        // A known answer (Python's hmac module), so other clients can check themselves.
        let sig = creds().sign("Upload", "photos", "a/b.jpg", "1700000000");
        assert_eq!(
            sig,
            "8d40caa47b67768bf4ecc237404252f1094a482b730fc907577cc6dc85bc0a46"
        );
    }
}
