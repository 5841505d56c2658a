//! Generated gRPC types and service stubs for `proto/cairn.proto` (package `cairn.v1`), and the
//! cluster credential every node-to-node call carries.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("cairn.v1");
}

pub mod auth;

pub use auth::{PeerAuth, PeerChannel};

/// Runs a gRPC call with a deadline enforced here, on the client. `Request::set_timeout` alone
/// is not enough: tonic applies it only once a connection is ready, so a call queued while the
/// channel reconnects to a cut-off peer would wait for as long as the cut lasts.
pub async fn deadline<T>(
    d: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(d, call).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {} ms",
            d.as_millis()
        ))),
    }
}
