//! The join token is the cluster secret. There is no unauthenticated mode: a node with seeds
//! needs one (or an already formed cluster in its data directory); a node running alone
//! generates one at first start and keeps it in `<data>/join_token` (0600).

use std::path::Path;

use rand::RngCore;

use crate::pki::{read_optional, write_private, NODE_CERT};
use crate::TrustError;

pub const TOKEN_FILE: &str = "join_token";

/// The effective join token and whether it was generated now (the caller prints it once).
pub fn effective(
    data: &Path,
    configured: Option<&str>,
    clustered: bool,
) -> Result<(Option<String>, bool), TrustError> {
    if let Some(t) = configured.filter(|t| !t.is_empty()) {
        return Ok((Some(t.to_string()), false));
    }
    let path = data.join(TOKEN_FILE);
    if let Some(b) = read_optional(&path)? {
        let t = String::from_utf8_lossy(&b).trim().to_string();
        if !t.is_empty() {
            return Ok((Some(t), false));
        }
    }
    if clustered {
        // A restarted member keeps working with its certificate; it just cannot admit joiners.
        if data.join("tls").join(NODE_CERT).exists() {
            return Ok((None, false));
        }
        return Err(TrustError::Config(
            "CLUSTER_SEEDS is set but CLUSTER_JOIN_TOKEN is not: set CLUSTER_JOIN_TOKEN to the same secret on every node (a node running alone prints one at first start and keeps it in <data>/join_token)".into(),
        ));
    }
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    let t = hex::encode(b);
    write_private(&path, format!("{t}\n").as_bytes())?;
    Ok((Some(t), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        let d = tempfile::tempdir().unwrap();
        let err = effective(d.path(), None, true).unwrap_err();
        assert!(err.to_string().contains("CLUSTER_JOIN_TOKEN"));
        assert_eq!(
            effective(d.path(), Some("x"), true).unwrap(),
            (Some("x".into()), false)
        );
        let (t, generated) = effective(d.path(), None, false).unwrap();
        assert!(generated);
        // Kept: the same token later, also once seeds are added.
        assert_eq!(effective(d.path(), None, true).unwrap(), (t, false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(d.path().join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
