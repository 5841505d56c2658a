//! Node identity and trust: the cluster CA and node certificates (`pki`), the token-proved
//! join (`join`), the rustls configurations of the RPC port (`tls`), TLS connections with the
//! verified peer identity and connection limits (`net`), and the join token rules (`token`).

pub mod join;
pub mod net;
pub mod pki;
pub mod tls;
pub mod token;

pub use net::{Connector, ListenerLimits, PeerInfo};
pub use tls::{CaSource, OperatorFiles, Trust};

/// A failure loading, creating or exchanging trust material.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pki(String),
    #[error("{0}")]
    Join(String),
    #[error("{0}")]
    Config(String),
}

impl TrustError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrustError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The Raft id of a node: a stable 64-bit hash of its name (the same function the server
/// uses, so a certificate's node id tells which Raft id its holder may speak for).
pub fn raft_id(node_id: &str) -> u64 {
    let h = blake3::hash(node_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_be_bytes(b)
}
