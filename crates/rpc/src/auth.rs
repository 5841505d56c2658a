//! Node-to-node calls prove cluster membership: with `CLUSTER_JOIN_TOKEN` set, every Raft,
//! chunk and control call carries a digest of the token in `x-cairn-cluster-auth`, and a node
//! refuses calls without the right one. The digest (not the token) travels, so the token does
//! not end up in captures of every message; `Hello` and `RegisterNode` carry the token itself
//! because that is how a joining node proves it may join.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Metadata key of the cluster credential.
pub const AUTH_HEADER: &str = "x-cairn-cluster-auth";

/// A channel to a peer that adds the cluster credential to every call.
pub type PeerChannel = InterceptedService<Channel, PeerAuth>;

/// The credential derived from a join token.
pub fn token_digest(token: &str) -> String {
    blake3::derive_key("cairn 2026 node-to-node credential", token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Client side: adds the credential (if the cluster has a token) to outgoing calls.
#[derive(Clone, Default)]
pub struct PeerAuth {
    value: Option<MetadataValue<Ascii>>,
}

impl PeerAuth {
    pub fn new(join_token: Option<&str>) -> Self {
        Self {
            // A hex digest is always valid ASCII metadata.
            value: join_token.and_then(|t| MetadataValue::try_from(token_digest(t)).ok()),
        }
    }
}

impl Interceptor for PeerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            request.metadata_mut().insert(AUTH_HEADER, v.clone());
        }
        Ok(request)
    }
}

/// Server side: checks the credential of incoming calls.
#[derive(Clone, Default)]
pub struct PeerCheck {
    expected: Option<String>,
}

impl PeerCheck {
    pub fn new(join_token: Option<&str>) -> Self {
        Self {
            expected: join_token.map(token_digest),
        }
    }

    /// Ok when the cluster has no token or the call carries the right credential.
    pub fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let got = request
            .metadata()
            .get(AUTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if same_secret(got, expected) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "missing or wrong cluster credential: is CLUSTER_JOIN_TOKEN the same on every node?",
            ))
        }
    }
}

impl Interceptor for PeerCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(&request)?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_is_checked() {
        let mut client = PeerAuth::new(Some("s3cret"));
        let check = PeerCheck::new(Some("s3cret"));
        let req = client.call(Request::new(())).unwrap();
        assert!(check.check(&req).is_ok());
        // The token itself is not what travels.
        let sent = req.metadata().get(AUTH_HEADER).unwrap().to_str().unwrap();
        assert!(!sent.contains("s3cret"));

        let wrong = PeerAuth::new(Some("other")).call(Request::new(())).unwrap();
        let err = check.check(&wrong).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(check.check(&Request::new(())).is_err());
        // No token configured: everything is accepted.
        assert!(PeerCheck::new(None).check(&Request::new(())).is_ok());
    }

    #[test]
    fn same_secret_compares_whole_strings() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(same_secret("", ""));
    }
}
