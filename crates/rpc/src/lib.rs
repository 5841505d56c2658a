//! Generated gRPC types and service stubs for `proto/cairn.proto` (package `cairn.v1`), and the
//! cluster credential every node-to-node call carries.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("cairn.v1");
}

pub mod auth;

pub use auth::{PeerAuth, PeerChannel};
